"""Experiment helper (2026-11-26): a development set of NEW photographs for choosing training recipes without
looking at the test split — 16 scenes each of scikit-learn's china.jpg and flower.jpg (CC BY 2.0, from the
scikit-learn wheel), with the crops and synthesis of the embedded train split: 352 degraded images in /tmp/dev
(scene names 0101..0132).

Used with `--val /tmp/dev` by the probes in reports/training/README.md; five_photos_build adds the same scenes
to the train split. Get the photos with `pip download scikit-learn --no-deps` and unzip
`sklearn/datasets/images/*.jpg` into /tmp/skl; then, from the repository root:

    python -m experiments.dev_photos_build --photos /tmp/skl/sklearn/datasets/images --out /tmp/dev
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from harness import cli
from harness.data import mini, synth

PHOTOS_DIR = Path("/tmp/skl/sklearn/datasets/images")
PHOTOS = ("china", "flower")
#: the split name seeds the crops: kept from the first experiment
SPLIT = "train5"


def write_photo_scenes(out: Path, photos_dir: Path = PHOTOS_DIR, *, per_source: int = 16,
                       size: str = "mini") -> list[str]:
    """Write the china/flower scenes (clear + 11 types; `per_source` scenes per photo, default 16) into `out`
    with the crops and synthesis of the embedded train split; return their names. The embedded data set's
    source list is extended only for the duration of the call."""
    photos = {name: Path(photos_dir) / f"{name}.jpg" for name in PHOTOS}
    missing = [str(p) for p in photos.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"missing photo(s): {', '.join(missing)} (see `python -m experiments.dev_photos_build "
                                "--help`)")
    builtin = mini.load_source

    def load(name):
        if name in photos:
            return np.asarray(Image.open(photos[name]).convert("RGB")), None
        return builtin(name)

    spec_size = mini.SIZES[size]
    mini.load_source = load
    mini.SPLITS[SPLIT] = PHOTOS
    spec_size.per_source[SPLIT] = per_source
    try:
        names = []
        for s in mini.scene_specs(SPLIT, size):
            name = f"{int(s.name[:4]) + 100:04d}{s.name[4:]}"
            spec = mini.SceneSpec(name, s.source, s.top, s.left, s.height, s.width, s.flip)
            clean, disp = mini.render_scene(spec, spec_size.shape)
            synth.write_scene(Path(out), name, clean, mini.DEFAULT_SEED, disparity=disp)
            names.append(name)
    finally:
        mini.load_source = builtin
        mini.SPLITS.pop(SPLIT, None)
        spec_size.per_source.pop(SPLIT, None)
    return names


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.dev_photos_build", description=cli.description(__doc__),
                                 formatter_class=cli.Formatter)
    ap.add_argument("--photos", type=Path, default=PHOTOS_DIR, help="folder holding china.jpg and flower.jpg")
    ap.add_argument("--out", type=Path, default=Path("/tmp/dev"), help="output folder (replaced)")
    ap.add_argument("--per-source", type=cli.positive_int, default=16, help="scenes per photograph")
    ap.add_argument("--size", default="mini", choices=sorted(mini.SIZES), help="scene size of the embedded data set")
    a = ap.parse_args(argv)
    if a.out.exists():
        shutil.rmtree(a.out)
    names = write_photo_scenes(a.out, a.photos, per_source=a.per_source, size=a.size)
    print(len(names), "scenes in", a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
