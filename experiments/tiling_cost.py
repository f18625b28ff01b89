"""Experiment: the PSNR cost of overlapping tiled inference (`harness.tiling.tiled_restore`) on CDD-11-layout data.

Restores every image whole and tiled with registered methods (text mode, true type), scores both against
the ground truth and prints a Markdown table; `--out FILE.md` also writes it with a JSON beside it
(reports/tiling_cost.{md,json} come from here, see reports/README.md). From the repository root:

    python -m experiments.tiling_cost --methods onerestore,vlur --tile 128 --overlap 32 --limit 2 \
        --out reports/tiling_cost.md
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch

from harness import cli, metrics
from harness.tiling import BLENDS, tile_count, tiled_restore

Fn = Callable[[torch.Tensor], torch.Tensor]


def psnr(gt: torch.Tensor, out: torch.Tensor) -> float:
    """Mean PSNR of `out` against `gt` on the harness convention (clamp, 8-bit quantise, data range 1)."""
    return float(metrics.score(gt, out)[0].mean())


def tiling_psnr_cost(
    fn: Fn,
    pairs: Iterable[tuple[torch.Tensor, torch.Tensor]],
    tile: int = 512,
    overlap: int = 32,
    *,
    blend: str = "linear",
    align: int = 1,
) -> dict:
    """PSNR cost of tiling: for each (degraded, ground truth) pair (C×H×W or 1×C×H×W, [0, 1]), restore it
    whole and tiled, score both against the ground truth, and compare.

    Returns a dict with per-image rows (`psnr_whole`, `psnr_tiled`, `cost_db` = whole − tiled, and
    `psnr_tiled_vs_whole`, the PSNR of the tiled output against the whole output: +inf when identical
    after 8-bit quantisation) and their means (`mean_cost_db`, `max_cost_db`, …). `fn` must fit the
    whole images in memory: this is a measurement on a small set, not the fallback itself.
    """
    rows = []
    for i, (x, gt) in enumerate(pairs):
        x = x.unsqueeze(0) if x.ndim == 3 else x
        gt = gt.unsqueeze(0) if gt.ndim == 3 else gt
        with torch.inference_mode():
            whole = fn(x).float()
            tiled = tiled_restore(fn, x, tile, overlap, blend=blend, align=align)
        gt = gt.to(whole.device, torch.float32)
        pw, pt = psnr(gt, whole), psnr(gt, tiled)
        qw = torch.floor(whole.clamp(0, 1) * 255 + 0.5) / 255
        rows.append(
            {
                "index": i,
                "size": [int(x.shape[-2]), int(x.shape[-1])],
                "tiles": tile_count(x.shape[-2], x.shape[-1], tile, overlap, align),
                "psnr_whole": pw,
                "psnr_tiled": pt,
                "cost_db": pw - pt,
                "psnr_tiled_vs_whole": psnr(qw, tiled),
                "max_abs_diff": float((whole - tiled).abs().max()),
            }
        )
    costs = [r["cost_db"] for r in rows if math.isfinite(r["cost_db"])]
    return {
        "tile": tile,
        "overlap": overlap,
        "blend": blend,
        "align": align,
        "psnr_source": "harness.metrics.score",
        "images": len(rows),
        "mean_psnr_whole": _mean(r["psnr_whole"] for r in rows),
        "mean_psnr_tiled": _mean(r["psnr_tiled"] for r in rows),
        "mean_cost_db": _mean(costs),
        "max_cost_db": max(costs) if costs else math.nan,
        "rows": rows,
    }


def _mean(values: Iterable[float]) -> float:
    v = list(values)
    return sum(v) / len(v) if v else math.nan


def measure_cost_on_data(methods: Sequence[str], root, tile: int = 128, overlap: int = 32, limit: int = 2,
                         blend: str = "linear") -> list[dict]:
    """`tiling_psnr_cost` for registered methods (text mode, true type) on `limit` images per type of `root`."""
    from harness.data.cdd11 import load_pair, scan
    from harness.registry import MethodOptions, create_restorer

    data = scan(root, limit=limit)
    loaded = [lp for lp in map(load_pair, data.pairs) if not lp.error]
    results = []
    for name in methods:
        restorer = create_restorer(name, MethodOptions(mode="text"))
        per_type = []
        for lp in loaded:
            x = torch.from_numpy(lp.degraded).permute(2, 0, 1).float() / 255
            gt = torch.from_numpy(lp.clear).permute(2, 0, 1).float() / 255

            def fn(t: torch.Tensor, _type: str = lp.pair.type, _r=restorer) -> torch.Tensor:
                return _r.restore(t, [_type] * t.shape[0])

            per_type.append(tiling_psnr_cost(fn, [(x, gt)], tile, overlap, blend=blend))
        costs = [c["mean_cost_db"] for c in per_type]
        results.append({"method": name, "images": len(per_type), "tile": tile, "overlap": overlap, "blend": blend,
                        "mean_psnr_whole": _mean(c["mean_psnr_whole"] for c in per_type),
                        "mean_psnr_tiled": _mean(c["mean_psnr_tiled"] for c in per_type),
                        "mean_cost_db": _mean(costs), "max_cost_db": max(costs)})
    return results


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.tiling_cost", description=cli.description(__doc__),
                                formatter_class=cli.Formatter)
    p.add_argument("--methods", default="onerestore,vlur", help="registered methods, comma-separated")
    p.add_argument("--data", type=Path, default=None, help="CDD-11-layout folder; default: the embedded cdd11-mini "
                                                           "test split")
    p.add_argument("--tile", type=int, default=128)
    p.add_argument("--overlap", type=int, default=32)
    p.add_argument("--blend", default="linear", choices=BLENDS)
    p.add_argument("--limit", type=int, default=2, help="images per type")
    p.add_argument("--out", type=Path, default=None, help="write the table (Markdown) and a JSON beside it")
    args = p.parse_args(argv)
    if args.data is None:
        from harness.data import mini

        args.data = mini.ensure("test")
    rows = measure_cost_on_data([m for m in args.methods.split(",") if m], args.data, args.tile, args.overlap,
                                args.limit, args.blend)
    lines = [f"PSNR cost of tiled inference ({args.tile}×{args.tile} tiles, overlap {args.overlap}, {args.blend} "
             f"blend; text mode; {args.limit} image(s) per type of {args.data})", "",
             "| Method | Images | PSNR whole | PSNR tiled | mean cost (dB) | max cost (dB) |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['method']} | {r['images']} | {r['mean_psnr_whole']:.2f} | {r['mean_psnr_tiled']:.2f} | "
              f"{r['mean_cost_db']:+.3f} | {r['max_cost_db']:+.3f} |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
