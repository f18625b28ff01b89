"""Every command's --help works and says what it does; --list names each method's modes; the first-hour
defects of the results (bold marks against Input, the published-numbers warning) stay fixed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.tables import render_markdown, render_published, table1_rows

COMMANDS = ["harness.run", "harness.release", "harness.restore", "harness.classify", "harness.gates",
            "harness.tables", "harness.stats", "harness.confusion", "harness.grid", "harness.metrics",
            "harness.timing", "harness.data.synth", "harness.data.mini", "harness.regenerate",
            "harness.report_html", "vlur.train", "vlur.train_classifier"]


@pytest.mark.parametrize("module", COMMANDS)
def test_help(module):
    proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    assert text.startswith("usage: python -m " + module) or text.startswith("usage:")
    assert "default: None" not in text
    body = text.split("\n\n")[1].strip()  # the description paragraph
    assert body and body.rstrip().endswith((".", ")", ":")), f"description stops mid-sentence: {body!r}"


def test_list_names_modes_or_classifier_only():
    out = subprocess.run([sys.executable, "-m", "harness.run", "--list"], capture_output=True, text=True,
                         timeout=120).stdout
    assert "modes= " not in out and "modes=\n" not in out
    assert "vlur-zeroshot  classifier only" in out


def _agg(input_psnr: float, method_psnr: float) -> dict:
    cell = {"n": 1, "failed": 0, "ssim": 0.5}
    return {"Input": {"haze": {**cell, "psnr": input_psnr}, "average": {**cell, "psnr": input_psnr}},
            "m": {"haze": {**cell, "psnr": method_psnr}, "average": {**cell, "psnr": method_psnr}}}


def test_a_method_worse_than_input_is_not_bold():
    _, rows = table1_rows(_agg(20.0, 18.0))
    assert rows[0][1]["m"][1] is None  # not marked although it is the only method
    _, rows = table1_rows(_agg(20.0, 22.0))
    assert rows[0][1]["m"][1] == "best"
    assert "**" not in render_markdown(_agg(20.0, 18.0)).split("\n")[2]


def test_published_numbers_on_demo_weights_and_synthetic_data_carry_warnings():
    recs = [{"method": "onerestore", "mode": "text", "type": "haze", "file": "a.png", "status": "ok",
             "psnr": 20.0, "ssim": 0.8, "weights": "demo"}]
    text = render_published(recs, synthetic=True)
    assert text.startswith("# Measured vs published")
    assert "demo or random weights" in text and "synthetic data" in text
    official = [{**recs[0], "weights": "official"}]
    assert "Warning" not in render_published(official)
