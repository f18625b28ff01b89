"""The identity "restorer": returns its input, giving the Input row of every table."""

from __future__ import annotations

import torch

from harness.registry import MethodOptions, register


class Identity:
    name = "identity"

    def restore(self, images: torch.Tensor, degradation=None) -> torch.Tensor:
        return images

    def to(self, device):
        return self


@register("identity", description="returns the degraded input (the Input row)", modes=("auto", "text"))
def create(opts: MethodOptions) -> Identity:
    return Identity()
