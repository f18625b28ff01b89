"""`python -m harness.run`: evaluate restorers on a CDD-11-layout folder and write records, summary, tables.

A thin command line over `harness.evaluate` (the Python API; see there for the data flow). Re-running the
same command with the same ``--out`` resumes: images already recorded are not recomputed. ``--quick``
scores 2 images of every type (about 2 minutes for three demo methods in two modes on 2 cores).

Exit status (`harness.cli`): 0 all images scored; 1 finished, but some images or methods failed (see the
summary); 2 nothing ran (bad arguments, bad data root, output folder locked, no method could be built);
130 interrupted (Ctrl-C or SIGTERM; finished images are kept).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from harness import cli, metrics, registry
from harness.cli import log
from harness.evaluation import QUICK_LIMIT, EvalConfig, evaluate

DEFAULT_OUT = Path("runs/eval")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness.run", formatter_class=cli.Formatter,
        description="Evaluate restorers on CDD-11 (or any folder in its layout) with the official scoring.",
    )
    p.add_argument("--methods", default="identity",
                   help="comma-separated method names (see --list), or outputs:NAME=DIR for a folder of "
                        "already restored images DIR/<type>/<image>")
    p.add_argument("--list", action="store_true", help="list the registered methods and exit")
    p.add_argument("--data", type=Path, default=None,
                   help="data root in the CDD-11 layout (default: the embedded cdd11-mini test split)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    p.add_argument("--types", default=None, help="comma-separated CDD-11 types (default: all 11)")
    p.add_argument("--limit", type=cli.positive_int, default=None, help="at most N images per type (first N by name)")
    p.add_argument("--quick", action="store_true",
                   help=f"a first look: {QUICK_LIMIT} images of every type (unless --limit says otherwise)")
    cli.add_common(p)
    p.add_argument("--weights-dir", type=Path, default=None, help="folder with the authors' released weights")
    p.add_argument("--weights", type=Path, default=None, help="one checkpoint file (single-method runs)")
    p.add_argument("--random-weights", action="store_true",
                   help="build the methods with random weights (a smoke test of the pipeline; scores mean nothing)")
    p.add_argument("--method-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="a method-specific setting (see --list); repeatable")
    p.add_argument("--convention", default="cdd11", choices=sorted(metrics.CONVENTIONS),
                   help="metric convention (cdd11 = the published tables')")
    p.add_argument("--save-images", action="store_true", help="also write restored images as 8-bit PNG")
    p.add_argument("--max-pixels", type=cli.positive_int, default=None,
                   help="largest image decoded, in pixels (default 64,000,000; larger images become failed records)")
    g = p.add_argument_group("GPU and speed (recorded in every record and the summary)")
    g.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="autocast dtype of model methods (fp32 = no autocast, the published protocol)")
    g.add_argument("--channels-last", action="store_true", help="run networks in channels-last memory format")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the networks (the warm-up is kept out of the per-image times)")
    g.add_argument("--batch", type=cli.positive_int, default=1,
                   help="images per forward for model methods (consecutive same-size images)")
    p.add_argument("--workers", type=cli.non_negative_int, default=2, help="image-decoding threads (0 = inline)")
    p.add_argument("--retry-failed", action="store_true", help="redo images recorded as failed")
    p.add_argument("--published", action="store_true",
                   help="also write published.md: the published CDD-11 numbers beside the measured ones")
    p.add_argument("--significance", action="store_true",
                   help="mark (‡) PSNRs not significantly different from each row's best (paired bootstrap)")
    p.add_argument("--timing", action="store_true", help="also time each method at 1080p and 2K")
    p.add_argument("--no-report", action="store_true",
                   help="do not write report.html (the results page) and its thumbnails")
    return p


def list_methods() -> str:
    lines = []
    for name in registry.available():
        try:
            spec = registry.get_spec(name)
            modes = f"modes={','.join(spec.modes)}" if spec.modes else "classifier only"
            lines.append(f"{name:<14} {modes:<16} {spec.description}")
            if spec.info is not None:
                paper = str(spec.info.paper) if spec.info.paper else "no paper"
                lines.append(f"{'':<31} paper: {paper}; code: {spec.info.code}; licence: {spec.info.licence}")
        except Exception as e:  # noqa: BLE001 - listing must survive a broken plugin
            lines.append(f"{name:<14} (unavailable: {type(e).__name__}: {e})")
    lines.append(f"{'outputs:NAME=DIR':<14} a folder of already restored images DIR/<type>/<image> (harness.outputs)")
    return "\n".join(lines)


def config_from_args(args: argparse.Namespace, argv: Sequence[str] | None) -> EvalConfig:
    return EvalConfig(
        methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()), modes=args.mode, data=args.data,
        out=args.out, types=args.types, limit=args.limit, quick=args.quick, device=args.device,
        threads=args.threads, workers=args.workers, weights_dir=args.weights_dir, weights=args.weights,
        random_weights=args.random_weights, method_args=cli.method_args(args.method_arg),
        convention=args.convention, max_pixels=args.max_pixels, dtype=args.dtype, channels_last=args.channels_last,
        compile=args.compile, batch=args.batch, save_images=args.save_images,
        retry_failed=args.retry_failed,
        published=args.published, significance=args.significance, timing=args.timing, report=not args.no_report,
        progress=not args.quiet,
        command=["python", "-m", "harness.run", *(sys.argv[1:] if argv is None else argv)])


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.quiet)
    if args.list:
        for module in args.imports:
            importlib.import_module(module)
        print(list_methods())
        return cli.EXIT_OK

    def go() -> int:
        try:
            cfg = config_from_args(args, argv)
        except argparse.ArgumentTypeError as e:
            log.error(f"error: {e}")
            return cli.EXIT_NOTHING_RAN
        res = evaluate(cfg, log=cli.route)
        if res.exit_code == cli.EXIT_NOTHING_RAN:
            log.error("error: no method could be built; nothing ran (see the messages above)")
        elif res.records:
            print((args.out / "table1.md").read_text())
        if res.exit_code == cli.EXIT_FAILURES:
            s = res.summary
            log.warning(f"{s['failed_images']} image(s) failed; {len(s['methods_failed'])} method(s) could not run "
                        f"(see {args.out / 'summary.json'})")
        return res.exit_code

    return cli.run_command(go, args.out / "records.jsonl", args.imports)


if __name__ == "__main__":
    sys.exit(main())
