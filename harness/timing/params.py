"""Parameter counting over every module a restorer holds (each parameter once)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def modules_in(obj, seen: set[int] | None = None, depth: int = 3) -> list[nn.Module]:
    """nn.Modules held by `obj` (itself, its attributes, lists/dicts of them; plain objects recursively)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth < 0:
        return []
    seen.add(id(obj))
    if isinstance(obj, nn.Module):
        return [obj]
    if isinstance(obj, torch.Tensor | torch.device | str | bytes | int | float | bool | Path) or obj is None:
        return []
    if isinstance(obj, dict):
        values = list(obj.values())
    elif isinstance(obj, list | tuple | set):
        values = list(obj)
    elif hasattr(obj, "__dict__"):
        values = list(vars(obj).values())
    else:
        return []
    out: list[nn.Module] = []
    for v in values:
        out += modules_in(v, seen, depth - 1)
    return out


def count_parameters(obj) -> int:
    """Parameters of every module `obj` holds, each counted once (unused ones included)."""
    seen: set[int] = set()
    total = 0
    for m in modules_in(obj):
        for p in m.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
    return total
