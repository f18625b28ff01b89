"""Synthetic CDD-11 generator (harness.data.synth) and its command line, and the embedded cdd11-mini set."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.data import mini, synth
from harness.degradations import CLEAR, TYPES

ALL_FOLDERS = (CLEAR, *TYPES)


# ----------------------------------------------------------------------------------------------------
# helpers


def _clean_folder(folder: Path) -> Path:
    """Two small clean photos, one JPEG and one PNG (with alpha), as a user would bring them."""
    folder.mkdir(parents=True, exist_ok=True)
    img, _ = mini.load_source("coffee")
    Image.fromarray(img).resize((72, 48), Image.Resampling.BICUBIC).save(folder / "cup.jpg", quality=95)
    img2, _ = mini.load_source("chelsea")
    rgba = Image.fromarray(img2).resize((66, 44), Image.Resampling.BICUBIC).convert("RGBA")
    rgba.save(folder / "cat.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def _scene(name: str = "motorcycle_left", shape: tuple[int, int] = (96, 144)) -> synth.Scene:
    spec = next(s for s in mini.scene_specs("test", "mini") if s.source == name)
    clean, disp = mini.render_scene(spec, shape)
    return synth.Scene.from_image(clean, disp)


# ----------------------------------------------------------------------------------------------------
# generator: layout and determinism


def test_layout_and_byte_identical_rebuild(tmp_path):
    clean = _clean_folder(tmp_path / "photos")
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert synth.main(["--clean", str(clean), "--out", str(a), "--seed", "5", "--quiet"]) == 0
    synth.generate(clean, b, 5)
    synth.generate(clean, c, 6)

    for t in ALL_FOLDERS:
        names = sorted(p.name for p in (a / t).iterdir())
        assert names == ["cat.png", "cup.png"], t
    assert sorted(p.name for p in a.iterdir()) == sorted(ALL_FOLDERS)
    for name, size in (("cup.png", (72, 48)), ("cat.png", (66, 44))):
        for t in ALL_FOLDERS:
            with Image.open(a / t / name) as im:
                assert im.format == "PNG" and im.mode == "RGB" and im.size == size
                assert not {k for k in im.info if k not in ("dpi", "gamma")}  # no metadata / timestamps

    ta, tb, tc = _tree_bytes(a), _tree_bytes(b), _tree_bytes(c)
    assert ta == tb  # same seed: byte-identical
    assert ta.keys() == tc.keys()
    differing = [k for k in ta if ta[k] != tc[k]]
    assert all(k.split("/")[0] != CLEAR for k in differing)  # clear copies never change
    assert len(differing) == 2 * len(TYPES)  # every degraded file changes with the seed


def test_subseeds_independent_of_order_and_subset():
    sc = _scene("coffee", (48, 72))
    clean = synth.to_uint8(sc.clean)
    full = synth.synthesize(clean, "x.png", 3)
    part = synth.synthesize(clean, "x.png", 3, types=("haze_snow", "low"))
    assert np.array_equal(full["haze_snow"], part["haze_snow"]) and np.array_equal(full["low"], part["low"])
    assert not np.array_equal(full["low"], synth.synthesize(clean, "y.png", 3, types=("low",))["low"])


def test_composition_order_and_type_names():
    assert synth.stages_of("low_haze_rain") == ("low", "rain", "haze")
    assert synth.stages_of("haze_snow") == ("snow", "haze")
    assert synth.stages_of("low_snow") == ("low", "snow")
    assert all(synth.stages_of(t) for t in TYPES)
    with pytest.raises(ValueError, match="unknown CDD-11 type"):
        synth.stages_of("fog")


def test_cli_errors_on_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert synth.main(["--clean", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "no images" in capsys.readouterr().err


def test_params_overrides_from_json():
    p = synth.params_from_overrides(json.loads('{"haze_beta": [1.5, 1.5], "snow_classes": '
                                               '[{"density": 1e-4, "radius": [1, 2], "defocus": 1, '
                                               '"trail": [0, 0], "opacity": [1, 1]}]}'))
    assert p.haze_beta == (1.5, 1.5) and isinstance(p.snow_classes[0], synth.SnowClass)
    assert p.digest() != synth.DEFAULT_PARAMS.digest()
    with pytest.raises(ValueError, match="unknown SynthParams"):
        synth.params_from_overrides({"fog": 1})


# ----------------------------------------------------------------------------------------------------
# physics of each degradation


def test_guided_filter_smooths_but_keeps_edges():
    x = np.zeros((40, 40))
    x[:, 20:] = 1.0
    noisy = x + np.random.default_rng(0).normal(0, 0.1, x.shape)
    out = synth.guided_filter(noisy, noisy, 4, 0.1)
    assert out[:, 5:15].std() < 0.5 * noisy[:, 5:15].std()  # flat parts smoothed
    assert out[:, 23:].mean() - out[:, :17].mean() > 0.9  # the step survives
    assert np.allclose(synth.box_mean(np.ones((7, 9)), 3), 1.0)


def test_haze_brightens_and_flattens_more_where_far():
    sc = _scene()
    out = synth.apply_haze(sc.clean, sc, np.random.default_rng(1))
    assert out.mean() > sc.clean.mean()
    assert out.std() < sc.clean.std()
    far, near = sc.near < np.quantile(sc.near, 0.25), sc.near > np.quantile(sc.near, 0.75)
    change = np.abs(out - sc.clean).mean(axis=2)
    assert change[far].mean() > change[near].mean()
    t = synth.transmission(sc.near, 1.5, 0.7)
    assert t[far].mean() < t[near].mean() and t.min() >= np.exp(-1.5 * 0.7) - 1e-12
    # local contrast (gradient magnitude) is lost more where far
    gx = np.abs(np.diff(out.mean(2), axis=1))[:, :] / (np.abs(np.diff(sc.clean.mean(2), axis=1)) + 1e-3)
    assert np.median(gx[far[:, 1:]]) < np.median(gx[near[:, 1:]])


def test_depth_prior_without_disparity():
    sc = _scene("chelsea")
    assert sc.near.min() >= 0 and sc.near.max() <= 1
    prior = synth.depth_prior(sc.clean)
    assert prior[-8:].mean() > prior[:8].mean()  # bottom of the photo nearer than the top


def test_low_light_darkens_and_adds_noise():
    sc = _scene()
    out = synth.apply_low(sc.clean, sc, np.random.default_rng(2))
    assert out.mean() < 0.6 * sc.clean.mean()
    flat = np.full((64, 64, 3), 0.6)
    flat_scene = synth.Scene(flat, synth.illumination(flat), np.ones((64, 64)))
    dark = synth.apply_low(flat, flat_scene, np.random.default_rng(3))
    assert dark.mean() < 0.45
    assert 0.02 < dark.std() < 0.1  # Gaussian noise of σ in [0.03, 0.08] (partly clipped at 0)


def test_rain_and_snow_add_bright_structures():
    from scipy import ndimage

    sc = _scene("coffee")
    rain = synth.apply_rain(sc.clean, sc, np.random.default_rng(4))
    snow = synth.apply_snow(sc.clean, sc, np.random.default_rng(5))
    for out in (rain, snow):
        diff = (out - sc.clean).mean(axis=2)
        assert diff.min() >= -1e-12  # additive / screen-like: never darker
        assert out.mean() > sc.clean.mean()
        bright = diff > 0.15
        assert 0.001 < bright.mean() < 0.4
        _, n = ndimage.label(bright)
        assert n >= 3  # several separate streaks / flakes
    layer = synth.rain_layer((128, 128), np.random.default_rng(6))
    assert layer.max() > 0.3 and layer.min() >= 0
    # streaks are elongated along one direction: the layer correlates far more along it than across
    k = synth.streak_kernel(20, 2, 0.0)
    assert k.shape[0] >= 20 and k[:, k.shape[1] // 2].sum() > 5 * k[k.shape[0] // 2].sum()


# ----------------------------------------------------------------------------------------------------
# embedded data set: scenes, cache, manifest


def test_scene_lists_disjoint_and_sized():
    test, train = mini.scene_specs("test", "mini"), mini.scene_specs("train", "mini")
    assert 12 <= len(test) <= 16 and 40 <= len(train) <= 60
    assert not {s.source for s in test} & {s.source for s in train}
    assert len({s.name for s in test}) == len(test)
    assert mini.SIZES["mini"].shape == (256, 384)
    full = mini.scene_specs("test", "full")
    assert len(full) == 200 and mini.SIZES["full"].shape == (720, 1080)
    clean, disp = mini.render_scene(test[0], (256, 384))
    assert clean.shape == (256, 384, 3) and clean.dtype == np.uint8 and disp.shape == (256, 384)


def test_ensure_builds_verifies_and_rebuilds(tmp_path):
    root = mini.ensure("test", size="tiny", root=tmp_path)
    assert root == mini.split_dir("test", "tiny", tmp_path) and root.name == "test"
    assert mini.version_tag("test", "tiny") in root.parent.name
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(ALL_FOLDERS)
    names = sorted(p.name for p in (root / CLEAR).iterdir())
    assert len(names) == 3 and all(sorted(p.name for p in (root / t).iterdir()) == names for t in TYPES)
    assert mini.verify(root) == []
    manifest = json.loads((root / mini.MANIFEST).read_text())
    assert len(manifest["files"]) == 12 * 3 + 1  # + scenes.json
    original = _tree_bytes(root)

    victim = root / "haze" / names[0]
    mtime = victim.stat().st_mtime_ns
    assert mini.ensure("test", size="tiny", root=tmp_path) == root  # intact: reused
    assert victim.stat().st_mtime_ns == mtime

    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    assert any("checksum" in p for p in mini.verify(root))
    mini.ensure("test", size="tiny", root=tmp_path)
    assert mini.verify(root) == [] and _tree_bytes(root) == original

    (root / "snow" / names[1]).unlink()
    assert any("missing" in p for p in mini.verify(root))
    mini.ensure("test", size="tiny", root=tmp_path)
    assert mini.verify(root) == [] and _tree_bytes(root) == original

    (root / mini.MANIFEST).unlink()  # a partial build has no manifest
    mini.ensure("test", size="tiny", root=tmp_path)
    assert mini.verify(root) == []
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_ensure_cache_env_and_concurrency(tmp_path, monkeypatch):
    monkeypatch.setenv(mini.ENV_CACHE, str(tmp_path / "cache"))
    assert mini.cache_base() == tmp_path / "cache"
    results: list[Path] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(mini.ensure("train", size="tiny"))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors and len(set(results)) == 1
    root = results[0]
    assert root.is_relative_to(tmp_path / "cache") and mini.verify(root) == []
    leftovers = [p for p in root.parent.iterdir() if p.name.startswith(".")]
    assert not leftovers
    assert os.path.basename(root) == "train"


def test_version_tag_tracks_generator_parameters():
    changed = synth.params_from_overrides({"haze_beta": (1.0, 1.5)})
    assert mini.version_tag("test", "mini", changed) != mini.version_tag("test", "mini")
    assert mini.version_tag("test", "mini", seed=1) != mini.version_tag("test", "mini")
