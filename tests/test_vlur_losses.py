"""VL-UR loss terms against direct computations."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from pytorch_msssim import ms_ssim

from vlur import losses
from vlur.losses import CDRL, MSSSIM_WEIGHTS, VLURLoss, build_vgg16_features, msssim_win_size


@pytest.fixture(scope="module")
def vgg():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_vgg16_features(path=None, warn=False)


def test_msssim_window_choice():
    assert msssim_win_size(256, 300) == 11
    assert msssim_win_size(161, 400) == 11
    assert msssim_win_size(160, 400) == 9
    assert msssim_win_size(128, 128) == 7
    assert msssim_win_size(97, 97) == 7
    assert msssim_win_size(65, 80) == 5
    assert msssim_win_size(33, 40) == 3
    with pytest.raises(ValueError, match="too small"):
        msssim_win_size(32, 64)


def test_random_vgg_is_seeded_and_warns(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.delenv("VLUR_VGG16", raising=False)
    state = torch.random.get_rng_state()
    with pytest.warns(UserWarning, match="VGG-16 ImageNet weights not found"):
        a, src = build_vgg16_features()
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    b, _ = build_vgg16_features(warn=False)
    assert src == "random-seeded"
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not any(p.requires_grad for p in a.parameters())


def test_imagenet_file_is_used(tmp_path, monkeypatch, vgg):
    feats, _ = vgg
    sd = {f"features.{k}": v + 1 for k, v in feats.state_dict().items()}
    sd["classifier.0.weight"] = torch.zeros(2, 2)
    (tmp_path / "checkpoints").mkdir()
    torch.save(sd, tmp_path / "checkpoints" / losses.VGG16_FILE)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.delenv("VLUR_VGG16", raising=False)
    loaded, src = build_vgg16_features()
    assert src == "imagenet"
    assert torch.equal(loaded[0].weight, feats[0].weight + 1)


def _smooth_l1(a, b):
    d = (a - b).abs()
    return torch.where(d < 1, 0.5 * d * d, d - 0.5).mean()


def _cdrl_direct(vgg, out, gt, inp, negs):
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    n = negs.shape[1]
    total = 0.0
    for end in (4, 9, 16):  # relu1_2, relu2_2, relu3_3
        f = vgg[:end]
        fo, fg, fi = f((out - mean) / std), f((gt - mean) / std), f((inp - mean) / std)
        den = (fo - fi).abs().mean() / (n + 1)
        for j in range(n):
            den = den + (fo - f((negs[:, j] - mean) / std)).abs().mean() / (n + 1)
        total = total + (fo - fg).abs().mean() / (den + 1e-7)
    return total / 3


def test_each_term_and_total_match_direct_computation(vgg):
    feats, src = vgg
    torch.manual_seed(0)
    gt = torch.rand(2, 3, 40, 36)
    inp = (gt * 0.5 + 0.3).clamp(0, 1)
    out = (gt + 0.1 * torch.randn_like(gt)).clamp(0, 1)
    negs = torch.rand(2, 2, 3, 40, 36)
    crit = VLURLoss(cdrl=CDRL(features=feats, source=src))
    total, terms = crit(out, gt, inp, negs)
    sl1 = _smooth_l1(out, gt)
    ms = 1 - ms_ssim(out, gt, data_range=1.0, win_size=3, weights=list(MSSSIM_WEIGHTS))
    cd = _cdrl_direct(feats, out, gt, inp, negs)
    assert terms["smooth_l1"] == pytest.approx(float(sl1), rel=1e-5)
    assert terms["ms_ssim"] == pytest.approx(float(ms), rel=1e-5)
    assert terms["cdrl"] == pytest.approx(float(cd), rel=1e-4)
    assert float(total) == pytest.approx(float(0.6 * sl1 + 0.3 * ms + 0.1 * cd), rel=1e-4)

    # a step without the CDRL term (vlur.train --cdrl-every): the other two terms with their own weights
    total_no, terms_no = crit(out, gt, inp, None, with_cdrl=False)
    assert float(total_no) == pytest.approx(float(0.6 * sl1 + 0.3 * ms), rel=1e-5)
    assert math.isnan(terms_no["cdrl"]) and terms_no["smooth_l1"] == pytest.approx(terms["smooth_l1"])


def test_smooth_l1_beta_matches_direct_computation_and_is_validated(vgg):
    feats, src = vgg
    torch.manual_seed(2)
    gt = torch.rand(1, 3, 40, 36)
    out = (gt + 0.05 * torch.randn_like(gt)).clamp(0, 1)
    crit = VLURLoss(cdrl=CDRL(features=feats, source=src), smooth_l1_beta=0.01)
    _, terms = crit(out, gt, gt, None, with_cdrl=False)
    d = (out - gt).abs()
    direct = torch.where(d < 0.01, 0.5 * d * d / 0.01, d - 0.005).mean()
    assert terms["smooth_l1"] == pytest.approx(float(direct), rel=1e-5)
    # at these errors a small beta is L1-like: an order of magnitude above the default's 0.5*e^2
    assert terms["smooth_l1"] > 10 * float(_smooth_l1(out, gt))
    with pytest.raises(ValueError, match="smooth_l1_beta"):
        VLURLoss(cdrl=CDRL(features=feats, source=src), smooth_l1_beta=0)


def test_cdrl_without_negatives_and_gradient_only_through_output(vgg):
    feats, src = vgg
    torch.manual_seed(1)
    gt, inp = torch.rand(1, 3, 34, 34), torch.rand(1, 3, 34, 34)
    out = torch.rand(1, 3, 34, 34, requires_grad=True)
    gt.requires_grad_(True)
    crit = CDRL(features=feats, source=src)
    value = crit(out, gt, inp, None)
    with torch.no_grad():
        direct = _cdrl_direct(feats, out, gt, inp, torch.zeros(1, 0, 3, 34, 34))
    assert float(value.detach()) == pytest.approx(float(direct), rel=1e-4)
    value.backward()
    assert out.grad is not None and out.grad.abs().sum() > 0
    assert gt.grad is None
    assert float(crit(gt.detach(), gt.detach(), inp, None)) == pytest.approx(0.0, abs=1e-4)
