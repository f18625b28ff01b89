"""What the results page shows, gathered from the run folder: timing records, significance marks, timing rows
and the per-image browser's data (making the missing thumbnails on the way)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from harness import results
from harness.degradations import CLEAR, SHORT_NAMES, TABLE1_ORDER
from harness.report.fmt import _jnum, _num, _type_label
from harness.report.thumbs import (
    FULL,
    GT_KEY,
    INPUT_KEY,
    REPORT_DIR,
    THUMBS,
    _full_relpath,
    _link,
    _thumb_from,
    thumb_relpath,
)
from harness.results import INPUT_METHOD

PER_PAGE = 25


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def timing_records(run_dir: Path, summary: dict | None = None) -> list[dict]:
    """Timing records of a run folder: timing.json ({"timing": [...]}) or summary.json's "timing"."""
    data = _read_json(Path(run_dir) / "timing.json")
    if isinstance(data, dict) and isinstance(data.get("timing"), list):
        return [r for r in data["timing"] if isinstance(r, dict)]
    if isinstance(summary, dict) and isinstance(summary.get("timing"), list):
        return [r for r in summary["timing"] if isinstance(r, dict)]
    return []


def _significance(records: list[dict], notes: list[str]) -> dict[str, set[str]] | None:
    try:
        from harness.stats import not_significant_vs_best

        with np.errstate(invalid="ignore"):  # an exact restoration (PSNR inf) makes inf - inf differences
            return not_significant_vs_best(records)
    except Exception as e:  # noqa: BLE001 - the page without ‡ marks rather than no page
        notes.append(f"significance not computed: {type(e).__name__}: {e}")
        return None


def timing_rows(records: Sequence[dict]) -> list[dict]:
    """One row per (record, size) with a measured time: label, size, ms, iqr, floor, below, device …"""
    rows = []
    for r in records:
        label = f"{r.get('method', '?')} ({r.get('mode', '?')})"
        for size, v in (r.get("sizes") or {}).items():
            if not isinstance(v, dict):
                continue
            rows.append({"label": label, "method": r.get("method", "?"), "size": size, "ms": _num(v.get("ms")),
                         "iqr": _num(v.get("iqr_ms")), "floor": _num(v.get("floor_ms")),
                         "below": bool(v.get("below_floor")), "gflops": _num(v.get("gflops")),
                         "util": _num(v.get("utilization")), "tiled": bool(v.get("tiled")),
                         "device": r.get("device", ""), "dtype": r.get("dtype", ""), "threads": r.get("threads"),
                         "error": v.get("error") or r.get("error")})
    return rows


def _saved_names(records: list[dict]) -> dict[tuple[str, str], str]:
    """(type, file) → the file name of a saved restored image (as `harness.evaluation.saved_image_name`)."""
    stems: Counter = Counter()
    keys = {(r["type"], r["file"]) for r in records}
    for t, f in keys:
        stems[(t, Path(f).stem)] += 1
    return {(t, f): (f if stems[(t, Path(f).stem)] > 1 else Path(f).stem) + ".png" for t, f in keys}


def browser_data(run_dir: Path, records: list[dict], run_info: dict, thumbs: bool, notes: list[str]) -> dict:
    """The per-image browser's JSON (columns, images with scores and which thumbnails / full images exist),
    making the missing thumbnails first when `thumbs`."""
    labels = results.method_labels(records)
    has_input = any(r["method"] == INPUT_METHOD for r in records)
    cols: list[dict] = [{"label": "Input", "key": INPUT_KEY, "kind": "input"}]
    seen = set()
    for (m, mode), label in labels.items():
        if m == INPUT_METHOD or label in seen:
            continue
        seen.add(label)
        cols.append({"label": label, "key": f"{m}-{mode}", "kind": "method", "method": m, "mode": mode})
    cols.append({"label": "GT", "key": GT_KEY, "kind": "gt"})
    by_key: dict[tuple[int, str, str], dict] = {}
    col_of = {(c.get("method"), c.get("mode")): i for i, c in enumerate(cols) if c["kind"] == "method"}
    for r in records:
        i = 0 if r["method"] == INPUT_METHOD else col_of.get((r["method"], r["mode"]))
        if i is not None:
            by_key[(i, r["type"], r["file"])] = r
    order = {t: k for k, t in enumerate(TABLE1_ORDER)}
    keys = sorted({(r["type"], r["file"]) for r in records}, key=lambda k: (order.get(k[0], 99), k[0], k[1]))
    names = _saved_names(records)
    root_name = (run_info.get("data") or {}).get("root")
    root = Path(str(root_name)) if root_name else None
    if root is not None and not root.is_dir():
        notes.append(f"data root {root} (run.json) not found: Input and GT images come only from thumbnails "
                     "already in the report folder")
        root = None
    images_dir = run_dir / "images"
    full_ok = images_dir.is_dir()
    input_dirs = sorted(images_dir.glob(f"{INPUT_METHOD}-*")) if full_ok else []
    imgs = []
    for t, f in keys:
        th, fu, s = [], [], []
        name = names[(t, f)]
        for i, col in enumerate(cols):
            rec = by_key.get((i, t, f))
            if rec is None:
                s.append(None)
            elif rec.get("status") == "ok":
                s.append([_jnum(rec.get("psnr")), _jnum(rec.get("ssim"), 5), rec.get("predicted")])
            else:
                s.append(["failed", str(rec.get("error") or "")[:300]])
            kind, key = col["kind"], col["key"]
            thumb = run_dir / thumb_relpath(key, t, f)
            if kind == "method":
                saved = images_dir / key / t / name
                if thumbs and saved.is_file():
                    _thumb_from(saved, thumb, notes)
                th.append(thumb.is_file())
                fu.append(saved.is_file())
                continue
            if kind == "input":
                sources = [root / t / f] if root is not None else []
                sources += [d / t / name for d in input_dirs]
            else:
                sources = [root / CLEAR / f] if root is not None else []
            source = next((p for p in sources if p.is_file()), None)
            if thumbs and source is not None:
                _thumb_from(source, thumb, notes)
            th.append(thumb.is_file())
            full = run_dir / _full_relpath(key, t, f)
            if thumbs and full_ok and source is not None:
                _link(source, full, notes)
            fu.append(full_ok and full.is_file())
        imgs.append({"t": t, "f": f, "n": name, "s": s, "th": "".join("1" if x else "0" for x in th),
                     "fu": "".join("1" if x else "0" for x in fu)})
    methods = [i for i, c in enumerate(cols) if c["kind"] == "method"]
    return {"cols": cols, "imgs": imgs, "input": 0, "gains": has_input,
            "gainName": "PSNR gain over Input" if has_input else "PSNR", "defaultSort": -1,
            "perPage": PER_PAGE, "thumbDir": f"{REPORT_DIR}/{THUMBS}", "fullDir": f"{REPORT_DIR}/{FULL}",
            "typeLabel": {t: _type_label(t) for t, _ in keys}, "short": dict(SHORT_NAMES), "methods": methods}
