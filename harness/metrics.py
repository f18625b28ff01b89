"""Image-quality metrics with their conventions stated: exact-integer fast path for 8-bit images, float64 otherwise.

Two SSIM conventions, named explicitly because they differ by up to ~0.03 on CDD-11:

``cdd11`` (version 1) — the convention behind the OneRestore release's CDD-11 table and VL-UR's Table I:
    the restored image is clamped to [0, 1] and quantised as an 8-bit PNG would be (``floor(x·255 + 0.5)``,
    i.e. round half up, as torchvision's ``save_image`` does), then read back as ``/255``.
    PSNR = 10·log10(1 / MSE) over all RGB values (data_range 1; identical images give +inf).
    SSIM = scikit-image ``structural_similarity`` defaults: 7×7 uniform window, sample covariance
    (N/(N−1)), K1 0.01, K2 0.03, data_range 1, computed per channel over the valid region (pixels whose
    window lies inside the image — skimage's crop of 3 pixels) and averaged over the 3 channels.
    No Y channel, no border crop.

``wang`` (version 1) — Wang et al. 2004 as BasicSR's RGB ``calculate_ssim``: 11×11 Gaussian window
    (σ 1.5), population covariance, same constants, valid region, mean over channels.

Both equal scikit-image (``structural_similarity`` with the matching arguments) within 1e-6.

Speed. When both images lie on the 8-bit grid (always true under ``cdd11`` scoring: the ground truth is an
8-bit file and the output is quantised), the uniform-window SSIM runs on exact integers: window sums of
x, y, x², y², xy and the covariance numerators N·Σxy − Σx·Σy are integers, so the cancellation that float
SSIM suffers is done exactly and only the final ratio is float64. This path runs as a compiled one-pass
kernel (numba, `harness._ssim_kernel`; `backend()` says which is in use) that also yields the squared error
for PSNR, with a torch fallback (int32 window sums over strips of rows that stay in the CPU cache) giving
the same numbers; the first call in a fresh checkout compiles the kernel (~10 s, then cached on disk).
Other inputs take the float64 torch path (running sums for the uniform window, separable convolution for
the Gaussian one).
Images smaller than the window raise ``ValueError`` (scikit-image raises too; there is no valid region).

Aggregation used by every table: mean per image → mean per type → unweighted mean of the type means.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from harness import _ssim_kernel


@dataclass(frozen=True)
class Convention:
    name: str
    version: int
    window: str  # "uniform" | "gaussian"
    win_size: int
    sigma: float
    sample_covariance: bool
    quantize: bool
    description: str


CONVENTIONS: dict[str, Convention] = {
    "cdd11": Convention(
        "cdd11", 1, "uniform", 7, 0.0, True, True,
        "8-bit quantised output; RGB PSNR; skimage SSIM defaults (7x7 uniform, sample covariance)",
    ),
    "wang": Convention(
        "wang", 1, "gaussian", 11, 1.5, False, True,
        "8-bit quantised output; RGB PSNR; Wang/BasicSR SSIM (11x11 Gaussian sigma 1.5, population covariance)",
    ),
}

K1, K2 = 0.01, 0.03


def get_convention(name: str) -> Convention:
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise ValueError(f"unknown metric convention {name!r}; known: {', '.join(CONVENTIONS)}") from None


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to the 8-bit grid as a saved PNG would (round half up); float64 result."""
    x = images.detach().to(torch.float64).clamp(0.0, 1.0)
    return torch.floor(x * 255.0 + 0.5) / 255.0


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """B×3×H×W float → B×H×W×3 uint8 with the same rounding as `quantize` (for saving PNGs)."""
    return _quantize_u8(images).permute(0, 2, 3, 1).cpu().numpy()


def _as_batch(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Accept B×3×H×W / 3×H×W tensors in [0,1], or H×W×3 / B×H×W×3 uint8 arrays; return float64 B×C×H×W."""
    if isinstance(x, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(x))
        if t.dtype == torch.uint8:
            t = t.to(torch.float64) / 255.0
        t = t.to(torch.float64)
        t = t.unsqueeze(0) if t.ndim == 3 else t
        return t.permute(0, 3, 1, 2)
    t = x.detach().to(torch.float64)
    return t.unsqueeze(0) if t.ndim == 3 else t


def psnr(gt: torch.Tensor, out: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR per image (float64, shape B) over all values; +inf where the images are identical.

    uint8 inputs (both) are compared as exact integers (data range 255 levels = 1.0).
    """
    if _is_uint8(gt) and _is_uint8(out) and data_range == 1.0:
        g, o = _levels_u8(gt), _levels_u8(out)
        _check_shapes(g, o)
        return _psnr_from_sse(_sse(g, o), g[0].numel())
    g, o = _as_batch(_to_float(gt)), _as_batch(_to_float(out))
    _check_shapes(g, o)
    mse = (g - o).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range**2 / mse)


def _sse(g: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
    """Exact integer sum of squared differences per image of two B×C×H×W level tensors (int64, shape B)."""
    d = (g.to(torch.int32) - o.to(torch.int32)).flatten(1)
    return (d * d).sum(1, dtype=torch.int64)


def _psnr_from_sse(sse: torch.Tensor, values: int) -> torch.Tensor:
    """PSNR of 8-bit levels from their integer SSE over `values` values per image; +inf for SSE 0."""
    return 10.0 * torch.log10(255.0**2 * values / sse.to(torch.float64))


def _check_shapes(g: torch.Tensor, o: torch.Tensor) -> None:
    if g.shape != o.shape:
        raise ValueError(f"images differ in shape: {tuple(g.shape)} vs {tuple(o.shape)}")


def _box_valid(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean over every k×k window lying inside the image (valid region), by running sums along each axis."""
    c = F.pad(x.cumsum(-1), (1, 0))
    x = c[..., k:] - c[..., :-k]
    c = F.pad(x.cumsum(-2), (0, 0, 1, 0))
    return (c[..., k:, :] - c[..., :-k, :]) / (k * k)


def _gaussian_valid(x: torch.Tensor, k: int, sigma: float) -> torch.Tensor:
    r = torch.arange(k, dtype=torch.float64, device=x.device) - (k - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    n, c, h, w = x.shape
    y = F.conv2d(x.reshape(n * c, 1, h, w), g.view(1, 1, 1, k))
    y = F.conv2d(y, g.view(1, 1, k, 1))
    return y.reshape(n, c, y.shape[-2], y.shape[-1])


def _levels_u8(x: torch.Tensor | np.ndarray) -> torch.Tensor | None:
    """The image as 8-bit levels (B×C×H×W uint8) if it lies exactly on the 8-bit grid, else None.

    uint8 tensors (B×C×H×W / C×H×W) and arrays (B×H×W×C / H×W×C) are levels already (no copy)."""
    if isinstance(x, torch.Tensor) and x.dtype == torch.uint8:
        return x.unsqueeze(0) if x.ndim == 3 else x
    if isinstance(x, np.ndarray) and x.dtype == np.uint8:
        t = torch.from_numpy(np.ascontiguousarray(x))
        return (t.unsqueeze(0) if t.ndim == 3 else t).permute(0, 3, 1, 2)
    # float32 cannot hold k/255 exactly: within 1e-6 of a level (the grid step is 1/255) counts as on it
    tol = 1e-12 if getattr(x, "dtype", None) in (np.float64, torch.float64) else 1e-6
    t = _as_batch(x)
    levels = torch.round(t * 255.0)
    if bool(((levels / 255.0 - t).abs() <= tol).all()) and bool((levels >= 0).all() and (levels <= 255).all()):
        return levels.to(torch.uint8)
    return None


def _quantize_u8(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """`quantize` as 8-bit levels (B×C×H×W uint8): the same float64 round-half-up, done in place."""
    if _is_uint8(x):
        return _levels_u8(x)
    if (backend() == "numba" and isinstance(x, torch.Tensor) and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64)):
        t = torch.from_numpy(_ssim_kernel.quantize_u8(x.detach().numpy()))
        return t.unsqueeze(0) if t.ndim == 3 else t
    t = x.detach().to(torch.float64, copy=True) if isinstance(x, torch.Tensor) else _as_batch(x).clone()
    t = t.unsqueeze(0) if t.ndim == 3 else t
    return t.clamp_(0.0, 1.0).mul_(255.0).add_(0.5).floor_().to(torch.uint8)


def _box_sum(x: torch.Tensor, k: int, dtype: torch.dtype) -> torch.Tensor:
    """Exact integer sums over every k×k window inside the image (valid region)."""
    c = F.pad(x.cumsum(-1, dtype=dtype), (1, 0))
    x = c[..., k:] - c[..., :-k]
    c = F.pad(x.cumsum(-2, dtype=dtype), (0, 0, 1, 0))
    return c[..., k:, :] - c[..., :-k, :]


_STRIP_ROWS = 16


def backend() -> str:
    """The implementation of the 8-bit uniform-window path: "numba" (one-pass compiled kernel) or "torch".

    $VLUR_METRICS_BACKEND=torch forces the torch path (both give the same numbers, see the module doc)."""
    if os.environ.get("VLUR_METRICS_BACKEND", "").lower() == "torch" or not _ssim_kernel.AVAILABLE:
        return "torch"
    return "numba"


def _uniform_levels(g: torch.Tensor, o: torch.Tensor, k: int, sample_covariance: bool
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(uniform-window SSIM, integer SSE) per image of two B×C×H×W uint8 level tensors, by `backend()`."""
    if backend() == "torch":
        return _ssim_uniform_levels_torch(g, o, k, sample_covariance), _sse(g, o)
    b, c, h, w = g.shape
    n = k * k
    cn = n / (n - 1) if sample_covariance else 1.0
    planes = (b * c, h, w)
    ssim_sums, sse = _ssim_kernel.uniform_ssim_sums(
        g.reshape(planes).numpy(), o.reshape(planes).numpy(), k, cn,
        (K1 * 255.0) ** 2 * n * n, (K2 * 255.0) ** 2 * n * n)
    ssim_per_image = torch.from_numpy(ssim_sums.reshape(b, c).sum(1)) / (c * (h - k + 1) * (w - k + 1))
    return ssim_per_image, torch.from_numpy(sse.reshape(b, c).sum(1))


def _ssim_uniform_levels_torch(g: torch.Tensor, o: torch.Tensor, k: int, sample_covariance: bool) -> torch.Tensor:
    """Uniform-window SSIM per image from integer levels (exact window statistics, float64 ratio), in torch."""
    b, c, h, w = g.shape
    n = k * k
    cn = n / (n - 1) if sample_covariance else 1.0
    # the data range (255 levels) and the window size cancel out of the ratio once the constants are scaled
    c1 = (K1 * 255.0) ** 2 * n * n
    c2 = (K2 * 255.0) ** 2 * n * n
    # largest intermediates: a row's running sum of 255², a strip's running sum of window sums, n·Σx²
    peak = 255 * 255 * max(w, (_STRIP_ROWS + k) * k, n * n)
    dtype = torch.int32 if peak < 2**31 - 1 else torch.int64
    g = g.to(dtype).contiguous()
    o = o.to(dtype).contiguous()
    total = torch.zeros(b, dtype=torch.float64)
    for r0 in range(0, h - k + 1, _STRIP_ROWS):
        a = g[..., r0 : r0 + _STRIP_ROWS + k - 1, :]
        z = o[..., r0 : r0 + _STRIP_ROWS + k - 1, :]
        sx, sy, sxx, syy, sxy = _box_sum(torch.cat([a, z, a * a, z * z, a * z], dim=1), k, dtype).split(c, dim=1)
        px = (n * sxx - sx * sx).to(torch.float64)
        py = (n * syy - sy * sy).to(torch.float64)
        pxy = (n * sxy - sx * sy).to(torch.float64)
        sx = sx.to(torch.float64)
        sy = sy.to(torch.float64)
        s = ((2 * sx * sy + c1) * (2 * cn * pxy + c2)) / ((sx * sx + sy * sy + c1) * (cn * (px + py) + c2))
        total += s.sum(dim=(1, 2, 3))
    return total / (c * (h - k + 1) * (w - k + 1))


def ssim(gt: torch.Tensor, out: torch.Tensor, convention: str = "cdd11", data_range: float = 1.0) -> torch.Tensor:
    """SSIM per image (float64, shape B): mean over the valid region and over channels (see module doc).

    Accepts float tensors in [0, 1] (B×3×H×W or 3×H×W), uint8 tensors, or uint8 H×W×3 arrays.
    """
    conv = get_convention(convention)
    k = conv.win_size
    g_lv, o_lv = (_levels_u8(gt), _levels_u8(out)) if conv.window == "uniform" and data_range == 1.0 else (
        None, None)
    if g_lv is not None and o_lv is not None:
        _check_shapes(g_lv, o_lv)
        _check_window(g_lv.shape, k, conv.name)
        return _uniform_levels(g_lv, o_lv, k, conv.sample_covariance)[0]
    g, o = _as_batch(_to_float(gt)), _as_batch(_to_float(out))
    _check_shapes(g, o)
    _check_window(g.shape, k, conv.name)
    c = g.shape[1]
    stack = torch.cat([g, o, g * g, o * o, g * o], dim=1)
    m = _box_valid(stack, k) if conv.window == "uniform" else _gaussian_valid(stack, k, conv.sigma)
    ux, uy, uxx, uyy, uxy = m.split(c, dim=1)
    cov_norm = k * k / (k * k - 1) if conv.sample_covariance else 1.0
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.flatten(2).mean(2).mean(1)


def _is_uint8(x) -> bool:
    return getattr(x, "dtype", None) in (np.uint8, torch.uint8)


def _to_float(x):
    """uint8 tensors become float64 in [0, 1]; everything else is left to `_as_batch`."""
    if isinstance(x, torch.Tensor) and x.dtype == torch.uint8:
        return x.to(torch.float64) / 255.0
    return x


def _check_window(shape, k: int, name: str) -> None:
    if min(shape[-2:]) < k:
        raise ValueError(
            f"image of {shape[-2]}x{shape[-1]} is smaller than the {k}x{k} SSIM window ({name}); "
            "SSIM is undefined there"
        )


def score(gt: torch.Tensor, out: torch.Tensor, convention: str = "cdd11") -> tuple[torch.Tensor, torch.Tensor]:
    """(PSNR, SSIM) per image under `convention`: `out` is clamped and 8-bit quantised first.

    `gt` is used as given (CDD-11 ground truths are 8-bit files already; pass them as uint8 to skip the
    grid check).
    """
    conv = get_convention(convention)
    if conv.quantize:
        o = _quantize_u8(out)
    else:
        o = _as_batch(out)
    g_lv = _levels_u8(gt) if conv.window == "uniform" and o.dtype == torch.uint8 else None
    if g_lv is not None:  # one pass over the levels gives SSIM and the squared error
        _check_shapes(g_lv, o)
        _check_window(g_lv.shape, conv.win_size, conv.name)
        s, sse = _uniform_levels(g_lv, o, conv.win_size, conv.sample_covariance)
        return _psnr_from_sse(sse, g_lv[0].numel()), s
    return psnr(gt, o), ssim(gt, o, conv.name)


def mean_finite(values) -> float:
    """Mean of a sequence; +inf if any value is +inf (identical images), nan when empty."""
    vals = list(values)
    return float(np.mean(vals)) if vals else math.nan


def main(argv=None) -> int:
    """`python -m harness.metrics GT OUT`: PSNR and SSIM of one restored image against its ground truth."""
    import argparse
    import sys
    from pathlib import Path

    from harness import cli
    from harness.data.cdd11 import ImageReadError, read_rgb8

    p = argparse.ArgumentParser(prog="python -m harness.metrics", formatter_class=cli.Formatter,
                                description="PSNR and SSIM of a restored image against its ground truth, with the "
                                            "published tables' convention (8-bit RGB, skimage PSNR, 7x7 SSIM).")
    p.add_argument("gt", type=Path, help="ground-truth image")
    p.add_argument("out", type=Path, help="restored image")
    p.add_argument("--convention", default="cdd11", choices=sorted(CONVENTIONS), help="metric convention")
    args = p.parse_args(argv)
    try:
        g, _ = read_rgb8(args.gt)
        o, _ = read_rgb8(args.out)
    except ImageReadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if g.shape != o.shape:
        print(f"error: {args.out} is {o.shape[1]}x{o.shape[0]} but {args.gt} is {g.shape[1]}x{g.shape[0]}",
              file=sys.stderr)
        return 2
    ps, ss = score(torch.from_numpy(g).permute(2, 0, 1)[None], torch.from_numpy(o).permute(2, 0, 1)[None],
                   args.convention)
    print(f"PSNR {float(ps[0]):.4f} dB  SSIM {float(ss[0]):.4f}  ({args.convention})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
