"""CDD-11 reader: layout, subsets, and every bad input named in the harness-core issue."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_layout
from PIL import Image
from pngwrite import write_png

from harness.data.cdd11 import DatasetError, iter_loaded, load_pair, read_rgb8, scan
from harness.degradations import TYPES


def test_full_layout_pairs_by_name(layout):
    s = scan(layout)
    assert s.types == TYPES
    assert len(s.pairs) == 22 and all(s.counts[t] == 2 for t in TYPES)
    assert all(p.clear.name == p.degraded.name for p in s.pairs)


def test_subsets_and_limit_are_deterministic(layout):
    s = scan(layout, types=["snow", "haze"], limit=1)
    assert s.types == ("haze", "snow")  # official order, whatever order was asked
    assert [p.name for p in s.pairs] == ["im0.png", "im0.png"]
    s2 = scan(layout, names=["im1.png"])
    assert {p.name for p in s2.pairs} == {"im1.png"}


def test_missing_root_and_missing_clear(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        scan(tmp_path / "nope")
    (tmp_path / "haze").mkdir()
    with pytest.raises(DatasetError, match="no 'clear/' folder"):
        scan(tmp_path)


def test_missing_type_folder_skipped_by_default_error_when_asked(layout):
    import shutil

    shutil.rmtree(layout / "rain")
    s = scan(layout)
    assert "rain" not in s.types and s.skipped_types == ["rain"]
    with pytest.raises(DatasetError, match="rain"):
        scan(layout, types=["rain"])


def test_empty_type_folder(layout):
    for f in (layout / "snow").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match="empty type folder"):
        scan(layout)


def test_non_image_extension_ignored(layout):
    (layout / "haze" / "README.txt").write_text("hello")
    s = scan(layout)
    assert any(p.name == "README.txt" for p in s.ignored) and s.counts["haze"] == 2


def test_no_clear_partner_is_a_per_image_failure(layout):
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(layout / "haze" / "orphan.png")
    s = scan(layout)
    orphan = next(p for p in s.pairs if p.name == "orphan.png")
    lp = load_pair(orphan)
    assert lp.error and "no clear partner" in lp.error and "orphan.png" in lp.error


def test_size_mismatch(layout):
    Image.fromarray(np.zeros((20, 32, 3), np.uint8)).save(layout / "haze" / "im0.png")
    lp = load_pair(next(p for p in scan(layout, types=["haze"]).pairs if p.name == "im0.png"))
    assert "differs from its clear partner" in lp.error and "32x20" in lp.error


def test_truncated_and_non_image_content(layout):
    path = layout / "rain" / "im0.png"
    path.write_bytes(path.read_bytes()[:60])
    (layout / "rain" / "im1.png").write_text("this is not a PNG")
    errors = [load_pair(p).error for p in scan(layout, types=["rain"]).pairs]
    assert all(e and "cannot decode" in e for e in errors)
    assert "im0.png" in errors[0] and "im1.png" in errors[1]


def test_grayscale_rgba_palette_conversions(tmp_path):
    rng = np.random.default_rng(0)
    g = rng.integers(0, 256, (9, 11), dtype=np.uint8)
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    a, notes = read_rgb8(tmp_path / "g.png")
    assert a.shape == (9, 11, 3) and (a == g[..., None]).all() and "grayscale" in notes[0]

    rgba = rng.integers(0, 256, (9, 11, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    a, notes = read_rgb8(tmp_path / "a.png")
    assert (a == rgba[..., :3]).all() and "alpha dropped" in notes[0]

    rgb = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    pal = Image.fromarray(rgb).quantize(colors=16)
    pal.save(tmp_path / "p.png")
    a, notes = read_rgb8(tmp_path / "p.png")
    assert (a == np.asarray(pal.convert("RGB"))).all() and "palette" in notes[0]


def test_16bit_png_keeps_high_byte(tmp_path):
    v = (np.arange(9 * 11 * 3).reshape(9, 11, 3) * 211 + 7).astype(np.uint16)
    write_png(tmp_path / "c16.png", v)
    a, notes = read_rgb8(tmp_path / "c16.png")
    assert (a == (v >> 8)).all() and any("16-bit" in n for n in notes)
    g = (np.arange(99).reshape(9, 11) * 601 + 3).astype(np.uint16)
    write_png(tmp_path / "g16.png", g)
    a, notes = read_rgb8(tmp_path / "g16.png")
    assert (a == (g >> 8)[..., None]).all() and "16-bit grayscale" in notes[0]


def test_iter_loaded_keeps_order_with_threads(layout):
    pairs = scan(layout).pairs
    got = [lp.pair for lp in iter_loaded(pairs, workers=2, prefetch=3)]
    assert got == pairs
    assert all(lp.degraded.dtype == np.uint8 for lp in iter_loaded(pairs[:3], workers=0))


def test_fingerprint_tracks_files(tmp_path):
    root = make_layout(tmp_path / "d", n=2)
    fp = scan(root).fingerprint
    assert scan(root).fingerprint == fp
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(root / "clear" / "im9.png")
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(root / "haze" / "im9.png")
    assert scan(root).fingerprint != fp
