"""OKNet re-implementation: state_dict vs the official manifest, the three outputs vs the official test vector,
checkpoint formats, the adapter's size / batch handling and the registered method. CPU, offline."""

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
    wrong_file_message,
)

from baselines.oknet import (
    CHECKPOINT_NAME,
    PUBLISHED_AT,
    OKNet,
    OKNetRestorer,
    load_oknet,
    oknet_state_dict,
    pad_to_multiple,
)
from harness.registry import get_spec

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def model() -> OKNet:
    """OKNet with the deterministic test weights (salt 0), built once for the module."""
    return filled(OKNet().eval(), salt=0)


# ------------------------------------------------------------------------------------------ architecture


def test_state_dict_matches_official_manifest(model):
    assert_matches_manifest(model, "oknet.manifest.json", n_keys=164, n_params=4_722_857)
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
        assert_close_to_reference(out, ref, name)


# ----------------------------------------------------------------------------------------------- adapter


def test_adapter_odd_size_is_padded_cropped_and_clamped(model):
    # to 40×56 at the bottom / right, as eval.py does
    assert_odd_size_adapter(OKNetRestorer(model), lambda padded: model(padded)[2], pad=3, atol=0)


def test_pad_to_multiple():
    assert_pads_to_multiple(pad_to_multiple, 4, rows=5, cols=2)


def test_batch_equals_single_runs(model):
    both, one = batch_and_single_runs(OKNetRestorer(model).restore, fill.make_input((2, 3, 22, 18), seed=5))
    assert (both - one).abs().max().item() <= 1e-4


# ------------------------------------------------------------------------------------------------ loader


def test_loads_official_pkl_format(model, tmp_path):
    path = tmp_path / "Best.pkl"
    torch.save({"model": model.state_dict()}, path)  # what the authors' training saves
    try:
        loaded = load_oknet(path)
        assert not loaded.training
        assert_same_weights(loaded, model)
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
        module_prefixed,
        lambda sd: {"model": module_prefixed(sd), "epoch": 3},
        lambda sd: {"state_dict": sd},
    ],
    ids=["model", "plain", "module", "model-module", "state_dict"],
)
def test_state_dict_formats(tmp_path, wrap):
    sd = _small_state_dict()
    assert_reads_state_dict(oknet_state_dict, tmp_path / "w.pkl", wrap(sd), sd)


def test_wrong_file_lists_differences(tmp_path):
    wrong = {
        "feat_extract.0.main.0.weight": torch.zeros(32, 3, 5, 5),
        "not_oknet.weight": torch.zeros(2),
    }
    msg = wrong_file_message(load_oknet, tmp_path / "other.pkl", {"model": wrong})
    assert "163 missing key(s)" in msg and "Encoder.0.layers.0.main.0.main.0.weight" in msg
    assert "unexpected key(s), first: not_oknet.weight" in msg
    assert "feat_extract.0.main.0.weight expected (32, 3, 3, 3) got (32, 3, 5, 5)" in msg
    assert_refuses_garbage(load_oknet, tmp_path / "garbage.pkl")


def test_missing_file(tmp_path):
    msg = missing_file_message(load_oknet, tmp_path / CHECKPOINT_NAME)
    assert CHECKPOINT_NAME in msg and "https://github.com/c-yn/OKNet" in msg
    assert "c-yn/OKNet" in PUBLISHED_AT


# ---------------------------------------------------------------------------------------- registered method


def test_registered_method(model, tmp_path):
    # Importing baselines.oknet (above) registers "oknet"; the central registry entries come later.
    assert get_spec("oknet").modes == ("auto", "text")

    assert isinstance(random_restorer("oknet"), OKNetRestorer)
    assert_unknown_method_arg("oknet", {"flag": "1"}, match="flag")

    path = tmp_path / CHECKPOINT_NAME
    torch.save({"model": model.state_dict()}, path)
    try:
        restorer = assert_official_restorer("oknet", OKNetRestorer, model, path)
        assert_type_is_ignored(restorer, fill.make_input((2, 3, 16, 16), seed=7), ["haze", "low_rain"])
    finally:
        path.unlink()

    assert_needs_weights("oknet", "https://github.com/c-yn/OKNet", tmp_path, tmp_path / "x.pkl")
