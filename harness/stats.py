"""Significance of Table I differences: a seeded, stratified, paired bootstrap over images.

Every interval uses the tables' aggregation (mean per image → mean per type → unweighted mean of the type
means), applied to resamples of the images: within each type, as many images as the type has are drawn
with replacement (a stratified bootstrap, so every resample keeps every type and its weight in the
average). A 95 % interval is the 2.5th and 97.5th percentiles of the resampled statistic.

Differences between two methods are *paired*: only images scored ok by both are used, and both methods
see the same resampled images (the statistic is the aggregation of the per-image differences, which is
the aggregation of A minus the aggregation of B on the same resample). A difference whose interval
contains 0 is not significant at that level. Identical methods give exactly [0, 0]; a constant offset of
d dB on every image gives exactly [d, d].

A type with a single image contributes no variability; verdicts need at least 2 images in every type
used (otherwise `significant` is None).

`python -m harness.stats RUN_DIR` prints the intervals and all pairwise differences as Markdown.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tabulate import tabulate

from harness import cli, results
from harness.degradations import ROMAN, SHORT_NAMES, TABLE1_ORDER
from harness.results import AVG, METRICS, Scores, common_types

DEFAULT_RESAMPLES = 2000
MIN_RESAMPLES = 1000
DEFAULT_SEED = 20240611
DEFAULT_LEVEL = 0.95


def scores(records: Iterable[dict], metric: str = "psnr") -> Scores:
    """Per-image values of `metric` by table column label and type (`results.select`, then ok records only)."""
    return results.per_image(results.select(records), metric)


def _check(n_resamples: int, level: float) -> None:
    if n_resamples < MIN_RESAMPLES:
        raise ValueError(f"n_resamples must be at least {MIN_RESAMPLES} (got {n_resamples})")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1) (got {level})")


def resample_indices(counts: Sequence[int], n_resamples: int = DEFAULT_RESAMPLES,
                     seed: int = DEFAULT_SEED) -> list[np.ndarray]:
    """One (n_resamples × n_t) index array per stratum, drawn in the given order from one seeded Generator.

    Exposed so that tests (and anyone checking a number) can reproduce an interval with plain numpy.
    """
    rng = np.random.default_rng(seed)
    return [rng.integers(0, n, size=(n_resamples, n)) for n in counts]


def bootstrap_aggregate(strata: Sequence[np.ndarray], n_resamples: int = DEFAULT_RESAMPLES,
                        seed: int = DEFAULT_SEED) -> np.ndarray:
    """Resampled values of mean-of-stratum-means: a vector of length n_resamples."""
    if not strata or any(len(s) == 0 for s in strata):
        raise ValueError("every stratum needs at least one value")
    idx = resample_indices([len(s) for s in strata], n_resamples, seed)
    type_means = np.stack([np.asarray(s, dtype=np.float64)[i].mean(axis=1) for s, i in zip(strata, idx)])
    return type_means.mean(axis=0)


def percentile_interval(samples: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
    """The (1-level)/2 and (1+level)/2 percentiles (numpy's default linear interpolation)."""
    lo, hi = np.percentile(samples, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def _point(strata: Sequence[np.ndarray]) -> float:
    return float(np.mean([np.mean(s) for s in strata]))


def interval(sc: Scores, label: str, types: Sequence[str] | None = None, *, n_resamples: int = DEFAULT_RESAMPLES,
             seed: int = DEFAULT_SEED, level: float = DEFAULT_LEVEL) -> dict:
    """Bootstrap interval of one column's average over `types` (default: every type it has).

    Returns {label, types, n, estimate, lo, hi, level, n_resamples, seed, note}. `estimate` equals the
    tables' value for the same types; lo/hi are NaN when some type has no ok image.
    """
    _check(n_resamples, level)
    per_type = sc[label]
    types = [t for t in TABLE1_ORDER if t in per_type] if types is None else list(types)
    strata = [np.array(sorted_values(per_type.get(t, {}))) for t in types]
    res = {"label": label, "types": types, "n": int(sum(len(s) for s in strata)), "level": level,
           "n_resamples": n_resamples, "seed": seed, "note": None}
    if not types or any(len(s) == 0 for s in strata):
        empty = [t for t, s in zip(types, strata) if len(s) == 0]
        return {**res, "estimate": math.nan, "lo": math.nan, "hi": math.nan,
                "note": f"no ok image for {', '.join(empty)}" if empty else "no types"}
    lo, hi = percentile_interval(bootstrap_aggregate(strata, n_resamples, seed), level)
    if any(len(s) < 2 for s in strata):
        res["note"] = "types with a single image contribute no variability"
    return {**res, "estimate": _point(strata), "lo": lo, "hi": hi}


def sorted_values(per_file: dict[str, float]) -> list[float]:
    """Values in file-name order (the order the resample indices refer to)."""
    return [per_file[f] for f in sorted(per_file)]


def difference(sc: Scores, label_a: str, label_b: str, types: Sequence[str] | None = None, *,
               n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
               level: float = DEFAULT_LEVEL) -> dict:
    """Paired bootstrap interval of (A − B) on the average over `types` (default: types both have).

    Only images scored ok by both columns are used, in file-name order per type. Returns {a, b, types, n,
    estimate, lo, hi, zero_inside, significant, level, n_resamples, seed, note}; `significant` is None
    when some type has fewer than 2 paired images (no verdict possible).
    """
    _check(n_resamples, level)
    pa, pb = sc[label_a], sc[label_b]
    if types is None:
        types = [t for t in TABLE1_ORDER if t in pa and t in pb]
    types = list(types)
    strata = []
    for t in types:
        a, b = pa.get(t, {}), pb.get(t, {})
        files = sorted(set(a) & set(b))
        strata.append(np.array([a[f] - b[f] for f in files], dtype=np.float64))
    res = {"a": label_a, "b": label_b, "types": types, "n": int(sum(len(s) for s in strata)), "level": level,
           "n_resamples": n_resamples, "seed": seed, "note": None}
    if not types or any(len(s) == 0 for s in strata):
        empty = [t for t, s in zip(types, strata) if len(s) == 0]
        return {**res, "estimate": math.nan, "lo": math.nan, "hi": math.nan, "zero_inside": None,
                "significant": None, "note": f"no paired image for {', '.join(empty)}" if empty else "no types"}
    lo, hi = percentile_interval(bootstrap_aggregate(strata, n_resamples, seed), level)
    zero_inside = bool(lo <= 0.0 <= hi)
    significant: bool | None = not zero_inside
    if any(len(s) < 2 for s in strata):
        res["note"] = "types with fewer than 2 paired images: no verdict"
        significant = None
    return {**res, "estimate": _point(strata), "lo": lo, "hi": hi, "zero_inside": zero_inside,
            "significant": significant}


def analyse(records: Iterable[dict], metric: str = "psnr", *, n_resamples: int = DEFAULT_RESAMPLES,
            seed: int = DEFAULT_SEED, level: float = DEFAULT_LEVEL, per_type: bool = False) -> dict:
    """Intervals of every column's average and differences of every pair of columns.

    The average is over the types every column has (as the tables' Avg row). With `per_type`, the
    pairwise differences are also computed on each type alone. Returns {metric, types, intervals,
    differences, per_type}.
    """
    sc = scores(records, metric)
    labels = list(sc)
    types = common_types(sc)
    kw = {"n_resamples": n_resamples, "seed": seed, "level": level}
    out = {"metric": metric, "types": types, "n_resamples": n_resamples, "seed": seed, "level": level,
           "intervals": [interval(sc, lb, types, **kw) for lb in labels],
           "differences": [difference(sc, a, b, types, **kw) for i, a in enumerate(labels) for b in labels[i + 1:]],
           "per_type": {}}
    if per_type:
        for t in types:
            out["per_type"][t] = [difference(sc, a, b, [t], **kw) for i, a in enumerate(labels)
                                  for b in labels[i + 1:]]
    return out


def not_significant_vs_best(records: Iterable[dict], columns: Sequence[str] | None = None, metric: str = "psnr", *,
                            n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                            level: float = DEFAULT_LEVEL) -> dict[str, set[str]]:
    """For each Table I row (type names and 'average'), the columns not significantly different from the best.

    The row's best is the column among `columns` (default: all but Input) with the highest unrounded
    value; each other column is compared with it by a paired bootstrap on that type (the 'average' row:
    on the average over the types every column has). A column is listed when the interval of the
    difference contains 0 and a verdict is possible (≥ 2 paired images per type).
    """
    sc = scores(records, metric)
    if columns is None:
        columns = [c for c in sc if not c.startswith("Input")]
    columns = [c for c in columns if c in sc]
    avg_types = common_types(sc)
    kw = {"n_resamples": n_resamples, "seed": seed, "level": level}
    marks: dict[str, set[str]] = {}
    rows = [(t, [t]) for t in TABLE1_ORDER if any(t in sc[c] for c in columns)]
    if avg_types:
        rows.append((AVG, avg_types))
    for row, types in rows:
        values = {}
        for c in columns:
            if all(sc[c].get(t) for t in types):
                values[c] = float(np.mean([np.mean(list(sc[c][t].values())) for t in types]))
        if len(values) < 2:
            continue
        best = max(values, key=lambda c: values[c])
        same = set()
        for c in values:
            if c == best:
                continue
            d = difference(sc, best, c, types, **kw)
            if d["significant"] is False:
                same.add(c)
        if same:
            marks[row] = same
    return marks


def _num(v: float, digits: int) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _row_name(t: str) -> str:
    return f"{ROMAN[t]} {SHORT_NAMES[t]}"


def render_markdown(result: dict, digits: int | None = None) -> str:
    """Markdown: one table of intervals, one of pairwise differences (and per-type ones when computed)."""
    metric = result["metric"]
    digits = digits if digits is not None else (2 if metric == "psnr" else 4)
    pct = f"{100 * result['level']:g}%"
    unit = " (dB)" if metric == "psnr" else ""
    head = (f"Paired bootstrap over images, stratified by type: {result['n_resamples']} resamples, seed "
            f"{result['seed']}, {pct} percentile intervals. Average over {len(result['types'])} type(s): "
            f"mean per type, then the unweighted mean of the types.\n")
    ints = [[r["label"], r["n"], _num(r["estimate"], digits), f"[{_num(r['lo'], digits)}, {_num(r['hi'], digits)}]",
             r["note"] or ""] for r in result["intervals"]]
    parts = [head, f"### Average {metric.upper()}{unit}\n",
             tabulate(ints, headers=["Method", "Images", metric.upper(), f"{pct} CI", "Note"], tablefmt="github",
                      disable_numparse=True) + "\n"]

    def diff_table(diffs: list[dict]) -> str:
        body = []
        for d in diffs:
            verdict = {True: "yes", False: "no", None: "no verdict"}[d["significant"]]
            inside = {True: "yes", False: "no", None: "–"}[d["zero_inside"]]
            body.append([f"{d['a']} − {d['b']}", d["n"], _num(d["estimate"], digits),
                         f"[{_num(d['lo'], digits)}, {_num(d['hi'], digits)}]", inside, verdict, d["note"] or ""])
        return tabulate(body, headers=["Difference", "Paired images", f"Δ {metric.upper()}", f"{pct} CI",
                                       "0 inside", "Significant", "Note"], tablefmt="github",
                        disable_numparse=True) + "\n"

    if result["differences"]:
        parts += [f"\n### Pairwise differences of the average {metric.upper()}{unit}\n",
                  diff_table(result["differences"])]
    for t, diffs in result.get("per_type", {}).items():
        if diffs:
            parts += [f"\n### {_row_name(t)}: pairwise differences\n", diff_table(diffs)]
    return "".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.stats", description=cli.description(__doc__),
                                formatter_class=cli.Formatter)
    p.add_argument("run_dir", type=Path, help="a run folder (with records.jsonl)")
    p.add_argument("--metric", choices=METRICS, default="psnr")
    p.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES,
                   help=f"bootstrap resamples (at least {MIN_RESAMPLES}; default {DEFAULT_RESAMPLES})")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed (default {DEFAULT_SEED})")
    p.add_argument("--level", type=float, default=DEFAULT_LEVEL, help="interval level (default 0.95)")
    p.add_argument("--per-type", action="store_true", help="also print pairwise differences per type")
    p.add_argument("--write", type=Path, default=None, help="also write the Markdown to this file")
    args = p.parse_args(argv)
    records, warnings = results.load(args.run_dir)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if not records:
        print(f"error: no records in {args.run_dir / 'records.jsonl'}", file=sys.stderr)
        return 2
    try:
        result = analyse(records, args.metric, n_resamples=args.resamples, seed=args.seed, level=args.level,
                         per_type=args.per_type)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = render_markdown(result)
    print(text)
    if args.write is not None:
        args.write.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
