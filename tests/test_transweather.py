"""TransWeather re-implementation: state_dict vs the official manifest, output vs the official test vector,
the weather-query resampling, the adapter's normalisation / padding / batching, the authors' checkpoint formats
and the registered method. CPU, offline, one model build."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from baseline_checks import (
    assert_close_to_reference,
    assert_matches_manifest,
    assert_needs_weights,
    assert_odd_size_adapter,
    assert_official_restorer,
    assert_reads_state_dict,
    assert_refuses_garbage,
    assert_restores_finite,
    assert_same_weights,
    assert_type_is_ignored,
    assert_unknown_method_arg,
    batch_and_single_runs,
    case_meta,
    fill,
    filled,
    missing_file_message,
    module_prefixed,
    one_thread,  # noqa: F401 - autouse: one intra-op thread for the module
    random_restorer,
    wrong_file_message,
)

from baselines.transweather import (
    CHECKPOINT_NAME,
    PUBLISHED_AT,
    TransWeather,
    TransWeatherRestorer,
    WeatherQueryAttention,
    load_transweather,
    pad_for_transweather,
    transweather_state_dict,
)
from harness.registry import get_spec

DATA = Path(__file__).parent / "data"
CASE = case_meta("transweather_case0")


@pytest.fixture(scope="module")
def model() -> TransWeather:
    """TransWeather with the reference case's deterministic weights, built once for the module."""
    return filled(TransWeather().eval(), salt=CASE["salt"], scale=CASE["fill_scale"])


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory, model):
    """The weights as the authors' train.py writes them: `torch.save(net.state_dict())` of an nn.DataParallel
    model (every key under `module.`), in a file named `best`."""
    d = tmp_path_factory.mktemp("transweather_weights")
    torch.save(module_prefixed(model.state_dict()), d / CHECKPOINT_NAME)
    yield d
    (d / CHECKPOINT_NAME).unlink()  # ~150 MB: do not leave it in pytest's kept temp folders


def _assert_same_outputs(a: torch.nn.Module, b: torch.nn.Module) -> None:
    x = fill.make_input((1, 3, 48, 64), seed=11) * 2 - 1
    with torch.inference_mode():
        assert torch.equal(a(x), b(x))


# ------------------------------------------------------------------------------------------ architecture


def test_state_dict_matches_official_manifest(model):
    assert_matches_manifest(model, "transweather.manifest.json", n_keys=347, n_params=38_052_078)
    assert not list(model.buffers())


def test_matches_official_test_vector(model):
    case = torch.load(DATA / "transweather_case0.pt", weights_only=True)
    assert case["fill_scale"] == CASE["fill_scale"] and case["model_input"] == "(x - 0.5) / 0.5"
    x = ((case["x"].double() - 0.5) / 0.5).float()  # the reference normalised in float64
    with torch.inference_mode():
        out = model(x)
    ref = case["out"]
    assert list(ref.shape) == CASE["out"]  # 96×160: the tail drops a row / column at 1/32 and 1/16
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert_close_to_reference(out, ref)


def test_weather_queries_are_resampled_nearest():
    """Token i of N is served by query ⌊i·48/N⌋ (the release resamples the 48 queries, it does not pool)."""
    torch.manual_seed(0)
    attn = WeatherQueryAttention(dim=8, heads=2).eval()
    h, w = 2, 5  # N = 10 tokens
    x = torch.randn(3, h * w, 8)
    with torch.no_grad():
        out = attn(x, h, w)
        rows = torch.arange(h * w) * 48 // (h * w)
        q = attn.q(attn.task_query[0, rows]).reshape(h * w, 2, 4).transpose(0, 1)  # heads×N×d
        k, v = attn.kv(x).chunk(2, dim=-1)
        k, v = (t.reshape(3, h * w, 2, 4).transpose(1, 2) for t in (k, v))
        ref = torch.softmax(q @ k.transpose(-2, -1) / 2.0, dim=-1) @ v
        ref = attn.proj(ref.transpose(1, 2).reshape(3, h * w, 8))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------- adapter


def test_pad_for_transweather():
    x = torch.arange(2 * 3 * 37 * 53, dtype=torch.float32).reshape(2, 3, 37, 53)
    y = pad_for_transweather(x)
    assert y.shape == (2, 3, 48, 64)
    torch.testing.assert_close(y[..., :37, :53], x)
    torch.testing.assert_close(y[..., 37, :53], x[..., 35, :])  # reflected row
    assert pad_for_transweather(torch.zeros(1, 3, 20, 16)).shape == (1, 3, 48, 48)  # replicated (too short)
    assert pad_for_transweather(torch.zeros(1, 3, 64, 96)).shape == (1, 3, 64, 96)


def test_adapter_normalises_pads_and_crops(model):
    # (x - 0.5) / 0.5, up to 48×64 at the bottom / right; reflect padding commutes with the elementwise normalisation
    out, _ = assert_odd_size_adapter(
        TransWeatherRestorer(model), lambda padded: model((padded - 0.5) / 0.5), pad=11, atol=1e-6, clamp=False
    )
    assert out.abs().max() <= 1  # tanh, read as a [0, 1] image; not clamped by the adapter


def test_batch_equals_single_runs(model):
    both, one = batch_and_single_runs(TransWeatherRestorer(model).restore, fill.make_input((2, 3, 40, 50), seed=5))
    # Same criterion as the reference vector: batching changes only the floating-point summation order.
    assert_close_to_reference(both, one)


# ------------------------------------------------------------------------------------------------ loader


def test_loads_dataparallel_state_dict(model, ckpt_dir):
    loaded = load_transweather(ckpt_dir / CHECKPOINT_NAME)
    assert not loaded.training
    assert_same_weights(loaded, model)
    _assert_same_outputs(loaded, model)


def test_loads_state_dict_entry(model, tmp_path):
    """`Transweather(path)` in the release reads {'state_dict': <DataParallel keys>}."""
    path = tmp_path / "transweather.pth"
    torch.save({"state_dict": module_prefixed(model.state_dict()), "epoch": 7}, path)
    try:
        loaded = load_transweather(path)
        assert_same_weights(loaded, model)
        _assert_same_outputs(loaded, model)
    finally:
        path.unlink()


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        module_prefixed,
        lambda sd: {"state_dict": module_prefixed(sd)},
        lambda sd: {"state_dict": sd, "optimizer": {"lr": torch.tensor(1e-4)}},
    ],
    ids=["plain", "dataparallel", "state_dict-module", "state_dict"],
)
def test_state_dict_formats(tmp_path, wrap):
    sd = {"clean.conv2d.weight": torch.randn(3, 8, 3, 3), "clean.conv2d.bias": torch.randn(3)}
    assert_reads_state_dict(transweather_state_dict, tmp_path / "w.pth", wrap(sd), sd)


def test_wrong_file_lists_differences(tmp_path):
    wrong = {
        "module.Tenc.patch_embed1.proj.weight": torch.zeros(64, 3, 3, 3),
        "module.Tdec.block1.0.attn.task_query": torch.zeros(1, 48, 512),
        "module.not_transweather.weight": torch.zeros(2),
    }
    msg = wrong_file_message(load_transweather, tmp_path / "other.pth", wrong)
    assert "345 missing key(s)" in msg and "Tenc.patch_embed1.proj.bias" in msg
    assert "unexpected key(s), first: not_transweather.weight" in msg
    assert "Tenc.patch_embed1.proj.weight expected (64, 3, 7, 7) got (64, 3, 3, 3)" in msg
    assert_refuses_garbage(load_transweather, tmp_path / "garbage")


def test_missing_file(tmp_path):
    msg = missing_file_message(load_transweather, tmp_path / "best")
    assert str(tmp_path / "best") in msg and "https://github.com/jeya-maria-jose/TransWeather" in msg
    assert "jeya-maria-jose/TransWeather" in PUBLISHED_AT


# ---------------------------------------------------------------------------------------- registered method


def test_registered_method(model, ckpt_dir):
    spec = get_spec("transweather")
    assert spec.modes == ("auto", "text")

    restorer = assert_official_restorer("transweather", TransWeatherRestorer, model, ckpt_dir / CHECKPOINT_NAME)
    assert restorer.device == torch.device("cpu")
    x = fill.make_input((2, 3, 48, 48), seed=7)
    blind = assert_type_is_ignored(restorer, x, ["haze", "low_rain"])
    torch.testing.assert_close(blind, TransWeatherRestorer(model).restore(x), rtol=0, atol=1e-6)


def test_registered_method_random_weights():
    restorer = random_restorer("transweather")
    assert_restores_finite(restorer, (1, 3, 21, 30), seed=9)
    assert_unknown_method_arg("transweather", {"weather": "rain"}, match="unknown --method-arg weather")


def test_registered_method_without_weights(tmp_path):
    url = "https://github.com/jeya-maria-jose/TransWeather"
    assert_needs_weights("transweather", url, tmp_path, tmp_path / "x.pth", name="best")
