"""`python -m harness.timing`: the command line of `harness.timing.cli`."""

import sys

from harness.timing.cli import main

sys.exit(main())
