"""OKNet re-implementation: state_dict vs the official manifest, the three outputs vs the official test vector,
checkpoint formats, the adapter's size / batch handling and the registered method. CPU, offline."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from baselines.oknet import (
    CHECKPOINT_NAME,
    PUBLISHED_AT,
    OKNet,
    OKNetRestorer,
    load_oknet,
    oknet_state_dict,
    pad_to_multiple,
)
from harness.protocol import Restorer
from harness.registry import MethodArgError, MethodOptions, create_restorer, get_spec
from harness.weights import MissingWeightsError, WeightsError

DATA = Path(__file__).parent / "data"


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
def model(_one_thread) -> OKNet:
    """OKNet with the deterministic test weights (salt 0), built once for the module."""
    net = OKNet().eval()
    sd = net.state_dict()
    fill.fill_state_dict(sd, salt=0)
    net.load_state_dict(sd)
    return net


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# ------------------------------------------------------------------------------------------ architecture


def test_state_dict_matches_official_manifest(model):
    manifest = json.loads((DATA / "oknet.manifest.json").read_text())
    ours = {
        k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
        for k, v in model.state_dict().items()
    }
    assert len(manifest) == 164
    assert list(ours) == list(manifest)  # same keys, same order
    assert ours == manifest
    assert sum(p.numel() for p in model.parameters()) == 4_722_857
    assert not list(model.buffers())


def test_matches_official_test_vector(model):
    case = torch.load(DATA / "oknet_case0.pt", weights_only=True)
    assert "fill_scale" not in case
    with torch.inference_mode():
        outs = model(case["x"])
    assert isinstance(outs, list) and len(outs) == 3
    for name, out in zip(("out_quarter", "out_half", "out"), outs):
        ref = case[name]
        assert out.shape == ref.shape and out.dtype == torch.float32, name
        err = (out - ref).abs().max().item()
        assert err <= 1e-4 * max(1.0, ref.abs().max().item()), (name, err)


# ----------------------------------------------------------------------------------------------- adapter


def test_adapter_odd_size_is_padded_cropped_and_clamped(model):
    restorer = OKNetRestorer(model)
    x = fill.make_input((1, 3, 37, 53), seed=3)
    out = restorer.restore(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1
    with torch.inference_mode():
        padded = F.pad(x, (0, 3, 0, 3), mode="reflect")  # to 40×56 at the bottom / right, as eval.py does
        expected = model(padded)[2][..., :37, :53].clamp(0, 1)
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
    restorer = OKNetRestorer(model)
    x = fill.make_input((2, 3, 22, 18), seed=5)
    both = restorer.restore(x)
    one = torch.cat([restorer.restore(x[:1]), restorer.restore(x[1:])])
    assert (both - one).abs().max().item() <= 1e-4


# ------------------------------------------------------------------------------------------------ loader


def test_loads_official_pkl_format(model, tmp_path):
    path = tmp_path / "Best.pkl"
    torch.save({"model": model.state_dict()}, path)  # what the authors' training saves
    try:
        loaded = load_oknet(path)
        assert not loaded.training
        _assert_same_weights(loaded, model)
        x = fill.make_input((1, 3, 16, 20), seed=9)
        with torch.inference_mode():
            assert torch.equal(loaded(x)[2], model(x)[2])
    finally:
        path.unlink()


def _small_state_dict() -> dict[str, torch.Tensor]:
    return {"feat_extract.0.main.0.weight": torch.randn(32, 3, 3, 3), "bottelneck.fgm.alpha": torch.randn(128, 1, 1)}


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"model": sd},
        lambda sd: sd,
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
        lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3},
        lambda sd: {"state_dict": sd},
    ],
    ids=["model", "plain", "module", "model-module", "state_dict"],
)
def test_state_dict_formats(tmp_path, wrap):
    sd = _small_state_dict()
    torch.save(wrap(sd), tmp_path / "w.pkl")
    got = oknet_state_dict(tmp_path / "w.pkl")
    assert list(got) == list(sd)
    assert all(torch.equal(got[k], v) for k, v in sd.items())


def test_wrong_file_lists_differences(tmp_path):
    wrong = {
        "feat_extract.0.main.0.weight": torch.zeros(32, 3, 5, 5),
        "not_oknet.weight": torch.zeros(2),
    }
    torch.save({"model": wrong}, tmp_path / "other.pkl")
    with pytest.raises(WeightsError) as info:
        load_oknet(tmp_path / "other.pkl")
    msg = str(info.value)
    assert not isinstance(info.value, MissingWeightsError)
    assert "other.pkl" in msg
    assert "163 missing key(s)" in msg and "Encoder.0.layers.0.main.0.main.0.weight" in msg
    assert "unexpected key(s), first: not_oknet.weight" in msg
    assert "feat_extract.0.main.0.weight expected (32, 3, 3, 3) got (32, 3, 5, 5)" in msg

    (tmp_path / "garbage.pkl").write_bytes(b"this is not a checkpoint")
    with pytest.raises(WeightsError, match="garbage.pkl"):
        load_oknet(tmp_path / "garbage.pkl")


def test_missing_file(tmp_path):
    with pytest.raises(MissingWeightsError) as info:
        load_oknet(tmp_path / CHECKPOINT_NAME)
    msg = str(info.value)
    assert CHECKPOINT_NAME in msg and "https://github.com/c-yn/OKNet" in msg
    assert "c-yn/OKNet" in PUBLISHED_AT


# ---------------------------------------------------------------------------------------- registered method


def test_registered_method(model, tmp_path):
    # Importing baselines.oknet (above) registers "oknet"; the central registry entries come later.
    assert get_spec("oknet").modes == ("auto", "text")

    rnd = create_restorer("oknet", MethodOptions(random_weights=True))
    assert isinstance(rnd, Restorer) and isinstance(rnd, OKNetRestorer)
    assert rnd.name == "oknet" and rnd.weights_label == "random" and rnd.weights_files == []
    again = create_restorer("oknet", MethodOptions(random_weights=True))
    _assert_same_weights(rnd.model, again.model)  # seeded

    with pytest.raises(MethodArgError, match="flag"):
        create_restorer("oknet", MethodOptions(random_weights=True, method_args={"flag": "1"}))

    path = tmp_path / CHECKPOINT_NAME
    torch.save({"model": model.state_dict()}, path)
    try:
        restorer = create_restorer("oknet", MethodOptions(weights_dir=tmp_path))
        assert restorer.weights_label == "official" and restorer.weights_files == [path]
        _assert_same_weights(restorer.model, model)
        x = fill.make_input((2, 3, 16, 16), seed=7)
        blind = restorer.restore(x)
        typed = restorer.restore(x, ["haze", "low_rain"])  # the type is ignored
        torch.testing.assert_close(typed, blind, rtol=0, atol=0)
        assert restorer.to("cpu") is restorer
        explicit = create_restorer("oknet", MethodOptions(weights=path))
        assert explicit.weights_files == [path]
    finally:
        path.unlink()

    for opts in (MethodOptions(), MethodOptions(weights_dir=tmp_path), MethodOptions(weights=tmp_path / "x.pkl")):
        with pytest.raises(MissingWeightsError) as info:
            create_restorer("oknet", opts)
        assert "https://github.com/c-yn/OKNet" in str(info.value)
