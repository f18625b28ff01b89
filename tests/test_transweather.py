"""TransWeather re-implementation: state_dict vs the official manifest, output vs the official test vector,
the weather-query resampling, the adapter's normalisation / padding / batching, the authors' checkpoint formats
and the registered method. CPU, offline, one model build."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

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
from harness.protocol import Restorer
from harness.registry import MethodArgError, MethodOptions, create_restorer, get_spec
from harness.weights import MissingWeightsError, WeightsError

DATA = Path(__file__).parent / "data"
CASES = json.loads((DATA / "cases.json").read_text())


def _load_fill():
    spec = importlib.util.spec_from_file_location("_vlur_fill", DATA / "fill.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fill = _load_fill()


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # The test machine's cores are shared: one intra-op thread is several times faster than oversubscribing.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model(_one_thread) -> TransWeather:
    """TransWeather with the reference case's deterministic weights, built once for the module."""
    case = CASES["transweather_case0"]
    net = TransWeather().eval()
    sd = net.state_dict()
    fill.fill_state_dict(sd, salt=case["salt"], scale=case["fill_scale"])
    net.load_state_dict(sd)
    return net


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory, model):
    """The weights as the authors' train.py writes them: `torch.save(net.state_dict())` of an nn.DataParallel
    model (every key under `module.`), in a file named `best`."""
    d = tmp_path_factory.mktemp("transweather_weights")
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, d / CHECKPOINT_NAME)
    yield d
    (d / CHECKPOINT_NAME).unlink()  # ~150 MB: do not leave it in pytest's kept temp folders


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def _assert_same_outputs(a: torch.nn.Module, b: torch.nn.Module) -> None:
    x = fill.make_input((1, 3, 48, 64), seed=11) * 2 - 1
    with torch.inference_mode():
        assert torch.equal(a(x), b(x))


# ------------------------------------------------------------------------------------------ architecture


def test_state_dict_matches_official_manifest(model):
    manifest = json.loads((DATA / "transweather.manifest.json").read_text())
    ours = {
        k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
        for k, v in model.state_dict().items()
    }
    assert len(manifest) == 347
    assert list(ours) == list(manifest)  # same keys, same order
    assert ours == manifest
    assert sum(p.numel() for p in model.parameters()) == 38_052_078
    assert not list(model.buffers())


def test_matches_official_test_vector(model):
    case = torch.load(DATA / "transweather_case0.pt", weights_only=True)
    meta = CASES["transweather_case0"]
    assert case["fill_scale"] == meta["fill_scale"] and case["model_input"] == "(x - 0.5) / 0.5"
    x = ((case["x"].double() - 0.5) / 0.5).float()  # the reference normalised in float64
    with torch.inference_mode():
        out = model(x)
    ref = case["out"]
    assert list(ref.shape) == meta["out"]  # 96×160: the tail drops a row / column at 1/32 and 1/16
    assert out.shape == ref.shape and out.dtype == torch.float32
    err = (out - ref).abs().max().item()
    assert err <= 1e-4 * max(1.0, ref.abs().max().item()), err


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
    restorer = TransWeatherRestorer(model)
    x = fill.make_input((1, 3, 37, 53), seed=3)
    out = restorer.restore(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    with torch.inference_mode():
        padded = F.pad((x - 0.5) / 0.5, (0, 11, 0, 11), mode="reflect")  # up to 48×64, bottom / right
        expected = model(padded)[..., :37, :53]
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    assert out.abs().max() <= 1  # tanh, read as a [0, 1] image; not clamped by the adapter


def test_batch_equals_single_runs(model):
    restorer = TransWeatherRestorer(model)
    x = fill.make_input((2, 3, 40, 50), seed=5)
    both = restorer.restore(x)
    one = torch.cat([restorer.restore(x[:1]), restorer.restore(x[1:])])
    assert both.shape == x.shape
    # Same criterion as the reference vector: batching changes only the floating-point summation order.
    assert (both - one).abs().max().item() <= 1e-4 * max(1.0, one.abs().max().item())


# ------------------------------------------------------------------------------------------------ loader


def test_loads_dataparallel_state_dict(model, ckpt_dir):
    loaded = load_transweather(ckpt_dir / CHECKPOINT_NAME)
    assert not loaded.training
    _assert_same_weights(loaded, model)
    _assert_same_outputs(loaded, model)


def test_loads_state_dict_entry(model, tmp_path):
    """`Transweather(path)` in the release reads {'state_dict': <DataParallel keys>}."""
    path = tmp_path / "transweather.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 7}, path)
    try:
        loaded = load_transweather(path)
        _assert_same_weights(loaded, model)
        _assert_same_outputs(loaded, model)
    finally:
        path.unlink()


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
        lambda sd: {"state_dict": sd, "optimizer": {"lr": torch.tensor(1e-4)}},
    ],
    ids=["plain", "dataparallel", "state_dict-module", "state_dict"],
)
def test_state_dict_formats(tmp_path, wrap):
    sd = {"clean.conv2d.weight": torch.randn(3, 8, 3, 3), "clean.conv2d.bias": torch.randn(3)}
    torch.save(wrap(sd), tmp_path / "w.pth")
    got = transweather_state_dict(tmp_path / "w.pth")
    assert list(got) == list(sd)
    assert all(torch.equal(got[k], v) for k, v in sd.items())


def test_wrong_file_lists_differences(tmp_path):
    wrong = {
        "module.Tenc.patch_embed1.proj.weight": torch.zeros(64, 3, 3, 3),
        "module.Tdec.block1.0.attn.task_query": torch.zeros(1, 48, 512),
        "module.not_transweather.weight": torch.zeros(2),
    }
    torch.save(wrong, tmp_path / "other.pth")
    with pytest.raises(WeightsError) as info:
        load_transweather(tmp_path / "other.pth")
    msg = str(info.value)
    assert not isinstance(info.value, MissingWeightsError)
    assert "other.pth" in msg
    assert "345 missing key(s)" in msg and "Tenc.patch_embed1.proj.bias" in msg
    assert "unexpected key(s), first: not_transweather.weight" in msg
    assert "Tenc.patch_embed1.proj.weight expected (64, 3, 7, 7) got (64, 3, 3, 3)" in msg

    (tmp_path / "garbage").write_bytes(b"this is not a checkpoint")
    with pytest.raises(WeightsError, match="garbage"):
        load_transweather(tmp_path / "garbage")


def test_missing_file(tmp_path):
    with pytest.raises(MissingWeightsError) as info:
        load_transweather(tmp_path / "best")
    msg = str(info.value)
    assert str(tmp_path / "best") in msg and "https://github.com/jeya-maria-jose/TransWeather" in msg
    assert "jeya-maria-jose/TransWeather" in PUBLISHED_AT


# ---------------------------------------------------------------------------------------- registered method


def test_registered_method(model, ckpt_dir):
    spec = get_spec("transweather")
    assert spec.modes == ("auto", "text")

    restorer = create_restorer("transweather", MethodOptions(weights_dir=ckpt_dir))
    assert isinstance(restorer, Restorer) and isinstance(restorer, TransWeatherRestorer)
    assert restorer.name == "transweather" and restorer.weights_label == "official"
    assert restorer.weights_files == [ckpt_dir / CHECKPOINT_NAME]
    assert restorer.device == torch.device("cpu")
    _assert_same_weights(restorer.model, model)

    x = fill.make_input((2, 3, 48, 48), seed=7)
    blind = restorer.restore(x)
    typed = restorer.restore(x, ["haze", "low_rain"])  # the type is ignored
    torch.testing.assert_close(blind, TransWeatherRestorer(model).restore(x), rtol=0, atol=1e-6)
    torch.testing.assert_close(typed, blind, rtol=0, atol=0)
    assert restorer.to("cpu") is restorer

    explicit = create_restorer("transweather", MethodOptions(weights=ckpt_dir / CHECKPOINT_NAME))
    assert explicit.weights_files == [ckpt_dir / CHECKPOINT_NAME]


def test_registered_method_random_weights():
    restorer = create_restorer("transweather", MethodOptions(random_weights=True))
    again = create_restorer("transweather", MethodOptions(random_weights=True))
    assert restorer.weights_label == "random" and restorer.weights_files == []
    _assert_same_weights(restorer.model, again.model)  # seeded
    out = restorer.restore(fill.make_input((1, 3, 21, 30), seed=9))
    assert out.shape == (1, 3, 21, 30) and torch.isfinite(out).all()

    with pytest.raises(MethodArgError, match="unknown --method-arg weather"):
        create_restorer("transweather", MethodOptions(random_weights=True, method_args={"weather": "rain"}))


def test_registered_method_without_weights(tmp_path):
    for opts in (MethodOptions(), MethodOptions(weights_dir=tmp_path), MethodOptions(weights=tmp_path / "x.pth")):
        with pytest.raises(MissingWeightsError) as info:
            create_restorer("transweather", opts)
        assert "https://github.com/jeya-maria-jose/TransWeather" in str(info.value)
    with pytest.raises(MissingWeightsError, match="best"):
        create_restorer("transweather", MethodOptions(weights_dir=tmp_path))
