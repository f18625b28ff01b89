"""The results page: the per-image browser's HTML, the whole page, and writing RUN/report.html."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from harness import results
from harness.fileio import write_text_atomic
from harness.report import assets
from harness.report.data import _read_json, _significance, browser_data, timing_records
from harness.report.fmt import _esc, _type_label
from harness.report.sections import (
    confusion_html,
    gains_html,
    misclassification_html,
    provenance_html,
    table1_html,
    timing_html,
)
from harness.report.thumbs import REPORT_FILE
from harness.results import DEMO_MARK

Log = Callable[[str], None] | None


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
<script>{assets.ERROR_TRAP}</script>
<style>{assets.CSS}</style></head>
<body><header class="top"><h1>Results: {_esc(run_dir.resolve().name)}</h1>
<div class="sub">{' · '.join(sub)} {badges}</div><nav>{nav}</nav></header>
<main>{body}</main>
<script>{assets.SCRIPT}</script>
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
