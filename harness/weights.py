"""Loading released checkpoints: official file formats, prefix stripping, strict checks, clear errors."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn


class WeightsError(RuntimeError):
    """A checkpoint is missing, unreadable or does not match the model; the message says which and why."""


class MissingWeightsError(WeightsError):
    def __init__(self, method: str, expected: Path, published: str):
        super().__init__(
            f"{method}: weights file not found: {expected}\n"
            f"  Expected the authors' released file '{expected.name}' in that folder.\n"
            f"  It is published at: {published}\n"
            f"  Download it there and pass its folder with --weights-dir (nothing is downloaded at run time)."
        )
        self.expected = expected


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_checkpoint(path: Path) -> object:
    """torch.load a file on the CPU, safely (`weights_only=True`), with the file named in any error."""
    path = Path(path)
    if path.is_dir():
        raise WeightsError(f"{path} is a folder: --weights names one checkpoint file "
                           "(pass a folder of released files with --weights-dir)")
    if not path.is_file():
        raise WeightsError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise WeightsError(f"checkpoint {path} is empty (0 bytes): an interrupted download or copy?")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any decoding problem becomes one readable message
        detail = str(e).split("\n")[0].strip() or "no detail"
        if "Unsupported global" in str(e):
            raise WeightsError(
                f"cannot read checkpoint {path} safely: it holds Python objects other than tensors, and the "
                "harness never runs code from a checkpoint. Export a plain state_dict from it in the authors' "
                "own environment (torch.save(model.state_dict(), FILE)) and pass that file."
            ) from None
        if "Weights only load failed" in detail:
            detail = next((ln.strip() for ln in str(e).splitlines() if "error" in ln.lower() and ln.strip()
                           and "Weights only load failed" not in ln), "unreadable")
        raise WeightsError(f"cannot read checkpoint {path}: not a PyTorch checkpoint, or a damaged one "
                           f"({type(e).__name__}: {detail})") from None


def read_checkpoint_stubbing_objects(path: Path, hint: str = "") -> object:
    """`read_checkpoint`, but entries that hold non-tensor Python objects (training state: callbacks,
    hyper-parameter namespaces, ...) are read as inert stubs instead of refused. The load stays
    `weights_only=True`: nothing named in the file is imported or run. `hint` (the caller's advice: which entry
    to export, where the file is published) ends the message when even the stubbed read fails."""
    try:
        return read_checkpoint(path)
    except WeightsError as first:
        serialization = torch.serialization
        if not Path(path).is_file() or not hasattr(serialization, "get_unsafe_globals_in_checkpoint"):
            raise
        try:
            names = serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception:  # noqa: BLE001 - not a zip checkpoint: the first error says it all
            raise first from None
        if not names:
            raise

        class _Stub:
            def __init__(self, *args, **kwargs):
                pass

            def __setstate__(self, state):
                pass

            def __call__(self, *args, **kwargs):
                return self

        stubs = [(type(n.rsplit(".", 1)[-1], (_Stub,), {}), n) for n in names]
        try:
            with serialization.safe_globals(stubs):
                return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            raise WeightsError(f"{first}\n  (objects found: {', '.join(names[:6])}; reading them as inert stubs "
                               f"failed too: {type(e).__name__}: {e})" + (f"\n  {hint}" if hint else "")) from None


def extract_state_dict(obj: object, path: Path, nested: Iterable[str] = ("state_dict", "model", "net")) -> dict:
    """Find the tensor dict inside a loaded checkpoint (plain, or under one of the `nested` keys)."""
    if isinstance(obj, Mapping):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
        for key in nested:
            if key in obj and isinstance(obj[key], Mapping):
                return extract_state_dict(obj[key], path, nested)
    found = list(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
    raise WeightsError(f"{path}: no state_dict found (top level holds: {found})")


def strip_prefix(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Remove `prefix` from keys that have it when every key has it (e.g. DataParallel's 'module.')."""
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix) :]: v for k, v in sd.items()}
    return dict(sd)


def select_prefix(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Keep only the keys under `prefix` (e.g. Lightning's 'net.'), without the prefix."""
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def state_dict_mismatch(expected: Mapping[str, tuple], got: Mapping[str, torch.Tensor], limit: int = 8) -> list[str]:
    """Human-readable differences between expected key→shape and a state_dict (empty when they agree)."""
    lines: list[str] = []
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    wrong = [k for k in expected if k in got and tuple(got[k].shape) != tuple(expected[k])]
    if missing:
        lines.append(f"{len(missing)} missing key(s), first: " + ", ".join(missing[:limit]))
    if unexpected:
        lines.append(f"{len(unexpected)} unexpected key(s), first: " + ", ".join(unexpected[:limit]))
    if wrong:
        lines.append(
            f"{len(wrong)} shape mismatch(es), first: "
            + ", ".join(f"{k} expected {tuple(expected[k])} got {tuple(got[k].shape)}" for k in wrong[:limit])
        )
    return lines


def load_strict(model: nn.Module, sd: Mapping[str, torch.Tensor], source: str | Path) -> nn.Module:
    """Load `sd` into `model`, refusing any missing/unexpected key or shape difference, naming `source`."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = state_dict_mismatch(expected, sd)
    if problems:
        raise WeightsError(
            f"{source} does not match {type(model).__name__}:\n  " + "\n  ".join(problems)
        )
    model.load_state_dict(sd, strict=True)
    return model
