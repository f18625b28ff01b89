"""FLOP counting: torch.utils.flop_counter (totals only) plus torchvision's deformable convolution."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch


def _deform_conv2d_flop(input_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    """torchvision::deform_conv2d: 2 × (convolution MACs); the bilinear sampling is not counted."""
    b = input_shape[0]
    cout, cin_per_group, kh, kw = weight_shape
    return 2 * b * cout * out_shape[-2] * out_shape[-1] * cin_per_group * kh * kw


def _custom_flop_mapping() -> dict:
    mapping = {}
    with contextlib.suppress(Exception):
        import torchvision  # noqa: F401 - registers torch.ops.torchvision

        mapping[torch.ops.torchvision.deform_conv2d] = _deform_conv2d_flop  # keyed by overload packet
    return mapping


class _GlobalOnlyTracker:
    """Stands in for FlopCounterMode's module tracker: totals only, no per-module attribution.

    The tracker's hooks fail under `torch.inference_mode` when a module is called with a tensor that requires
    grad (e.g. `embedding_mlp(embedding.weight)`: "'NoneType' object has no attribute 'next_functions'"),
    and every restorer here runs under inference mode; the totals do not need it.
    """

    def __init__(self):
        self.parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def flop_counter():
    """A silent `FlopCounterMode` (totals only) that also counts torchvision's deformable convolution."""
    from torch.utils.flop_counter import FlopCounterMode

    fc = FlopCounterMode(display=False, custom_mapping=_custom_flop_mapping())
    if hasattr(fc, "mod_tracker"):
        fc.mod_tracker = _GlobalOnlyTracker()
    return fc


def count_flops(fn: Callable, *args, **kwargs) -> tuple[int, object]:
    """(FLOPs, output) of one call `fn(*args, **kwargs)` — 2 per MAC, as FlopCounterMode counts."""
    with torch.inference_mode(), flop_counter() as fc:
        out = fn(*args, **kwargs)
    return int(fc.get_total_flops()), out


def sampler_steps(restorer) -> int | None:
    """Network passes over the whole image per restored image that `restorer` declares as `sampler_steps`
    (an iterative sampler, e.g. WeatherDiffusion's DDIM steps); None for a single-pass restorer. Its FLOPs and
    time are reported per restored image (all steps) and, divided by this, per step."""
    n = getattr(restorer, "sampler_steps", None)
    return int(n) if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else None
