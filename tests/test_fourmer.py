"""Fourmer re-implementation: state_dict vs the official manifest, output vs the official test vector (made with
fill_scale {"block.H.": 0.1}), checkpoint formats, the adapter's size / batch handling and the registered method.
CPU, offline."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from baselines.fourmer import (
    CHECKPOINT_NAME,
    PUBLISHED_AT,
    Fourmer,
    FourmerRestorer,
    fourmer_state_dict,
    load_fourmer,
    pad_to_multiple,
)
from harness.protocol import Restorer
from harness.registry import MethodArgError, MethodOptions, create_restorer, get_spec
from harness.weights import MissingWeightsError, WeightsError

DATA = Path(__file__).parent / "data"
CASE = torch.load(DATA / "fourmer_case0.pt", weights_only=True)


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
def model(_one_thread) -> Fourmer:
    """Fourmer with the case's deterministic weights (salt 0, the H sub-blocks scaled by 0.1)."""
    net = Fourmer().eval()
    sd = net.state_dict()
    fill.fill_state_dict(sd, salt=CASE["salt"], scale=CASE["fill_scale"])
    net.load_state_dict(sd)
    return net


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def _rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return (out - ref).abs().max().item() / max(1.0, ref.abs().max().item())


# ------------------------------------------------------------------------------------------ architecture


def test_state_dict_matches_official_manifest(model):
    manifest = json.loads((DATA / "fourmer.manifest.json").read_text())
    ours = {
        k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
        for k, v in model.state_dict().items()
    }
    assert len(manifest) == 376
    assert list(ours) == list(manifest)  # same keys, same order
    assert ours == manifest
    assert sum(p.numel() for p in model.parameters()) == 84_491
    assert not list(model.buffers())


def test_matches_official_test_vector(model):
    assert CASE["fill_scale"] == {"block.H.": 0.1} and CASE["salt"] == 0
    with torch.inference_mode():
        out = model(CASE["x"])
    ref = CASE["out"]
    assert out.shape == ref.shape and out.dtype == torch.float32
    # Outputs are large with filled weights (max |out| ~1e3): the criterion is relative to max |out|.
    assert _rel_err(out, ref) <= 1e-4, _rel_err(out, ref)


def test_module_runs_odd_sizes(model):
    x = fill.make_input((1, 3, 37, 53), seed=2)  # like the hidden cases: the network itself takes any H, W ≥ 4
    with torch.inference_mode():
        out = model(x)
    assert out.shape == x.shape and torch.isfinite(out).all()


# ----------------------------------------------------------------------------------------------- adapter


def test_adapter_odd_size_is_padded_cropped_and_clamped(model):
    restorer = FourmerRestorer(model)
    x = fill.make_input((1, 3, 37, 53), seed=3)
    out = restorer.restore(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1
    with torch.inference_mode():
        padded = F.pad(x, (0, 3, 0, 3), mode="reflect")  # to 40×56 at the bottom / right
        expected = model(padded)[..., :37, :53].clamp(0, 1)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_pad_to_multiple():
    x = torch.arange(2 * 3 * 5 * 2, dtype=torch.float32).reshape(2, 3, 5, 2)
    y = pad_to_multiple(x, 4)
    assert y.shape == (2, 3, 8, 4)
    torch.testing.assert_close(y[..., :5, :2], x)
    torch.testing.assert_close(y[..., 5, :2], x[..., 3, :])  # reflected row
    torch.testing.assert_close(y[..., :5, 3], x[..., :, 1])  # replicated column (too narrow to reflect)
    assert pad_to_multiple(torch.zeros(1, 3, 16, 8)).shape == (1, 3, 16, 8)


def test_batch_equals_single_runs(model):
    x = fill.make_input((2, 3, 20, 28), seed=5)
    with torch.inference_mode():
        both = model(x)
        one = torch.cat([model(x[:1]), model(x[1:])])
    assert _rel_err(both, one) <= 1e-5
    # The adapter on an odd size (padding, crop, clamp), with the default init: filled weights give outputs of
    # ~1e3 whose clamp at 0 / 1 turns float noise into an absolute difference.
    torch.manual_seed(0)
    restorer = FourmerRestorer(Fourmer())
    x = fill.make_input((2, 3, 21, 27), seed=6)
    both = restorer.restore(x)
    one = torch.cat([restorer.restore(x[:1]), restorer.restore(x[1:])])
    assert both.shape == x.shape
    assert (both - one).abs().max().item() <= 1e-5


# ------------------------------------------------------------------------------------------------ loader


def test_loads_released_plain_state_dict(model, tmp_path):
    path = tmp_path / CHECKPOINT_NAME
    torch.save(model.state_dict(), path)  # the released file is a plain OrderedDict of tensors
    loaded = load_fourmer(path)
    assert not loaded.training
    _assert_same_weights(loaded, model)
    x = fill.make_input((1, 3, 16, 20), seed=9)
    with torch.inference_mode():
        assert torch.equal(loaded(x), model(x))


def _small_state_dict() -> dict[str, torch.Tensor]:
    return {"extract.weight": torch.randn(8, 3, 1, 1), "recons.bias": torch.randn(3)}


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}},
    ],
    ids=["plain", "module", "state_dict", "model-module"],
)
def test_state_dict_formats(tmp_path, wrap):
    sd = _small_state_dict()
    torch.save(wrap(sd), tmp_path / "w.pth")
    got = fourmer_state_dict(tmp_path / "w.pth")
    assert list(got) == list(sd)
    assert all(torch.equal(got[k], v) for k, v in sd.items())


def test_wrong_file_lists_differences(tmp_path):
    # The variant the LOL option file names (EnhanceN_arch1: 7×7 extract) does not fit the released weights.
    wrong = {"extract.weight": torch.zeros(8, 3, 7, 7), "not_fourmer.weight": torch.zeros(2)}
    torch.save(wrong, tmp_path / "other.pth")
    with pytest.raises(WeightsError) as info:
        load_fourmer(tmp_path / "other.pth")
    msg = str(info.value)
    assert not isinstance(info.value, MissingWeightsError)
    assert "other.pth" in msg
    assert "375 missing key(s)" in msg and "extract.bias" in msg
    assert "unexpected key(s), first: not_fourmer.weight" in msg
    assert "extract.weight expected (8, 3, 1, 1) got (8, 3, 7, 7)" in msg

    (tmp_path / "garbage.pth").write_bytes(b"this is not a checkpoint")
    with pytest.raises(WeightsError, match="garbage.pth"):
        load_fourmer(tmp_path / "garbage.pth")


def test_missing_file(tmp_path):
    with pytest.raises(MissingWeightsError) as info:
        load_fourmer(tmp_path / CHECKPOINT_NAME)
    msg = str(info.value)
    assert CHECKPOINT_NAME in msg and "https://github.com/manman1995/Fourmer" in msg
    assert "LLIE/pretrain/LOL/0_bestavg.pth" in PUBLISHED_AT


# ---------------------------------------------------------------------------------------- registered method


def test_registered_method(model, tmp_path):
    # Importing baselines.fourmer (above) registers "fourmer"; the central registry entries come later.
    assert get_spec("fourmer").modes == ("auto", "text")

    rnd = create_restorer("fourmer", MethodOptions(random_weights=True))
    assert isinstance(rnd, Restorer) and isinstance(rnd, FourmerRestorer)
    assert rnd.name == "fourmer" and rnd.weights_label == "random" and rnd.weights_files == []
    _assert_same_weights(rnd.model, create_restorer("fourmer", MethodOptions(random_weights=True)).model)

    with pytest.raises(MethodArgError, match="flag"):
        create_restorer("fourmer", MethodOptions(random_weights=True, method_args={"flag": "1"}))

    path = tmp_path / CHECKPOINT_NAME
    torch.save(model.state_dict(), path)
    restorer = create_restorer("fourmer", MethodOptions(weights_dir=tmp_path))
    assert restorer.weights_label == "official" and restorer.weights_files == [path]
    _assert_same_weights(restorer.model, model)
    x = fill.make_input((2, 3, 16, 16), seed=7)
    blind = restorer.restore(x)
    typed = restorer.restore(x, ["haze", "low_rain"])  # the type is ignored
    torch.testing.assert_close(typed, blind, rtol=0, atol=0)
    assert restorer.to("cpu") is restorer
    assert create_restorer("fourmer", MethodOptions(weights=path)).weights_files == [path]

    for opts in (MethodOptions(), MethodOptions(weights_dir=tmp_path / "none"), MethodOptions(weights=tmp_path / "x")):
        with pytest.raises(MissingWeightsError) as info:
            create_restorer("fourmer", opts)
        assert "https://github.com/manman1995/Fourmer" in str(info.value)
