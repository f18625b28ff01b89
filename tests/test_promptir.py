"""PromptIR re-implementation: state_dict vs the official manifest, output vs the official test vector,
size / batch handling, checkpoint formats and the registered method. CPU, offline, one model build."""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from baselines.promptir import (
    PUBLISHED_AT,
    PromptIR,
    PromptIRRestorer,
    load_promptir,
    pad_to_multiple,
    promptir_state_dict,
)
from harness.protocol import Restorer
from harness.registry import MethodOptions, create_restorer, get_spec
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
def model(_one_thread) -> PromptIR:
    """PromptIR with the deterministic test weights (salt 0), built once for the module."""
    net = PromptIR().eval()
    sd = net.state_dict()
    fill.fill_state_dict(sd, salt=0)
    net.load_state_dict(sd)
    return net


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory, model):
    """The test weights in the released format: a Lightning checkpoint with the network under `net.`."""
    d = tmp_path_factory.mktemp("promptir_weights")
    sd = model.state_dict()
    torch.save(
        {
            "epoch": 119,
            "global_step": 1234,
            "pytorch-lightning_version": "2.0.1",
            "state_dict": {f"net.{k}": v for k, v in sd.items()},
            "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 120}}}},
            "callbacks": {"ModelCheckpoint{'monitor': None}": {"best_model_path": "", "dirpath": "ckpt"}},
            "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 2e-4}]}],
            "lr_schedulers": [{"last_epoch": 120, "base_lrs": [2e-4]}],
        },
        d / "model.ckpt",
    )
    yield d
    (d / "model.ckpt").unlink()  # ~140 MB: do not leave it in pytest's kept temp folders


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# ------------------------------------------------------------------------------------------ architecture


def test_state_dict_matches_official_manifest(model):
    manifest = json.loads((DATA / "promptir.manifest.json").read_text())
    ours = {
        k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
        for k, v in model.state_dict().items()
    }
    assert len(manifest) == 548
    assert list(ours) == list(manifest)  # same keys, same order
    assert ours == manifest
    assert sum(p.numel() for p in model.parameters()) == 35_592_263


def test_matches_official_test_vector(model):
    case = torch.load(DATA / "promptir_case0.pt", weights_only=True)
    with torch.inference_mode():
        out = model(case["x"])
    ref = case["out"]
    assert out.shape == ref.shape and out.dtype == torch.float32
    err = (out - ref).abs().max().item()
    assert err <= 1e-4 * max(1.0, ref.abs().max().item()), err


def test_odd_size_is_padded_and_cropped(model):
    x = fill.make_input((1, 3, 37, 53), seed=3)
    with torch.inference_mode():
        out = model(x)
        padded = F.pad(x, (0, 3, 0, 3), mode="reflect")  # up to 40×56, bottom / right
        expected = model.forward_aligned(padded)[..., :37, :53]
    assert out.shape == x.shape
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_pad_to_multiple_small_sides():
    x = torch.arange(2 * 3 * 5 * 3, dtype=torch.float32).reshape(2, 3, 5, 3)
    y = pad_to_multiple(x, 8)
    assert y.shape == (2, 3, 8, 8)
    torch.testing.assert_close(y[..., :5, :3], x)
    torch.testing.assert_close(y[..., 5, :3], x[..., 3, :])  # reflected row
    torch.testing.assert_close(y[..., :5, 7], x[..., :, 2])  # replicated column (too narrow to reflect)
    assert pad_to_multiple(torch.zeros(1, 3, 16, 8)).shape == (1, 3, 16, 8)


def test_batch_equals_single_runs(model):
    x = fill.make_input((2, 3, 24, 16), seed=5)
    with torch.inference_mode():
        both = model(x)
        one = torch.cat([model(x[:1]), model(x[1:])])
    # Same criterion as the reference vector: batching changes only the floating-point summation order.
    tol = 1e-4 * max(1.0, one.abs().max().item())
    assert (both - one).abs().max().item() <= tol


# ------------------------------------------------------------------------------------------------ loader


def test_loads_lightning_checkpoint(model, ckpt_dir):
    loaded = load_promptir(ckpt_dir / "model.ckpt")
    assert not loaded.training
    _assert_same_weights(loaded, model)


def _small_state_dict() -> dict[str, torch.Tensor]:
    return {"patch_embed.proj.weight": torch.randn(48, 3, 3, 3), "output.weight": torch.randn(3, 96, 3, 3)}


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
        lambda sd: {"state_dict": {f"net.{k}": v for k, v in sd.items()}, "epoch": 3, "optimizer_states": []},
        lambda sd: {"state_dict": {f"module.net.{k}": v for k, v in sd.items()}, "global_step": 10},
        lambda sd: {"state_dict": {**{f"net.{k}": v for k, v in sd.items()}, "ema.x": torch.zeros(1)}},
    ],
    ids=["plain", "module", "lightning", "lightning-module", "lightning-extra-keys"],
)
def test_state_dict_formats(tmp_path, wrap):
    sd = _small_state_dict()
    torch.save(wrap(sd), tmp_path / "w.pth")
    got = promptir_state_dict(tmp_path / "w.pth")
    assert list(got) == list(sd)
    assert all(torch.equal(got[k], v) for k, v in sd.items())


def test_loads_module_prefixed_state_dict(model, tmp_path):
    path = tmp_path / "dp.pth"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)
    try:
        _assert_same_weights(load_promptir(path), model)
    finally:
        path.unlink()


class _TrainingOnlyObject:
    """Stands for the non-tensor objects a Lightning checkpoint may carry (not importable at load time)."""

    def __init__(self):
        self.value = 3


def test_checkpoint_with_non_tensor_objects(tmp_path):
    sd = _small_state_dict()
    torch.save(
        {
            "state_dict": {f"net.{k}": v for k, v in sd.items()},
            "hyper_parameters": argparse.Namespace(lr=2e-4, epochs=120),
            "callbacks": {"cb": _TrainingOnlyObject(), "dir": pathlib.PurePosixPath("/ckpt")},
        },
        tmp_path / "model.ckpt",
    )
    with pytest.raises(Exception):  # noqa: B017 - what the stubs work around
        torch.load(tmp_path / "model.ckpt", weights_only=True)
    got = promptir_state_dict(tmp_path / "model.ckpt")
    assert list(got) == list(sd)
    assert all(torch.equal(got[k], v) for k, v in sd.items())


def test_wrong_file_lists_differences(tmp_path):
    wrong = {
        "patch_embed.proj.weight": torch.zeros(48, 3, 5, 5),
        "prompt1.prompt_param": torch.zeros(1, 5, 64, 64, 64),
        "not_promptir.weight": torch.zeros(2),
    }
    torch.save(wrong, tmp_path / "other.pth")
    with pytest.raises(WeightsError) as info:
        load_promptir(tmp_path / "other.pth")
    msg = str(info.value)
    assert not isinstance(info.value, MissingWeightsError)
    assert "other.pth" in msg
    assert "546 missing key(s)" in msg and "prompt1.linear_layer.weight" in msg
    assert "unexpected key(s), first: not_promptir.weight" in msg
    assert "patch_embed.proj.weight expected (48, 3, 3, 3) got (48, 3, 5, 5)" in msg

    (tmp_path / "garbage.ckpt").write_bytes(b"this is not a checkpoint")
    with pytest.raises(WeightsError, match="garbage.ckpt"):
        load_promptir(tmp_path / "garbage.ckpt")


def test_missing_file(tmp_path):
    with pytest.raises(MissingWeightsError) as info:
        load_promptir(tmp_path / "model.ckpt")
    msg = str(info.value)
    assert "model.ckpt" in msg and "https://github.com/va1shn9v/PromptIR" in msg
    assert "va1shn9v/PromptIR" in PUBLISHED_AT


# ---------------------------------------------------------------------------------------- registered method


def test_registered_method(model, ckpt_dir):
    spec = get_spec("promptir")
    assert spec.modes == ("auto", "text")

    restorer = create_restorer("promptir", MethodOptions(weights_dir=ckpt_dir))
    assert isinstance(restorer, Restorer) and isinstance(restorer, PromptIRRestorer)
    assert restorer.name == "promptir"
    assert restorer.weights_label == "official"
    assert restorer.weights_files == [ckpt_dir / "model.ckpt"]
    _assert_same_weights(restorer.model, model)

    x = fill.make_input((2, 3, 16, 16), seed=7)
    with torch.inference_mode():
        expected = model(x)
    blind = restorer.restore(x)
    typed = restorer.restore(x, ["haze", "low_rain"])  # the type is ignored
    torch.testing.assert_close(blind, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(typed, blind, rtol=0, atol=0)
    assert restorer.to("cpu") is restorer

    explicit = create_restorer("promptir", MethodOptions(weights=ckpt_dir / "model.ckpt"))
    assert explicit.weights_files == [ckpt_dir / "model.ckpt"]


def test_registered_method_without_weights(tmp_path):
    for opts in (
        MethodOptions(),
        MethodOptions(weights_dir=tmp_path),
        MethodOptions(weights=tmp_path / "x.ckpt"),
    ):
        with pytest.raises(MissingWeightsError) as info:
            create_restorer("promptir", opts)
        assert "https://github.com/va1shn9v/PromptIR" in str(info.value)
    with pytest.raises(MissingWeightsError, match="model.ckpt"):
        create_restorer("promptir", MethodOptions(weights_dir=tmp_path))


def test_registered_method_random_weights():
    before = torch.random.get_rng_state()
    restorer = create_restorer("promptir", MethodOptions(random_weights=True))
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's random stream is untouched
    assert restorer.weights_label == "random" and restorer.weights_files == []
    torch.manual_seed(0)
    reference = PromptIR().state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in restorer.model.state_dict().items())
    out = restorer.restore(torch.rand(1, 3, 12, 20))
    assert out.shape == (1, 3, 12, 20) and torch.isfinite(out).all()
