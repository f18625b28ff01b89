"""MIRNet-v2 re-implementation: state_dict vs the official manifest, output vs the official test vector,
the adapter's padding / clamping / batching, checkpoint formats and the registered method. CPU, offline."""

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
    assert_pads_to_multiple,
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
    wrong_file_message,
)
from torch.utils.flop_counter import FlopCounterMode

import baselines.mirnetv2  # noqa: F401 - registers "mirnetv2" (registry entries are added centrally later)
from baselines.mirnetv2 import (
    CHECKPOINT_NAME,
    PUBLISHED_AT,
    MIRNetV2,
    MIRNetV2Restorer,
    load_mirnetv2,
    mirnetv2_state_dict,
    pad_to_multiple,
)
from harness.registry import MethodArgError, MethodOptions, create_restorer, get_spec
from harness.weights import MissingWeightsError

DATA = Path(__file__).parent / "data"
CASE = case_meta("mirnetv2_case0")


@pytest.fixture(scope="module")
def model() -> MIRNetV2:
    """MIRNet-v2 with the reference case's deterministic weights (salt and fill_scale of case0), built once."""
    return filled(MIRNetV2().eval(), salt=CASE["salt"], scale=CASE["fill_scale"])


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory, model):
    """The test weights as the authors release them: BasicSR's {'params': state_dict}, no prefix."""
    d = tmp_path_factory.mktemp("mirnetv2_weights")
    torch.save({"params": model.state_dict()}, d / CHECKPOINT_NAME)
    yield d
    (d / CHECKPOINT_NAME).unlink()  # ~23 MB: do not leave it in pytest's kept temp folders


# ------------------------------------------------------------------------------------------ architecture


def test_state_dict_matches_official_manifest(model):
    assert_matches_manifest(model, "mirnetv2.manifest.json", n_keys=238, n_params=5_858_560)
    assert not list(model.buffers())


def test_matches_official_test_vector(model):
    case = torch.load(DATA / "mirnetv2_case0.pt", weights_only=True)
    outputs = [k for k in case if k.startswith("out")]
    assert outputs == ["out"]  # the only output this case stores
    x = case["x"]
    assert list(x.shape) == CASE["x"]
    with torch.inference_mode():
        out = model(x)
    ref = case["out"]
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert_close_to_reference(out, ref)


def test_options_without_effect_and_defocus_task(model):
    # As upstream: n_RRG / height / width / scale do not change the graph; only the defocus task changes forward.
    other = MIRNetV2(n_RRG=2, height=1, width=5, scale=4)
    assert {k: v.shape for k, v in other.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    defocus = MIRNetV2(task="defocus_deblurring").eval()
    defocus.load_state_dict(model.state_dict())
    x = fill.make_input((1, 3, 4, 8), seed=11)
    with torch.inference_mode():
        deep = model.body(model.conv_in(x))
        torch.testing.assert_close(defocus(x), model.conv_out(deep + model.conv_in(x)), rtol=0, atol=1e-6)
        torch.testing.assert_close(model(x), model.conv_out(deep) + x, rtol=0, atol=1e-6)


def test_module_refuses_sizes_not_multiple_of_4(model):
    with pytest.raises(ValueError, match="divisible by 4"):
        model(torch.zeros(1, 3, 10, 12))


def test_flops_at_256(model):
    # FLOPs are a·(H·W) + b (the pooled SKFF / context 1×1 convs do not grow with the image), so two small
    # counts give the 256×256 figure exactly; a meta-device count at 256×256 agrees but takes ~15 s here.
    counts = []
    for side in (16, 32):
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, side, side))
        counts.append(counter.get_total_flops())
    at_256 = counts[1] + (counts[1] - counts[0]) * (256**2 - 32**2) // (32**2 - 16**2)
    assert abs(at_256 / 1e9 - 279.27) < 0.01, at_256  # the facts file: 279.27 G (2 per MAC)


# ------------------------------------------------------------------------------------------------ adapter


def test_pad_to_multiple():
    assert_pads_to_multiple(pad_to_multiple, 4, rows=5, cols=2)
    z = torch.zeros(1, 3, 16, 8)
    assert pad_to_multiple(z) is z


def test_adapter_odd_size(model):
    # the official test: up to 40×56, bottom / right
    _, expected = assert_odd_size_adapter(MIRNetV2Restorer(model), model, pad=3, atol=1e-6)
    assert 0 < (expected == 0).float().mean() + (expected == 1).float().mean()  # the clamp did something


def test_adapter_batch_equals_single_runs(model):
    both, one = batch_and_single_runs(MIRNetV2Restorer(model).restore, fill.make_input((2, 3, 18, 21), seed=5))
    # Same criterion as the reference vector: batching changes only the floating-point summation order.
    assert (both - one).abs().max().item() <= 1e-4


# ------------------------------------------------------------------------------------------------ loader


def test_loads_released_basicsr_checkpoint(model, ckpt_dir):
    loaded = load_mirnetv2(ckpt_dir / CHECKPOINT_NAME)
    assert isinstance(loaded, MIRNetV2) and not loaded.training
    assert_same_weights(loaded, model)
    x = fill.make_input((1, 3, 8, 8), seed=9)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_loads_module_prefixed_state_dict(model, tmp_path):
    path = tmp_path / "dp.pth"
    torch.save(module_prefixed(model.state_dict()), path)
    try:
        assert_same_weights(load_mirnetv2(path), model)
    finally:
        path.unlink()


def _small_state_dict() -> dict[str, torch.Tensor]:
    return {"conv_in.weight": torch.randn(80, 3, 3, 3), "conv_out.weight": torch.randn(3, 80, 3, 3)}


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"params": sd},
        lambda sd: {"params": sd, "params_ema": {k: v + 1 for k, v in sd.items()}},
        lambda sd: {"params_ema": sd},
        lambda sd: sd,
        module_prefixed,
        lambda sd: {"params": module_prefixed(sd)},
        lambda sd: {"state_dict": sd, "epoch": 3},
    ],
    ids=["params", "params-before-ema", "params_ema", "plain", "module", "params-module", "state_dict"],
)
def test_state_dict_formats(tmp_path, wrap):
    sd = _small_state_dict()
    assert_reads_state_dict(mirnetv2_state_dict, tmp_path / "w.pth", wrap(sd), sd)


def test_wrong_file_lists_differences(tmp_path):
    wrong = {
        "conv_in.weight": torch.zeros(64, 3, 3, 3),
        "body.0.body.0.skff_top.conv_du.0.weight": torch.zeros(10, 80, 1, 1),
        "not_mirnet.weight": torch.zeros(2),
    }
    msg = wrong_file_message(load_mirnetv2, tmp_path / "other.pth", {"params": wrong})
    assert "236 missing key(s), first: body.0.body.0.dau_top.body.0.weight" in msg
    assert "unexpected key(s), first: not_mirnet.weight" in msg
    assert "conv_in.weight expected (80, 3, 3, 3) got (64, 3, 3, 3)" in msg
    assert_refuses_garbage(load_mirnetv2, tmp_path / "garbage.pth")


def test_missing_file(tmp_path):
    msg = missing_file_message(load_mirnetv2, tmp_path / CHECKPOINT_NAME)
    assert CHECKPOINT_NAME in msg and PUBLISHED_AT in msg
    assert "swz30/MIRNetv2" in PUBLISHED_AT


# ---------------------------------------------------------------------------------------- registered method


def test_registered_method(model, ckpt_dir):
    spec = get_spec("mirnetv2")
    assert spec.modes == ("auto", "text")

    restorer = assert_official_restorer("mirnetv2", MIRNetV2Restorer, model, ckpt_dir / CHECKPOINT_NAME)
    assert restorer.device == torch.device("cpu")
    assert_type_is_ignored(restorer, fill.make_input((1, 3, 12, 16), seed=7), ["haze"])


def test_registered_method_random_weights():
    before = torch.random.get_rng_state()
    restorer = create_restorer("mirnetv2", MethodOptions(random_weights=True))
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's random stream is untouched
    assert restorer.weights_label == "random" and restorer.weights_files == []
    torch.manual_seed(0)
    assert_same_weights(restorer.model, MIRNetV2())
    assert_restores_finite(restorer, (1, 3, 9, 7), seed=1)


def test_registered_method_args(tmp_path):
    assert_unknown_method_arg("mirnetv2", {"flag": "1"}, match="unknown --method-arg flag")
    with pytest.raises(MethodArgError, match="sr_x4"):
        create_restorer("mirnetv2", MethodOptions(weights_dir=tmp_path, method_args={"release": "sr_x4"}))
    with pytest.raises(MissingWeightsError, match="real_denoising.pth"):
        create_restorer("mirnetv2", MethodOptions(weights_dir=tmp_path, method_args={"release": "real_denoising"}))


def test_registered_method_without_weights(tmp_path):
    url = "https://github.com/swz30/MIRNetv2"
    assert_needs_weights("mirnetv2", url, tmp_path, tmp_path / "x.pth", name=CHECKPOINT_NAME)
