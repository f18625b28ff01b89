"""python -m harness.report RUN_DIR: the same command as python -m harness.report_html."""

import sys

from harness.report.command import main

if __name__ == "__main__":
    sys.exit(main())
