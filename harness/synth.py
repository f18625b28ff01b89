"""Command line: build a synthetic CDD-11 data set from your own clean photos.

    python -m harness.synth --clean DIR --out ROOT --seed S [--disparity DIR] [--types low,haze,...]

Writes ROOT/clear/NAME.png and ROOT/<type>/NAME.png (lossless 8-bit RGB, NAME = each photo's stem) for
the 11 CDD-11 types (or those given). The physics and its calibrated defaults live in
`harness.data.synth`; this module is only the wrapper.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from harness.cdd11 import parse_types
from harness.data import synth


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.synth",
                                 description="Synthesize the 11 CDD-11 degradation types from clean photos.")
    ap.add_argument("--clean", type=Path, required=True, help="folder of clean photos (png/jpg/...)")
    ap.add_argument("--out", type=Path, required=True, help="output root (gets clear/ and one folder per type)")
    ap.add_argument("--seed", type=int, default=0, help="seed of every random draw (same seed = same bytes)")
    ap.add_argument("--disparity", type=Path, default=None,
                    help="optional folder of STEM.npy disparity maps (larger = nearer) used for haze depth")
    ap.add_argument("--types", default="all", help="comma-separated CDD-11 types, default all 11")
    ap.add_argument("--params", type=Path, default=None,
                    help="optional JSON file overriding fields of harness.data.synth.SynthParams")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)

    overrides = json.loads(a.params.read_text()) if a.params else None
    params = synth.params_from_overrides(overrides)
    t0 = time.perf_counter()

    def progress(i: int, n: int, name: str) -> None:
        if not a.quiet:
            print(f"[{i}/{n}] {name}  {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)

    try:
        names = synth.generate(a.clean, a.out, a.seed, disparity_dir=a.disparity, types=parse_types(a.types),
                               params=params, progress=progress)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(names)} scenes to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
