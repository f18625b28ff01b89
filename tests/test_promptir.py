"""PromptIR re-implementation: state_dict vs the official manifest, output vs the official test vector,
size / batch handling, checkpoint formats and the registered method. CPU, offline, one model build."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from baseline_checks import (
    assert_close_to_reference,
    assert_matches_manifest,
    assert_needs_weights,
    assert_official_restorer,
    assert_pads_to_multiple,
    assert_reads_checkpoint_with_objects,
    assert_reads_state_dict,
    assert_refuses_garbage,
    assert_same_weights,
    assert_type_is_ignored,
    assert_weights_equal_seeded_init,
    fill,
    filled,
    lightning_checkpoint,
    missing_file_message,
    module_prefixed,
    one_thread,  # noqa: F401 - autouse: one intra-op thread for the module
    wrong_file_message,
)

from baselines.promptir import (
    PUBLISHED_AT,
    PromptIR,
    PromptIRRestorer,
    load_promptir,
    pad_to_multiple,
    promptir_state_dict,
)
from harness.registry import MethodOptions, create_restorer, get_spec

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def model() -> PromptIR:
    """PromptIR with the deterministic test weights (salt 0), built once for the module."""
    return filled(PromptIR().eval(), salt=0)


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory, model):
    """The test weights in the released format: a Lightning checkpoint with the network under `net.`."""
    d = tmp_path_factory.mktemp("promptir_weights")
    ckpt = lightning_checkpoint(model.state_dict(), epochs=120, global_step=1234, version="2.0.1")
    torch.save(ckpt, d / "model.ckpt")
    yield d
    (d / "model.ckpt").unlink()  # ~140 MB: do not leave it in pytest's kept temp folders


# ------------------------------------------------------------------------------------------ architecture


def test_state_dict_matches_official_manifest(model):
    assert_matches_manifest(model, "promptir.manifest.json", n_keys=548, n_params=35_592_263)


def test_matches_official_test_vector(model):
    case = torch.load(DATA / "promptir_case0.pt", weights_only=True)
    with torch.inference_mode():
        out = model(case["x"])
    ref = case["out"]
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert_close_to_reference(out, ref)


def test_odd_size_is_padded_and_cropped(model):
    x = fill.make_input((1, 3, 37, 53), seed=3)
    with torch.inference_mode():
        out = model(x)
        padded = F.pad(x, (0, 3, 0, 3), mode="reflect")  # up to 40×56, bottom / right
        expected = model.forward_aligned(padded)[..., :37, :53]
    assert out.shape == x.shape
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_pad_to_multiple_small_sides():
    assert_pads_to_multiple(pad_to_multiple, 8, rows=5, cols=3)


def test_batch_equals_single_runs(model):
    x = fill.make_input((2, 3, 24, 16), seed=5)
    with torch.inference_mode():
        both = model(x)
        one = torch.cat([model(x[:1]), model(x[1:])])
    # Same criterion as the reference vector: batching changes only the floating-point summation order.
    assert_close_to_reference(both, one)


# ------------------------------------------------------------------------------------------------ loader


def test_loads_lightning_checkpoint(model, ckpt_dir):
    loaded = load_promptir(ckpt_dir / "model.ckpt")
    assert not loaded.training
    assert_same_weights(loaded, model)


def _small_state_dict() -> dict[str, torch.Tensor]:
    return {"patch_embed.proj.weight": torch.randn(48, 3, 3, 3), "output.weight": torch.randn(3, 96, 3, 3)}


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        module_prefixed,
        lambda sd: {"state_dict": module_prefixed(sd, "net."), "epoch": 3, "optimizer_states": []},
        lambda sd: {"state_dict": module_prefixed(sd, "module.net."), "global_step": 10},
        lambda sd: {"state_dict": {**module_prefixed(sd, "net."), "ema.x": torch.zeros(1)}},
    ],
    ids=["plain", "module", "lightning", "lightning-module", "lightning-extra-keys"],
)
def test_state_dict_formats(tmp_path, wrap):
    sd = _small_state_dict()
    assert_reads_state_dict(promptir_state_dict, tmp_path / "w.pth", wrap(sd), sd)


def test_loads_module_prefixed_state_dict(model, tmp_path):
    path = tmp_path / "dp.pth"
    torch.save(module_prefixed(model.state_dict()), path)
    try:
        assert_same_weights(load_promptir(path), model)
    finally:
        path.unlink()


def test_checkpoint_with_non_tensor_objects(tmp_path):
    assert_reads_checkpoint_with_objects(promptir_state_dict, tmp_path / "model.ckpt", _small_state_dict(), 120)


def test_wrong_file_lists_differences(tmp_path):
    wrong = {
        "patch_embed.proj.weight": torch.zeros(48, 3, 5, 5),
        "prompt1.prompt_param": torch.zeros(1, 5, 64, 64, 64),
        "not_promptir.weight": torch.zeros(2),
    }
    msg = wrong_file_message(load_promptir, tmp_path / "other.pth", wrong)
    assert "546 missing key(s)" in msg and "prompt1.linear_layer.weight" in msg
    assert "unexpected key(s), first: not_promptir.weight" in msg
    assert "patch_embed.proj.weight expected (48, 3, 3, 3) got (48, 3, 5, 5)" in msg
    assert_refuses_garbage(load_promptir, tmp_path / "garbage.ckpt")


def test_missing_file(tmp_path):
    msg = missing_file_message(load_promptir, tmp_path / "model.ckpt")
    assert "model.ckpt" in msg and "https://github.com/va1shn9v/PromptIR" in msg
    assert "va1shn9v/PromptIR" in PUBLISHED_AT


# ---------------------------------------------------------------------------------------- registered method


def test_registered_method(model, ckpt_dir):
    spec = get_spec("promptir")
    assert spec.modes == ("auto", "text")

    restorer = assert_official_restorer("promptir", PromptIRRestorer, model, ckpt_dir / "model.ckpt")
    x = fill.make_input((2, 3, 16, 16), seed=7)
    with torch.inference_mode():
        expected = model(x)
    blind = assert_type_is_ignored(restorer, x, ["haze", "low_rain"])
    torch.testing.assert_close(blind, expected, rtol=0, atol=1e-6)


def test_registered_method_without_weights(tmp_path):
    url = "https://github.com/va1shn9v/PromptIR"
    assert_needs_weights("promptir", url, tmp_path, tmp_path / "x.ckpt", name="model.ckpt")


def test_registered_method_random_weights():
    before = torch.random.get_rng_state()
    restorer = create_restorer("promptir", MethodOptions(random_weights=True))
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's random stream is untouched
    assert restorer.weights_label == "random" and restorer.weights_files == []
    assert_weights_equal_seeded_init(restorer.model, PromptIR)
    out = restorer.restore(torch.rand(1, 3, 12, 20))
    assert out.shape == (1, 3, 12, 20) and torch.isfinite(out).all()
