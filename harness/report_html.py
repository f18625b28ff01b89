"""Static results page of a run folder: RUN/report.html, one page that opens from disk, offline.

    python -m harness.report_html RUN_DIR [--no-thumbs]

Sections, each only when the run has its data: Table I (best bold, second underlined, ‡ PSNR not
significantly different from the row's best, as `harness.tables --significance`); the PSNR and SSIM gains
over Input per type and method (bar charts); a per-image browser (degraded / every method / ground truth side
by side, sortable by each method's PSNR gain over Input so the worst failures come first, with a before-after
slider and a synchronised zoom); the classifiers' confusion matrices and the cost of misclassification (auto
vs text mode); the timing (measured ms against the FLOP floor per method and size, from timing.json or
summary.json's "timing"); provenance (commit, versions, data fingerprint, weights hashes, demo marks).

Everything comes from the run folder: the records `harness.results.load` selects, run.json, summary.json,
timing.json, plus the data root named in run.json for the Input and GT thumbnails. The page loads nothing
from the network (no CDN, no web fonts): charts are inline SVG written here and the interaction is a few
lines of vanilla JavaScript inlined in the page (`harness.report_assets`).

Images (all under RUN/report/, paths relative to RUN so the folder can be moved or published as is):

* thumbnails, JPEG, long side `THUMB_SIZE`: ``thumbs/<method>-<mode>/<type>/<file>.jpg`` for the restored
  images — written by the run as it scores each image (`save_thumbnail`), or made here from RUN/images when
  the run saved them — ``thumbs/_input/<type>/<file>.jpg`` and ``thumbs/_gt/<file>.jpg``;
* full-size images only when the run saved its restored images (``--save-images``: RUN/images): the slider
  and the zoom then use RUN/images/<method>-<mode>/<type>/<stem>.png and ``full/_input/<type>/<file>``,
  ``full/_gt/<file>`` (hard links to, or copies of, the data's files); otherwise they use the thumbnails.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
import re
import shlex
import shutil
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from harness import cli, report_assets, results
from harness.degradations import CLEAR, ROMAN, SHORT_NAMES, TABLE1_ORDER
from harness.fileio import replace_atomic, write_text_atomic
from harness.results import AVG, DEMO_MARK, DEMO_NOTE, INPUT_METHOD, SIG_MARK

REPORT_FILE = "report.html"
REPORT_DIR = "report"
THUMBS = "thumbs"
FULL = "full"
INPUT_KEY = "_input"
GT_KEY = "_gt"
THUMB_SIZE = 320
THUMB_QUALITY = 85
PER_PAGE = 25
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
FLOOR_COLOUR = "#9aa5ad"

Log = Callable[[str], None] | None


# ------------------------------------------------------------------------------------------ thumbnails


def thumb_relpath(key: str, type_: str, file: str) -> str:
    """Thumbnail path relative to the run folder; `key` is <method>-<mode>, INPUT_KEY or GT_KEY."""
    if key == GT_KEY:
        return f"{REPORT_DIR}/{THUMBS}/{GT_KEY}/{file}.jpg"
    return f"{REPORT_DIR}/{THUMBS}/{key}/{type_}/{file}.jpg"


def _full_relpath(key: str, type_: str, file: str) -> str:
    """Path (relative to the run folder) of a full-size Input or GT image linked into the report folder."""
    if key == GT_KEY:
        return f"{REPORT_DIR}/{FULL}/{GT_KEY}/{file}"
    return f"{REPORT_DIR}/{FULL}/{INPUT_KEY}/{type_}/{file}"


def _as_uint8_hwc(image) -> np.ndarray:
    """H×W×3 uint8 from an H×W×3 uint8/float array, or a (1×)3×H×W tensor in [0, 1] (as `harness.metrics`)."""
    if hasattr(image, "detach"):  # a torch tensor: float in [0, 1] (round half up, as harness.metrics) or uint8
        t = image.detach().cpu()
        t = t[0] if t.ndim == 4 else t
        image = t.permute(1, 2, 0).numpy() if t.ndim == 3 and t.shape[0] in (1, 3) else t.numpy()
    a = np.asarray(image)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.dtype != np.uint8:
        a = np.floor(np.clip(a.astype(np.float64), 0, 1) * 255 + 0.5).astype(np.uint8)
    if a.ndim != 3 or a.shape[-1] not in (1, 3):
        raise ValueError(f"expected an H×W×3 image, got shape {np.shape(image)}")
    return np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a


def _write_thumb(im: Image.Image, path: Path) -> Path:
    im = im.convert("RGB")
    im.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomic(path, lambda tmp: im.save(tmp, format="JPEG", quality=THUMB_QUALITY))
    return path


def save_thumbnail(run_dir: Path, method: str, mode: str, type_: str, file: str, image) -> Path:
    """Write the report thumbnail of one scored image (the run calls this for every image it scores).

    `image`: the restored image, H×W×3 uint8 (or a (1×)3×H×W tensor in [0, 1]). The identity method's output
    is the degraded input: it becomes the Input thumbnail (once, whatever the mode). Raises OSError when the
    file cannot be written (the caller keeps the score)."""
    if method == INPUT_METHOD:
        path = Path(run_dir) / thumb_relpath(INPUT_KEY, type_, file)
        if path.exists():
            return path
    else:
        path = Path(run_dir) / thumb_relpath(f"{method}-{mode}", type_, file)
    return _write_thumb(Image.fromarray(_as_uint8_hwc(image)), path)


def _fresh(target: Path, source: Path) -> bool:
    try:
        return target.stat().st_mtime >= source.stat().st_mtime
    except OSError:
        return False


def _thumb_from(source: Path, target: Path, notes: list[str]) -> bool:
    if _fresh(target, source):
        return True
    try:
        with Image.open(source) as im:
            _write_thumb(im, target)
        return True
    except (OSError, ValueError) as e:
        notes.append(f"cannot make a thumbnail of {source}: {type(e).__name__}: {e}")
        return False


def _link(source: Path, target: Path, notes: list[str]) -> bool:
    """Hard-link (or copy) a full-size image into the report folder."""
    if _fresh(target, source):
        return True
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        if target.exists():
            target.unlink()
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
        return True
    except OSError as e:
        notes.append(f"cannot copy {source} into the report: {e}")
        return False


# ------------------------------------------------------------------------------------------ reading


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


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _jnum(v: float, digits: int = 4):
    """A JSON-safe number: rounded, or "inf" / "-inf" / None (JSON has no infinities or NaN)."""
    v = _num(v)
    if math.isnan(v):
        return None
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return round(v, digits)


def _esc(s) -> str:
    return html.escape(str(s), quote=True)


def _type_label(t: str) -> str:
    return f"{ROMAN[t]} {SHORT_NAMES[t]}" if t in ROMAN else ("Avg" if t == AVG else SHORT_NAMES.get(t, t))


def _fmt(v: float, digits: int, sign: bool = False) -> str:
    v = _num(v)
    if math.isnan(v):
        return "–"
    if math.isinf(v):
        return ("+" if sign and v > 0 else "") + ("inf" if v > 0 else "-inf")
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


# ------------------------------------------------------------------------------------------ Table I


def _significance(records: list[dict], notes: list[str]) -> dict[str, set[str]] | None:
    try:
        from harness.stats import not_significant_vs_best

        with np.errstate(invalid="ignore"):  # an exact restoration (PSNR inf) makes inf - inf differences
            return not_significant_vs_best(records)
    except Exception as e:  # noqa: BLE001 - the page without ‡ marks rather than no page
        notes.append(f"significance not computed: {type(e).__name__}: {e}")
        return None


def table1_html(agg: dict[str, dict], significance: dict[str, set[str]] | None) -> str:
    from harness.tables import table1_rows

    columns, rows = table1_rows(agg)
    keys = [*[t for t in TABLE1_ORDER if any(t in agg[c] for c in columns)], AVG]
    head1 = "".join(f'<th colspan="2">{_esc(c)}</th>' for c in columns)
    head2 = "".join("<th>PSNR</th><th>SSIM</th>" for _ in columns)
    body = []
    for key, (label, cells) in zip(keys, rows):
        tds = []
        for c in columns:
            p, pm, s, sm = cells[c]
            sig = SIG_MARK if significance and c in significance.get(key, ()) else ""
            cls = ' class="in"' if c.startswith("Input") else ""
            tds.append(f'<td{cls}><span class="{pm or ""}">{_esc(p)}</span>{sig}</td>'
                       f'<td{cls}><span class="{sm or ""}">{_esc(s)}</span></td>')
        row_cls = ' class="avg"' if key == AVG else ""
        body.append(f"<tr{row_cls}><th>{_esc(label)}</th>{''.join(tds)}</tr>")
    n_avg = {c: agg[c][AVG].get("types", 0) for c in columns}
    notes = ["Mean over the successfully scored images of each type; Avg = unweighted mean of the type means "
             f"over the types every column has ({max(n_avg.values(), default=0)}). Best per row (Input excluded) "
             "<b>bold</b>, second <u>underlined</u>, as printed."]
    if significance is not None:
        notes.append(f"{SIG_MARK} PSNR not significantly different from the row's best (paired bootstrap over "
                     "images, 95% interval of the difference contains 0; <code>harness.stats</code>)."
                     + ("" if any(significance.values()) else f" No {SIG_MARK}: every testable PSNR differs."))
    if any(DEMO_MARK in c for c in columns):
        notes.append(DEMO_NOTE)
    failed = {c: agg[c][AVG]["failed"] for c in columns if agg[c][AVG].get("failed")}
    if failed:
        notes.append("Failed images (excluded from the means): "
                     + ", ".join(f"{_esc(c)}: {n}" for c, n in failed.items()) + ".")
    return (f'<div class="scroll"><table class="data" id="table1"><thead><tr><th rowspan="2">Degradation</th>'
            f"{head1}</tr><tr>{head2}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
            + "".join(f'<p class="note">{n}</p>' for n in notes))


# ------------------------------------------------------------------------------------------ SVG charts


def _nice_step(span: float, n: int = 5) -> float:
    raw = span / max(n, 1)
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def _tick_text(v: float, step: float) -> str:
    digits = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    if step * 10 ** digits % 1:
        digits += 1
    return f"{v:.{digits}f}"


def bar_chart(element_id: str, title: str, groups: Sequence[str], series: Sequence[str],
              values: dict[str, Sequence[float]], unit: str, digits: int) -> str:
    """Grouped vertical bars (one group per type, one bar per series) as inline SVG, zero line included."""
    width, left, right, top, bottom = 1150, 64, 12, 52, 56
    height = 330
    pw, ph = width - left - right, height - top - bottom
    finite = [v for s in series for v in values[s] if math.isfinite(_num(v))]
    lo, hi = min([0.0, *finite]), max([0.0, *finite])
    if hi - lo < 1e-12:
        hi = lo + 1.0
    step = _nice_step(hi - lo)
    lo, hi = math.floor(lo / step) * step, math.ceil(hi / step) * step

    def y(v: float) -> float:
        return top + ph * (hi - v) / (hi - lo)

    out = [f'<svg class="chart" id="{_esc(element_id)}" viewBox="0 0 {width} {height}" role="img" '
           f'xmlns="http://www.w3.org/2000/svg"><title>{_esc(title)}</title>',
           f'<text x="{left}" y="16" font-size="14" font-weight="600">{_esc(title)}</text>']
    x = left
    for i, s in enumerate(series):  # legend
        colour = PALETTE[i % len(PALETTE)]
        out.append(f'<rect x="{x}" y="26" width="11" height="11" fill="{colour}"/>'
                   f'<text x="{x + 15}" y="36" font-size="12">{_esc(s)}</text>')
        x += 26 + 7 * len(s)
    n_ticks = int(round((hi - lo) / step))
    for k in range(n_ticks + 1):
        v = lo + k * step
        yy = y(v)
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#e3e7ea"/>'
                   f'<text x="{left - 6}" y="{yy + 4:.1f}" font-size="11" text-anchor="end">'
                   f"{_tick_text(v, step)}</text>")
    out.append(f'<text transform="translate(14 {top + ph / 2:.0f}) rotate(-90)" font-size="12" '
               f'text-anchor="middle">{_esc(unit)}</text>')
    gw = pw / max(len(groups), 1)
    bw = gw * 0.8 / max(len(series), 1)
    for g, name in enumerate(groups):
        gx = left + g * gw
        for i, s in enumerate(series):
            v = _num(values[s][g])
            if not math.isfinite(v):
                continue
            y0, y1 = sorted((y(0.0), y(v)))
            out.append(f'<rect class="bar" x="{gx + gw * 0.1 + i * bw:.1f}" y="{y0:.1f}" width="{max(bw - 1, 1):.1f}" '
                       f'height="{max(y1 - y0, 0.5):.1f}" fill="{PALETTE[i % len(PALETTE)]}">'
                       f"<title>{_esc(s)}, {_esc(name)}: {_fmt(v, digits, sign=True)} {_esc(unit)}</title></rect>")
        roman, _, short = name.partition(" ")
        lines = [short]
        if len(short) * 6.5 > gw * 0.9 and "+" in short:  # too wide for its group: break after a "+"
            cut = short.rfind("+", 0, len(short) // 2 + 2) + 1 or short.find("+") + 1
            lines = [short[:cut], short[cut:]]
        out.append(f'<text x="{gx + gw / 2:.1f}" y="{top + ph + 16}" font-size="11.5" text-anchor="middle" '
                   f'font-weight="600">{_esc(roman)}</text>')
        for k, line in enumerate(lines):
            out.append(f'<text x="{gx + gw / 2:.1f}" y="{top + ph + 30 + 12 * k}" font-size="10.5" '
                       f'text-anchor="middle" fill="#5f6b73">{_esc(line)}</text>')
    out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(0.0):.1f}" y2="{y(0.0):.1f}" stroke="#333"/>')
    out.append("</svg>")
    return "".join(out)


def gains_html(agg: dict[str, dict]) -> str:
    """PSNR and SSIM gain over Input per type (and Avg) and method; absolute values when there is no Input."""
    inp = next((c for c in agg if c.startswith("Input")), None)
    methods = [c for c in agg if c != inp]
    if not methods:
        return ""
    types = [t for t in TABLE1_ORDER if any(t in agg[c] for c in agg)]
    rows = [*types, AVG]
    groups = [_type_label(t) if t != AVG else "Avg mean of types" for t in rows]
    charts = []
    for metric, unit, digits in (("psnr", "dB", 2), ("ssim", "SSIM", 4)):
        values = {}
        for m in methods:
            vals = []
            for t in rows:
                v = _num(agg[m].get(t, {}).get(metric))
                if inp is not None:
                    v -= _num(agg[inp].get(t, {}).get(metric))
                vals.append(v)
            values[m] = vals
        what = f"{metric.upper()} gain over Input" if inp else f"{metric.upper()} (no Input column in this run)"
        charts.append(bar_chart(f"gains-{metric}", what, groups, methods, values,
                                f"Δ {unit}" if inp else unit, digits))
    note = ("Gain = the method's mean minus Input's mean on the same type (Table I's numbers); bars below zero: "
            "the method makes that type worse than doing nothing. Hover a bar for its value."
            if inp else "Add <code>identity</code> to <code>--methods</code> for gains over Input.")
    return f'<div class="charts">{"".join(charts)}</div><p class="note">{note}</p>'


# ------------------------------------------------------------------------------------------ timing


def _fmt_ms(ms: float) -> str:
    if not math.isfinite(ms):
        return "–"
    if ms >= 1000:
        return f"{ms / 1000:.3g} s" if ms < 1e6 else f"{ms / 1000:.0f} s"
    return f"{ms:.3g} ms"


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


def timing_chart(rows: Sequence[dict]) -> str:
    """Horizontal bars on a log axis: measured ms (per method colour) and the FLOP floor (grey) per size."""
    vals = [v for r in rows for v in (r["ms"], r["floor"]) if math.isfinite(v) and v > 0]
    if not vals:
        return ""
    lo = 10 ** math.floor(math.log10(min(vals)))
    hi = 10 ** math.ceil(math.log10(max(vals)))
    if hi <= lo:
        hi = lo * 10
    left, right, top, row_h = 230, 170, 46, 34
    width = 1150
    pw = width - left - right
    height = top + row_h * len(rows) + 30

    def x(v: float) -> float:
        return left + pw * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))

    colours = {}
    for r in rows:
        colours.setdefault(r["method"], PALETTE[len(colours) % len(PALETTE)])
    out = [f'<svg class="chart" id="timing-chart" viewBox="0 0 {width} {height}" role="img" '
           f'xmlns="http://www.w3.org/2000/svg"><title>Time per image against the FLOP floor</title>',
           '<text x="10" y="16" font-size="14" font-weight="600">Time per image (median, log scale) against the '
           'FLOP floor (counted FLOPs / peak FLOP/s)</text>',
           f'<rect x="{left}" y="24" width="11" height="11" fill="#555"/><text x="{left + 15}" y="34" '
           f'font-size="12">measured</text><rect x="{left + 95}" y="27" width="11" height="6" '
           f'fill="{FLOOR_COLOUR}"/><text x="{left + 110}" y="34" font-size="12">floor (100 % of peak)</text>']
    d = lo
    while d <= hi * 1.0001:
        xx = x(d)
        out.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{top - 4}" y2="{height - 24}" stroke="#e3e7ea"/>'
                   f'<text x="{xx:.1f}" y="{height - 8}" font-size="11" text-anchor="middle">{_fmt_ms(d)}</text>')
        d *= 10
    for i, r in enumerate(rows):
        y0 = top + i * row_h
        out.append(f'<text x="{left - 8}" y="{y0 + 15}" font-size="12" text-anchor="end">'
                   f'{_esc(r["label"])} · {_esc(r["size"])}</text>')
        if math.isfinite(r["ms"]) and r["ms"] > 0:
            out.append(f'<rect class="bar" x="{left}" y="{y0 + 4}" width="{max(x(r["ms"]) - left, 1):.1f}" '
                       f'height="13" fill="{colours[r["method"]]}"><title>{_esc(r["label"])} {_esc(r["size"])}: '
                       f'{r["ms"]:.2f} ms</title></rect>')
        if math.isfinite(r["floor"]) and r["floor"] > 0:
            out.append(f'<rect class="floor" x="{left}" y="{y0 + 19}" width="{max(x(r["floor"]) - left, 1):.1f}" '
                       f'height="7" fill="{FLOOR_COLOUR}"><title>floor: {r["floor"]:.2f} ms</title></rect>')
        ratio = r["ms"] / r["floor"] if math.isfinite(r["ms"]) and r["floor"] > 0 else math.nan
        text = (f"{_fmt_ms(r['ms'])}" + (f" = {ratio:.3g}× floor" if math.isfinite(ratio) else "")
                + (" (!) below floor" if r["below"] else ""))
        if r["error"] and not math.isfinite(r["ms"]):
            text = "failed"
        fill = ' fill="#c0392b"' if r["below"] or text == "failed" else ""
        out.append(f'<text x="{width - right + 6}" y="{y0 + 15}" font-size="12"{fill}>{_esc(text)}</text>')
    out.append("</svg>")
    return "".join(out)


def timing_html(records: Sequence[dict]) -> str:
    rows = timing_rows(records)
    if not rows:
        return ""
    body = "".join(
        f"<tr><td>{_esc(r['label'])}</td><td>{_esc(r['size'])}</td><td>{_fmt(r['gflops'], 1)}</td>"
        f"<td>{_fmt(r['ms'], 2)}{' ± ' + _fmt(r['iqr'], 2) if math.isfinite(r['iqr']) else ''}</td>"
        f"<td>{_fmt(r['floor'], 2)}</td><td>{_fmt(100 * r['util'], 1)}</td><td>{'yes' if r['tiled'] else 'no'}</td>"
        f"<td>{_esc(r['device'])}, {_esc(r['dtype'])}"
        f"{', ' + str(r['threads']) + ' thr' if r['threads'] else ''}</td></tr>" for r in rows)
    peaks = sorted({f"{r.get('device', '')}: {r.get('peak_source') or ''} ({_fmt(_num(r.get('peak_tflops')), 3)} "
                    f"TFLOP/s)" for r in records if r.get("peak_tflops")})
    notes = ["ms: median (± interquartile range) of the compute time of one image; floor ms: counted FLOPs / peak "
             "FLOP/s, the time at 100 % utilisation — a measured time below it is impossible and is marked (!)."]
    notes += [f"Peak {_esc(p)}" for p in peaks]
    return (timing_chart(rows) + '<div class="scroll"><table class="data" id="timing-table"><thead><tr>'
            "<th>Method</th><th>Size</th><th>GFLOPs</th><th>ms</th><th>floor ms</th><th>% of peak</th><th>Tiled</th>"
            f"<th>Device</th></tr></thead><tbody>{body}</tbody></table></div>"
            + "".join(f'<p class="note">{n}</p>' for n in notes))


# ------------------------------------------------------------------------------------------ classifiers


def _cm_cell(count: int, frac: float, diag: bool) -> str:
    frac = 0.0 if not math.isfinite(frac) else frac
    colour = f"rgba(31,119,180,{0.08 + 0.85 * frac:.3f})" if count else "transparent"
    fg = "#fff" if frac > 0.55 else "inherit"
    cls = ' class="diag"' if diag else ""
    return (f'<td{cls} style="background:{colour};color:{fg}" title="{100 * frac:.1f} % of the row">'
            f"{count if count else '·'}</td>")


def confusion_html(records: list[dict]) -> str:
    from harness.confusion import confusions, pct, short

    out = []
    for c in confusions(records):
        norm = c.row_normalised()
        head = "".join(f'<th title="{_esc(col)}">{_esc(short(col))}</th>' for col in c.cols)
        rows = []
        for i, r in enumerate(c.rows):
            if not c.support.get(r):
                continue
            cells = "".join(_cm_cell(int(c.counts[i, j]), float(norm[i, j]), r == col) for j, col in enumerate(c.cols))
            rows.append(f"<tr><th>{_esc(short(r))}</th>{cells}<td>{c.support[r]}</td><td>{pct(c.recall[r], 1)}</td>"
                        "</tr>")
        prec = "".join(f"<td>{pct(c.precision[col], 0)}</td>" for col in c.cols)
        head_line = (f"{c.n} images · accuracy <b>{pct(c.accuracy, 1)} %</b> · mean-per-class accuracy "
                     f"{pct(c.mean_class_accuracy, 1)} %" + (f" · {c.failed} without a prediction" if c.failed else ""))
        out.append(f'<div class="cm-block"><h3>{_esc(c.title)}</h3><p class="note">{head_line}</p>'
                   f'<div class="scroll"><table class="data cm"><thead><tr><th>true \\ predicted</th>{head}'
                   f"<th>n</th><th>recall %</th></tr></thead><tbody>{''.join(rows)}"
                   f'<tr class="avg"><th>precision %</th>{prec}<td></td><td></td></tr></tbody></table></div></div>')
    if not out:
        return ""
    return (f'<div class="cms">{"".join(out)}</div><p class="note">Rows: true type, columns: predicted type; '
            "colour = share of the row; the diagonal (outlined) is correct. Only types with images are rows.</p>")


def misclassification_html(records: list[dict]) -> str:
    from harness.confusion import DASH, misclassification, pct, short

    blocks = []
    for method in dict.fromkeys(r["method"] for r in records):
        rows = misclassification(records, method)
        if not rows:
            continue
        body = []
        for r in rows:
            a, w = r.all, r.wrong
            mistaken = ", ".join(f"{short(k)} ({v})" for k, v in sorted(r.mistaken_for.items(),
                                                                         key=lambda kv: (-kv[1], str(kv[0]))))
            cls = ' class="avg"' if r.type == "all" else ""
            dcls = "neg" if a.d_psnr < 0 else "pos" if a.d_psnr > 0 else ""
            wcls = "neg" if w.d_psnr < 0 else "pos" if w.d_psnr > 0 else ""
            body.append(
                f"<tr{cls}><th>{'All images' if r.type == 'all' else _esc(_type_label(r.type))}</th><td>{a.n}</td>"
                f"<td>{pct(r.accuracy, 1)}</td><td>{_fmt(a.auto_psnr, 2)} / {_fmt(a.auto_ssim, 4)}</td>"
                f"<td>{_fmt(a.text_psnr, 2)} / {_fmt(a.text_ssim, 4)}</td>"
                f'<td class="{dcls}">{_fmt(a.d_psnr, 2, True)} / {_fmt(a.d_ssim, 4, True)}</td><td>{w.n}</td>'
                f'<td class="{wcls if w.n else ""}">{_fmt(w.d_psnr, 2, True) if w.n else DASH}</td>'
                f'<td class="wrap">{_esc(mistaken or DASH)}</td></tr>')
        blocks.append(
            f"<h3>{_esc(method)}</h3><div class=\"scroll\"><table class=\"data\"><thead><tr><th>Degradation</th>"
            "<th>Images</th><th>Accuracy %</th><th>Auto PSNR / SSIM</th><th>Text PSNR / SSIM</th>"
            "<th>Δ auto − text</th><th>Wrong</th><th>Δ PSNR on wrong</th><th>Mistaken for</th></tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")
    if not blocks:
        return ""
    return ("".join(blocks) + '<p class="note">Images scored in both modes: auto (the method\'s classifier picks the '
            "type) and text (the true type is given); Δ = auto − text on the same images, over all images and over "
            "the wrongly classified ones. 'All images' is image-weighted.</p>")


# ------------------------------------------------------------------------------------------ provenance


def _short_sha(s: str, n: int = 16) -> str:
    return f'<code title="{_esc(s)}">{_esc(str(s)[:n])}</code>'


def provenance_html(run_dir: Path, run_info: dict, summary: dict, records: list[dict], timing: list[dict],
                    notes: Sequence[str]) -> str:
    env = summary.get("environment") or {}
    data = summary.get("data") or run_info.get("data") or {}
    items: list[tuple[str, str]] = []
    if env.get("git_commit"):
        dirty = "+dirty" in str(env["git_commit"])
        items.append(("Commit", _short_sha(env["git_commit"], 40) + (' <span class="badge warn">uncommitted changes'
                                                                      "</span>" if dirty else "")))
    if summary.get("started"):
        items.append(("Run", f"{_esc(summary.get('started'))} → {_esc(summary.get('finished', '?'))}"))
    if run_info.get("command"):
        items.append(("Command", f"<code>{_esc(shlex.join(str(a) for a in run_info['command']))}</code>"))
    elif run_info.get("api"):
        items.append(("Command", f"API: <code>{_esc(run_info['api'])}</code>"))
    if env:
        dev = env.get("device_name") or env.get("device") or ""
        items.append(("Device", _esc(f"{dev}; torch threads {env.get('torch_threads', '?')}; "
                                     f"dtype {summary.get('dtype', '?')}")))
        items.append(("Python", _esc(f"{env.get('python', '?')} on {env.get('platform', '?')}")))
    if env.get("packages"):
        items.append(("Versions", " · ".join(f"{_esc(k)} <code>{_esc(v)}</code>" for k, v in env["packages"].items())))
    if data:
        counts = data.get("counts") or {}
        items.append(("Data", f"<code>{_esc(data.get('root', '?'))}</code><br>fingerprint "
                              f"{_short_sha(data.get('fingerprint', '?'))}"
                      + (f", whole folder {_short_sha(data['root_fingerprint'])}" if data.get("root_fingerprint")
                         else "")
                      + f"; {sum(counts.values())} images in {len(counts)} types"
                      + (f"; limit {run_info['limit']} per type" if run_info.get("limit") else "")
                      + (f"; skipped types: {_esc(', '.join(data['skipped_types']))}"
                         if data.get("skipped_types") else "")))
    metric = summary.get("metric") or {}
    if metric:
        items.append(("Metric", _esc(f"{metric.get('convention', '?')} v{metric.get('version', '?')}: "
                                     f"{metric.get('description', '')}")))
    weights_kind: dict[str, set[str]] = defaultdict(set)
    for r in records:
        weights_kind[r["method"]].add(str(r.get("weights") or "?"))
    for r in timing:
        weights_kind[str(r.get("method", "?"))].add(str(r.get("weights") or "?"))
    sha = summary.get("weights_sha256") or {}
    if weights_kind or sha:
        rows = []
        for m in dict.fromkeys([*weights_kind, *sha]):
            kinds = sorted(weights_kind.get(m, set()))
            demo = " " + DEMO_MARK if "demo" in kinds else ""
            files = sha.get(m) or {}
            ftxt = "<br>".join(f'<code title="{_esc(p)}">{_esc(Path(p).name)}</code> {_short_sha(h)}'
                               for p, h in files.items()) if isinstance(files, dict) else _esc(files)
            rows.append(f"<tr><td>{_esc(m)}{demo}</td><td>{_esc(', '.join(kinds))}</td><td>{ftxt or '–'}</td></tr>")
        items.append(("Weights", '<table class="data" id="weights"><thead><tr><th>Method</th><th>Weights</th>'
                                 f"<th>Files (sha256)</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
                      + (f'<p class="note">{_esc(DEMO_NOTE)}</p>' if any("demo" in k for k in weights_kind.values())
                         else "")))
    if timing:
        s = (timing[0].get("settings") or {})
        items.append(("Timing", _esc(f"{timing[0].get('device', '?')}, {timing[0].get('dtype', '?')}, "
                                     f"torch {s.get('torch', '?')}, timer {s.get('timer', '?')}")))
    problems = []
    if summary.get("failed_images"):
        problems.append(f"{summary['failed_images']} failed image(s)")
    for k, v in (summary.get("methods_failed") or {}).items():
        problems.append(f"method {k} failed: {v}")
    problems += list(summary.get("save_errors") or [])
    if summary.get("interrupted"):
        problems.append("the run was interrupted: its numbers cover the images scored so far")
    problems += list(notes)
    if problems:
        items.append(("Notes", "<br>".join(_esc(p) for p in problems[:30])
                      + (f"<br>… and {len(problems) - 30} more" if len(problems) > 30 else "")))
    files = [p for p in ("table1.md", "table1.tex", "results.csv", "records.jsonl", "summary.json", "run.json",
                         "significance.md", "published.md", "classifiers.md", "confusion.json", "timing.md",
                         "timing.json") if (run_dir / p).is_file()]
    files += sorted(p.name for p in run_dir.glob("confusion_*.png")) + sorted(p.name for p in
                                                                               run_dir.glob("misclassification_*.md"))
    if files:
        items.append(("Files", " · ".join(f'<a href="{_esc(f)}">{_esc(f)}</a>' for f in files)))
    return '<dl class="prov" id="provenance-list">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


# ------------------------------------------------------------------------------------------ per-image data


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


def browser_html(data: dict) -> str:
    types = list(dict.fromkeys(im["t"] for im in data["imgs"]))
    type_opts = '<option value="">all types</option>' + "".join(
        f'<option value="{_esc(t)}">{_esc(_type_label(t))}</option>' for t in types)
    sort_opts = '<option value="-1">type, file</option>' + "".join(
        f'<option value="{i}">{_esc(data["gainName"])}: {_esc(data["cols"][i]["label"])}</option>'
        for i in data["methods"])
    n_thumbs = sum(im["th"].count("1") for im in data["imgs"])
    n_full = sum(im["fu"].count("1") for im in data["imgs"])
    how = ("full-size images in the compare view" if n_full else
           "thumbnails only (run with <code>--save-images</code> for full-size images in the compare view)")
    gt = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return f"""
<div class="controls">
  <label>Type <select id="f-type">{type_opts}</select></label>
  <label>Sort <select id="f-sort">{sort_opts}</select></label>
  <button type="button" id="f-dir">worst first</button>
  <button type="button" id="f-prev">◀ prev</button><button type="button" id="f-next">next ▶</button>
  <span id="f-info" class="note"></span>
</div>
<p class="note">{len(data['imgs'])} images, {n_thumbs} thumbnails; {how}. Click a column header to sort by that
method's {_esc(data['gainName'])} (worst first; again to reverse); click an image to compare: drag the slider,
move over the image or a zoom pane to zoom every column on the same spot, mouse wheel to change the zoom,
← / → for the previous / next image, Esc to close. Red cells: worse than Input.</p>
<div class="scroll"><table class="browser" id="browser"><thead></thead><tbody></tbody></table></div>
<div id="compare" hidden><div class="box">
  <div class="bar"><span class="title" id="c-title"></span>
    <label>left <select id="c-sel-a"></select></label><label>right <select id="c-sel-b"></select></label>
    <label>zoom <input type="range" id="c-zoom" min="1" max="16" step="1" value="4"></label><span id="c-zoom-v"></span>
    <button type="button" id="c-prev">◀</button><button type="button" id="c-next">▶</button>
    <button type="button" id="c-close">close ✕</button></div>
  <div class="slider" id="c-slider"><img id="c-b" alt="right image"><img id="c-a" class="over" alt="left image">
    <div class="handle" id="c-handle"></div><div class="zoombox" id="c-zoombox"></div>
    <span class="lab l" id="c-lab-a"></span><span class="lab r" id="c-lab-b"></span></div>
  <div class="lenses" id="c-lenses"></div>
</div></div>
<script type="application/json" id="report-data">{gt}</script>"""


# ------------------------------------------------------------------------------------------ the page


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{_esc(title)}</h2>{body}</section>' if body else ""


def render_page(run_dir: Path, *, thumbs: bool = True, log: Log = None) -> str:
    """The HTML of a run folder's results page (see the module doc); makes missing thumbnails when `thumbs`."""
    run_dir = Path(run_dir)
    run_info = _read_json(run_dir / results.RUN_FILE) or {}
    summary = _read_json(run_dir / "summary.json") or {}
    records, warnings = results.load(run_dir)
    timing = timing_records(run_dir, summary)
    if not records and not timing:
        raise FileNotFoundError(f"{run_dir}: no records.jsonl records and no timing.json: nothing to report")
    notes: list[str] = list(warnings)
    sections: list[tuple[str, str, str]] = []
    sub = []
    if records:
        agg = results.aggregate(records)
        sig = _significance(records, notes)
        labels = [c for c in agg]
        n_img = len({(r["type"], r["file"]) for r in records})
        n_types = len({r["type"] for r in records})
        sub.append(f"{len(labels)} columns ({_esc(', '.join(labels))}) · {n_img} images in {n_types} types")
        data = browser_data(run_dir, records, run_info, thumbs, notes)
        sections += [("table1", "Table I: PSNR / SSIM per degradation", table1_html(agg, sig)),
                     ("gains", "Gains over Input per degradation", gains_html(agg)),
                     ("browser", "Per-image browser", browser_html(data)),
                     ("confusion", "Degradation classifiers: confusion matrices", confusion_html(records)),
                     ("misclassification", "Cost of misclassification (auto vs text mode)",
                      misclassification_html(records))]
    if timing:
        sub.append(f"timing of {len(timing)} method(s)")
        sections.append(("timing", "Timing: measured time against the FLOP floor", timing_html(timing)))
    sections.append(("provenance", "Provenance", provenance_html(run_dir, run_info, summary, records, timing, notes)))
    sections = [s for s in sections if s[2]]
    if summary.get("finished"):
        sub.append(f"finished {_esc(summary['finished'])}")
    badges = ""
    if summary.get("failed_images"):
        badges += f'<span class="badge warn">{summary["failed_images"]} failed image(s)</span>'
    if summary.get("interrupted"):
        badges += '<span class="badge warn">interrupted run</span>'
    if any(r.get("weights") == "demo" for r in records):
        badges += f'<span class="badge">{DEMO_MARK} demo weights</span>'
    nav = "".join(f'<a href="#{sid}">{_esc(title.split(":")[0])}</a>' for sid, title, _ in sections)
    body = "".join(_section(*s) for s in sections)
    if log:
        for n in notes:
            log(f"note: {n}")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Results: {_esc(run_dir.resolve().name)}</title>
<script>{report_assets.ERROR_TRAP}</script>
<style>{report_assets.CSS}</style></head>
<body><header class="top"><h1>Results: {_esc(run_dir.resolve().name)}</h1>
<div class="sub">{' · '.join(sub)} {badges}</div><nav>{nav}</nav></header>
<main>{body}</main>
<script>{report_assets.SCRIPT}</script>
</body></html>
"""


def write_report(run_dir: Path, *, thumbs: bool = True, log: Log = None) -> Path:
    """Write RUN_DIR/report.html from the run folder alone (records, run.json, summary.json, timing.json) and
    return its path. `thumbs`: first make the missing thumbnails (Input and GT from the data root named in
    run.json, restored images from RUN_DIR/images) and, when the run saved its images, link the full-size
    Input and GT; without it the page uses the image files already there. Raises FileNotFoundError when the
    folder has neither records nor timing."""
    run_dir = Path(run_dir)
    text = render_page(run_dir, thumbs=thumbs, log=log)
    return write_text_atomic(run_dir / REPORT_FILE, text)


# ------------------------------------------------------------------------------------------ headless check


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--enable-logging=stderr", "--v=0")


@dataclass
class BrowserCheck:
    """What headless Chromium saw: the DOM after the page's script ran, console lines, problems found."""

    dom: str
    console: list[str]
    problems: list[str]
    screenshot: Path | None
    returncode: int

    def attr(self, name: str) -> str | None:
        """An attribute of the page's <html> element (data-ready, data-js-errors, …) in the dumped DOM."""
        head = self.dom[: self.dom.find(">", self.dom.find("<html")) + 1] if "<html" in self.dom else ""
        m = re.search(rf'\s{re.escape(name)}="([^"]*)"', head)
        return m.group(1) if m else None


def check_in_browser(page: Path, screenshot: Path | None = None, *, fragment: str = "", width: int = 1400,
                     height: int = 2600, budget_ms: int = 4000, timeout: float = 120,
                     chromium: Path = CHROMIUM) -> BrowserCheck:
    """Load `page` from disk in headless Chromium (fresh profile, no network services), dump the DOM after
    the script ran and optionally take a `width`×`height` screenshot. Problems: the page's script not done
    (no data-ready), script errors or broken images counted by the page, console lines reporting an error,
    a non-zero exit. `fragment` (e.g. "compare=0") is appended to the URL after '#'."""
    import subprocess
    import tempfile

    url = Path(page).resolve().as_uri() + (f"#{fragment}" if fragment else "")
    with tempfile.TemporaryDirectory(prefix="report-chromium-") as profile:
        cmd = [str(chromium), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
               f"--virtual-time-budget={budget_ms}", "--dump-dom"]
        if screenshot is not None:
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            cmd.append(f"--screenshot={Path(screenshot).resolve()}")
        proc = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "LANG": "C.UTF-8"})
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
    check = BrowserCheck(proc.stdout, console, [], Path(screenshot) if screenshot is not None else None,
                         proc.returncode)
    if proc.returncode:
        check.problems.append(f"chromium exited with {proc.returncode}: {proc.stderr[-2000:]}")
    if check.attr("data-ready") != "1":
        check.problems.append("the page's script did not finish (no data-ready on <html>)")
    if check.attr("data-js-errors"):
        check.problems.append(f"{check.attr('data-js-errors')} script error(s)")
    if check.attr("data-broken-images"):
        check.problems.append(f"{check.attr('data-broken-images')} image(s) failed to load, e.g. "
                              f"{check.attr('data-broken-src')}")
    check.problems += [f"console: {ln}" for ln in console if re.search(r"Uncaught|error", ln, re.IGNORECASE)]
    if screenshot is not None and not Path(screenshot).is_file():
        check.problems.append(f"no screenshot written to {screenshot}")
    return check


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.report_html", description=cli.description(__doc__),
                                formatter_class=cli.Formatter)
    p.add_argument("run_dir", type=Path, help="output folder of harness.run (or of harness.timing)")
    p.add_argument("--no-thumbs", action="store_true", help="do not make thumbnails; use the images already there")
    p.add_argument("--screenshot", type=Path, default=None,
                   help=f"also load the page in headless Chromium ({CHROMIUM}) and save a screenshot PNG here")
    p.add_argument("--size", default="1400x2300", help="screenshot window WIDTHxHEIGHT (default 1400x2300)")
    args = p.parse_args(argv)
    try:
        path = write_report(args.run_dir, thumbs=not args.no_thumbs, log=lambda m: print(m, file=sys.stderr))
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    if args.screenshot is not None:
        if not CHROMIUM.exists():
            print(f"error: {CHROMIUM} not found (Debian: apt-get install chromium)", file=sys.stderr)
            return 2
        w, _, h = args.size.partition("x")
        check = check_in_browser(path, args.screenshot, width=int(w), height=int(h))
        for problem in check.problems:
            print(f"problem: {problem}", file=sys.stderr)
        if check.problems:
            return 1
        with Image.open(args.screenshot) as im:  # 256 colours: a third of the size, fine for a README
            shot = im.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE)
        shot.save(args.screenshot, optimize=True)
        print(f"wrote {args.screenshot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
