"""timing.json / timing.md / timing.tex: writing them atomically, reading a timing.json back (`--resume`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from harness.fileio import write_text_atomic
from harness.timing.render import render_timing_table


def write_timing(records: Sequence[dict], out: str | Path) -> list[Path]:
    """Write timing.json ({"timing": records}), timing.md (main + detail table) and timing.tex to `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md = render_timing_table(records, "md")
    detail = render_timing_table(records, "md", detail=True, notes=False)
    paths = [out / "timing.json", out / "timing.md", out / "timing.tex"]
    texts = [json.dumps({"timing": list(records)}, indent=1, default=str) + "\n", md + "\n\n" + detail + "\n",
             render_timing_table(records, "tex") + "\n"]
    for path, text in zip(paths, texts):  # atomic: a run killed mid-write leaves the previous complete file
        write_text_atomic(path, text)
    return paths


def read_timing(path: str | Path) -> list[dict]:
    """The records of a timing.json written by `write_timing` (`--resume`); a clear error when unreadable."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        records = data["timing"]
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise TypeError("'timing' is not a list of records")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a timing.json written by harness.timing ({type(e).__name__}: {e})") from e
    return records
