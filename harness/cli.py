"""The command-line frame every `python -m harness.*` / `vlur.*` command shares.

* Shared arguments spelled once: `--device` (default cpu), `--threads` (default: torch's), `--mode`,
  `--import MODULE` (plugins), `--quiet` / `--no-progress` (no progress bar).
* Exit codes everywhere: 0 ok; 1 finished, but some images or methods failed; 2 nothing ran (bad usage,
  bad data, output folder locked or unusable); 130 interrupted by Ctrl-C or SIGTERM (what a batch scheduler
  sends) — finished results are kept and the same command resumes.
* Diagnostics go to stderr through `logging` (logger "harness"); results (tables) to stdout.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

EXIT_OK, EXIT_FAILURES, EXIT_NOTHING_RAN, EXIT_INTERRUPTED = 0, 1, 2, 130

log = logging.getLogger("harness")


class Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, but not "(default: None)" on options without one."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.required:
            return action.help
        return super()._get_help_string(action)


def description(doc: str | None) -> str:
    """A command's --help description: the first paragraph of its module docstring, as one sentence block."""
    para = (doc or "").strip().split("\n\n")[0]
    return " ".join(line.strip() for line in para.splitlines())


def setup_logging(quiet: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    del quiet  # --quiet only hides progress bars: notes about kept or redone results always matter
    log.setLevel(logging.INFO)
    log.propagate = False


def route(msg: str) -> None:
    """A message of the library: errors, warnings and failures always shown, notes only without --quiet."""
    (log.warning if msg.lstrip().startswith(("error", "warning", "failed")) else log.info)(msg)


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def non_negative_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {v}")
    return v


def non_negative_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number ≥ 0, got {text}")
    return v


def device_arg(text: str) -> str:
    """`--device`: the check of `harness.evaluation.check_device`, as an argparse type."""
    from harness.evaluation import ConfigError, check_device

    try:
        check_device(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def add_common(p: argparse.ArgumentParser, *, mode: bool = True) -> None:
    p.add_argument("--device", type=device_arg, default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    if mode:
        p.add_argument("--mode", "--modes", dest="mode", default="auto",
                       help="auto (the method's classifier picks the type) | text (true type given) | auto,text")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import MODULE first (a plugin that registers more methods); repeatable")
    p.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true",
                   help="no progress bar (notes, warnings and errors are still written to stderr)")


def method_args(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--method-arg {item!r}: write KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled exactly like Ctrl-C."""


def _on_sigterm(signum, frame):
    raise Terminated()


def run_command(fn: Callable[[], int], saved: Path | None, imports: Sequence[str] = (),
                what: str = "finished image") -> int:
    """Import plugins, run `fn`, and turn errors and interrupts into messages and exit codes."""
    from harness.data.cdd11 import DatasetError
    from harness.evaluation import ConfigError
    from harness.outputs import OutputsSpecError
    from harness.records import RunLockedError
    from harness.registry import MethodArgError, UnknownMethodError
    from harness.weights import WeightsError

    for module in imports:
        try:
            importlib.import_module(module)
        except ImportError as e:
            log.error(f"error: --import {module}: {e}")
            return EXIT_NOTHING_RAN
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return fn()
    except (DatasetError, RunLockedError, UnknownMethodError, ConfigError, OutputsSpecError, MethodArgError,
            WeightsError) as e:
        log.error(f"error: {e}")
        return EXIT_NOTHING_RAN
    except PermissionError as e:
        log.error(f"error: permission denied: {e.filename or e}")
        return EXIT_NOTHING_RAN
    except OSError as e:
        log.error(f"error: {e.filename + ': ' if getattr(e, 'filename', None) else ''}{e.strerror or e}")
        return EXIT_NOTHING_RAN
    except SystemExit as e:
        if isinstance(e.code, str):  # `raise SystemExit("message")`: bad usage or data, nothing (more) ran
            log.error(f"error: {e.code}")
            return EXIT_NOTHING_RAN
        raise
    except KeyboardInterrupt as e:
        how = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        where = f" in {saved}" if saved else ""
        log.error(f"\n{how}: every {what} is saved{where}; run the same command again to resume")
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
