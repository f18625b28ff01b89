"""Degradation-classifier evaluation: confusion matrices, accuracies and the cost of misclassification.

Everything is computed from per-image records alone (``type`` = true type, ``predicted`` = the classifier's
type); records without a prediction are ignored. Outputs, written into a run's folder by `write_outputs`:

* ``confusion_<method>.md`` / ``.tex`` / ``.png`` — the confusion matrix (rows: true type, columns: predicted
  type; counts, with recall per row and precision per column; the PNG also shows row-normalised percentages);
* ``classifiers.md`` — every classifier side by side: accuracy, mean-per-class accuracy, recall per type;
* ``confusion.json`` — the same numbers, machine-readable;
* ``misclassification_<method>.md`` — for a classifier-driven restorer run in both modes (auto and text):
  PSNR/SSIM per type with the predicted type next to the true type given, and split over the images the
  classifier got right vs wrong (paired: the text-mode scores of those same images).

Label order: the 11 types in the official order (`harness.degradations.TYPES`) for rows and columns; then "clear"
— a row when clear images were classified (``harness.classify --include-clear``), a column when clear
images were classified or any image was predicted clear (OneRestore's embedder has 12 labels). Clear comes
after the 11 types, not at its official index 0, so the diagonal stays aligned when only the columns have
it. Any other predicted name (a classifier with its own labels) gets a column after those, sorted.

Definitions (n = images with a prediction):

* accuracy = correct / n (image-weighted, so large classes weigh more);
* recall of a type = correct predictions of it / images of it (nan, shown "—", when no image has that type);
* precision of a type = correct predictions of it / images predicted as it (nan, shown "—", when the type was
  never predicted; 0 for a predicted label that no image has, such as "clear" when no clear image was given);
* mean-per-class accuracy = the unweighted mean of the recalls of the types that have images (equals the
  accuracy when every type has the same number of images).

`python -m harness.confusion DIR` re-renders these files from DIR/records.jsonl (or DIR/predictions.jsonl).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tabulate import tabulate

from harness import cli
from harness.degradations import CLEAR, ROMAN, SHORT_NAMES, TABLE1_ORDER, TYPES
from harness.records import RECORDS_FILE, latest, read_records
from harness.results import DEMO_MARK, DEMO_NOTE
from harness.texutil import tex_escape

PREDICTIONS_FILE = "predictions.jsonl"  # written by `python -m harness.classify`
DASH = "—"


# ------------------------------------------------------------------------------------------ computation


def label_order(true: Iterable[str], predicted: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(row labels, column labels) for these true and predicted types, following the module's order rule."""
    true, predicted = set(true), set(predicted)
    known = set(TYPES) | {CLEAR}
    rows = list(TYPES) + ([CLEAR] if CLEAR in true else []) + sorted(true - known)
    cols = list(TYPES) + ([CLEAR] if CLEAR in true | predicted else []) + sorted((predicted | true) - known)
    return tuple(rows), tuple(cols)


@dataclass
class Confusion:
    """Counts of (true type, predicted type); rows = true, columns = predicted."""

    rows: tuple[str, ...]
    cols: tuple[str, ...]
    counts: np.ndarray  # int64, len(rows) × len(cols)
    method: str = ""
    mode: str = ""
    weights: str = ""
    failed: int = 0  # records without a prediction (not counted)
    classifier: str = ""  # the classifier's name, when the records carry it (harness.classify writes it)

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[str, str]], **meta) -> Confusion:
        """From (true, predicted) pairs."""
        rows, cols = label_order((t for t, _ in pairs), (p for _, p in pairs))
        ri, ci = {r: i for i, r in enumerate(rows)}, {c: j for j, c in enumerate(cols)}
        counts = np.zeros((len(rows), len(cols)), dtype=np.int64)
        for t, p in pairs:
            counts[ri[t], ci[p]] += 1
        return cls(rows, cols, counts, **meta)

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    @property
    def support(self) -> dict[str, int]:
        """Images per true type."""
        return {r: int(v) for r, v in zip(self.rows, self.counts.sum(axis=1))}

    @property
    def predicted_totals(self) -> dict[str, int]:
        """Images per predicted type."""
        return {c: int(v) for c, v in zip(self.cols, self.counts.sum(axis=0))}

    def count(self, true: str, predicted: str) -> int:
        if true not in self.rows or predicted not in self.cols:
            return 0
        return int(self.counts[self.rows.index(true), self.cols.index(predicted)])

    @property
    def correct(self) -> int:
        return sum(self.count(r, r) for r in self.rows)

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else math.nan

    @property
    def recall(self) -> dict[str, float]:
        return {r: (self.count(r, r) / s if s else math.nan) for r, s in self.support.items()}

    @property
    def precision(self) -> dict[str, float]:
        return {c: (self.count(c, c) / s if s else math.nan) for c, s in self.predicted_totals.items()}

    @property
    def mean_class_accuracy(self) -> float:
        vals = [v for r, v in self.recall.items() if self.support[r]]
        return float(np.mean(vals)) if vals else math.nan

    def accuracy_over(self, labels: Iterable[str]) -> float:
        """Accuracy over the images whose true type is in `labels` (e.g. the 11 types without clear)."""
        labels = [r for r in labels if r in self.rows]
        n = sum(self.support[r] for r in labels)
        return sum(self.count(r, r) for r in labels) / n if n else math.nan

    def row_normalised(self) -> np.ndarray:
        """Fractions of each true type's images (rows summing to 1; nan rows where a type has no image)."""
        s = self.counts.sum(axis=1, keepdims=True).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(s > 0, self.counts / np.where(s > 0, s, 1), np.nan)

    @property
    def title(self) -> str:
        name = self.method + (DEMO_MARK if self.weights == "demo" else "")
        return f"{name} ({self.mode})" if self.mode else name

    def to_json(self) -> dict:
        return {"method": self.method, "mode": self.mode, "weights": self.weights, "classifier": self.classifier,
                "rows": list(self.rows), "cols": list(self.cols), "counts": self.counts.tolist(), "n": self.n,
                "failed": self.failed,
                "accuracy": _nan_none(self.accuracy), "mean_class_accuracy": _nan_none(self.mean_class_accuracy),
                "recall": {k: _nan_none(v) for k, v in self.recall.items()},
                "precision": {k: _nan_none(v) for k, v in self.precision.items()}}


def _nan_none(v: float) -> float | None:
    return None if math.isnan(v) else v


def confusions(records: Iterable[dict]) -> list[Confusion]:
    """One `Confusion` per (method, mode) that has at least one prediction, in first-seen order."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in latest(records):
        groups[(r["method"], r["mode"])].append(r)
    out = []
    for (method, mode), recs in groups.items():
        pairs = [(r["type"], r["predicted"]) for r in recs if r.get("predicted") is not None]
        if not pairs:
            continue
        weights = "demo" if any(r.get("weights") == "demo" for r in recs) else (recs[0].get("weights") or "")
        classifier = ", ".join(dict.fromkeys(str(r["classifier"]) for r in recs if r.get("classifier")))
        out.append(Confusion.from_pairs(pairs, method=method, mode=mode, weights=weights,
                                        failed=len(recs) - len(pairs), classifier=classifier))
    return out


# ------------------------------------------------------------------------------------------ rendering


def short(label: str) -> str:
    return SHORT_NAMES.get(label, label)


def pct(v: float, digits: int = 2) -> str:
    return DASH if math.isnan(v) else f"{100 * v:.{digits}f}"


def _headline(c: Confusion) -> str:
    text = (f"{c.n} images, accuracy {pct(c.accuracy)} %, mean-per-class accuracy {pct(c.mean_class_accuracy)} %")
    if CLEAR in c.rows:
        text += f", accuracy on the 11 degraded types {pct(c.accuracy_over(TYPES))} %"
    if c.failed:
        text += f"; {c.failed} image(s) without a prediction (failed) not counted"
    return text


def _matrix_body(c: Confusion) -> list[list[str]]:
    body = []
    for r in c.rows:
        body.append([short(r), *[str(c.count(r, col)) for col in c.cols], str(c.support[r]), pct(c.recall[r])])
    body.append(["Predicted", *[str(c.predicted_totals[col]) for col in c.cols], str(c.n), ""])
    body.append(["Precision (%)", *[pct(c.precision[col]) for col in c.cols], "", ""])
    return body


def render_markdown(c: Confusion) -> str:
    head = ["True \\ Predicted", *[short(col) for col in c.cols], "Images", "Recall (%)"]
    lines = [f"# Confusion matrix: {c.title}", "", *([f"Classifier: {c.classifier}.", ""] if c.classifier else []),
             _headline(c) + ".", "",
             "Rows: true type; columns: predicted type (image counts). Recall and precision in %; "
             f"{DASH} = undefined (no image of that type / never predicted).", "",
             tabulate(_matrix_body(c), headers=head, tablefmt="github", disable_numparse=True), ""]
    if c.weights == "demo":
        lines += [DEMO_NOTE, ""]
    return "\n".join(lines)


def render_latex(c: Confusion) -> str:
    out = io.StringIO()
    out.write("% requires \\usepackage{booktabs,graphicx}\n")
    out.write(f"% Confusion matrix: {tex_escape(c.title)}. {tex_escape(_headline(c))}.\n")
    out.write("% Rows: true type; columns: predicted type (image counts); recall and precision in percent.\n")
    out.write("\\begin{tabular}{l" + "c" * len(c.cols) + "|cc}\n\\toprule\n")
    heads = [rf"\rotatebox{{90}}{{{tex_escape(short(col))}}}" for col in c.cols]
    out.write("True $\\backslash$ Pred. & " + " & ".join([*heads, r"\rotatebox{90}{Images}",
                                                         r"\rotatebox{90}{Recall (\%)}"]) + " \\\\\n\\midrule\n")
    body = _matrix_body(c)
    for i, row in enumerate(body):
        if i == len(c.rows):
            out.write("\\midrule\n")
        cells = [tex_escape(row[0])]
        for j, v in enumerate(row[1:]):
            col = c.cols[j] if j < len(c.cols) else None
            diag = i < len(c.rows) and col == c.rows[i]
            cells.append(rf"\textbf{{{tex_escape(v)}}}" if diag and v != "0" else tex_escape(v))
        out.write(" & ".join(cells) + " \\\\\n")
    out.write("\\bottomrule\n\\end{tabular}\n")
    return out.getvalue()


def heatmap_size(c: Confusion) -> tuple[float, float]:
    """Figure size in inches (width, height) of `render_png`; the PNG is this × `PNG_DPI` pixels."""
    return 3.2 + 0.82 * len(c.cols), 2.6 + 0.62 * len(c.rows)


PNG_DPI = 100


def render_png(c: Confusion, path: Path) -> Path:
    """Heatmap of the row-normalised matrix; each cell shows the count and the % of its true type."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    frac = c.row_normalised()
    fig = Figure(figsize=heatmap_size(c), dpi=PNG_DPI, layout="constrained")
    FigureCanvasAgg(fig)  # the Agg renderer, without touching pyplot's global backend
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["Blues"].with_extremes(bad="#eeeeee")  # grey: a type without images
    im = ax.imshow(np.ma.masked_invalid(frac), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    for i, r in enumerate(c.rows):
        for j, col in enumerate(c.cols):
            n = int(c.counts[i, j])
            f = frac[i, j]
            if math.isnan(f):
                continue
            text = f"{n}\n{100 * f:.1f}%" if n else "0"
            colour = "white" if f > 0.55 else ("#888888" if n == 0 else "black")
            weight = "bold" if r == col else "normal"
            ax.text(j, i, text, ha="center", va="center", fontsize=7.5, color=colour, fontweight=weight)
    ax.set_xticks(range(len(c.cols)), [short(x) for x in c.cols], rotation=40, ha="right", rotation_mode="anchor",
                  fontsize=8.5)
    ax.set_yticks(range(len(c.rows)), [f"{short(x)} ({c.support[x]})" for x in c.rows], fontsize=8.5)
    ax.set_xlabel("Predicted type")
    ax.set_ylabel("True type (images)")
    ax.set_title(f"{c.title}: accuracy {pct(c.accuracy, 1)} %, mean-per-class {pct(c.mean_class_accuracy, 1)} %"
                 f" (n = {c.n})", fontsize=10)
    cb = fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    cb.set_label("share of the true type's images")
    cb.ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    fig.savefig(path, dpi=PNG_DPI)
    return path


def render_summary(cs: Sequence[Confusion]) -> str:
    """classifiers.md: the classifiers side by side (accuracies, then recall per type)."""
    has_clear = any(CLEAR in c.rows for c in cs)
    head = ["Classifier", "Images", "Accuracy (%)", "Mean-per-class acc. (%)"]
    if has_clear:
        head.append("Acc. 11 types (%)")
    rows = []
    for c in cs:
        row = [c.title, str(c.n), pct(c.accuracy), pct(c.mean_class_accuracy)]
        if has_clear:
            row.append(pct(c.accuracy_over(TYPES)))
        rows.append(row)
    labels = [r for r in (*TYPES, CLEAR) if any(r in c.rows and c.support[r] for c in cs)]
    per_type = [[short(r), *[f"{pct(c.recall[r])} ({c.support[r]})" if r in c.rows and c.support[r] else DASH
                             for c in cs]] for r in labels]
    lines = ["# Degradation classifiers", "",
             tabulate(rows, headers=head, tablefmt="github", disable_numparse=True), "",
             "Accuracy: correct / images. Mean-per-class accuracy: unweighted mean of the per-type recalls "
             "(types with images only).", "", "## Recall per type (%, images in parentheses)", "",
             tabulate(per_type, headers=["Type", *[c.title for c in cs]], tablefmt="github", disable_numparse=True),
             ""]
    if any(c.weights == "demo" for c in cs):
        lines += [DEMO_NOTE, ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ cost of misclassification


@dataclass
class Split:
    """PSNR/SSIM means of one group of paired images in auto and text mode."""

    n: int = 0
    auto_psnr: float = math.nan
    auto_ssim: float = math.nan
    text_psnr: float = math.nan
    text_ssim: float = math.nan

    @classmethod
    def of(cls, pairs: Sequence[tuple[dict, dict]]) -> Split:
        if not pairs:
            return cls()
        return cls(len(pairs), *(float(np.mean([p[k][m] for p in pairs])) for k, m in
                                 ((0, "psnr"), (0, "ssim"), (1, "psnr"), (1, "ssim"))))

    @property
    def d_psnr(self) -> float:
        return self.auto_psnr - self.text_psnr

    @property
    def d_ssim(self) -> float:
        return self.auto_ssim - self.text_ssim


@dataclass
class MisclassRow:
    type: str  # a CDD-11 type, or "all"
    all: Split
    correct: Split
    wrong: Split
    mistaken_for: Counter = field(default_factory=Counter)

    @property
    def accuracy(self) -> float:
        return self.correct.n / self.all.n if self.all.n else math.nan


def misclassification(records: Iterable[dict], method: str) -> list[MisclassRow]:
    """Per type (Table I order) and over all images ("all", image-weighted): auto vs text mode on the images
    scored in both modes, split by whether the auto-mode prediction was the true type. Empty when the
    method lacks successful records with a prediction in auto mode or lacks text-mode records."""
    auto: dict[tuple[str, str], dict] = {}
    text: dict[tuple[str, str], dict] = {}
    for r in latest(records):
        if r["method"] != method or r["status"] != "ok":
            continue
        if r["mode"] == "auto" and r.get("predicted") is not None:
            auto[(r["type"], r["file"])] = r
        elif r["mode"] == "text":
            text[(r["type"], r["file"])] = r
    keys = [k for k in auto if k in text]
    by_type: dict[str, list[tuple[dict, dict]]] = defaultdict(list)
    for k in keys:
        by_type[k[0]].append((auto[k], text[k]))
    types = [t for t in TABLE1_ORDER if t in by_type] + sorted(t for t in by_type if t not in TABLE1_ORDER)
    rows = []
    for t in [*types, "all"] if types else []:
        pairs = [p for tt in types for p in by_type[tt]] if t == "all" else by_type[t]
        right = [p for p in pairs if p[0]["predicted"] == p[0]["type"]]
        wrong = [p for p in pairs if p[0]["predicted"] != p[0]["type"]]
        rows.append(MisclassRow(t, Split.of(pairs), Split.of(right), Split.of(wrong),
                                Counter(p[0]["predicted"] for p in wrong)))
    return rows


def _ps(psnr: float, ssim: float) -> str:
    return DASH if math.isnan(psnr) else f"{psnr:.2f} / {ssim:.4f}"


def _delta(psnr: float, ssim: float) -> str:
    return DASH if math.isnan(psnr) else f"{psnr:+.2f} / {ssim:+.4f}"


def _type_label(t: str) -> str:
    return "All images" if t == "all" else f"{ROMAN.get(t, '')} {short(t)}".strip()


def render_misclassification(rows: Sequence[MisclassRow], method: str) -> str:
    a_head = ["Degradation", "Images", "Accuracy (%)", "Auto PSNR / SSIM", "Text PSNR / SSIM", "Δ (auto − text)"]
    a_body = [[_type_label(r.type), str(r.all.n), pct(r.accuracy), _ps(r.all.auto_psnr, r.all.auto_ssim),
               _ps(r.all.text_psnr, r.all.text_ssim), _delta(r.all.d_psnr, r.all.d_ssim)] for r in rows]
    b_head = ["Degradation", "Correct", "Auto", "Text", "Δ", "Wrong", "Auto", "Text", "Δ", "Mistaken for"]
    b_body = []
    for r in rows:
        c, w = r.correct, r.wrong
        mistaken = ", ".join(f"{short(k)} ({v})" for k, v in sorted(r.mistaken_for.items(),
                                                                     key=lambda kv: (-kv[1], kv[0])))
        b_body.append([_type_label(r.type), str(c.n), _ps(c.auto_psnr, c.auto_ssim), _ps(c.text_psnr, c.text_ssim),
                       _delta(c.d_psnr, c.d_ssim), str(w.n), _ps(w.auto_psnr, w.auto_ssim),
                       _ps(w.text_psnr, w.text_ssim), _delta(w.d_psnr, w.d_ssim), mistaken or DASH])
    return "\n".join([
        f"# Cost of misclassification: {method}", "",
        "Images scored in both modes: auto (the method's classifier picks the type) and text (the true type is "
        "given). PSNR (dB) / SSIM; Δ = auto − text on the same images. Type rows are means over that type's "
        "images; 'All images' is the mean over all images (image-weighted, unlike Table I's mean of type means).",
        "", "## Auto vs text mode", "",
        tabulate(a_body, headers=a_head, tablefmt="github", disable_numparse=True), "",
        "## Correctly vs wrongly classified images (auto-mode prediction = / ≠ true type)", "",
        "The text-mode columns score the same images with the true type given (paired comparison).", "",
        tabulate(b_body, headers=b_head, tablefmt="github", disable_numparse=True), ""])


# ------------------------------------------------------------------------------------------ output files


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", s) or "method"


def write_outputs(out_dir: Path, records: Sequence[dict], log=print) -> dict[str, Path]:
    """Write every classifier output for `records` into `out_dir`; returns {name: path} (empty: nothing to do)."""
    out_dir = Path(out_dir)
    records = latest(records)
    cs = confusions(records)
    paths: dict[str, Path] = {}
    if not cs:
        return paths
    methods = Counter(c.method for c in cs)
    for c in cs:
        stem = "confusion_" + _slug(c.method if methods[c.method] == 1 else f"{c.method}-{c.mode}")
        for ext, text in (("md", render_markdown(c)), ("tex", render_latex(c))):
            paths[f"{stem}.{ext}"] = out_dir / f"{stem}.{ext}"
            paths[f"{stem}.{ext}"].write_text(text, encoding="utf-8")
        try:
            paths[f"{stem}.png"] = render_png(c, out_dir / f"{stem}.png")
        except Exception as e:  # noqa: BLE001 - a plotting problem must not cost the run its other outputs
            log(f"warning: could not draw {out_dir / (stem + '.png')}: {type(e).__name__}: {e}")
    paths["classifiers.md"] = out_dir / "classifiers.md"
    paths["classifiers.md"].write_text(render_summary(cs), encoding="utf-8")
    paths["confusion.json"] = out_dir / "confusion.json"
    paths["confusion.json"].write_text(json.dumps([c.to_json() for c in cs], indent=1))
    for method in methods:
        rows = misclassification(records, method)
        if rows:
            name = f"misclassification_{_slug(method)}.md"
            paths[name] = out_dir / name
            paths[name].write_text(render_misclassification(rows, method), encoding="utf-8")
    return paths


def write_run_outputs(out_dir: Path, log=print) -> dict[str, Path]:
    """The classifier outputs of a `harness.run` folder, from the records its run.json selects (as the tables)."""
    from harness import results

    records, _ = results.load(Path(out_dir))
    return write_outputs(out_dir, records, log)


def summary_lines(cs: Sequence[Confusion]) -> list[str]:
    return [f"{c.title}: {_headline(c)}" for c in cs]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.confusion", description=cli.description(__doc__),
                                formatter_class=cli.Formatter)
    p.add_argument("run_dir", type=Path, help=f"folder holding {RECORDS_FILE} (harness.run) or {PREDICTIONS_FILE}"
                                              " (harness.classify)")
    args = p.parse_args(argv)
    records: list[dict] = []
    for name in (RECORDS_FILE, PREDICTIONS_FILE):
        records += read_records(args.run_dir / name)[0]
    if not records:
        print(f"error: no records in {args.run_dir}", file=sys.stderr)
        return 2
    paths = write_outputs(args.run_dir, records)
    if not paths:
        print(f"no record in {args.run_dir} has a predicted type (run a classifier-driven method in auto mode)")
        return 0
    print("\n".join(summary_lines(confusions(records))))
    print("wrote " + ", ".join(str(v) for v in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
