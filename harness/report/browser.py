"""Load a results page in headless Chromium: the DOM after its script ran, console lines, a screenshot."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

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
