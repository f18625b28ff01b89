"""Experiment (2026-11-26): the cdd11-mini train split plus 16 scenes each of scikit-learn's china.jpg and
flower.jpg (CC BY 2.0, from the scikit-learn wheel: `pip download scikit-learn --no-deps`, then unzip
`sklearn/datasets/images/*.jpg` into /tmp/skl), same crops and synthesis as the embedded split, into /tmp/train5.
See reports/training/README.md, "Two more training photographs".
"""
import os
import shutil

import numpy as np
from pathlib import Path
from PIL import Image
from harness.data import mini, synth
from harness.data.mini import ensure
src = {"china": "/tmp/skl/sklearn/datasets/images/china.jpg", "flower": "/tmp/skl/sklearn/datasets/images/flower.jpg"}
orig = mini._load_source
def load(name):
    if name in src:
        return np.asarray(Image.open(src[name]).convert("RGB")), None
    return orig(name)
mini.load_source = load
mini.SPLITS["train5"] = ("china", "flower")
mini.SIZES["mini"].per_source["train5"] = 16
specs = mini.scene_specs("train5", "mini")
specs = [mini.SceneSpec(s.name.replace(s.name[:4], f"{int(s.name[:4]) + 100:04d}"), *[getattr(s, f) for f in ("source","top","left","height","width","flip")]) for s in specs]
out = Path("/tmp/train5")
if out.exists(): shutil.rmtree(out)
base = ensure("train")
shutil.copytree(base, out, ignore=shutil.ignore_patterns("*.json"))
for s in specs:
    clean, disp = mini.render_scene(s, mini.SIZES["mini"].shape)
    synth.write_scene(out, s.name, clean, mini.DEFAULT_SEED, disparity=disp)
print(len(os.listdir(out / "clear")), "scenes", [s.name for s in specs][:3])
