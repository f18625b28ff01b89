"""Overlapping tiled inference, used when a whole image does not fit in memory.

`tiled_restore(fn, images, tile=512, overlap=32)` cuts a B×C×H×W batch into a grid of `tile`×`tile` windows,
runs `fn` on each window (all B images of the batch at once, one window position at a time) and stitches
the outputs back together.

Grid. Along each axis of length L, windows start at 0, s, 2s, … with stride s = tile − overlap while the
window ends before L, and one last window is placed flush with the far edge (start L − tile). Adjacent
windows therefore overlap by at least `overlap` pixels (the last pair often by more), every window has the
same size (so `cudnn.benchmark` and `torch.compile` see one shape), and a size not divisible by the tile
needs no padding. An axis no longer than `tile` is a single window spanning it. With `align` > 1 the
regular starts are multiples of `align` (stride rounded down to a multiple of it), which keeps networks
with k down-samplings (align = 2^k) on the same pixel phase as the untiled run.

Blending. Each window's output is weighted by a separable window w(y)·w(x) and the weighted outputs are
divided by the summed weights. Along an axis, w is 1 everywhere except next to an *interior* window edge
(one that is not the image border): there the first `margin` pixels get weight 0 (they are discarded: a
network sees zero/reflect padding there instead of the true neighbours), and for ``blend="linear"`` the
weight then rises linearly over the next ``ramp = overlap − 2·margin`` pixels to 1.

* ``blend="linear"`` (default, margin = overlap // 4): a linear cross-fade in the middle of each
  overlap, which hides small seams of networks whose receptive field is wider than the margin (U-Nets,
  transformers with global attention).
* ``blend="crop"`` (margin = overlap // 2, no ramp): crop-centre stitching — every output pixel comes from
  the window in which it lies furthest from an interior edge (an average where two tie).

Exactness: for a network whose output at a pixel depends only on inputs within a radius r (e.g. a stack of
n 3×3 convolutions: r = n) and that is translation-equivariant, the stitched output equals the untiled
output whenever r ≤ margin, i.e. r ≤ overlap // 2 for "crop" and r ≤ overlap // 4 for "linear" (image
borders are shared with the untiled run, so border padding matches). Every pixel is covered by a window of
non-zero weight as long as margin ≤ overlap // 2, which both settings satisfy.

`restore_with_fallback(fn, images)` runs `fn` whole and, if it fails with an out-of-memory error (CUDA's
`OutOfMemoryError`, a RuntimeError whose message says "out of memory", or the CPU allocator's "not enough
memory"), frees the cache and retries tiled, halving the tile down to `min_tile` while it still fails.

What tiling costs in PSNR on an image set is measured by `experiments/tiling_cost.py` (not part of the library).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

Fn = Callable[[torch.Tensor], torch.Tensor]

BLENDS = ("linear", "crop")


def tile_starts(length: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Window start positions along one axis (see the module doc); `[0]` when `length <= tile`."""
    if tile <= 0:
        raise ValueError(f"tile must be positive, got {tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got overlap={overlap} tile={tile}")
    if length <= tile:
        return [0]
    stride = tile - overlap
    if align > 1:
        stride = max(align, stride // align * align)
    starts = []
    s = 0
    while s + tile < length:
        starts.append(s)
        s += stride
    starts.append(length - tile)
    return starts


def _axis_weights(start: int, size: int, length: int, margin: int, ramp: int) -> torch.Tensor:
    """1-D blending weights of one window: 0 for `margin` pixels at an interior edge, then a linear ramp."""
    k = torch.arange(size, dtype=torch.float32)
    w = torch.ones(size)
    for dist, interior in ((k, start > 0), (size - 1 - k, start + size < length)):
        if interior:
            w = w * ((dist - margin + 1) / (ramp + 1)).clamp(0.0, 1.0)
    return w


def _margin_and_ramp(blend: str, overlap: int) -> tuple[int, int]:
    if blend == "crop":
        return overlap // 2, 0
    if blend == "linear":
        margin = overlap // 4
        return margin, max(0, overlap - 2 * margin)
    raise ValueError(f"unknown blend {blend!r}; choose from {', '.join(BLENDS)}")


def tiled_restore(
    fn: Fn,
    images: torch.Tensor,
    tile: int = 512,
    overlap: int = 32,
    *,
    blend: str = "linear",
    align: int = 1,
) -> torch.Tensor:
    """Run `fn` on overlapping `tile`×`tile` windows of `images` (B×C×H×W) and blend the outputs.

    `fn` maps a B×C×h×w batch to a B×C'×h×w batch (same spatial size). The result is float32 on the
    device of `fn`'s first output, B×C'×H×W. See the module doc for the grid, the blending and when the
    result equals `fn(images)` exactly.
    """
    if images.ndim != 4:
        raise ValueError(f"expected a B×C×H×W batch, got shape {tuple(images.shape)}")
    h, w = images.shape[-2:]
    margin, ramp = _margin_and_ramp(blend, overlap)
    ys = tile_starts(h, tile, overlap, align)
    xs = tile_starts(w, tile, overlap, align)
    th, tw = min(tile, h), min(tile, w)
    acc = norm = None
    wy_cache = {y: _axis_weights(y, th, h, margin, ramp) for y in ys}
    wx_cache = {x: _axis_weights(x, tw, w, margin, ramp) for x in xs}
    for y in ys:
        for x in xs:
            out = fn(images[..., y : y + th, x : x + tw])
            if out.shape[-2:] != (th, tw):
                raise ValueError(
                    f"tiled_restore: fn changed the spatial size of a {th}x{tw} window to "
                    f"{tuple(out.shape[-2:])}; only size-preserving functions can be tiled"
                )
            if acc is None:
                acc = out.new_zeros((out.shape[0], out.shape[1], h, w), dtype=torch.float32)
                norm = out.new_zeros((1, 1, h, w), dtype=torch.float32)
            win = (wy_cache[y][:, None] * wx_cache[x][None, :]).to(acc.device)
            acc[..., y : y + th, x : x + tw] += out.float() * win
            norm[..., y : y + th, x : x + tw] += win
    return acc / norm


def tile_count(height: int, width: int, tile: int = 512, overlap: int = 32, align: int = 1) -> int:
    """How many windows `tiled_restore` runs for an image of this size."""
    return len(tile_starts(height, tile, overlap, align)) * len(tile_starts(width, tile, overlap, align))


# ------------------------------------------------------------------------------------------- OOM fallback


def is_oom_error(exc: BaseException) -> bool:
    """True for CUDA/CPU out-of-memory errors (by type, or by the allocator's message)."""
    oom_types = tuple(
        t for t in (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None)) if t
    )
    if oom_types and isinstance(exc, oom_types):
        return True
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, RuntimeError):
        msg = str(exc).lower()
        return "out of memory" in msg or "not enough memory" in msg or "can't allocate memory" in msg
    return False


def oom_reason(exc: BaseException) -> str:
    """One short line for an out-of-memory error: its type and the first line of its message (≤ 200 chars)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0][:200] if text else ''}"


def free_memory(device: torch.device | str | None = None) -> None:
    """Collect garbage and release the CUDA caching allocator's unused blocks."""
    gc.collect()
    if torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda"):
        torch.cuda.empty_cache()


@dataclass
class TilingInfo:
    """How a call was run: whole (`tiled` False) or tiled with the given tile / overlap / blend."""

    tiled: bool = False
    tile: int | None = None
    overlap: int | None = None
    blend: str | None = None
    tiles: int | None = None
    reason: str | None = None  # the out-of-memory message that triggered tiling

    def to_dict(self) -> dict:
        return asdict(self)


def restore_with_fallback(
    fn: Fn,
    images: torch.Tensor,
    tile: int = 512,
    overlap: int = 32,
    *,
    blend: str = "linear",
    align: int = 1,
    min_tile: int = 128,
    force_tiled: bool = False,
) -> tuple[torch.Tensor, TilingInfo]:
    """`fn(images)`, or — if that runs out of memory (or `force_tiled`) — `tiled_restore`, halving the tile
    (not below `min_tile`, nor below 2·overlap + 1) while the tiled run also runs out of memory.

    Returns the output and a `TilingInfo` saying what was done. Errors other than out-of-memory propagate,
    as does the out-of-memory error of the smallest tile.
    """
    reason = "forced" if force_tiled else None
    if not force_tiled:
        try:
            return fn(images), TilingInfo()
        except Exception as e:  # noqa: BLE001 - filtered by is_oom_error just below
            if not is_oom_error(e):
                raise
            reason = oom_reason(e)
        # the exception (and its traceback's big tensors) is released here, before the retry
        free_memory(images.device)
    t = tile
    while True:
        failed = None
        try:
            out = tiled_restore(fn, images, t, overlap, blend=blend, align=align)
            h, w = images.shape[-2:]
            return out, TilingInfo(True, t, overlap, blend, tile_count(h, w, t, overlap, align), reason)
        except Exception as e:  # noqa: BLE001
            if not is_oom_error(e):
                raise
            failed = oom_reason(e)
        free_memory(images.device)
        smaller = t // 2
        if smaller < max(min_tile, 2 * overlap + 1):
            raise RuntimeError(f"out of memory even with {t}x{t} tiles ({failed})")
        t = smaller


def tiled_fn(fn: Fn, tile: int = 512, overlap: int = 32, *, blend: str = "linear", align: int = 1) -> Fn:
    """`fn` wrapped so that it always runs tiled (for timing a size that was found not to fit)."""

    def run(images: torch.Tensor) -> torch.Tensor:
        return tiled_restore(fn, images, tile, overlap, blend=blend, align=align)

    return run


__all__ = [
    "BLENDS",
    "TilingInfo",
    "free_memory",
    "is_oom_error",
    "oom_reason",
    "restore_with_fallback",
    "tile_count",
    "tile_starts",
    "tiled_fn",
    "tiled_restore",
]
