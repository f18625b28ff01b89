"""The command line of the results page: python -m harness.report_html (or harness.report) RUN_DIR."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from harness import cli
from harness.report.browser import CHROMIUM, check_in_browser
from harness.report.page import write_report


def main(argv: Sequence[str] | None = None) -> int:
    from harness import report

    p = argparse.ArgumentParser(prog="python -m harness.report_html", description=cli.description(report.__doc__),
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
