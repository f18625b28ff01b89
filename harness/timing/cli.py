"""The command line, `python -m harness.timing` (see the package doc)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from harness import cli
from harness.timing.config import DTYPES, TimingConfig, parse_sizes
from harness.timing.io import read_timing, write_timing
from harness.timing.methods import time_methods
from harness.timing.render import render_timing_table


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness.timing", formatter_class=cli.Formatter,
        description="Inference timing, FLOPs, memory and compute floors of restoration methods.",
    )
    p.add_argument("--methods", required=True, help="comma-separated method names (harness.registry)")
    p.add_argument("--sizes", default="1080p,2k", help="comma-separated: 720p, 1080p, 2k, 4k or WxH")
    p.add_argument("--device", type=cli.device_arg, default=None,
                   help="cuda, cuda:N or cpu (default: cuda if available)")
    p.add_argument("--dtype", default="fp32", choices=DTYPES)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile restore / classify / restore_auto")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. max-autotune")
    p.add_argument("--no-cudnn-benchmark", action="store_true")
    p.add_argument("--mode", default="auto", choices=("auto", "text"))
    p.add_argument("--batch", type=cli.positive_int, default=1)
    p.add_argument("--weights-dir", type=Path, default=None)
    p.add_argument("--weights", type=Path, default=None, help="one explicit checkpoint (single method)")
    p.add_argument("--random-weights", action="store_true",
                   help="build every method with its own seeded random initialisation (MethodOptions.random_weights;"
                        " recorded as weights 'random'): the speed and FLOPs do not depend on the values")
    p.add_argument("--warmup", type=cli.non_negative_int, default=None)
    p.add_argument("--iters", type=cli.positive_int, default=None, help="minimum timed calls (GPU 50, CPU 3)")
    p.add_argument("--min-seconds", type=cli.non_negative_float, default=None,
                   help="minimum timed seconds (GPU 2, CPU 10)")
    p.add_argument("--max-iters", type=cli.positive_int, default=None)
    p.add_argument("--max-seconds", type=cli.non_negative_float, default=None,
                   help="stop a measurement after this long even below --iters (at least 3 calls; recorded)")
    p.add_argument("--e2e", dest="e2e", action="store_true", default=None, help="measure end-to-end directly")
    p.add_argument("--no-e2e", dest="e2e", action="store_false")
    p.add_argument("--no-flops", action="store_true")
    p.add_argument("--flops-only", action="store_true",
                   help="count parameters and FLOPs on the meta device at each size; no timing (any machine)")
    p.add_argument("--tile", type=cli.positive_int, default=512)
    p.add_argument("--overlap", type=cli.non_negative_int, default=32)
    p.add_argument("--blend", default="linear", choices=("linear", "crop"))
    p.add_argument("--force-tiled", action="store_true")
    p.add_argument("--fixed-type", default="low_haze_snow", help="the type given in text mode")
    p.add_argument("--peak-tflops", type=cli.non_negative_float, default=None,
                   help="the device's peak (CPU or unknown GPU)")
    p.add_argument("--threads", type=cli.positive_int, default=None)
    p.add_argument("--detail", action="store_true", help="also print the per-size detail table")
    p.add_argument("--out", type=Path, default=None,
                   help="write timing.json, timing.md and timing.tex here (updated after every size)")
    p.add_argument("--resume", action="store_true",
                   help="keep the sizes already measured in OUT/timing.json the same way; time only the rest")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from harness.degradations import type_index
    from harness.registry import UnknownMethodError, parse_methods

    try:
        names = parse_methods(args.methods)
        sizes = [k for k, _, _ in parse_sizes(args.sizes)]
        type_index(args.fixed_type)
    except (UnknownMethodError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    device = "meta" if args.flops_only else (args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    cfg = TimingConfig(
        device=device, dtype=args.dtype, channels_last=args.channels_last, compile=args.compile,
        compile_mode=args.compile_mode, cudnn_benchmark=not args.no_cudnn_benchmark, mode=args.mode,
        batch=args.batch, warmup=args.warmup, min_iters=args.iters, min_seconds=args.min_seconds,
        max_iters=args.max_iters, max_seconds=args.max_seconds, e2e=args.e2e, count_flops=not args.no_flops,
        tile=args.tile, overlap=args.overlap, blend=args.blend, force_tiled=args.force_tiled,
        fixed_type=args.fixed_type, peak_tflops=args.peak_tflops, threads=args.threads,
    )

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    previous: list[dict] = []
    if args.resume:
        if args.out is None:
            print("error: --resume needs --out", file=sys.stderr)
            return 2
        if (args.out / "timing.json").is_file():
            try:
                previous = read_timing(args.out / "timing.json")
            except ValueError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
    kept = [r for r in previous if r.get("method") not in names]  # other methods' finished records stay
    on_progress = (lambda recs: write_timing(kept + recs, args.out)) if args.out else None
    records = time_methods(names, sizes, cfg, weights_dir=args.weights_dir, weights=args.weights,
                           random_weights=args.random_weights, log=log, previous=previous,
                           on_progress=on_progress)
    records = kept + records
    print(render_timing_table(records, "md"))
    if args.detail:
        print()
        print(render_timing_table(records, "md", detail=True, notes=False))
    if args.out:
        paths = write_timing(records, args.out)
        log("wrote " + ", ".join(str(p) for p in paths))
        try:
            from harness import report_html

            log(f"wrote {report_html.write_report(args.out, log=log)}")
        except Exception as e:  # noqa: BLE001 - the page is a side effect
            log(f"warning: could not write the results page in {args.out}: {type(e).__name__}: {e}")
    return 0 if all(not r.get("error") and not any(s.get("error") for s in r["sizes"].values())
                    for r in records) else 1
