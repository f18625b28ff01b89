"""Tables from per-image records alone: VL-UR Table I layout in Markdown and LaTeX, plus a long-form CSV.

`python -m harness.tables DIR` re-renders DIR/table1.md, DIR/table1.tex and DIR/results.csv from
DIR/records.jsonl. Aggregation: mean over the successfully scored images of a type, then the unweighted
mean of the type means ("Avg", computed only over the types every method has). Best value per row (among
methods, the Input column excluded) is bold, the second underlined, comparing the values as printed. With
`--significance`, a ‡ after a PSNR marks a method not significantly different from the row's best (paired
bootstrap over images, `harness.stats`).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from collections import defaultdict
from importlib import resources
from pathlib import Path

import numpy as np
from tabulate import tabulate

from harness import cli, results
from harness.degradations import ROMAN, SHORT_NAMES, TABLE1_ORDER
from harness.records import RECORDS_FILE
from harness.results import AVG, DEMO_MARK, DEMO_NOTE, SIG_MARK, aggregate, method_labels
from harness.texutil import tex_escape


def _rank_marks(values: dict[str, float], digits: int, floor: float | None = None) -> dict[str, str]:
    """'best' / 'second' for the columns whose printed value is the highest / second highest. A column not
    above `floor` (the Input column's value, as printed) is never marked: doing nothing must not be bold."""
    printed = {k: round(v, digits) for k, v in values.items() if not math.isnan(v)}
    if floor is not None and not math.isnan(floor):
        printed = {k: v for k, v in printed.items() if v > round(floor, digits)}
    distinct = sorted(set(printed.values()), reverse=True)
    marks = {}
    for k, v in printed.items():
        if distinct and v == distinct[0]:
            marks[k] = "best"
        elif len(distinct) > 1 and v == distinct[1]:
            marks[k] = "second"
    return marks


def _fmt(v: float, digits: int) -> str:
    return "–" if math.isnan(v) else f"{v:.{digits}f}"


def table1_rows(agg: dict[str, dict], psnr_digits: int = 2, ssim_digits: int = 4):
    """Rows of (row label, {column: (psnr_text, psnr_mark, ssim_text, ssim_mark)}), Table I order + Avg."""
    columns = list(agg)
    types = [t for t in TABLE1_ORDER if any(t in agg[c] for c in columns)]
    rows = []
    for t in [*types, AVG]:
        cells = {c: agg[c].get(t, {"psnr": math.nan, "ssim": math.nan}) for c in columns}
        ranked = [c for c in columns if not c.startswith("Input")]
        inputs = [c for c in columns if c.startswith("Input")]
        pm = _rank_marks({c: cells[c]["psnr"] for c in ranked}, psnr_digits,
                         cells[inputs[0]]["psnr"] if inputs else None)
        sm = _rank_marks({c: cells[c]["ssim"] for c in ranked}, ssim_digits,
                         cells[inputs[0]]["ssim"] if inputs else None)
        label = f"{ROMAN[t]} {SHORT_NAMES[t]}" if t != AVG else "Avg"
        rows.append((label, {c: (_fmt(cells[c]["psnr"], psnr_digits), pm.get(c), _fmt(cells[c]["ssim"], ssim_digits),
                                 sm.get(c)) for c in columns}))
    return columns, rows


def _md_mark(text: str, mark: str | None) -> str:
    return f"**{text}**" if mark == "best" else f"<u>{text}</u>" if mark == "second" else text


def _tex_mark(text: str, mark: str | None) -> str:
    return rf"\textbf{{{text}}}" if mark == "best" else rf"\underline{{{text}}}" if mark == "second" else text


def _sig(text: str, row: str, column: str, significance: dict[str, set[str]] | None) -> str:
    """Append the not-significant mark to a (formatted) PSNR cell when the column is listed for the row."""
    return text + SIG_MARK if significance and column in significance.get(row, ()) else text


def _significance_note(significance: dict[str, set[str]] | None) -> str | None:
    if significance is None:
        return None
    from harness.stats import DEFAULT_RESAMPLES, DEFAULT_SEED

    how = (f"the 95% interval of the paired difference contains 0 (bootstrap over the images scored by both, "
           f"resampled within each type; {DEFAULT_RESAMPLES} resamples, seed {DEFAULT_SEED}; the Avg row on the "
           f"average over types)")
    if not any(significance.values()):
        return (f"No {SIG_MARK} mark: every PSNR that could be tested differs significantly from its row's best "
                f"({SIG_MARK} would mark those for which {how}).")
    return f"{SIG_MARK} PSNR not significantly different from the best in its row: {how}."


def _footnotes(agg: dict[str, dict], significance: dict[str, set[str]] | None = None) -> list[str]:
    notes = []
    sig_note = _significance_note(significance)
    if sig_note:
        notes.append(sig_note)
    if any(DEMO_MARK in c for c in agg):
        notes.append(DEMO_NOTE)
    failed = {c: v[AVG]["failed"] for c, v in agg.items() if v[AVG]["failed"]}
    if failed:
        notes.append("Failed images (excluded from the means): "
                     + ", ".join(f"{c}: {n}" for c, n in failed.items()) + ".")
    return notes


def _row_keys(agg: dict[str, dict]) -> list[str]:
    """Row keys (type names, then 'average') in the order of `table1_rows`."""
    return [*[t for t in TABLE1_ORDER if any(t in agg[c] for c in agg)], AVG]


def render_markdown(agg: dict[str, dict], psnr_digits: int = 2, ssim_digits: int = 4, *,
                    significance: dict[str, set[str]] | None = None) -> str:
    """`significance`: {row key: columns not significantly different from the row's best} (harness.stats)."""
    columns, rows = table1_rows(agg, psnr_digits, ssim_digits)
    body = [[label] + [f"{_sig(_md_mark(p, pm), key, c, significance)} / {_md_mark(s, sm)}"
                       for c, (p, pm, s, sm) in ((c, cells[c]) for c in columns)]
            for key, (label, cells) in zip(_row_keys(agg), rows)]
    text = tabulate(body, headers=["Degradation", *columns], tablefmt="github", disable_numparse=True)
    notes = _footnotes(agg, significance)
    return text + "\n" + ("\n" + "\n".join(notes) + "\n" if notes else "")


def render_latex(agg: dict[str, dict], psnr_digits: int = 2, ssim_digits: int = 4, *,
                 significance: dict[str, set[str]] | None = None) -> str:
    columns, rows = table1_rows(agg, psnr_digits, ssim_digits)
    keys = _row_keys(agg)
    out = io.StringIO()
    out.write("% requires \\usepackage{booktabs}\n")
    out.write("\\begin{tabular}{l" + "c" * len(columns) + "}\n\\toprule\n")
    out.write("Degradation & " + " & ".join(tex_escape(c) for c in columns) + " \\\\\n\\midrule\n")
    for i, (label, cells) in enumerate(rows):
        if i == len(rows) - 1:
            out.write("\\midrule\n")
        vals = [_sig(_tex_mark(p, pm), keys[i], c, significance).replace(SIG_MARK, tex_escape(SIG_MARK))
                + f" / {_tex_mark(s, sm)}" for c, (p, pm, s, sm) in ((c, cells[c]) for c in columns)]
        out.write(tex_escape(label) + " & " + " & ".join(vals) + " \\\\\n")
    out.write("\\bottomrule\n\\end{tabular}\n")
    for n in _footnotes(agg, significance):
        out.write("% " + n + "\n")
    return out.getvalue()


def write_csv(agg: dict[str, dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "type", "row", "n", "failed", "psnr", "ssim"])
        for label, res in agg.items():
            for t in [*[t for t in TABLE1_ORDER if t in res], AVG]:
                v = res[t]
                w.writerow([label, t, ROMAN.get(t, "Avg"), v["n"], v["failed"], f"{v['psnr']:.6f}", f"{v['ssim']:.6f}"])


def load_published() -> dict[tuple[str, str], dict[str, tuple[float, float]]]:
    """Published CDD-11 numbers shipped as package data: {(method, mode): {type: (psnr, ssim)}}.

    Sources: the OneRestore release's table (more digits; Input, OneRestore visual/text, PromptIR, AirNet)
    and VL-UR's Table I (VL-UR). Keys use registry names and modes.
    """
    ref = resources.files("harness") / "reference"
    release: dict[str, dict[str, tuple[float, float]]] = defaultdict(dict)
    with (ref / "onerestore_cdd11_metrics.csv").open() as f:
        for row in csv.DictReader(f):
            release[row["method"]][row["degradation"]] = (float(row["psnr"]), float(row["ssim"]))
    vlur: dict[str, dict[str, tuple[float, float]]] = defaultdict(dict)
    with (ref / "vlur_table1.csv").open() as f:
        for row in csv.DictReader(f):
            if row["degradation"] != AVG:
                vlur[row["method"]][row["degradation"]] = (float(row["psnr"]), float(row["ssim"]))
    table = {
        ("identity", "auto"): release["01_input"], ("identity", "text"): release["01_input"],
        ("onerestore", "auto"): release["16_OneRestore_visual"], ("onerestore", "text"): release["17_OneRestore"],
        ("promptir", "auto"): release["14_PromptIR"], ("promptir", "text"): release["14_PromptIR"],
        ("airnet", "auto"): release["11_AirNet"], ("airnet", "text"): release["11_AirNet"],
        ("vlur", "auto"): vlur["vlur"], ("vlur", "text"): vlur["vlur"],
    }
    return {k: dict(v) for k, v in table.items() if v}


def render_published(records: list[dict], digits: int = 2, synthetic: bool = False) -> str:
    """Measured vs published PSNR/SSIM per type for every method that has published numbers (records as
    `results.select` gives them)."""
    published = load_published()
    labels = method_labels(records)
    agg = aggregate(records)
    body = []
    for (m, mode), label in labels.items():
        pub = published.get((m, mode))
        if not pub:
            continue
        res = agg[label]
        types = [t for t in TABLE1_ORDER if t in res and t in pub]
        for t in [*types, AVG]:
            if t == AVG:
                if not types:
                    continue
                pp = float(np.mean([pub[x][0] for x in types]))
                ps = float(np.mean([pub[x][1] for x in types]))
            else:
                pp, ps = pub[t]
            mp, ms = res[t]["psnr"], res[t]["ssim"]
            body.append([label, ROMAN.get(t, "Avg") + " " + SHORT_NAMES.get(t, ""), f"{mp:.{digits}f}",
                         f"{pp:.{digits}f}", f"{mp - pp:+.{digits}f}", f"{ms:.4f}", f"{ps:.4f}", f"{ms - ps:+.4f}"])
    if not body:
        return "No measured method has published CDD-11 numbers.\n"
    head = "# Measured vs published CDD-11 numbers\n\n"
    demo = sorted({r["method"] for r in records if r.get("weights") in ("demo", "random")})
    if demo:
        head += (f"**Warning:** {', '.join(demo)} ran with demo or random weights (†), not the authors' weights: "
                 "their differences from the published numbers say nothing about the re-implementations.\n\n")
    if synthetic:
        head += ("**Warning:** these numbers were measured on synthetic data (the embedded cdd11-mini), not on "
                 "CDD-11: they are not comparable with the published ones.\n\n")
    return head + tabulate(body, headers=["Method", "Degradation", "PSNR", "PSNR (published)", "Δ", "SSIM",
                                   "SSIM (published)", "Δ"], tablefmt="github", disable_numparse=True) + "\n"


def _synthetic(out_dir: Path) -> bool:
    """True when the run folder's data is the embedded synthetic data set (its root is a cdd11-mini cache)."""
    try:
        root = json.loads((out_dir / results.RUN_FILE).read_text())["data"]["root"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return "cdd11-mini" in str(root)


def write_tables(out_dir: Path, published: bool = False, significance: bool = False,
                 records: list[dict] | None = None) -> dict[str, Path]:
    """Render every table of a run folder from its records; returns the written paths.

    `records`: already selected records (default: those the folder's run.json selects, `results.load`).
    `significance`: mark (‡) the PSNR of methods not significantly different from each row's best.
    """
    out_dir = Path(out_dir)
    if records is None:
        records, _ = results.load(out_dir)
    if not records:
        raise FileNotFoundError(f"no records in {out_dir / RECORDS_FILE}")
    agg = aggregate(records)
    sig = None
    if significance:
        from harness.stats import not_significant_vs_best

        sig = not_significant_vs_best(records)
    paths = {"md": out_dir / "table1.md", "tex": out_dir / "table1.tex", "csv": out_dir / "results.csv"}
    paths["md"].write_text(render_markdown(agg, significance=sig))
    paths["tex"].write_text(render_latex(agg, significance=sig))
    write_csv(agg, paths["csv"])
    if published:
        paths["published"] = out_dir / "published.md"
        paths["published"].write_text(render_published(records, synthetic=_synthetic(out_dir)))
    return paths


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.tables", description=cli.description(__doc__),
                                formatter_class=cli.Formatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--published", action="store_true", help="also write published.md (measured vs published)")
    p.add_argument("--significance", action="store_true",
                   help="mark (‡) PSNRs not significantly different from the row's best (paired bootstrap)")
    args = p.parse_args(argv)
    try:
        paths = write_tables(args.run_dir, published=args.published, significance=args.significance)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(paths["md"].read_text())
    print("wrote " + ", ".join(str(v) for v in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
