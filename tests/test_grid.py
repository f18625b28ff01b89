"""Visual comparison grid (harness.grid): geometry, crop placement, sources of every column."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import methods_for_tests  # noqa: F401 - registers test-* methods
import numpy as np
import pytest
from conftest import make_layout
from PIL import Image

from harness import grid
from harness.run import main as run_main

H, W = 40, 48


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("grid")
    data = make_layout(base / "data", n=2, size=(H, W), types=("low", "haze"))
    out = base / "run"
    rc = run_main(["--data", str(data), "--out", str(out), "--methods", "identity,test-oom", "--mode", "auto",
                   "--save-images", "--quiet", "--workers", "0"])
    assert rc == 0
    return out


def _arr(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_layout_and_crops_come_from_the_right_places(run_dir, tmp_path, capsys):
    png = tmp_path / "fig.png"
    assert grid.main([str(run_dir), "--out", str(png), "--crop", "16"]) == 0
    assert "2 row(s) x 3 column(s)" in capsys.readouterr().out
    layout = grid.Layout(rows=2, cols=3, crop=16)  # Input, test-oom (auto), GT; haze (I) then low (II)
    img = _arr(png)
    assert img.shape == (layout.height, layout.width, 3)
    assert layout.width == layout.label_w + 3 * (16 + layout.gap)
    assert layout.height == layout.header_h + 2 * (16 + layout.caption_h + layout.gap)
    data = Path(json.loads((run_dir / "run.json").read_text())["data"]["root"])
    left, top = (W - 16) // 2, (H - 16) // 2  # centre crop
    for r, t in enumerate(("haze", "low")):
        restored = run_dir / "images" / "test-oom-auto" / t / "im0.png"
        sources = [data / t / "im0.png", restored, data / "clear" / "im0.png"]
        for c, src in enumerate(sources):
            x, y = layout.origin(r, c)
            assert np.array_equal(img[y:y + 16, x:x + 16], _arr(src)[top:top + 16, left:left + 16]), (t, c)
        x, y = layout.origin(r, 1)  # one pixel by hand: test-oom = 0.5·input + 0.25, rounded half up
        v = _arr(data / t / "im0.png")[top + 3, left + 5].astype(float) / 255
        assert np.array_equal(img[y + 3, x + 5], np.floor((0.5 * v + 0.25) * 255 + 0.5).astype(np.uint8))
    # labels: the header and the label column are not blank
    assert (img[: layout.header_h, layout.label_w:] < 128).any()
    assert (img[layout.header_h:, : layout.label_w] < 128).any()


def test_per_type_and_seeded_crop(run_dir, tmp_path):
    png = tmp_path / "fig.png"
    layout = grid.make_grid(run_dir, png, per_type=2, crop=12, types=["low"], seed=5)
    assert (layout.rows, layout.cols) == (2, 3)
    img = _arr(png)
    data = Path(json.loads((run_dir / "run.json").read_text())["data"]["root"])
    boxes = [grid.crop_box(H, W, 12, seed=5, row=r) for r in range(2)]
    assert boxes[0] != boxes[1] and boxes == [grid.crop_box(H, W, 12, seed=5, row=r) for r in range(2)]
    for r, name in enumerate(("im0.png", "im1.png")):
        left, top, right, bottom = boxes[r]
        x, y = layout.origin(r, 2)
        assert np.array_equal(img[y:y + 12, x:x + 12], _arr(data / "clear" / name)[top:bottom, left:right])


def test_crop_box_centre_and_clamp():
    assert grid.crop_box(40, 48, 16) == (16, 12, 32, 28)
    assert grid.crop_box(20, 30, 128) == (5, 0, 25, 20)  # clamped to the short side, centred


def test_missing_images_folder_is_a_clear_error(run_dir, tmp_path, capsys):
    other = tmp_path / "copy"
    shutil.copytree(run_dir, other, ignore=shutil.ignore_patterns("images", ".lock"))
    assert grid.main([str(other), "--out", str(tmp_path / "x.png")]) == 2
    assert "--save-images" in capsys.readouterr().err
    assert grid.main([str(tmp_path / "nothing"), "--out", str(tmp_path / "x.png")]) == 2


def test_label_font_draws_the_dagger_of_demo_weights():
    from harness.grid import _font

    font = _font(12)
    dagger = font.getmask("†").getbbox()
    missing = font.getmask("\ue000").getbbox()  # a private-use code point: no glyph in any text font
    assert dagger is not None and dagger != missing
