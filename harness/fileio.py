"""Atomic file writes, defined once: a file is written to a temporary sibling and moved onto its name, so a
run killed mid-write leaves the previous complete file (or none), never half of one.

`replace_atomic(path, write)` is the primitive (`write(tmp)` writes the content: PIL's `save`, `torch.save`, ...);
`write_text_atomic` and `write_json_atomic` are the common cases. `strict_json` makes a value safe for strict
JSON parsers (NaN → null, ±inf → "inf" / "-inf").
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path


def replace_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` with a temporary path beside `path` (unique to this process), then move it onto
    `path`. The temporary file is removed if `write` or the move fails. Returns `path` as a Path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically."""
    return replace_atomic(path, lambda tmp: tmp.write_text(text, encoding=encoding))


def strict_json(obj):
    """JSON-safe copy: NaN → null, ±inf → the strings "inf" / "-inf" (strict parsers accept the file)."""
    if isinstance(obj, float):
        if math.isnan(obj):
            return None
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
        return obj
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def write_json_atomic(path: str | os.PathLike, obj, *, indent: int | None = 1, default=None) -> Path:
    """Write `strict_json(obj)` as JSON (strict: no NaN / Infinity literals) to `path` atomically.
    `default` converts objects JSON does not know (e.g. `str`)."""
    text = json.dumps(strict_json(obj), indent=indent, allow_nan=False, default=default)
    return write_text_atomic(path, text)
