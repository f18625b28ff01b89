"""Results page (harness.report_html): thumbnails, sections, per-image data, timing runs, and the page in a real
browser (headless Chromium; skipped when /usr/bin/chromium is absent)."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import methods_for_tests  # noqa: F401 - registers test-* methods
import numpy as np
import pytest
import torch
from conftest import make_layout
from PIL import Image

from harness import report_html, results
from harness.report_html import GT_KEY, INPUT_KEY, THUMB_SIZE, save_thumbnail, thumb_relpath, write_report

H, W = 40, 48
TYPES = ("low", "haze")
FILES = ("im0.png", "im1.png")
REPO = Path(__file__).resolve().parents[1]
needs_chromium = pytest.mark.skipif(not report_html.CHROMIUM.exists(),
                                    reason=f"{report_html.CHROMIUM} not found (Debian: apt-get install chromium)")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def _rec(method, mode, t, f, psnr, ssim=0.5, predicted=None, weights="none", status="ok", error=None):
    return {"schema": 1, "method": method, "mode": mode, "weights": weights, "type": t, "file": f,
            "status": status, "psnr": psnr if status == "ok" else None, "ssim": ssim if status == "ok" else None,
            "predicted": predicted, "error": error, "notes": [], "pair_sha": "0", "convention": "cdd11",
            "seconds": 0.1}


def synthetic_run(base: Path, save_images: bool = True) -> Path:
    """A run folder written by hand: Input, m1 (auto with a classifier that errs on im1, and text; demo
    weights), m2 (auto; an exact restoration, PSNR inf, and a failed image). Restored images under images/
    when `save_images`."""
    data = make_layout(base / "data", n=2, size=(H, W), types=TYPES)
    run = base / "run"
    run.mkdir()
    recs = []
    for t in TYPES:
        for f in FILES:
            clear = np.asarray(Image.open(data / "clear" / f))
            deg = np.asarray(Image.open(data / t / f))
            outs = {("m1", "auto"): (deg * 0.9).astype(np.uint8), ("m1", "text"): (deg * 0.95).astype(np.uint8),
                    ("m2", "auto"): clear if f == "im0.png" else None}
            recs.append(_rec("identity", "auto", t, f, _psnr(deg, clear)))
            for (m, mode), out in outs.items():
                if out is None:
                    recs.append(_rec(m, mode, t, f, None, status="failed", error="RuntimeError: deliberate"))
                    continue
                pred = (t if f == "im0.png" else "snow") if mode == "auto" and m == "m1" else None
                recs.append(_rec(m, mode, t, f, _psnr(out, clear), 0.4, pred, "demo" if m == "m1" else "none"))
                if save_images:
                    d = run / "images" / f"{m}-{mode}" / t
                    d.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(out).save(d / f"{Path(f).stem}.png")
    (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    info = {"methods": ["identity", "m1", "m2"], "modes": ["auto", "text"], "convention": "cdd11",
            "types": list(TYPES), "limit": None,
            "data": {"root": str(data), "fingerprint": "f" * 16, "counts": {t: 2 for t in TYPES}},
            "selection": None, "command": ["harness/run.py", "--methods", "identity,m1,m2"]}
    (run / "run.json").write_text(json.dumps(info))
    summary = {"schema": 2, "environment": {"git_commit": "0123abcd" * 5, "packages": {"torch": "9.9"},
                                            "python": "3.x", "platform": "test", "device_name": "CPU"},
               "weights_sha256": {"m1": {"/w/m1_demo.pt": "ab" * 32}}, "failed_images": 1,
               "metric": {"convention": "cdd11", "version": 1, "description": "8-bit"},
               "data": info["data"], "started": "2026-01-01T00:00:00", "finished": "2026-01-01T00:01:00"}
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def page_data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S)
    assert m, "no report-data block"
    return json.loads(m.group(1).replace("<\\/", "</"))


# ------------------------------------------------------------------------------------------ thumbnails


def test_save_thumbnail_sizes_paths_and_input_once(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (400, 640, 3), dtype=np.uint8)
    p = save_thumbnail(tmp_path, "m1", "auto", "haze", "a.png", img)
    assert p == tmp_path / thumb_relpath("m1-auto", "haze", "a.png")
    assert p == tmp_path / "report/thumbs/m1-auto/haze/a.png.jpg"
    with Image.open(p) as im:
        assert im.format == "JPEG" and im.size == (THUMB_SIZE, 200)
    # a 1×3×H×W tensor in [0, 1] (what the evaluation loop holds) gives the same picture
    t = torch.from_numpy(img).permute(2, 0, 1).unsqueeze(0).float() / 255
    q = save_thumbnail(tmp_path, "m2", "text", "haze", "a.png", t)
    a, b = (np.asarray(Image.open(x)).astype(int) for x in (p, q))
    assert np.abs(a - b).mean() < 2
    # identity = the degraded input: the Input thumbnail, written once whatever the mode
    first = save_thumbnail(tmp_path, "identity", "auto", "haze", "a.png", img)
    assert first == tmp_path / thumb_relpath(INPUT_KEY, "haze", "a.png")
    before = first.read_bytes()
    save_thumbnail(tmp_path, "identity", "text", "haze", "a.png", np.zeros_like(img))
    assert first.read_bytes() == before
    assert thumb_relpath(GT_KEY, "haze", "a.png") == "report/thumbs/_gt/a.png.jpg"
    with pytest.raises(ValueError):
        save_thumbnail(tmp_path, "m1", "auto", "haze", "b.png", np.zeros((4, 5, 7), np.uint8))


# ------------------------------------------------------------------------------------------ the page


def test_page_sections_numbers_and_images(tmp_path):
    run = synthetic_run(tmp_path)
    path = write_report(run)
    assert path == run / "report.html"
    page = path.read_text(encoding="utf-8")
    for anchor in ('id="table1"', 'id="gains-psnr"', 'id="gains-ssim"', 'id="browser"', 'id="confusion"',
                   'id="misclassification"', 'id="provenance"', 'id="compare"'):
        assert anchor in page, anchor
    assert 'id="timing"' not in page
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=\"https?:", page), "nothing may come from the network"
    # Table I: the numbers of harness.results, best bold; the m2 column has an exact restoration (inf)
    agg = results.aggregate(results.load(run)[0])
    assert f"{agg['m1 (auto)†']['low']['psnr']:.2f}" in page
    assert "<td><span class=\"best\">inf</span></td>" in page.replace("‡", "")
    # provenance: commit, weights hash, demo mark, the failed image
    assert "0123abcd" in page and "abababababababab" in page and "demo weights" in page
    assert "1 failed image(s)" in page
    # per-image data: 4 images × (Input, m1 auto, m1 text, m2, GT); every thumbnail made, full images linked
    d = page_data(page)
    assert [c["label"] for c in d["cols"]] == ["Input", "m1 (auto)†", "m1 (text)†", "m2", "GT"]
    assert [(im["t"], im["f"]) for im in d["imgs"]] == [("haze", "im0.png"), ("haze", "im1.png"),
                                                         ("low", "im0.png"), ("low", "im1.png")]
    low0 = d["imgs"][2]
    assert low0["s"][3][0] == "inf" and low0["s"][1][2] == "low"
    assert d["imgs"][3]["s"][3][0] == "failed" and d["imgs"][3]["s"][1][2] == "snow"
    assert low0["th"] == "11111" and d["imgs"][3]["th"] == "11101"  # no restored image of the failed one
    assert low0["fu"] == "11111"
    for key in (INPUT_KEY, "m1-auto", "m1-text", "m2-auto"):
        assert (run / thumb_relpath(key, "low", "im0.png")).is_file()
    assert (run / thumb_relpath(GT_KEY, "low", "im0.png")).is_file()
    data = Path(json.loads((run / "run.json").read_text())["data"]["root"])
    assert (run / "report/full/_gt/im0.png").read_bytes() == (data / "clear/im0.png").read_bytes()
    assert (run / "report/full/_input/low/im0.png").read_bytes() == (data / "low/im0.png").read_bytes()
    with Image.open(run / thumb_relpath(GT_KEY, "low", "im0.png")) as im:
        assert im.size == (W, H)  # never enlarged
    # the classifier sections: m1's confusion (2 of 4 right), its misclassification cost
    assert "accuracy <b>50.0 %</b>" in page
    assert "Snow (2)" in page


def test_page_without_saved_images_uses_the_runs_thumbnails(tmp_path):
    run = synthetic_run(tmp_path, save_images=False)
    for t in TYPES:  # what the evaluation loop's hook writes
        for f in FILES:
            save_thumbnail(run, "m1", "auto", t, f, np.full((H, W, 3), 100, np.uint8))
    d = page_data(write_report(run).read_text(encoding="utf-8"))
    assert all(im["th"] == "11001" and im["fu"] == "00000" for im in d["imgs"])
    assert not (run / "report" / "full").exists()
    # --no-thumbs writes no image; a data root that has gone leaves the thumbnails already there
    shutil.rmtree(run / "report")
    d = page_data(write_report(run, thumbs=False).read_text(encoding="utf-8"))
    assert all(im["th"] == "00000" for im in d["imgs"]) and not (run / "report").exists()


def test_real_run_folder(tmp_path):
    from harness.run import main as run_main

    data = make_layout(tmp_path / "data", n=2, size=(H, W), types=TYPES)
    out = tmp_path / "run"
    assert run_main(["--data", str(data), "--out", str(out), "--methods", "identity,test-oom", "--mode", "auto",
                     "--save-images", "--quiet", "--workers", "0"]) == 0
    assert report_html.main([str(out)]) == 0
    d = page_data((out / "report.html").read_text(encoding="utf-8"))
    assert [c["key"] for c in d["cols"]] == [INPUT_KEY, "test-oom-auto", GT_KEY]
    assert all(im["th"] == "111" and im["fu"] == "111" for im in d["imgs"]) and len(d["imgs"]) == 4
    rec = {(r["type"], r["file"]): r for r in results.load(out)[0] if r["method"] == "test-oom"}
    assert d["imgs"][0]["s"][1][0] == round(rec[("haze", "im0.png")]["psnr"], 4)
    # a comparison release (outputs:NAME=DIR) is the same page: its column, the same scores
    rel = tmp_path / "release"
    assert run_main(["--data", str(data), "--out", str(rel), "--methods",
                     f"identity,outputs:mine={out / 'images' / 'test-oom-auto'}", "--mode", "auto", "--quiet",
                     "--workers", "0"]) == 0
    d2 = page_data(write_report(rel).read_text(encoding="utf-8"))
    assert [c["label"] for c in d2["cols"]] == ["Input", "mine", "GT"]
    assert [im["s"][1][0] for im in d2["imgs"]] == [im["s"][1][0] for im in d["imgs"]]
    assert all(im["th"][0] == im["th"][2] == "1" for im in d2["imgs"])


def test_timing_run_and_empty_folder(tmp_path, capsys):
    shutil.copy(REPO / "reports/timing_cpu/timing.json", tmp_path / "timing.json")
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert 'id="timing-chart"' in page and 'id="timing-table"' in page and 'id="browser"' not in page
    rows = report_html.timing_rows(json.loads((tmp_path / "timing.json").read_text())["timing"])
    assert {(r["method"], r["size"]) for r in rows} == {(m, s) for m in ("onerestore", "vlur") for s in ("1080p", "2k")}
    r = rows[0]
    assert f"{r['ms'] / r['floor']:.3g}× floor" in page
    assert page.count('class="floor"') == page.count('class="bar"') == 4
    assert report_html.main([str(tmp_path / "nothing")]) == 2
    assert "nothing to report" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ in a browser


def _assert_rendered(check, rows: int):
    assert not check.problems, check.problems
    assert check.attr("data-rows") == str(rows)
    assert len(re.findall(r'<tr class="img-row" data-i="\d+"', check.dom)) == rows
    assert re.search(r'<table class="data" id="table1">', check.dom)
    assert check.dom.count('class="bar"') > 0
    with Image.open(check.screenshot) as im:
        a = np.asarray(im.convert("L"))
    assert a.shape[1] == 1400 and (a < 128).mean() > 0.005, "blank screenshot"


@needs_chromium
def test_page_in_headless_chromium(tmp_path):
    run = synthetic_run(tmp_path)
    page = write_report(run)
    check = report_html.check_in_browser(page, tmp_path / "shot.png", height=1800, fragment="compare=2")
    _assert_rendered(check, rows=4)
    # the compare view opened (from the URL): slider images and one zoom pane per column with an image
    assert len(re.findall(r'<div class="view" data-c="\d+"', check.dom)) == 5
    assert re.search(r'<div id="compare"(?![^>]*hidden)', check.dom)
    assert 'id="c-a"' in check.dom and "clip-path" in check.dom


@pytest.mark.slow
@needs_chromium
def test_default_run_page_in_headless_chromium(tmp_path):
    """The default run on the embedded data (2 images per type), its page loaded in Chromium."""
    from harness.run import main as run_main

    out = tmp_path / "run"
    assert run_main(["--methods", "identity,vlur,onerestore", "--mode", "auto,text", "--limit", "2", "--out",
                     str(out), "--quiet"]) in (0, 1)
    page = write_report(out)
    d = page_data(page.read_text(encoding="utf-8"))
    assert len(d["imgs"]) == 22 and len(d["cols"]) == 6
    assert all(im["th"] == "1" * 6 for im in d["imgs"]), "thumbnails of every column"
    check = report_html.check_in_browser(page, tmp_path / "shot.png", height=3000)
    _assert_rendered(check, rows=22)
    assert 'id="confusion"' in check.dom and 'id="misclassification"' in check.dom
