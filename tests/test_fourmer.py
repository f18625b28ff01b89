"""Fourmer re-implementation: state_dict vs the official manifest, output vs the official test vector (made with
fill_scale {"block.H.": 0.1}), checkpoint formats, the adapter's size / batch handling and the registered method.
CPU, offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from baseline_checks import (
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
    rel_err,
    wrong_file_message,
)

from baselines.fourmer import (
    CHECKPOINT_NAME,
    PUBLISHED_AT,
    Fourmer,
    FourmerRestorer,
    fourmer_state_dict,
    load_fourmer,
    pad_to_multiple,
)
from harness.registry import get_spec

DATA = Path(__file__).parent / "data"
CASE = torch.load(DATA / "fourmer_case0.pt", weights_only=True)


@pytest.fixture(scope="module")
def model() -> Fourmer:
    """Fourmer with the case's deterministic weights (salt 0, the H sub-blocks scaled by 0.1)."""
    return filled(Fourmer().eval(), salt=CASE["salt"], scale=CASE["fill_scale"])


# ------------------------------------------------------------------------------------------ architecture


def test_state_dict_matches_official_manifest(model):
    assert_matches_manifest(model, "fourmer.manifest.json", n_keys=376, n_params=84_491)
    assert not list(model.buffers())


def test_matches_official_test_vector(model):
    assert CASE["fill_scale"] == {"block.H.": 0.1} and CASE["salt"] == 0
    with torch.inference_mode():
        out = model(CASE["x"])
    ref = CASE["out"]
    assert out.shape == ref.shape and out.dtype == torch.float32
    # Outputs are large with filled weights (max |out| ~1e3): the criterion is relative to max |out|.
    assert rel_err(out, ref) <= 1e-4, rel_err(out, ref)


def test_module_runs_odd_sizes(model):
    x = fill.make_input((1, 3, 37, 53), seed=2)  # like the hidden cases: the network itself takes any H, W ≥ 4
    with torch.inference_mode():
        out = model(x)
    assert out.shape == x.shape and torch.isfinite(out).all()


# ----------------------------------------------------------------------------------------------- adapter


def test_adapter_odd_size_is_padded_cropped_and_clamped(model):
    assert_odd_size_adapter(FourmerRestorer(model), model, pad=3, atol=0)  # to 40×56 at the bottom / right


def test_pad_to_multiple():
    assert_pads_to_multiple(pad_to_multiple, 4, rows=5, cols=2)


def test_batch_equals_single_runs(model):
    x = fill.make_input((2, 3, 20, 28), seed=5)
    with torch.inference_mode():
        both = model(x)
        one = torch.cat([model(x[:1]), model(x[1:])])
    assert rel_err(both, one) <= 1e-5
    # The adapter on an odd size (padding, crop, clamp), with the default init: filled weights give outputs of
    # ~1e3 whose clamp at 0 / 1 turns float noise into an absolute difference.
    torch.manual_seed(0)
    restorer = FourmerRestorer(Fourmer())
    both, one = batch_and_single_runs(restorer.restore, fill.make_input((2, 3, 21, 27), seed=6))
    assert (both - one).abs().max().item() <= 1e-5


# ------------------------------------------------------------------------------------------------ loader


def test_loads_released_plain_state_dict(model, tmp_path):
    path = tmp_path / CHECKPOINT_NAME
    torch.save(model.state_dict(), path)  # the released file is a plain OrderedDict of tensors
    loaded = load_fourmer(path)
    assert not loaded.training
    assert_same_weights(loaded, model)
    x = fill.make_input((1, 3, 16, 20), seed=9)
    with torch.inference_mode():
        assert torch.equal(loaded(x), model(x))


def _small_state_dict() -> dict[str, torch.Tensor]:
    return {"extract.weight": torch.randn(8, 3, 1, 1), "recons.bias": torch.randn(3)}


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        module_prefixed,
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"model": module_prefixed(sd)},
    ],
    ids=["plain", "module", "state_dict", "model-module"],
)
def test_state_dict_formats(tmp_path, wrap):
    sd = _small_state_dict()
    assert_reads_state_dict(fourmer_state_dict, tmp_path / "w.pth", wrap(sd), sd)


def test_wrong_file_lists_differences(tmp_path):
    # The variant the LOL option file names (EnhanceN_arch1: 7×7 extract) does not fit the released weights.
    wrong = {"extract.weight": torch.zeros(8, 3, 7, 7), "not_fourmer.weight": torch.zeros(2)}
    msg = wrong_file_message(load_fourmer, tmp_path / "other.pth", wrong)
    assert "375 missing key(s)" in msg and "extract.bias" in msg
    assert "unexpected key(s), first: not_fourmer.weight" in msg
    assert "extract.weight expected (8, 3, 1, 1) got (8, 3, 7, 7)" in msg
    assert_refuses_garbage(load_fourmer, tmp_path / "garbage.pth")


def test_missing_file(tmp_path):
    msg = missing_file_message(load_fourmer, tmp_path / CHECKPOINT_NAME)
    assert CHECKPOINT_NAME in msg and "https://github.com/manman1995/Fourmer" in msg
    assert "LLIE/pretrain/LOL/0_bestavg.pth" in PUBLISHED_AT


# ---------------------------------------------------------------------------------------- registered method


def test_registered_method(model, tmp_path):
    # Importing baselines.fourmer (above) registers "fourmer"; the central registry entries come later.
    assert get_spec("fourmer").modes == ("auto", "text")

    assert isinstance(random_restorer("fourmer"), FourmerRestorer)
    assert_unknown_method_arg("fourmer", {"flag": "1"}, match="flag")

    path = tmp_path / CHECKPOINT_NAME
    torch.save(model.state_dict(), path)
    restorer = assert_official_restorer("fourmer", FourmerRestorer, model, path)
    assert_type_is_ignored(restorer, fill.make_input((2, 3, 16, 16), seed=7), ["haze", "low_rain"])

    assert_needs_weights("fourmer", "https://github.com/manman1995/Fourmer", tmp_path / "none", tmp_path / "x")
