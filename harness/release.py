"""`python -m harness.release ROOT --out DIR`: score a comparison release — folders of restored images that
authors published — with the official convention, and set it beside the published numbers.

The OneRestore authors publish, beside CDD-11, the restored test images of every method they compare:

    ROOT/00_gt/NAME.png                      ground truth
    ROOT/01_input/<type>/NAME.png            the degraded inputs (the Input row)
    ROOT/NN_Method/<type>/NAME.png           one folder per method (02_MIRNet ... 17_OneRestore)

Every number of VL-UR's Table I except VL-UR's own comes from those folders. This command scores a whole
release root (every ``NN_*`` folder it finds, or those named with ``--methods``) through the ordinary
evaluation path: the release is viewed as a CDD-11 layout (clear = 00_gt, <type> = 01_input/<type>), Input is
the identity method on that view, and each method folder is an ``outputs:NN_Method=ROOT/NN_Method`` method
(`harness.outputs`: 8-bit PNGs scored as stored, per-image failures for missing or wrongly sized files).
Records, tables, significance and resume behave as for any run. ``--published`` adds release_published.md:
every cell beside the release's own sheet and VL-UR's Table I, with the differences, cells outside the
published rounding marked.

The official script reads images with OpenCV (BGR order); PSNR and the channel-mean SSIM are symmetric in the
channels, so the order cannot change either number (tests/test_release.py shows it).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from tabulate import tabulate

from harness import cli
from harness.cli import log
from harness.data.cdd11 import DatasetError
from harness.degradations import CLEAR, ROMAN, SHORT_NAMES, TABLE1_ORDER, TYPES
from harness.results import AVG

GT_FOLDER = "00_gt"
INPUT_FOLDER = "01_input"
FOLDER_RE = re.compile(r"^\d\d_[A-Za-z0-9._+-]+$")
#: Release folder → the release sheet's row name (the sheet misspells NAFNet).
SHEET_ALIASES = {"07_NAFNet": "07_NANFNet"}
#: VL-UR's Table I column → the release folder whose numbers it prints. VL-UR's "MIRNet" column carries the
#: sheet's MIRNet-v2 row (04_MIRNetv2), its OneRestore column the text-prompted 17_OneRestore row.
TABLE1_TO_RELEASE = {
    "mirnet": "04_MIRNetv2", "fourmer": "09_Fourmer", "oknet": "10_OKNet", "airnet": "11_AirNet",
    "transweather": "12_TransWeather", "weatherdiffusion": "13_WeatherDiff", "promptir": "14_PromptIR",
    "wgws": "15_WGWSNet", "onerestore": "17_OneRestore",
}
#: Printed precision of each published table: (PSNR decimals, SSIM decimals).
SHEET_DIGITS = (6, 6)
TABLE1_DIGITS = (2, 3)


class ReleaseError(DatasetError):
    """A release root that cannot be scored (exit 2)."""


def method_folders(root: Path) -> list[str]:
    """The method folders of a release root (NN_Name, 00_gt excluded), in release order."""
    return sorted(p.name for p in Path(root).iterdir() if p.is_dir() and FOLDER_RE.match(p.name)
                  and p.name != GT_FOLDER)


def make_view(root: Path, where: Path) -> Path:
    """A CDD-11-layout view of a release (symbolic links, nothing copied): clear → 00_gt, <type> → 01_input/<type>."""
    root = Path(root).resolve()
    if not (root / GT_FOLDER).is_dir():
        found = ", ".join(method_folders(root)[:6]) if root.is_dir() else "nothing (not a folder)"
        raise ReleaseError(f"{root} has no {GT_FOLDER}/ folder (found: {found}); expected the release layout "
                           f"ROOT/{GT_FOLDER}/NAME and ROOT/NN_Method/<type>/NAME")
    if not (root / INPUT_FOLDER).is_dir():
        raise ReleaseError(f"{root} has no {INPUT_FOLDER}/ folder: the degraded inputs pair the ground truth")
    where.mkdir(parents=True, exist_ok=True)
    os.symlink(root / GT_FOLDER, where / CLEAR)
    for t in TYPES:
        if (root / INPUT_FOLDER / t).is_dir():
            os.symlink(root / INPUT_FOLDER / t, where / t)
    return where


def score_release(root: Path, out: Path, methods: Sequence[str] | None = None, *, published: bool = False,
                  limit: int | None = None, types: Sequence[str] | None = None, progress: bool = True,
                  workers: int = 2, log=print):
    """Score the release at `root` into `out` (see the module doc); returns `harness.evaluation.Results`."""
    from harness.evaluation import evaluate

    root = Path(root)
    if not root.is_dir():
        raise ReleaseError(f"release root {root} does not exist or is not a folder")
    folders = method_folders(root)
    wanted = [f for f in folders if f != INPUT_FOLDER] if methods is None else list(methods)
    unknown = [m for m in wanted if m not in folders]
    if unknown:
        raise ReleaseError(f"no method folder {', '.join(unknown)} under {root} (found: {', '.join(folders)})")
    specs = ["identity"] + [f"outputs:{m}={root.resolve() / m}" for m in wanted if m != INPUT_FOLDER]
    with tempfile.TemporaryDirectory(prefix="vlur-release-") as tmp:
        view = make_view(root, Path(tmp) / "view")
        res = evaluate(methods=specs, modes=("text",), data=view, out=out, limit=limit, types=types,
                       progress=progress, workers=workers, log=log)
    if published and res.records:
        path = Path(out) / "release_published.md"
        path.write_text(render_release_published(res.records))
        log(f"wrote {path}")
    return res


# ------------------------------------------------------------------------------------- published numbers


def load_sheet() -> dict[str, dict[str, tuple[float, float]]]:
    """The release's own per-type sheet: {row name: {type: (psnr, ssim)}}."""
    out: dict[str, dict[str, tuple[float, float]]] = defaultdict(dict)
    with (resources.files("harness") / "reference" / "onerestore_cdd11_metrics.csv").open() as f:
        for row in csv.DictReader(f):
            out[row["method"]][row["degradation"]] = (float(row["psnr"]), float(row["ssim"]))
    return dict(out)


def load_table1() -> dict[str, dict[str, tuple[float, float]]]:
    """VL-UR's Table I as printed: {column: {type or 'average': (psnr, ssim)}}."""
    out: dict[str, dict[str, tuple[float, float]]] = defaultdict(dict)
    with (resources.files("harness") / "reference" / "vlur_table1.csv").open() as f:
        for row in csv.DictReader(f):
            out[row["method"]][row["degradation"]] = (float(row["psnr"]), float(row["ssim"]))
    return dict(out)


def _outside(measured: float, printed: float, digits: int) -> bool:
    """True when `measured` does not round to the printed value (half a unit of the last printed digit)."""
    return abs(measured - printed) > 0.5 * 10 ** -digits + 1e-12


def render_release_published(records: list[dict]) -> str:
    """Measured vs the release sheet and VL-UR's Table I, per method folder and type; ≠ marks a cell that does
    not round to the published value."""
    from harness import results

    agg = results.aggregate(records)
    sheet, table1 = load_sheet(), load_table1()
    release_to_t1 = {v: k for k, v in TABLE1_TO_RELEASE.items()}
    body = []
    for label, per in agg.items():
        folder = INPUT_FOLDER if label.startswith("Input") else label
        s = sheet.get(SHEET_ALIASES.get(folder, folder), {})
        t1 = table1.get(release_to_t1.get(folder, ""), {})
        for t in [*[x for x in TABLE1_ORDER if x in per], AVG]:
            if t not in per:
                continue
            mp, ms = per[t]["psnr"], per[t]["ssim"]
            row = [folder, f"{ROMAN.get(t, 'Avg')} {SHORT_NAMES.get(t, '')}".strip(), f"{mp:.4f}", f"{ms:.4f}"]
            for ref, digits in ((s, SHEET_DIGITS), (t1, TABLE1_DIGITS)):
                pub = ref.get(t)
                if pub is None and t == AVG and ref is s and all(x in s for x in TYPES):
                    pub = (sum(s[x][0] for x in TYPES) / len(TYPES), sum(s[x][1] for x in TYPES) / len(TYPES))
                if pub is None:
                    row += ["–", "–"]
                    continue
                mark_p = " ≠" if _outside(mp, pub[0], digits[0]) else ""
                mark_s = " ≠" if _outside(ms, pub[1], digits[1]) else ""
                row += [f"{pub[0]:.{digits[0]}f} ({mp - pub[0]:+.{digits[0]}f}){mark_p}",
                        f"{pub[1]:.{digits[1]}f} ({ms - pub[1]:+.{digits[1]}f}){mark_s}"]
            body.append(row)
    head = ["Folder", "Degradation", "PSNR", "SSIM", "PSNR sheet (Δ)", "SSIM sheet (Δ)", "PSNR Table I (Δ)",
            "SSIM Table I (Δ)"]
    return ("# Measured vs published\n\n≠: the measured value does not round to the published one (sheet: 6 "
            "decimals; VL-UR Table I: 2 / 3 decimals).\n\n"
            + tabulate(body, headers=head, tablefmt="github", disable_numparse=True) + "\n")


def audit_published() -> str:
    """Where VL-UR's Table I and the release sheet disagree: every Table I cell against the sheet's row that the
    column maps to (`TABLE1_TO_RELEASE`), rounded to Table I's precision."""
    sheet, table1 = load_sheet(), load_table1()
    rows, n_cells = [], 0
    for col, folder in TABLE1_TO_RELEASE.items():
        s = sheet.get(SHEET_ALIASES.get(folder, folder), {})
        for t in [*TABLE1_ORDER, AVG]:
            printed = table1.get(col, {}).get(t)
            if printed is None:
                continue
            if t == AVG:
                if not all(x in s for x in TYPES):
                    continue
                ref = (sum(s[x][0] for x in TYPES) / len(TYPES), sum(s[x][1] for x in TYPES) / len(TYPES))
            elif t in s:
                ref = s[t]
            else:
                continue
            n_cells += 1
            bad = [(k, p, r, d) for k, p, r, d in (("PSNR", printed[0], ref[0], TABLE1_DIGITS[0]),
                                                  ("SSIM", printed[1], ref[1], TABLE1_DIGITS[1]))
                   if _outside(r, p, d)]
            for k, p, r, d in bad:
                rows.append([col, folder, f"{ROMAN.get(t, 'Avg')} {SHORT_NAMES.get(t, '')}".strip(), k,
                             f"{p:.{d}f}", f"{r:.6f}", f"{r:.{d}f}", f"{p - r:+.{d + 1}f}"])
    text = ("# VL-UR Table I against the OneRestore release sheet\n\n"
            "Generated by `python -m harness.release --audit`. Each Table I column maps to one release folder "
            "(`harness.release.TABLE1_TO_RELEASE`; VL-UR's MIRNet column is the sheet's 04_MIRNetv2 row, its "
            "OneRestore column the text-prompted 17_OneRestore row). A cell is listed when the sheet's value, "
            "rounded to Table I's precision (PSNR 2, SSIM 3 decimals), is not what Table I prints. "
            f"{n_cells} cells compared, {len(rows)} disagreement(s).\n\n")
    if rows:
        text += tabulate(rows, headers=["Table I column", "Release folder", "Degradation", "Metric", "Table I",
                                        "Sheet", "Sheet rounded", "Table I − sheet"],
                         tablefmt="github", disable_numparse=True) + "\n"
    return text


# ------------------------------------------------------------------------------------- demo release


def make_demo_release(out: Path, methods: Sequence[str] = ("onerestore", "vlur"), *, limit: int | None = 2,
                      progress: bool = True, log=print) -> Path:
    """A release-shaped folder from the embedded cdd11-mini test split: 00_gt, 01_input and one folder per
    demo method (restored by this project's demo weights, text mode), so the release path can be tried
    without downloading anything."""
    from harness.data import mini
    from harness.evaluation import evaluate

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ReleaseError(f"{out} is not empty; name a new folder for the demo release")
    data = Path(mini.ensure("test"))
    with tempfile.TemporaryDirectory(prefix="vlur-demo-release-") as tmp:
        res = evaluate(methods=list(methods), modes=("text",), data=data, out=Path(tmp) / "run", limit=limit,
                       save_images=True, progress=progress, report=False, log=log)
        keys = sorted({(r["type"], r["file"]) for r in res.records})
        (out / GT_FOLDER).mkdir(parents=True)
        for t, f in keys:
            shutil.copy2(data / CLEAR / f, out / GT_FOLDER / f)
            (out / INPUT_FOLDER / t).mkdir(parents=True, exist_ok=True)
            shutil.copy2(data / t / f, out / INPUT_FOLDER / t / f)
        for i, m in enumerate(methods, start=2):
            src = Path(tmp) / "run" / "images" / f"{m}-text"
            if src.is_dir():
                shutil.copytree(src, out / f"{i:02d}_{m}-demo")
    log(f"wrote a demo release with {len(keys)} images per method to {out}")
    return out


# ------------------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.release", formatter_class=cli.Formatter,
                                description="Score a comparison release (folders of restored images) with the "
                                            "official CDD-11 convention.")
    p.add_argument("root", type=Path, nargs="?", help="release root holding 00_gt/, 01_input/ and NN_Method/ folders")
    p.add_argument("--out", type=Path, default=None, help="output folder (required when scoring a release)")
    p.add_argument("--methods", default=None, help="comma-separated method folders (default: every NN_* folder)")
    p.add_argument("--types", default=None, help="comma-separated CDD-11 types (default: all 11)")
    p.add_argument("--limit", type=cli.positive_int, default=None, help="at most N images per type")
    p.add_argument("--published", action="store_true",
                   help="also write release_published.md (the release sheet and VL-UR Table I beside each cell)")
    p.add_argument("--audit", action="store_true",
                   help="print where VL-UR's Table I and the release sheet disagree (no data needed) and exit")
    p.add_argument("--make-demo", type=Path, default=None, metavar="DIR",
                   help="write a release-shaped folder from the embedded cdd11-mini data (demo weights) and exit")
    p.add_argument("--workers", type=cli.non_negative_int, default=2, help="image-decoding threads per process")
    p.add_argument("--jobs", type=cli.positive_int, default=1,
                   help="processes scoring in parallel (torch.distributed.run, i.e. torchrun, on this machine): "
                        "use the number of cores")
    p.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true", help="no progress bar")
    return p


def _relaunch(jobs: int, argv: list[str]) -> int:
    """Run this command in `jobs` processes with PyTorch's launcher (the images are sharded across them by
    `harness.distributed`; rank 0 writes the records and tables)."""
    import subprocess

    rest, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--jobs":
            skip = True
            continue
        if not a.startswith("--jobs="):
            rest.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(jobs),
           "-m", "harness.release", *rest]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.run(cmd, env=env).returncode


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.quiet)
    if args.audit:
        print(audit_published())
        return cli.EXIT_OK
    if args.make_demo is not None:
        return cli.run_command(lambda: (make_demo_release(args.make_demo, progress=not args.quiet, log=cli.route)
                                        and cli.EXIT_OK), None)
    if args.root is None or args.out is None:
        log.error("error: give a release ROOT and --out DIR (or --audit / --make-demo DIR)")
        return cli.EXIT_NOTHING_RAN
    if args.jobs > 1 and "WORLD_SIZE" not in os.environ:
        return _relaunch(args.jobs, list(sys.argv[1:] if argv is None else argv))

    def go() -> int:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
        types = [t.strip() for t in args.types.split(",") if t.strip()] if args.types else None
        res = score_release(args.root, args.out, methods, published=args.published, limit=args.limit, types=types,
                            progress=not args.quiet, workers=args.workers, log=cli.route)
        if res.records:
            print((args.out / "table1.md").read_text())
        return res.exit_code

    return cli.run_command(go, args.out / "records.jsonl")


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["TABLE1_TO_RELEASE", "audit_published", "make_demo_release", "make_view", "method_folders",
           "render_release_published", "score_release"]
