"""WGWS-Net re-implementation: state_dict vs the official manifest, outputs for every weather flag vs the
official test vector, size / batch handling in the adapter, checkpoint formats and the registered method.
CPU, offline, one model build."""

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
    fill,
    filled,
    missing_file_message,
    module_prefixed,
    one_thread,  # noqa: F401 - autouse: one intra-op thread for the module
    random_restorer,
    rel_err,
    wrong_file_message,
)

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
from harness.registry import MethodOptions, create_restorer, get_spec

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def case() -> dict:
    return torch.load(DATA / "wgws_net_case0.pt", weights_only=True)


@pytest.fixture(scope="module")
def model(case) -> WGWSNet:
    """WGWS-Net with the case's deterministic weights (salt and fill_scale from the case), built once."""
    return filled(WGWSNet().eval(), salt=case["salt"], scale=case["fill_scale"])


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory, model):
    """The test weights in the released format: a plain state_dict named Setting1_K1.pth (~30 MB)."""
    d = tmp_path_factory.mktemp("wgws_weights")
    torch.save(model.state_dict(), d / CHECKPOINT_NAME)
    yield d
    (d / CHECKPOINT_NAME).unlink()


# ------------------------------------------------------------------------------------------ architecture


def test_state_dict_matches_official_manifest(model):
    assert_matches_manifest(model, "wgws_net.manifest.json", n_keys=1180, n_params=7_575_354)
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
            assert rel_err(out, ref) <= 1e-4, (flag, rel_err(out, ref))
            outs.append(out)
    assert rel_err(outs[0], case["out"]) <= 1e-4  # `out` is the output for the case's own flag
    # The flags really select different residuals: the three outputs differ by far more than the tolerance.
    assert rel_err(outs[0], outs[1]) > 1e-2 and rel_err(outs[1], outs[2]) > 1e-2


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
    # up to 40×56, bottom / right
    restorer = WGWSRestorer(model, "raindrop")
    assert_odd_size_adapter(restorer, lambda padded: model(padded, flag=[0, 0, 1]), pad=3, atol=1e-6, clamp=False)


def test_pad_to_multiple_small_sides():
    assert_pads_to_multiple(pad_to_multiple, 4, rows=3, cols=2)


def test_batch_equals_single_runs(model):
    both, one = batch_and_single_runs(WGWSRestorer(model, "snow").restore, fill.make_input((2, 3, 21, 30), seed=5))
    # Same criterion as the reference vector: batching changes only the floating-point summation order.
    assert_close_to_reference(both, one)


# ------------------------------------------------------------------------------------------------ loader


def test_loads_released_plain_state_dict(model, ckpt_dir):
    loaded = load_wgws(ckpt_dir / CHECKPOINT_NAME)
    assert not loaded.training
    assert_same_weights(loaded, model)
    x = fill.make_input((1, 3, 8, 12), seed=9)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x, flag=[0, 1, 0]), model(x, flag=[0, 1, 0]), rtol=0, atol=0)


def test_loads_module_prefixed_state_dict(model, tmp_path):
    path = tmp_path / "dp.pth"
    torch.save(module_prefixed(model.state_dict()), path)
    try:
        assert_same_weights(load_wgws(path), model)
    finally:
        path.unlink()


def _small_state_dict() -> dict[str, torch.Tensor]:
    return {"feat_extract.0.layer.weight": torch.randn(18, 3, 3, 3), "feat_extract.3.layer.bias": torch.randn(36)}


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        module_prefixed,
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"model": module_prefixed(sd), "optimizer": {"lr": 1e-4}},
    ],
    ids=["plain", "module", "state_dict", "model-module"],
)
def test_state_dict_formats(tmp_path, wrap):
    sd = _small_state_dict()
    assert_reads_state_dict(wgws_state_dict, tmp_path / "w.pth", wrap(sd), sd)


def test_wrong_file_lists_differences(tmp_path):
    wrong = {
        "feat_extract.0.layer.weight": torch.zeros(20, 3, 3, 3),  # a Setting-2 (base 20) shape
        "feat_extract.0.layer.B1_residual": torch.zeros(18, 3, 1, 1),
        "not_wgws.weight": torch.zeros(2),
    }
    msg = wrong_file_message(load_wgws, tmp_path / "other.pth", wrong)
    assert "1178 missing key(s)" in msg and "Encoder.0.layer1.conv0.conv.layer.weight" in msg
    assert "unexpected key(s), first: not_wgws.weight" in msg
    assert "feat_extract.0.layer.weight expected (18, 3, 3, 3) got (20, 3, 3, 3)" in msg
    assert_refuses_garbage(load_wgws, tmp_path / "garbage.pth")


def test_missing_file(tmp_path):
    msg = missing_file_message(load_wgws, tmp_path / CHECKPOINT_NAME)
    assert "Setting1_K1.pth" in msg and PUBLISHED_AT in msg
    assert "zhuyr97/WGWS-Net" in PUBLISHED_AT


# ---------------------------------------------------------------------------------------- registered method


def test_registered_method(model, ckpt_dir):
    spec = get_spec("wgws-net")
    assert spec.modes == ("auto", "text")

    path = ckpt_dir / CHECKPOINT_NAME
    restorer = assert_official_restorer("wgws-net", WGWSRestorer, model, path, method_args={"flag": "Rain"})
    assert restorer.flag == FLAGS["rain"] == [0, 1, 0]

    x = fill.make_input((2, 3, 16, 16), seed=7)
    with torch.inference_mode():
        expected = model(x, flag=[0, 1, 0])
    blind = assert_type_is_ignored(restorer, x, ["haze", "low_snow"])
    torch.testing.assert_close(blind, expected, rtol=0, atol=1e-6)

    explicit = create_restorer("wgws-net", MethodOptions(weights=path))
    assert explicit.flag_name == "snow" and explicit.flag == [1, 0, 0]  # the official default


def test_registered_method_random_weights_and_args():
    restorer = random_restorer("wgws-net", method_args={"flag": "raindrop"})
    assert restorer.flag == [0, 0, 1]
    assert_restores_finite(restorer, (1, 3, 10, 14), seed=11)

    info = assert_unknown_method_arg("wgws-net", {"setting": "2"}, match="unknown --method-arg setting")
    assert "raindrop" in str(info.value)
    assert_unknown_method_arg("wgws-net", {"flag": "haze"}, match="unknown flag 'haze'")


def test_registered_method_without_weights(tmp_path):
    assert_needs_weights("wgws-net", "zhuyr97/WGWS-Net", tmp_path, tmp_path / "x.pth", name="Setting1_K1.pth")
