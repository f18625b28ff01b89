"""The comparison-release path: a release-shaped folder scored through the ordinary evaluation path, against
independent skimage computations on the same files; the published-number marks and the Table I audit."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import make_layout
from PIL import Image, ImageFilter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from harness import release

TYPES2 = ("haze", "low_rain")


def _skimage(gt: np.ndarray, out: np.ndarray) -> tuple[float, float]:
    g, o = gt / 255.0, out / 255.0
    return (peak_signal_noise_ratio(g, o, data_range=1.0),
            structural_similarity(g, o, win_size=7, channel_axis=-1, data_range=1.0))


@pytest.fixture
def release_root(tmp_path: Path) -> Path:
    data = make_layout(tmp_path / "data", n=3, size=(24, 32), types=TYPES2)
    root = tmp_path / "release"
    shutil.copytree(data / "clear", root / "00_gt")
    for t in TYPES2:
        shutil.copytree(data / t, root / "01_input" / t)
        (root / "02_Blur" / t).mkdir(parents=True)
        (root / "03_Gappy" / t).mkdir(parents=True)
        for f in sorted((data / t).iterdir()):
            Image.open(f).filter(ImageFilter.GaussianBlur(1)).save(root / "02_Blur" / t / f.name)
            if f.name != "im1.png":
                shutil.copy2(f, root / "03_Gappy" / t / f.name)
        Image.new("RGB", (20, 24)).save(root / "03_Gappy" / t / "im2.png")  # wrong size
    return root


def test_release_scores_equal_skimage_and_fail_per_image(release_root, tmp_path):
    res = release.score_release(release_root, tmp_path / "out", progress=False, log=lambda m: None)
    by = {(r["method"], r["type"], r["file"]): r for r in res.records}
    for t in TYPES2:
        for i in range(3):
            gt = np.asarray(Image.open(release_root / "00_gt" / f"im{i}.png"))
            for method, folder in (("identity", "01_input"), ("02_Blur", "02_Blur")):
                out = np.asarray(Image.open(release_root / folder / t / f"im{i}.png"))
                ps, ss = _skimage(gt, out)
                rec = by[(method, t, f"im{i}.png")]
                assert rec["psnr"] == pytest.approx(ps, abs=1e-9) and rec["ssim"] == pytest.approx(ss, abs=1e-6)
        assert "missing output" in by[("03_Gappy", t, "im1.png")]["error"]
        assert "20x24" in by[("03_Gappy", t, "im2.png")]["error"]
    assert "01_input" not in {r["method"] for r in res.records}  # the Input row is the identity column
    assert "02_Blur" in (tmp_path / "out" / "table1.md").read_text()
    assert res.exit_code == 1  # some images failed


def test_channel_order_cannot_change_the_numbers(release_root):
    gt = np.asarray(Image.open(release_root / "00_gt" / "im0.png"))
    out = np.asarray(Image.open(release_root / "02_Blur" / "haze" / "im0.png"))
    rgb = _skimage(gt, out)
    bgr = _skimage(gt[..., ::-1], out[..., ::-1])  # what OpenCV's imread gives the official script
    assert rgb[0] == pytest.approx(bgr[0], abs=1e-12) and rgb[1] == pytest.approx(bgr[1], abs=1e-12)


def test_named_methods_and_bad_roots(release_root, tmp_path):
    res = release.score_release(release_root, tmp_path / "o", ["02_Blur"], progress=False, log=lambda m: None)
    assert {r["method"] for r in res.records} == {"identity", "02_Blur"}
    with pytest.raises(release.ReleaseError, match="no method folder 09_Nope"):
        release.score_release(release_root, tmp_path / "o2", ["09_Nope"], progress=False)
    with pytest.raises(release.ReleaseError, match="00_gt"):
        release.score_release(release_root / "01_input", tmp_path / "o3", progress=False)


def test_published_marks_follow_the_printed_rounding():
    sheet = release.load_sheet()["04_MIRNetv2"]["snow"]
    recs = [{"method": "04_MIRNetv2", "mode": "text", "type": "snow", "file": "a.png", "status": "ok",
             "psnr": sheet[0], "ssim": sheet[1], "weights": "released outputs"}]
    text = release.render_release_published(recs)
    line = next(ln for ln in text.splitlines() if ln.startswith("| 04_MIRNetv2") and "Snow" in ln)
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert "≠" not in cells[4] and "≠" not in cells[5]  # equal to the sheet
    assert cells[6].startswith("31.20") and "≠" in cells[6]  # Table I prints 31.20 for 31.194568


def test_audit_lists_a_hand_checked_disagreement():
    text = release.audit_published()
    # Table I's MIRNet snow PSNR is 31.20; the sheet's 04_MIRNetv2 snow is 31.194568, which rounds to 31.19
    assert any(ln.startswith("| mirnet") and "IV Snow" in ln and "PSNR" in ln and "31.19" in ln
               for ln in text.splitlines())
    # ... while its haze PSNR agrees (25.30 printed; the sheet's value rounds to it) and is not listed
    sheet = release.load_sheet()["04_MIRNetv2"]["haze"][0]
    assert round(sheet, 2) == 25.30
    assert not any(ln.startswith("| mirnet") and "I Haze " in ln and "PSNR" in ln for ln in text.splitlines())


def test_jobs_score_in_parallel_processes_with_the_same_tables(release_root, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "harness.release", str(release_root), "--quiet", "--workers", "0"]
    one = subprocess.run([*base, "--out", str(tmp_path / "one")], env=env, capture_output=True, text=True,
                         timeout=300)
    two = subprocess.run([*base, "--out", str(tmp_path / "two"), "--jobs", "2"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert one.returncode == two.returncode == 1, two.stderr[-2000:]  # 03_Gappy has failed images
    assert (tmp_path / "one" / "table1.md").read_bytes() == (tmp_path / "two" / "table1.md").read_bytes()
    import json

    assert json.loads((tmp_path / "two" / "summary.json").read_text())["processes"] == 2


def test_demo_release_from_the_embedded_data_round_trips(tmp_path):
    root = release.make_demo_release(tmp_path / "demo", methods=("identity",), limit=1, progress=False,
                                     log=lambda m: None)
    assert sorted(p.name for p in root.iterdir()) == ["00_gt", "01_input", "02_identity-demo"]
    res = release.score_release(root, tmp_path / "scores", progress=False, log=lambda m: None)
    assert res.exit_code == 0 and len(res.records) == 22
    by = {}
    for r in res.records:
        by.setdefault((r["type"], r["file"]), []).append(r["psnr"])
    assert all(len(v) == 2 and v[0] == v[1] for v in by.values())  # the identity outputs equal the inputs
    with pytest.raises(release.ReleaseError, match="not empty"):
        release.make_demo_release(root, methods=("identity",), limit=1, progress=False)
