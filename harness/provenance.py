"""Where a result came from: code version (`git_commit`), package versions, machine (`device_name`), model size
(`count_parameters`) — each defined once, for run summaries, timing tables and training checkpoints."""

from __future__ import annotations

import contextlib
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from torch import nn

PACKAGES = ("vlur-harness", "torch", "torchvision", "numpy", "scikit-image", "pillow", "open_clip_torch",
            "pytorch-msssim", "pandas")


def git_commit() -> str:
    """HEAD of the checkout this code runs from, with "+dirty" when tracked files differ; "unknown" outside git."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True,
            timeout=10,
        ).stdout.strip()
        return out + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = "not installed"
    return out


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            k, _, v = line.partition(":")
            if k.strip() == "model name" and v.strip():
                return v.strip()
    return platform.processor() or platform.machine() or "unknown"


def device_name(device: str | torch.device) -> str:
    """The GPU's name, "CPU (model)" or "meta (FLOPs only)" (thread counts are recorded beside it)."""
    d = torch.device(device)
    if d.type == "cuda":
        return torch.cuda.get_device_name(d)
    if d.type == "meta":
        return "meta (FLOPs only)"
    if d.type == "cpu":
        return f"CPU ({cpu_model()})"
    return d.type


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


def environment(device: str | torch.device) -> dict:
    return {
        "git_commit": git_commit(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": str(device),
        "device_name": device_name(device),
        "torch_threads": torch.get_num_threads(),
    }
