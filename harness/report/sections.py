"""HTML of the results page's sections: Table I, gains, timing, classifiers, provenance."""

from __future__ import annotations

import math
import shlex
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from harness.degradations import TABLE1_ORDER
from harness.report.charts import bar_chart, timing_chart
from harness.report.data import timing_rows
from harness.report.fmt import _esc, _fmt, _num, _type_label
from harness.results import AVG, DEMO_MARK, DEMO_NOTE, SIG_MARK


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
