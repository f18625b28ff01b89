"""Static results page of a run folder: RUN/report.html, one page that opens from disk, offline.

    python -m harness.report_html RUN_DIR [--no-thumbs]     (or: python -m harness.report)

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
lines of vanilla JavaScript inlined in the page (`harness.report.assets`).

Images (all under RUN/report/, paths relative to RUN so the folder can be moved or published as is):

* thumbnails, JPEG, long side `THUMB_SIZE`: ``thumbs/<method>-<mode>/<type>/<file>.jpg`` for the restored
  images — written by the run as it scores each image (`save_thumbnail`), or made here from RUN/images when
  the run saved them — ``thumbs/_input/<type>/<file>.jpg`` and ``thumbs/_gt/<file>.jpg``;
* full-size images only when the run saved its restored images (``--save-images``: RUN/images): the slider
  and the zoom then use RUN/images/<method>-<mode>/<type>/<stem>.png and ``full/_input/<type>/<file>``,
  ``full/_gt/<file>`` (hard links to, or copies of, the data's files); otherwise they use the thumbnails.

Modules: `data` (what the page shows, read from the run folder), `charts` (inline SVG), `sections` (the
HTML of each section), `page` (the page), `assets` (its CSS and script), `thumbs` (thumbnails and full-size
links), `browser` (headless Chromium check), `command` (the command line).
"""

from __future__ import annotations

from harness.report.browser import CHROMIUM, CHROMIUM_FLAGS, BrowserCheck, check_in_browser
from harness.report.charts import FLOOR_COLOUR, PALETTE, bar_chart, timing_chart
from harness.report.command import main
from harness.report.data import PER_PAGE, browser_data, timing_records, timing_rows
from harness.report.page import Log, browser_html, render_page, write_report
from harness.report.sections import (
                                     confusion_html,
                                     gains_html,
                                     misclassification_html,
                                     provenance_html,
                                     table1_html,
                                     timing_html,
)
from harness.report.thumbs import (
                                     FULL,
                                     GT_KEY,
                                     INPUT_KEY,
                                     REPORT_DIR,
                                     REPORT_FILE,
                                     THUMB_QUALITY,
                                     THUMB_SIZE,
                                     THUMBS,
                                     save_thumbnail,
                                     thumb_relpath,
)

__all__ = ["CHROMIUM", "CHROMIUM_FLAGS", "FLOOR_COLOUR", "FULL", "GT_KEY", "INPUT_KEY", "PALETTE", "PER_PAGE",
           "REPORT_DIR", "REPORT_FILE", "THUMBS", "THUMB_QUALITY", "THUMB_SIZE", "BrowserCheck", "Log", "bar_chart",
           "browser_data", "browser_html", "check_in_browser", "confusion_html", "gains_html", "main",
           "misclassification_html", "provenance_html", "render_page", "save_thumbnail", "table1_html",
           "thumb_relpath", "timing_chart", "timing_html", "timing_records", "timing_rows", "write_report"]
