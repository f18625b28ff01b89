"""Experiment helper (2026-11-26): a development set of NEW photographs for choosing training recipes without
looking at the test split — 16 scenes each of scikit-learn's china.jpg and flower.jpg (CC BY 2.0, from the
scikit-learn wheel: `pip download scikit-learn --no-deps`, then unzip `sklearn/datasets/images/*.jpg` into
/tmp/skl), the crops and synthesis of the embedded train split, 352 degraded images in /tmp/dev (scene names
0101..0132).  Used with `--val /tmp/dev` by the probes in reports/training/README.md; five_photos_build.py
adds the same scenes to the train split.  From the repository root:

    PYTHONPATH=. python reports/training/experiments/dev_photos_build.py
"""
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from harness.data import mini, synth

PHOTOS = {"china": "/tmp/skl/sklearn/datasets/images/china.jpg",
          "flower": "/tmp/skl/sklearn/datasets/images/flower.jpg"}


def write_photo_scenes(out: Path) -> list[str]:
    """Writes the 32 china/flower scenes (clear + 11 types) into `out`; returns their names."""
    builtin = mini._load_source

    def load(name):
        if name in PHOTOS:
            return np.asarray(Image.open(PHOTOS[name]).convert("RGB")), None
        return builtin(name)

    mini.load_source = load
    mini.SPLITS["train5"] = tuple(PHOTOS)  # the split name seeds the crops: kept from the first experiment
    mini.SIZES["mini"].per_source["train5"] = 16
    names = []
    for s in mini.scene_specs("train5", "mini"):
        name = f"{int(s.name[:4]) + 100:04d}{s.name[4:]}"
        spec = mini.SceneSpec(name, s.source, s.top, s.left, s.height, s.width, s.flip)
        clean, disp = mini.render_scene(spec, mini.SIZES["mini"].shape)
        synth.write_scene(out, name, clean, mini.DEFAULT_SEED, disparity=disp)
        names.append(name)
    return names


if __name__ == "__main__":
    dev = Path("/tmp/dev")
    if dev.exists():
        shutil.rmtree(dev)
    print(len(write_photo_scenes(dev)), "scenes in", dev)
