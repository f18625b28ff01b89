"""`python -m harness.regenerate`: regenerate everything in reports/ for the embedded default data set.

This is the main job behind `nox -s eval`. Each step is also a command of its own (reports/README.md
lists them); this module only runs them in order with the project's fixed settings. The calibration and the
tiling-cost study are experiments (`experiments/`, run from a repository checkout):

1. calibration of the synthetic data set      → reports/calibration.{md,csv}
2. evaluation of the demo-weight methods       → reports/cdd11-mini/ (records, summary, Table I md/tex/csv,
   in auto and text mode, images saved           confusion matrices, misclassification cost)
3. Table I with significance marks + bootstrap → reports/cdd11-mini/table1.md, significance.md
4. visual comparison grid (paper's Fig. 5)      → reports/cdd11-mini/grid.png
5. PSNR cost of tiled inference                → reports/tiling_cost.{md,json}
6. CPU timing table at 1080p and 2K            → reports/timing_cpu/, reports/flops/
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from harness import cli

DEMO_METHODS = "identity,onerestore,vlur"
TIMED_METHODS = "onerestore,vlur"
FLOPS_METHODS = ("identity,onerestore,vlur,promptir,airnet,mirnetv2,oknet,fourmer,weatherdiff,transweather,"
                 "wgws-net,moce-ir")  # every registered restorer


#: the repository root: `experiments` is importable from there (it is not part of the installed package)
ROOT = Path(__file__).resolve().parents[1]


def _step(title: str, argv: list[str]) -> int:
    print(f"\n== {title}\n$ {' '.join(argv)}", flush=True)
    env = dict(os.environ)
    if argv[0] == "-m" and argv[1].startswith("experiments."):
        if not (ROOT / "experiments").is_dir():
            print(f"{argv[1]}: needs a repository checkout (no {ROOT / 'experiments'})", file=sys.stderr)
            return 2
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, *argv], env=env).returncode


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.regenerate", description=cli.description(__doc__),
                                formatter_class=cli.Formatter)
    p.add_argument("--out", type=Path, default=Path("reports"))
    p.add_argument("--skip-timing", action="store_true", help="skip the CPU timing table (the slowest step)")
    p.add_argument("--only-timing", action="store_true", help="run only the timing steps")
    args = p.parse_args(argv)
    out: Path = args.out
    run_dir = out / "cdd11-mini"
    failed = []
    steps = [
        ("calibration", ["-m", "experiments.calibration", "--out", str(out), "--seeds", "7,11"]),
        ("evaluation", ["-m", "harness.run", "--methods", DEMO_METHODS, "--mode", "auto,text", "--out", str(run_dir),
                        "--save-images", "--quiet"]),
        ("Table I with significance", ["-m", "harness.tables", str(run_dir), "--significance"]),
        ("bootstrap intervals", ["-m", "harness.stats", str(run_dir), "--write", str(run_dir / "significance.md")]),
        ("comparison grid", ["-m", "harness.grid", str(run_dir), "--out", str(run_dir / "grid.png"),
                             "--per-type", "1", "--crop", "128"]),
        ("PSNR cost of tiling", ["-m", "experiments.tiling_cost", "--methods", "onerestore,vlur", "--tile", "128",
                                 "--overlap", "32", "--limit", "2", "--out", str(out / "tiling_cost.md")]),
    ]
    if not args.skip_timing:
        steps += [
            ("CPU timing", ["-m", "harness.timing", "--methods", TIMED_METHODS, "--sizes", "1080p,2k",
                            "--device", "cpu", "--random-weights", "--warmup", "1", "--iters", "2",
                            "--min-seconds", "0", "--resume", "--out", str(out / "timing_cpu")]),
            ("FLOPs of every method", [
                "-m", "harness.timing", "--methods", FLOPS_METHODS, "--sizes", "1080p,2k", "--device", "cpu",
                "--random-weights", "--flops-only", "--out", str(out / "flops")]),
        ]
    if args.only_timing:
        steps = [s for s in steps if "timing" in s[0].lower() or "FLOPs" in s[0]]
    for title, cmd in steps:
        if _step(title, cmd) != 0:
            failed.append(title)
    if failed:
        print(f"\nsteps that failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"\nreports regenerated in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
