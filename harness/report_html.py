"""Static results page of a run folder: RUN/report.html (compatibility name of `harness.report`).

    python -m harness.report_html RUN_DIR [--no-thumbs]

The code lives in the package `harness.report` (see its docstring); this module re-exports its names so that
`from harness import report_html` and `python -m harness.report_html` keep working.
"""

from __future__ import annotations

import sys

from harness.report import *  # noqa: F403 - the package's public names, as before the split
from harness.report import main

if __name__ == "__main__":
    sys.exit(main())
