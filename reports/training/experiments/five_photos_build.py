"""Experiment (2026-11-26): the cdd11-mini train split plus the 32 china/flower scenes of
dev_photos_build.py (same crops and synthesis as the embedded split), into /tmp/train5.
See reports/training/README.md, "Two more training photographs".  From the repository root:

    PYTHONPATH=. python reports/training/experiments/five_photos_build.py
"""
import shutil
from pathlib import Path

from dev_photos_build import write_photo_scenes

from harness.data.mini import ensure

out = Path("/tmp/train5")
if out.exists():
    shutil.rmtree(out)
shutil.copytree(ensure("train"), out, ignore=shutil.ignore_patterns("*.json"))
names = write_photo_scenes(out)
print(len(list((out / "clear").iterdir())), "scenes", names[:3])
