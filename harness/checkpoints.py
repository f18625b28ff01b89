"""The self-describing checkpoint format of the models this project trains, defined once.

``{"format": "vlur-harness-checkpoint", "version": 1, "arch": str, "config": {...}, "state_dict": {...},
"meta": {...}, ...extra}`` — plain values and tensors only, so ``torch.load(weights_only=True)`` reads it.
Written by `vlur.train` (arch "vlur", or "onerestore" for the OneRestore ablation, which adds its
``type_table``) and `vlur.train_classifier` (arch "vlur-sc").

A method whose weights may come in this format rebuilds its restorer through `restorer_from_checkpoint`,
which checks the header and hands the checkpoint to the loader registered for its arch in `LOADERS`
("module:function", imported on first use) — so `baselines/` reads the checkpoints `vlur.train` writes
without importing `vlur`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from harness.fileio import replace_atomic

FORMAT = "vlur-harness-checkpoint"
VERSION = 1

#: arch → "module:function(obj, path, mode)" that rebuilds a restorer from a checkpoint of that arch.
LOADERS: dict[str, str] = {
    "onerestore": "vlur.ablation:onerestore_from_checkpoint",
}


def plain(obj):
    """Convert to what torch.load(weights_only=True) accepts: dict/list/str/int/float/bool/None/tensors."""
    if isinstance(obj, dict):
        return {(k if type(k) in (str, int) else str(k)): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if obj is None or isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, bool):
        return bool(obj)
    for kind in (str, int, float):  # also turns subclasses (e.g. torch.__version__) into the plain type
        if isinstance(obj, kind):
            return kind(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def make_checkpoint(arch: str, config: dict, state_dict: Mapping[str, torch.Tensor], meta: dict, **extra) -> dict:
    """The self-describing checkpoint dict (loadable with torch.load(weights_only=True))."""
    ck = {
        "format": FORMAT,
        "version": VERSION,
        "arch": arch,
        "config": plain(config),
        "state_dict": {k: v.detach().cpu().clone() for k, v in state_dict.items()},
        "meta": plain(meta),
    }
    ck.update({k: plain(v) for k, v in extra.items()})
    return ck


def is_checkpoint(obj: object) -> bool:
    """Whether `obj` (a loaded file) claims this format (its header may still be wrong: `check_checkpoint`)."""
    return isinstance(obj, Mapping) and obj.get("format") == FORMAT


def check_checkpoint(obj: object, source: str, arch: str | None = None) -> dict:
    """Validate the header of a self-describing checkpoint; WeightsError naming `source` otherwise."""
    from harness.weights import WeightsError

    if not is_checkpoint(obj):
        raise WeightsError(f"{source}: not a {FORMAT} file (a checkpoint written by vlur.train)")
    if obj.get("version") != VERSION:
        raise WeightsError(f"{source}: checkpoint version {obj.get('version')!r}, expected {VERSION}")
    if arch is not None and obj.get("arch") != arch:
        raise WeightsError(f"{source}: checkpoint holds arch {obj.get('arch')!r}, expected {arch!r}")
    return dict(obj)


def save_checkpoint(obj: object, path: str | os.PathLike) -> Path:
    """`torch.save(obj, path)` atomically (the folder is created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return replace_atomic(path, lambda tmp: torch.save(obj, tmp))


def restorer_from_checkpoint(obj: object, path: str | os.PathLike, arch: str, mode: str = "auto"):
    """The restorer of a checkpoint of `arch` (header checked), built by the loader `LOADERS` names."""
    ck = check_checkpoint(obj, str(path), arch)
    target = LOADERS.get(arch)
    if target is None:
        from harness.weights import WeightsError

        raise WeightsError(f"{path}: no loader for {FORMAT} files of arch {arch!r} (known: {', '.join(LOADERS)})")
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)(ck, Path(path), mode)
