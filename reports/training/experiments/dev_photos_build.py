"""Experiment helper (2026-11-26): a development set of NEW photographs for choosing training recipes without
looking at the test split — 16 scenes each of scikit-learn's china.jpg and flower.jpg (CC BY 2.0, from the
scikit-learn wheel: `pip download scikit-learn --no-deps`, then unzip `sklearn/datasets/images/*.jpg` into
/tmp/skl), the crops and synthesis of the embedded train split, 352 degraded images in /tmp/dev (scene names
0101..0132, as in five_photos_build.py).  Used with `--val /tmp/dev` by the probes in reports/training/README.md.
"""
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from harness.data import mini, synth

src = {"china": "/tmp/skl/sklearn/datasets/images/china.jpg", "flower": "/tmp/skl/sklearn/datasets/images/flower.jpg"}
orig = mini._load_source


def load(name):
    if name in src:
        return np.asarray(Image.open(src[name]).convert("RGB")), None
    return orig(name)


mini.load_source = load
mini.SPLITS["train5"] = ("china", "flower")
mini.SIZES["mini"].per_source["train5"] = 16
specs = mini.scene_specs("train5", "mini")  # the split name seeds the crops: as five_photos_build.py
specs = [mini.SceneSpec(f"{int(s.name[:4]) + 100:04d}" + s.name[4:],
                        *[getattr(s, f) for f in ("source", "top", "left", "height", "width", "flip")]) for s in specs]
out = Path("/tmp/dev")
if out.exists():
    shutil.rmtree(out)
for s in specs:
    clean, disp = mini.render_scene(s, mini.SIZES["mini"].shape)
    synth.write_scene(out, s.name, clean, mini.DEFAULT_SEED, disparity=disp)
print(len(list((out / "clear").iterdir())), "scenes in", out)
