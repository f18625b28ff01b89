"""AirNet re-implementation: state_dict layout, the official test vector, shapes, loading, registry.

The reference vector (regenerated 2026-12-02) is made with `fill_scale` {"conv_offset_mask": 0.05}, in float64
by the official code: with unscaled filled weights the deformable offsets reach ~170 px and the network is
chaotic, so no float32 implementation could be compared strictly. With the scale it is well conditioned and
checked at the same 1e-4 relative tolerance as every other baseline.
The shape / batch tests use milder weights where the network is well conditioned.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from baseline_checks import (
    assert_close_to_reference,
    assert_tensors_match_manifest,
    assert_weights_equal_seeded_init,
    case_meta,
    fill,
)

from baselines.airnet import PUBLISHED_AT, AirNet, AirNetRestorer, ModulatedDeformConv, load_airnet
from harness.protocol import Restorer
from harness.registry import MethodOptions, create_restorer, get_spec
from harness.weights import MissingWeightsError, WeightsError

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def case0():
    return torch.load(DATA / "airnet_case0.pt", weights_only=True)


@pytest.fixture(scope="module")
def filled_sd() -> dict[str, torch.Tensor]:
    sd = AirNet().state_dict()
    return fill.fill_state_dict(sd, salt=0, scale=case_meta("airnet_case0")["fill_scale"])


@pytest.fixture(scope="module")
def filled_model(filled_sd) -> AirNet:
    model = AirNet().eval()
    model.load_state_dict(filled_sd)
    return model


@pytest.fixture(scope="module")
def case0_out(filled_model, case0) -> torch.Tensor:
    with torch.no_grad():
        return filled_model(case0["x"])


@pytest.fixture(scope="module")
def tame_model() -> AirNet:
    """Filled weights with the restorer's body convs halved: offsets of 1-3 px, a well-conditioned net."""
    model = AirNet().eval()
    sd = fill.fill_state_dict(model.state_dict(), salt=1)
    for k, v in sd.items():
        if k.startswith("R.body") and k.endswith("weight") and "conv_offset_mask" not in k:
            v.mul_(0.5)
    model.load_state_dict(sd)
    return model


# ------------------------------------------------------------------------------------------------ layout
def test_state_dict_matches_manifest():
    sd = AirNet().state_dict()
    assert_tensors_match_manifest(sd, "airnet.manifest.json")
    assert len(sd) == 584


def test_deform_conv_offset_layout():
    """Offset channels 2k / 2k+1 are (dy, dx) of tap k, mask channel k its weight: an integer shift of
    every tap by dx = +1 equals a plain conv of the input shifted one pixel left; mask m scales it.
    (Column 0 differs: its leftmost taps sample x[0] where the shifted-then-padded input has a zero.)"""
    torch.manual_seed(0)
    layer = ModulatedDeformConv(4, 5, 3)
    x = torch.randn(1, 4, 9, 11)
    inter = torch.randn(1, 4, 9, 11)
    with torch.no_grad():
        layer.conv_offset_mask.weight.zero_()
        bias = torch.zeros(27)
        bias[1:18:2] = 1.0  # dx of every tap
        bias[18:] = 2.0  # mask logit
        layer.conv_offset_mask.bias.copy_(bias)
        out = layer(x, inter)
        shifted = F.pad(x[..., 1:], (0, 1))
        expected = torch.sigmoid(torch.tensor(2.0)) * F.conv2d(shifted, layer.weight, padding=1)
    torch.testing.assert_close(out[..., 1:], expected[..., 1:], rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------ reference vector
def test_reference_vector(case0, case0_out):
    ref = case0["out"]
    assert case0_out.shape == ref.shape and case0_out.dtype == torch.float32
    assert_close_to_reference(case0_out, ref, "max|ours - official|")


def test_takes_unit_range_input(case0, filled_model, case0_out):
    """The official forward takes [0, 1] images as they are: normalised input is far from the reference."""
    with torch.no_grad():
        other = filled_model((case0["x"] - 0.5) / 0.5)
    ref = case0["out"]
    dist = lambda y: ((y - ref).norm() / ref.norm()).item()  # noqa: E731
    assert dist(case0_out) < 0.5 * dist(other)


# ------------------------------------------------------------------------------------------------ shapes
def test_odd_size_and_batch_equal_single_runs(tame_model):
    x = fill.make_input((2, 3, 37, 53), seed=3)
    with torch.no_grad():
        both = tame_model(x)
        singles = torch.cat([tame_model(x[:1]), tame_model(x[1:])])
    assert both.shape == (2, 3, 37, 53)
    assert torch.isfinite(both).all()
    torch.testing.assert_close(both, singles, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------- loading
def _same_weights(model: AirNet, sd: dict[str, torch.Tensor]) -> bool:
    got = model.state_dict()
    return all(torch.equal(got[k], v) for k, v in sd.items())


def test_load_plain_prefixed_nested(tmp_path, filled_sd):
    plain = tmp_path / "plain.pth"
    torch.save(filled_sd, plain)
    prefixed = tmp_path / "prefixed.pth"
    torch.save({"module." + k: v for k, v in filled_sd.items()}, prefixed)
    nested = tmp_path / "nested.pth"
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in filled_sd.items()}}, nested)
    for path in (plain, prefixed, nested):
        model = load_airnet(path)
        assert not model.training
        assert _same_weights(model, filled_sd), path.name


def test_load_other_queue_length(tmp_path, filled_sd):
    sd = dict(filled_sd)
    sd["E.E.queue"] = F.normalize(torch.randn(256, 256 * 8), dim=0)  # trained with batch 8
    path = tmp_path / "All.pth"
    torch.save(sd, path)
    model = load_airnet(path)
    assert model.E.E.queue.shape == (256, 2048)
    assert _same_weights(model, sd)
    # a plain load_state_dict adopts the queue length too
    fresh = AirNet()
    fresh.load_state_dict(sd)
    assert torch.equal(fresh.E.E.queue, sd["E.E.queue"])


def test_wrong_file_lists_differences(tmp_path, filled_sd):
    sd = dict(filled_sd)
    del sd["R.tail.0.bias"]
    sd["R.head.0.weight"] = torch.zeros(32, 3, 3, 3)
    sd["extra.weight"] = torch.zeros(1)
    path = tmp_path / "wrong.pth"
    torch.save(sd, path)
    with pytest.raises(WeightsError) as info:
        load_airnet(path)
    msg = str(info.value)
    assert "wrong.pth" in msg
    assert "R.tail.0.bias" in msg and "extra.weight" in msg
    assert "R.head.0.weight expected (64, 3, 3, 3) got (32, 3, 3, 3)" in msg


def test_unreadable_and_non_state_dict_files(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read checkpoint"):
        load_airnet(junk)
    odd = tmp_path / "odd.pth"
    torch.save({"epoch": 1, "note": "no weights"}, odd)
    with pytest.raises(WeightsError, match="no state_dict found"):
        load_airnet(odd)


def test_missing_weights(tmp_path):
    for opts in (MethodOptions(weights_dir=tmp_path), MethodOptions(), MethodOptions(weights=tmp_path / "x.pth")):
        with pytest.raises(MissingWeightsError) as info:
            create_restorer("airnet", opts)
        msg = str(info.value)
        assert PUBLISHED_AT in msg and "github.com/XLearning-SCU/2022-CVPR-AirNet" in msg
    with pytest.raises(MissingWeightsError, match="All.pth"):
        create_restorer("airnet", MethodOptions(weights_dir=tmp_path))


# ---------------------------------------------------------------------------------------------- registry
def test_registered_method(tmp_path, filled_sd):
    torch.save({"module." + k: v for k, v in filled_sd.items()}, tmp_path / "All.pth")
    spec = get_spec("airnet")
    assert spec.modes == ("auto", "text")
    restorer = create_restorer("airnet", MethodOptions(weights_dir=tmp_path))
    assert isinstance(restorer, AirNetRestorer) and isinstance(restorer, Restorer)
    assert restorer.name == "airnet" and restorer.weights_label == "official"
    assert restorer.weights_files == (tmp_path / "All.pth",)
    assert _same_weights(restorer.model, filled_sd)
    x = fill.make_input((1, 3, 12, 20), seed=5)
    blind = restorer.restore(x)
    told = restorer.restore(x, ["haze"])
    assert blind.shape == x.shape
    assert torch.equal(blind, told)  # the type is ignored
    assert restorer.to("cpu") is restorer
    # an explicit file takes precedence
    other = create_restorer("airnet", MethodOptions(weights=tmp_path / "All.pth", weights_dir=tmp_path / "nowhere"))
    assert other.weights_files == (tmp_path / "All.pth",)


def test_registered_method_random_weights():
    before = torch.random.get_rng_state()
    restorer = create_restorer("airnet", MethodOptions(random_weights=True))
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's random stream is untouched
    assert restorer.weights_label == "random" and restorer.weights_files == ()
    assert_weights_equal_seeded_init(restorer.model, AirNet)
    out = restorer.restore(fill.make_input((1, 3, 12, 20), seed=5))
    assert out.shape == (1, 3, 12, 20) and torch.isfinite(out).all()
