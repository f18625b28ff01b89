"""Compiled one-pass kernel for the uniform-window SSIM and the squared error of 8-bit images (numba).

`uniform_ssim_sums(g, o, k, cn, c1, c2)` takes two uint8 arrays of P planes (P×H×W, one plane per image
channel) and returns, per plane, the sum of the SSIM map over the valid region and the sum of squared
differences. It does the same exact-integer arithmetic as `harness.metrics`' torch path: the window sums of
x, y, x², y², xy (column sums over the k rows of the window, then differences of running sums along the
row) and the covariance numerators N·Σxy − Σx·Σy are integers, held in float64, which represents every
integer below 2**53 exactly (these stay below 2**40 for any image a GPU can hold) — so no cancellation
error — and only the final ratio is rounded. The two paths agree to the summation order of that ratio
(~1e-15), not just to 1e-6.

One pass over the image with a few rows of scratch: about 30 operations and one division per pixel and
channel, vectorised along the row, where the array version reads and writes a dozen full-size
temporaries. Planes are split into blocks of rows that run in parallel (numba's `prange`); the per-block
sums are added in a fixed order, so results do not depend on the thread count.

`AVAILABLE` is False when numba cannot be imported; `harness.metrics` then uses its torch path.
"""

from __future__ import annotations

import threading

import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; the torch path stays correct without it
    numba = None

AVAILABLE = numba is not None

#: output rows per parallel block (a block re-reads k − 1 rows to start its column sums)
BLOCK_ROWS = 64


def _add_row(col, g, o, p, r, sign):  # pragma: no cover - compiled by numba
    """Add (sign 1) or remove (sign −1) image row r of plane p to the column sums of x, y, x², y², xy."""
    for j in range(g.shape[2]):
        a = np.float64(g[p, r, j])
        b = np.float64(o[p, r, j])
        col[0, j] += sign * a
        col[1, j] += sign * b
        col[2, j] += sign * (a * a)
        col[3, j] += sign * (b * b)
        col[4, j] += sign * (a * b)


if AVAILABLE:
    _add_row = numba.njit(inline="always", cache=True)(_add_row)


def _kernel(g, o, k, cn, c1, c2, block_rows):  # pragma: no cover - compiled by numba, tested through metrics
    planes, h, w = g.shape
    n = k * k
    out_h = h - k + 1
    out_w = w - k + 1
    blocks = (out_h + block_rows - 1) // block_rows
    ssim_parts = np.zeros(planes * blocks)
    sse_parts = np.zeros(planes * blocks, dtype=np.int64)
    for job in numba.prange(planes * blocks):
        p = job // blocks
        r0 = (job % blocks) * block_rows
        r1 = min(r0 + block_rows, out_h)
        # column sums over the window's k rows, for x, y, x², y², xy (one row of 5 interleaved arrays)
        col = np.zeros((5, w))
        # running sums along the row of the column sums: window sum over columns j..j+k-1 = pre[j+k] − pre[j]
        pre = np.zeros((5, w + 1))
        ratio = np.empty(out_w)
        for r in range(r0, r0 + k - 1):
            _add_row(col, g, o, p, r, 1.0)
        acc = 0.0
        for r in range(r0, r1):
            _add_row(col, g, o, p, r + k - 1, 1.0)  # the row entering the window
            for q in range(5):
                run = 0.0
                for j in range(w):
                    run += col[q, j]
                    pre[q, j + 1] = run
            for j in range(out_w):  # no loop-carried dependency: vectorised by the compiler
                sx = pre[0, j + k] - pre[0, j]
                sy = pre[1, j + k] - pre[1, j]
                px = n * (pre[2, j + k] - pre[2, j]) - sx * sx
                py = n * (pre[3, j + k] - pre[3, j]) - sy * sy
                pxy = n * (pre[4, j + k] - pre[4, j]) - sx * sy
                ratio[j] = ((2.0 * sx * sy + c1) * (2.0 * cn * pxy + c2)) / ((sx * sx + sy * sy + c1)
                                                                             * (cn * (px + py) + c2))
            for j in range(out_w):
                acc += ratio[j]
            _add_row(col, g, o, p, r, -1.0)  # the row leaving the window
        # squared error: each block covers its own rows (the last block also the k − 1 bottom rows)
        sse = np.int64(0)
        e_end = r1 if r1 < out_h else h
        for r in range(r0, e_end):
            for j in range(w):
                d = np.int64(g[p, r, j]) - np.int64(o[p, r, j])
                sse += d * d
        ssim_parts[job] = acc
        sse_parts[job] = sse
    ssim_sum = np.zeros(planes)
    sse_sum = np.zeros(planes, dtype=np.int64)
    for job in range(planes * blocks):  # fixed order: independent of the thread count
        ssim_sum[job // blocks] += ssim_parts[job]
        sse_sum[job // blocks] += sse_parts[job]
    return ssim_sum, sse_sum


def _quantize_kernel(x, out):  # pragma: no cover - compiled by numba, tested through metrics
    for i in numba.prange(x.size):
        v = np.float64(x[i])
        if v != v:  # NaN: level 0, deterministically
            out[i] = 0
        elif v <= 0.0:
            out[i] = 0
        elif v >= 1.0:
            out[i] = 255
        else:
            out[i] = np.uint8(np.floor(v * 255.0 + 0.5))
    return out


_compiled = numba.njit(parallel=True, cache=True)(_kernel) if AVAILABLE else None
_compiled_quantize = numba.njit(parallel=True, cache=True)(_quantize_kernel) if AVAILABLE else None
_lock = threading.Lock()  # numba's fallback "workqueue" threading layer must not be entered concurrently


def uniform_ssim_sums(g: np.ndarray, o: np.ndarray, k: int, cn: float, c1: float, c2: float
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(per-plane sum of the SSIM map over the valid region, per-plane integer SSE) of uint8 P×H×W arrays.

    `cn` = N/(N−1) (sample) or 1 (population covariance); `c1`, `c2` are the constants scaled to window sums
    ((K·255)²·N²), as in `harness.metrics._ssim_uniform_levels_torch`.
    """
    if not AVAILABLE:
        raise RuntimeError("numba is not installed")
    if g.dtype != np.uint8 or o.dtype != np.uint8 or g.shape != o.shape or g.ndim != 3:
        raise ValueError(f"expected two uint8 P×H×W arrays of one shape, got {g.dtype}{g.shape} / {o.dtype}{o.shape}")
    with _lock:
        return _compiled(np.ascontiguousarray(g), np.ascontiguousarray(o), int(k), float(cn), float(c1),
                         float(c2), BLOCK_ROWS)


def quantize_u8(x: np.ndarray) -> np.ndarray:
    """8-bit levels of a float array in [0, 1]: clamp, then floor(x·255 + 0.5) in float64 (NaN → 0)."""
    if not AVAILABLE:
        raise RuntimeError("numba is not installed")
    if x.dtype not in (np.float32, np.float64):
        raise ValueError(f"expected a float32 or float64 array, got {x.dtype}")
    flat = np.ascontiguousarray(x).reshape(-1)
    with _lock:
        return _compiled_quantize(flat, np.empty(flat.shape, dtype=np.uint8)).reshape(x.shape)
