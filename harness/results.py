"""One path from per-image records to numbers: select the records a run describes, name their columns,
aggregate them.

Everything that reports on records — the summary, the tables, significance, confusion matrices, the gate,
the grid and the results page — goes through `select` and `aggregate`, so they cannot disagree.

* `select(records, selection)` keeps the latest record of each (method, mode, type, file), restricted to the
  methods, modes and image keys the run was asked for (`Selection`, stored in the run folder's run.json),
  and gives the identity method ("Input") one set of records whatever the modes: its output does not
  depend on the mode, so a run with ``--mode auto,text`` must not count each input twice.
* `aggregate(records)` follows the published order: mean over the successfully scored images of a type,
  then the unweighted mean of the type means ("Avg", over the types every column has).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.degradations import TABLE1_ORDER
from harness.records import RECORDS_FILE, latest, read_records

AVG = "average"
DEMO_MARK = "†"
#: the footnote of every table or page that shows the mark
DEMO_NOTE = f"{DEMO_MARK} demo weights trained by vlur-harness on cdd11-mini, not the authors' weights."
#: marks a PSNR not significantly different from the best of its row (harness.stats)
SIG_MARK = "‡"
INPUT_METHOD = "identity"
MODE_ORDER = {"auto": 0, "text": 1}
RUN_FILE = "run.json"
METRICS = ("psnr", "ssim")

#: {label: {type: {file: value}}} for one metric, ok records only.
Scores = dict[str, dict[str, dict[str, float]]]


@dataclass(frozen=True)
class Selection:
    """What a run's outputs describe: these methods in these modes on these (type, file) keys.

    `None` in a field means "no restriction". A narrower `--limit` or `--types` is a narrower selection of
    the same records, never a reason to drop or recompute finished ones.
    """

    methods: tuple[str, ...] | None = None
    modes: tuple[str, ...] | None = None
    keys: frozenset[tuple[str, str]] | None = None

    def admits(self, rec: dict) -> bool:
        return ((self.methods is None or rec["method"] in self.methods)
                and (self.modes is None or rec["mode"] in self.modes or rec["method"] == INPUT_METHOD)
                and (self.keys is None or (rec["type"], rec["file"]) in self.keys))

    def to_json(self) -> dict:
        return {"methods": list(self.methods) if self.methods is not None else None,
                "modes": list(self.modes) if self.modes is not None else None,
                "keys": sorted(f"{t}/{f}" for t, f in self.keys) if self.keys is not None else None}

    @classmethod
    def from_json(cls, d: dict | None) -> Selection:
        if not isinstance(d, dict):
            return cls()
        keys = d.get("keys")
        return cls(methods=tuple(d["methods"]) if d.get("methods") is not None else None,
                   modes=tuple(d["modes"]) if d.get("modes") is not None else None,
                   keys=frozenset(tuple(k.split("/", 1)) for k in keys) if keys is not None else None)


def column_order(record: dict) -> tuple:
    """Columns: Input first, then methods by name, each in auto, text order — not the order records were
    written in, which a resumed run changes."""
    mode = record["mode"]
    return record["method"] != INPUT_METHOD, record["method"], MODE_ORDER.get(mode, 2), mode


_TYPE_ORDER = {t: i for i, t in enumerate(TABLE1_ORDER)}


def record_order(record: dict) -> tuple:
    """A fixed order of records: column, then type (Table I order), then file name — whatever order they were
    written in (a resumed or multi-process run writes them in another), so every mean sums in one order."""
    return (*column_order(record), _TYPE_ORDER.get(record["type"], len(_TYPE_ORDER)), record["type"], record["file"])


def select(records: Iterable[dict], selection: Selection | None = None) -> list[dict]:
    """The records a run describes, latest per image, in `record_order`, Input once (see module doc)."""
    selection = selection or Selection()
    recs = sorted((r for r in latest(records) if selection.admits(r)), key=record_order)
    input_modes = sorted({r["mode"] for r in recs if r["method"] == INPUT_METHOD}, key=lambda m: MODE_ORDER.get(m, 2))
    if len(input_modes) > 1:
        # one Input column: for each image the record of the first mode that has it
        seen: set[tuple[str, str]] = set()
        kept = []
        for mode in input_modes:
            for r in recs:
                if r["method"] == INPUT_METHOD and r["mode"] == mode and (r["type"], r["file"]) not in seen:
                    seen.add((r["type"], r["file"]))
                    kept.append(r)
        recs = sorted(kept + [r for r in recs if r["method"] != INPUT_METHOD], key=record_order)
    return recs


def method_labels(records: Sequence[dict]) -> dict[tuple[str, str], str]:
    """(method, mode) → column label: the method name, '(mode)' when it ran in several, † for demo weights.

    Input (the identity method) is one column whatever its modes."""
    modes: dict[str, set[str]] = defaultdict(set)
    demo: dict[str, bool] = {}
    for r in records:
        modes[r["method"]].add(r["mode"])
        demo[r["method"]] = demo.get(r["method"], False) or r.get("weights") == "demo"
    labels = {}
    for r in records:
        m, mode = r["method"], r["mode"]
        name = "Input" if m == INPUT_METHOD else m
        if len(modes[m]) > 1 and m != INPUT_METHOD:
            name += f" ({mode})"
        labels[(m, mode)] = name + (DEMO_MARK if demo[m] else "")
    return labels


def by_column(records: Sequence[dict]) -> dict[str, list[dict]]:
    """Records grouped by column label, in column order (the latest record of each image counts)."""
    records = latest(records)
    labels = method_labels(records)
    out: dict[str, list[dict]] = {}
    for r in sorted(records, key=record_order):
        out.setdefault(labels[(r["method"], r["mode"])], []).append(r)
    return out


def _mean(values: list[float]) -> float:
    """Mean of finite values; +inf (an exact restoration) is kept: the mean is then +inf, as numpy gives."""
    return float(np.mean(values)) if values else math.nan


def aggregate(records: Sequence[dict]) -> dict[str, dict]:
    """{label: {type: {n, failed, psnr, ssim}, 'average': {...}}} of already selected records."""
    groups: dict[str, dict[str, list[dict]]] = {}
    for label, recs in by_column(records).items():
        groups[label] = defaultdict(list)
        for r in recs:
            groups[label][r["type"]].append(r)
    common = None
    for per_type in groups.values():
        common = set(per_type) if common is None else common & set(per_type)
    out: dict[str, dict] = {}
    for label, per_type in groups.items():
        res: dict[str, dict] = {}
        for t, recs in per_type.items():
            ok = [r for r in recs if r["status"] == "ok"]
            res[t] = {"n": len(ok), "failed": len(recs) - len(ok),
                      "psnr": _mean([r["psnr"] for r in ok]), "ssim": _mean([r["ssim"] for r in ok])}
        types = [t for t in TABLE1_ORDER if t in (common or set())]
        res[AVG] = {"n": sum(res[t]["n"] for t in types), "failed": sum(v["failed"] for v in res.values()),
                    "types": len(types),
                    "psnr": _mean([res[t]["psnr"] for t in types]), "ssim": _mean([res[t]["ssim"] for t in types])}
        out[label] = res
    return out


def per_image(records: Sequence[dict], metric: str = "psnr") -> Scores:
    """Per-image values of `metric` by column label and type (ok records only) of already selected records."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    out: Scores = {}
    for label, recs in by_column(records).items():
        col: dict[str, dict[str, float]] = {}
        for r in recs:
            per_type = col.setdefault(r["type"], {})  # the type exists for this column even with no ok image
            if r["status"] == "ok" and r.get(metric) is not None:
                per_type[r["file"]] = float(r[metric])
        out[label] = col
    return out


def common_types(sc: Scores, labels: Sequence[str] | None = None) -> list[str]:
    """Types (Table I order) that every one of `labels` (default: all) has, as the tables' Avg row uses."""
    labels = list(sc) if labels is None else list(labels)
    have = [set(sc[lb]) for lb in labels]
    common = set.intersection(*have) if have else set()
    return [t for t in TABLE1_ORDER if t in common]


def read_selection(run_dir: Path) -> Selection:
    """The selection stored in a run folder's run.json (no restriction when absent or unreadable)."""
    try:
        return Selection.from_json(json.loads((Path(run_dir) / RUN_FILE).read_text()).get("selection"))
    except (OSError, ValueError, AttributeError):
        return Selection()


def load(run_dir: Path) -> tuple[list[dict], list[str]]:
    """The selected records of a run folder (records.jsonl filtered by its run.json); returns (records, warnings)."""
    records, warnings = read_records(Path(run_dir) / RECORDS_FILE)
    return select(records, read_selection(run_dir)), warnings
