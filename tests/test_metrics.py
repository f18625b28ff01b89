"""harness.metrics against scikit-image (the reference implementation of the official scoring)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from harness import metrics


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.astype(np.float64) / 255.0).permute(2, 0, 1).unsqueeze(0)


def _pairs():
    rng = np.random.default_rng(0)
    for name in ("astronaut", "chelsea", "coffee"):
        gt = getattr(data, name)()[:200, :300]
        noisy = np.clip(gt.astype(int) + rng.integers(-25, 26, gt.shape), 0, 255).astype(np.uint8)
        shifted = np.roll(gt, 3, axis=1)
        dark = (gt * 0.4).astype(np.uint8)
        for out in (noisy, shifted, dark):
            yield name, gt, out
    gt = data.astronaut()
    for h, w in ((7, 7), (8, 13), (37, 53), (101, 64)):
        yield f"odd{h}x{w}", gt[:h, :w], np.clip(gt[:h, :w].astype(int) + rng.integers(-40, 41, (h, w, 3)), 0, 255
                                                 ).astype(np.uint8)


@pytest.mark.parametrize("name,gt,out", list(_pairs()), ids=lambda v: v if isinstance(v, str) else "")
def test_cdd11_equals_skimage(name, gt, out):
    g, o = gt / 255.0, out / 255.0
    ref_ssim = structural_similarity(g, o, win_size=7, channel_axis=-1, data_range=1.0)
    ref_psnr = peak_signal_noise_ratio(g, o, data_range=1.0)
    ps, ss = metrics.score(_t(gt), _t(out), "cdd11")
    assert abs(ss.item() - ref_ssim) < 1e-6
    assert abs(ps.item() - ref_psnr) < 1e-6


@pytest.mark.parametrize("name,gt,out", [p for p in _pairs() if min(p[1].shape[:2]) >= 11],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_wang_equals_skimage_gaussian(name, gt, out):
    g, o = gt / 255.0, out / 255.0
    ref = structural_similarity(g, o, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                channel_axis=-1, data_range=1.0)
    assert abs(metrics.ssim(_t(gt), _t(out), "wang").item() - ref) < 1e-6


def test_conventions_differ_measurably():
    gt = data.astronaut()[:128, :128]
    out = np.clip(gt.astype(int) + np.random.default_rng(1).integers(-30, 31, gt.shape), 0, 255).astype(np.uint8)
    a = metrics.ssim(_t(gt), _t(out), "cdd11").item()
    b = metrics.ssim(_t(gt), _t(out), "wang").item()
    assert abs(a - b) > 1e-3


def test_uint8_arrays_accepted_directly():
    gt = data.chelsea()[:64, :80]
    out = gt[::-1].copy()
    assert metrics.ssim(gt, out).item() == pytest.approx(metrics.ssim(_t(gt), _t(out)).item(), abs=1e-12)


def test_smaller_than_window_raises():
    x = torch.rand(1, 3, 6, 40, dtype=torch.float64)
    with pytest.raises(ValueError, match="smaller than the 7x7"):
        metrics.ssim(x, x)
    with pytest.raises(ValueError):  # skimage refuses too
        structural_similarity(x[0].permute(1, 2, 0).numpy(), x[0].permute(1, 2, 0).numpy(), channel_axis=-1,
                              data_range=1.0)


def test_quantize_rounds_half_up_and_clamps():
    x = torch.tensor([-0.2, 0.0, 0.5 / 255, 1.49 / 255, 1.5 / 255, 254.5 / 255, 1.3], dtype=torch.float64)
    q = (metrics.quantize(x.view(1, 1, 1, -1)) * 255).round().flatten().tolist()
    assert q == [0, 0, 1, 1, 2, 255, 255]


def test_score_quantises_output_before_scoring():
    gt = _t(data.coffee()[:32, :32])
    tiny = gt + 0.4 / 255  # rounds back to gt on the 8-bit grid
    ps, ss = metrics.score(gt, tiny)
    assert ps.item() == float("inf") and ss.item() == pytest.approx(1.0)
    assert metrics.psnr(gt, tiny).item() < 100  # unquantised, it is not identical


def test_psnr_hand_worked():
    gt = torch.zeros(1, 3, 4, 4, dtype=torch.float64)
    out = torch.full_like(gt, 0.1)  # mse 0.01 -> 20 dB
    assert metrics.psnr(gt, out).item() == pytest.approx(20.0)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))


def test_unknown_convention():
    with pytest.raises(ValueError, match="unknown metric convention"):
        metrics.get_convention("bt601")


def test_integer_and_float_paths_agree_and_off_grid_floats_match_skimage():
    rng = np.random.default_rng(3)
    gt = data.astronaut()[:90, :120]
    out = np.clip(gt.astype(int) + rng.integers(-30, 31, gt.shape), 0, 255).astype(np.uint8)
    u8 = metrics.ssim(torch.from_numpy(gt).permute(2, 0, 1), torch.from_numpy(out).permute(2, 0, 1)).item()
    g = _t(gt) + torch.rand(1, 3, 90, 120, dtype=torch.float64) * 1e-3  # off the 8-bit grid: float64 path
    o = _t(out)
    ref = structural_similarity(g[0].permute(1, 2, 0).numpy(), o[0].permute(1, 2, 0).numpy(), channel_axis=-1,
                                data_range=1.0)
    assert abs(metrics.ssim(g, o).item() - ref) < 1e-6
    assert abs(u8 - structural_similarity(gt, out, channel_axis=-1, data_range=255)) < 1e-9
    ps8 = metrics.psnr(torch.from_numpy(gt).permute(2, 0, 1), torch.from_numpy(out).permute(2, 0, 1)).item()
    assert abs(ps8 - peak_signal_noise_ratio(gt, out, data_range=255)) < 1e-9


def _u8(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).unsqueeze(0)


@pytest.mark.skipif(metrics.backend() != "numba", reason="numba kernel not available")
@pytest.mark.parametrize("name,gt,out", list(_pairs()), ids=lambda v: v if isinstance(v, str) else "")
def test_compiled_kernel_equals_torch_path_and_skimage(name, gt, out, monkeypatch):
    g, o = _u8(gt), _t(out)  # as harness.run passes them: uint8 ground truth, float output
    fast_p, fast_s = metrics.score(g, o)
    monkeypatch.setenv("VLUR_METRICS_BACKEND", "torch")
    assert metrics.backend() == "torch"
    ref_p, ref_s = metrics.score(g, o)
    assert torch.equal(fast_p, ref_p)  # the same integer SSE
    assert abs(fast_s.item() - ref_s.item()) < 1e-12  # the same integer statistics; only summation order differs
    assert abs(fast_s.item() - structural_similarity(gt, out, channel_axis=-1, data_range=255)) < 1e-9


@pytest.mark.skipif(metrics.backend() != "numba", reason="numba kernel not available")
def test_compiled_kernel_batches_identical_images_and_rejects_bad_input():
    from harness import _ssim_kernel

    a = data.chelsea()[:64, :80]
    b = np.clip(a.astype(int) + 9, 0, 255).astype(np.uint8)
    batch_g = torch.cat([_u8(a), _u8(a)])
    batch_o = torch.cat([_t(a), _t(b)])
    p, s = metrics.score(batch_g, batch_o)
    assert p[0].item() == float("inf") and s[0].item() == pytest.approx(1.0, abs=1e-15)
    assert p[1].item() == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-12)
    assert s[1].item() == pytest.approx(structural_similarity(a, b, channel_axis=-1, data_range=255), abs=1e-12)
    # results do not depend on how rows are split into parallel blocks
    planes = (np.ascontiguousarray(a.transpose(2, 0, 1)), np.ascontiguousarray(b.transpose(2, 0, 1)))
    full = _ssim_kernel.uniform_ssim_sums(*planes, 7, 49 / 48, 1.0, 2.0)
    old = _ssim_kernel.BLOCK_ROWS
    try:
        _ssim_kernel.BLOCK_ROWS = 5
        split = _ssim_kernel.uniform_ssim_sums(*planes, 7, 49 / 48, 1.0, 2.0)
    finally:
        _ssim_kernel.BLOCK_ROWS = old
    assert np.array_equal(full[1], split[1]) and np.allclose(full[0], split[0], rtol=1e-13, atol=0)
    with pytest.raises(ValueError, match="uint8"):
        _ssim_kernel.uniform_ssim_sums(planes[0].astype(np.int32), planes[1], 7, 1.0, 1.0, 1.0)


@pytest.mark.skipif(metrics.backend() != "numba", reason="numba kernel not available")
def test_compiled_quantisation_equals_the_float64_formula(monkeypatch):
    edges = torch.tensor([-1.0, 0.0, 0.5 / 255, 0.5 / 255 - 1e-9, 127.5 / 255, 254.5 / 255, 1.0, 2.0,
                          float("inf"), float("-inf")], dtype=torch.float64)
    x = torch.cat([edges, torch.rand(5000, dtype=torch.float64) * 1.2 - 0.1])
    for t in (x, x.float()):
        fast = metrics._quantize_u8(t.reshape(1, 1, 1, -1))
        expected = torch.floor(t.to(torch.float64).clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).reshape(1, 1, 1, -1)
        assert torch.equal(fast, expected)
    assert metrics._quantize_u8(torch.tensor([[[[float("nan")]]]])).item() == 0
