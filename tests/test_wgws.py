"""WGWS-Net re-implementation: state_dict vs the official manifest, outputs for every weather flag vs the
official test vector, size / batch handling in the adapter, checkpoint formats and the registered method.
CPU, offline, one model build."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import baselines.wgws  # noqa: F401 - registers "wgws-net" (registry entries for new modules are added centrally)
from baselines.wgws import (
    CHECKPOINT_NAME,
    FLAGS,
    PUBLISHED_AT,
    WGWSNet,
    WGWSRestorer,
    load_wgws,
    pad_to_multiple,
    wgws_state_dict,
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
def case() -> dict:
    return torch.load(DATA / "wgws_net_case0.pt", weights_only=True)


@pytest.fixture(scope="module")
def model(_one_thread, case) -> WGWSNet:
    """WGWS-Net with the case's deterministic weights (salt and fill_scale from the case), built once."""
    net = WGWSNet().eval()
    sd = net.state_dict()
    fill.fill_state_dict(sd, salt=case["salt"], scale=case["fill_scale"])
    net.load_state_dict(sd)
    return net


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory, model):
    """The test weights in the released format: a plain state_dict named Setting1_K1.pth (~30 MB)."""
    d = tmp_path_factory.mktemp("wgws_weights")
    torch.save(model.state_dict(), d / CHECKPOINT_NAME)
    yield d
    (d / CHECKPOINT_NAME).unlink()


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def _rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return (out - ref).abs().max().item() / max(1.0, ref.abs().max().item())


# ------------------------------------------------------------------------------------------ architecture


def test_state_dict_matches_official_manifest(model):
    manifest = json.loads((DATA / "wgws_net.manifest.json").read_text())
    ours = {
        k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
        for k, v in model.state_dict().items()
    }
    assert len(manifest) == 1180
    assert list(ours) == list(manifest)  # same keys, same order
    assert ours == manifest
    assert sum(p.numel() for p in model.parameters()) == 7_575_354
    assert not list(model.buffers())


def test_default_init_is_the_official_one():
    net = WGWSNet()
    sd = net.state_dict()
    assert all(torch.all(v == 0) for k, v in sd.items() if k.endswith("_residual"))
    assert all(torch.allclose(v, torch.tensor([0.15])) for k, v in sd.items() if k.endswith("_indicator"))
    assert sum(k.endswith("_indicator") for k in sd) == 504
    assert net.gates_on() == {"snow": 168, "rain": 168, "raindrop": 168}
    assert not net.Encoder[0].layer1.conv0.conv.layer.weight.requires_grad  # the general weights are frozen


def test_matches_official_test_vector_for_every_flag(model, case):
    assert case["flag"] == [1, 0, 0]
    assert sum(model.gates_on().values()) == case["indicators_on"] == 269  # the 0.1 threshold is exercised
    outs = []
    with torch.inference_mode():
        for i, flag in enumerate(([1, 0, 0], [0, 1, 0], [0, 0, 1])):
            out = model(case["x"], flag=flag)
            ref = case["out_per_flag"][i]
            assert out.shape == ref.shape and out.dtype == torch.float32
            assert _rel_err(out, ref) <= 1e-4, (flag, _rel_err(out, ref))
            outs.append(out)
    assert _rel_err(outs[0], case["out"]) <= 1e-4  # `out` is the output for the case's own flag
    # The flags really select different residuals: the three outputs differ by far more than the tolerance.
    assert _rel_err(outs[0], outs[1]) > 1e-2 and _rel_err(outs[1], outs[2]) > 1e-2


def test_skipping_unused_branches_changes_nothing(model, case):
    x = case["x"][..., :16, :24]
    with torch.inference_mode():
        skipped = model(x, flag=[0, 1, 0])
        model.skip_unused_branches = False
        try:
            executed = model(x, flag=torch.tensor([0, 1, 0]))  # a tensor flag works like a list
        finally:
            model.skip_unused_branches = True
    torch.testing.assert_close(skipped, executed, rtol=0, atol=0)


def test_size_must_be_a_multiple_of_4(model):
    with pytest.raises(ValueError, match="divisible by 4"):
        model(torch.zeros(1, 3, 18, 16))
    with pytest.raises(ValueError, match="3 numbers"):
        model(torch.zeros(1, 3, 8, 8), flag=[1, 0])


# ------------------------------------------------------------------------------------------------ adapter


def test_adapter_odd_size_is_padded_and_cropped(model):
    restorer = WGWSRestorer(model, "raindrop")
    x = fill.make_input((1, 3, 37, 53), seed=3)
    out = restorer.restore(x)
    with torch.inference_mode():
        padded = F.pad(x, (0, 3, 0, 3), mode="reflect")  # up to 40×56, bottom / right
        expected = model(padded, flag=[0, 0, 1])[..., :37, :53]
    assert out.shape == x.shape and torch.isfinite(out).all()
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_pad_to_multiple_small_sides():
    x = torch.arange(2 * 3 * 3 * 2, dtype=torch.float32).reshape(2, 3, 3, 2)
    y = pad_to_multiple(x, 4)
    assert y.shape == (2, 3, 4, 4)
    torch.testing.assert_close(y[..., :3, :2], x)
    torch.testing.assert_close(y[..., 3, :2], x[..., 1, :])  # reflected row
    torch.testing.assert_close(y[..., :3, 3], x[..., :, 1])  # replicated column (too narrow to reflect)
    assert pad_to_multiple(torch.zeros(1, 3, 16, 8)).shape == (1, 3, 16, 8)


def test_batch_equals_single_runs(model):
    restorer = WGWSRestorer(model, "snow")
    x = fill.make_input((2, 3, 21, 30), seed=5)
    both = restorer.restore(x)
    one = torch.cat([restorer.restore(x[:1]), restorer.restore(x[1:])])
    assert both.shape == x.shape
    # Same criterion as the reference vector: batching changes only the floating-point summation order.
    assert (both - one).abs().max().item() <= 1e-4 * max(1.0, one.abs().max().item())


# ------------------------------------------------------------------------------------------------ loader


def test_loads_released_plain_state_dict(model, ckpt_dir):
    loaded = load_wgws(ckpt_dir / CHECKPOINT_NAME)
    assert not loaded.training
    _assert_same_weights(loaded, model)
    x = fill.make_input((1, 3, 8, 12), seed=9)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x, flag=[0, 1, 0]), model(x, flag=[0, 1, 0]), rtol=0, atol=0)


def test_loads_module_prefixed_state_dict(model, tmp_path):
    path = tmp_path / "dp.pth"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)
    try:
        _assert_same_weights(load_wgws(path), model)
    finally:
        path.unlink()


def _small_state_dict() -> dict[str, torch.Tensor]:
    return {"feat_extract.0.layer.weight": torch.randn(18, 3, 3, 3), "feat_extract.3.layer.bias": torch.randn(36)}


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}, "optimizer": {"lr": 1e-4}},
    ],
    ids=["plain", "module", "state_dict", "model-module"],
)
def test_state_dict_formats(tmp_path, wrap):
    sd = _small_state_dict()
    torch.save(wrap(sd), tmp_path / "w.pth")
    got = wgws_state_dict(tmp_path / "w.pth")
    assert list(got) == list(sd)
    assert all(torch.equal(got[k], v) for k, v in sd.items())


def test_wrong_file_lists_differences(tmp_path):
    wrong = {
        "feat_extract.0.layer.weight": torch.zeros(20, 3, 3, 3),  # a Setting-2 (base 20) shape
        "feat_extract.0.layer.B1_residual": torch.zeros(18, 3, 1, 1),
        "not_wgws.weight": torch.zeros(2),
    }
    torch.save(wrong, tmp_path / "other.pth")
    with pytest.raises(WeightsError) as info:
        load_wgws(tmp_path / "other.pth")
    msg = str(info.value)
    assert not isinstance(info.value, MissingWeightsError)
    assert "other.pth" in msg
    assert "1178 missing key(s)" in msg and "Encoder.0.layer1.conv0.conv.layer.weight" in msg
    assert "unexpected key(s), first: not_wgws.weight" in msg
    assert "feat_extract.0.layer.weight expected (18, 3, 3, 3) got (20, 3, 3, 3)" in msg

    (tmp_path / "garbage.pth").write_bytes(b"this is not a checkpoint")
    with pytest.raises(WeightsError, match="garbage.pth"):
        load_wgws(tmp_path / "garbage.pth")


def test_missing_file(tmp_path):
    with pytest.raises(MissingWeightsError) as info:
        load_wgws(tmp_path / CHECKPOINT_NAME)
    msg = str(info.value)
    assert "Setting1_K1.pth" in msg and PUBLISHED_AT in msg
    assert "zhuyr97/WGWS-Net" in PUBLISHED_AT


# ---------------------------------------------------------------------------------------- registered method


def test_registered_method(model, ckpt_dir):
    spec = get_spec("wgws-net")
    assert spec.modes == ("auto", "text")

    restorer = create_restorer("wgws-net", MethodOptions(weights_dir=ckpt_dir, method_args={"flag": "Rain"}))
    assert isinstance(restorer, Restorer) and isinstance(restorer, WGWSRestorer)
    assert restorer.name == "wgws-net" and restorer.weights_label == "official"
    assert restorer.weights_files == [ckpt_dir / CHECKPOINT_NAME]
    assert restorer.flag == FLAGS["rain"] == [0, 1, 0]
    _assert_same_weights(restorer.model, model)

    x = fill.make_input((2, 3, 16, 16), seed=7)
    with torch.inference_mode():
        expected = model(x, flag=[0, 1, 0])
    blind = restorer.restore(x)
    typed = restorer.restore(x, ["haze", "low_snow"])  # the type is ignored
    torch.testing.assert_close(blind, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(typed, blind, rtol=0, atol=0)
    assert restorer.to("cpu") is restorer

    explicit = create_restorer("wgws-net", MethodOptions(weights=ckpt_dir / CHECKPOINT_NAME))
    assert explicit.weights_files == [ckpt_dir / CHECKPOINT_NAME]
    assert explicit.flag_name == "snow" and explicit.flag == [1, 0, 0]  # the official default


def test_registered_method_random_weights_and_args():
    restorer = create_restorer("wgws-net", MethodOptions(random_weights=True, method_args={"flag": "raindrop"}))
    assert restorer.weights_label == "random" and restorer.weights_files == []
    assert restorer.flag == [0, 0, 1]
    x = fill.make_input((1, 3, 10, 14), seed=11)
    out = restorer.restore(x)
    assert out.shape == x.shape and torch.isfinite(out).all()

    with pytest.raises(MethodArgError, match="unknown --method-arg setting") as info:
        create_restorer("wgws-net", MethodOptions(random_weights=True, method_args={"setting": "2"}))
    assert "raindrop" in str(info.value)
    with pytest.raises(MethodArgError, match="unknown flag 'haze'"):
        create_restorer("wgws-net", MethodOptions(random_weights=True, method_args={"flag": "haze"}))


def test_registered_method_without_weights(tmp_path):
    for opts in (MethodOptions(), MethodOptions(weights_dir=tmp_path), MethodOptions(weights=tmp_path / "x.pth")):
        with pytest.raises(MissingWeightsError) as info:
            create_restorer("wgws-net", opts)
        assert "zhuyr97/WGWS-Net" in str(info.value)
    with pytest.raises(MissingWeightsError, match="Setting1_K1.pth"):
        create_restorer("wgws-net", MethodOptions(weights_dir=tmp_path))
