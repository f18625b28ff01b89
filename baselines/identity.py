"""The identity "restorer": returns its input, giving the Input row of every table."""

from __future__ import annotations

import torch

from harness.registry import MethodInfo, MethodOptions, register

INFO = MethodInfo(
    display="Input (identity)",
    paper=None,
    code="none (no model: the degraded input itself)",
    licence="n/a",
    files=(),
    checkpoint_format="no weights",
    published_at="n/a",
    modes=("auto", "text"),
    blind=True,
    adapter="returns the degraded input unchanged",
    without_weights="the Input row",
)


class Identity:
    name = "identity"

    def restore(self, images: torch.Tensor, degradation=None) -> torch.Tensor:
        return images

    def to(self, device):
        return self


@register("identity", description="returns the degraded input (the Input row)", info=INFO)
def create(opts: MethodOptions) -> Identity:
    return Identity()
