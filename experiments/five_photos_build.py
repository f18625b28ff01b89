"""Experiment (2026-11-26): the cdd11-mini train split plus the 32 china/flower scenes of dev_photos_build
(same crops and synthesis as the embedded split), into /tmp/train5.

See reports/training/README.md, "Two more training photographs". From the repository root:

    python -m experiments.five_photos_build --photos /tmp/skl/sklearn/datasets/images --out /tmp/train5
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from experiments.dev_photos_build import PHOTOS_DIR, write_photo_scenes
from harness import cli
from harness.data.mini import ensure


def build(out: Path, photos: Path = PHOTOS_DIR, train: Path | None = None, per_source: int = 16,
          size: str = "mini") -> list[str]:
    """Copy the train split (`train`, default the embedded cdd11-mini one) to `out` (replaced) and add the
    photo scenes (`per_source` per photo, of the embedded data set's `size`); return their names."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(train if train is not None else ensure("train"), out, ignore=shutil.ignore_patterns("*.json"))
    return write_photo_scenes(out, photos, per_source=per_source, size=size)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.five_photos_build", description=cli.description(__doc__),
                                 formatter_class=cli.Formatter)
    ap.add_argument("--photos", type=Path, default=PHOTOS_DIR, help="folder holding china.jpg and flower.jpg")
    ap.add_argument("--out", type=Path, default=Path("/tmp/train5"), help="output folder (replaced)")
    ap.add_argument("--per-source", type=cli.positive_int, default=16, help="scenes per photograph")
    a = ap.parse_args(argv)
    names = build(a.out, a.photos, per_source=a.per_source)
    print(len(list((a.out / "clear").iterdir())), "scenes", names[:3])
    return 0


if __name__ == "__main__":
    sys.exit(main())
