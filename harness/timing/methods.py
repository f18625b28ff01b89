"""Methods from the registry: `time_methods` builds each through `harness.registry.create_restorer`, and
`run_for_harness` is `harness.run --timing`."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import torch

from harness.fileio import write_text_atomic
from harness.tiling import free_memory
from harness.timing.config import TimingConfig
from harness.timing.io import write_timing
from harness.timing.render import render_timing_table
from harness.timing.restorer import time_restorer


def time_methods(
    methods: Sequence[str] | str,
    sizes: Sequence[str] | str = ("1080p", "2k"),
    config: TimingConfig | None = None,
    *,
    weights_dir: str | Path | None = None,
    weights: str | Path | None = None,
    random_weights: bool = False,
    method_args: Mapping[str, str] | None = None,
    log: Callable[[str], None] | None = None,
    previous: Sequence[dict] = (),
    on_progress: Callable[[list[dict]], None] | None = None,
    **overrides,
) -> list[dict]:
    """Time each named method at each size; every method is built by its own factory through
    `harness.registry.create_restorer(name, MethodOptions(...))` — with `random_weights` its seeded random
    initialisation (timm's `pretrained=False`; the speed does not depend on the values), recorded under the
    restorer's `weights_label` ("random").

    Returns one JSON-able record per method: method, params, params_classifier, device, device_type,
    dtype, threads, peak_tflops (+ source), settings, and per size ("sizes"[key]): width, height, tiled,
    tiling, flops (restorer / classifier / total), gflops, timing (restorer, classifier, total, transfer,
    e2e: median_ms, iqr_ms, …), ms / iqr_ms (the headline: total), achieved_tflops, utilization, floor_ms,
    below_floor, titan_rtx_floor_ms, memory, peak_mem_mib. A method that cannot be built gets a record
    with "error" set instead. `overrides` are `TimingConfig` fields (device="cuda", dtype="bf16", …).
    `previous`: records of an earlier run (`--resume`, see `time_restorer`); `on_progress(records)` is
    called with all records so far (the one in progress included) after every size, so a caller can
    write them as they are produced.
    """
    from harness.registry import MethodOptions, create_restorer, get_spec, parse_methods

    cfg = replace(config or TimingConfig(), **overrides)
    names = parse_methods(methods) if isinstance(methods, str) else list(methods)
    log = log or (lambda s: None)
    opts = MethodOptions(device=cfg.device, mode=cfg.mode, weights_dir=Path(weights_dir) if weights_dir else None,
                         weights=Path(weights) if weights else None, random_weights=bool(random_weights),
                         method_args=dict(method_args or {}))
    records = []
    for name in names:
        try:
            spec = get_spec(name)
            restorer = create_restorer(name, opts)
            label = getattr(restorer, "weights_label", getattr(spec.factory, "weights_label", "released"))
        except Exception as e:  # noqa: BLE001 - reported in the record and the table notes
            log(f"  {name}: not timed: {type(e).__name__}: {e}")
            records.append({"method": name, "error": f"{type(e).__name__}: {e}", "sizes": {}})
            if on_progress:
                on_progress(list(records))
            continue
        before = next((r for r in previous if r.get("method") == name), None)
        progress = (lambda rec, done=list(records): on_progress(done + [rec])) if on_progress else None
        records.append(time_restorer(restorer, sizes, cfg, name=name, modes=spec.modes, weights=str(label),
                                     log=log, previous=before, on_size=progress))
        del restorer
        free_memory(cfg.device)
    return records


def _setting(args, *names: str, default=None):
    """The first of `names` that `args` (an `EvalConfig` or an argparse namespace) sets, else `default`."""
    for n in names:
        value = getattr(args, n, None)
        if value is not None:
            return value
    return default


def run_for_harness(methods: Sequence[str], out: str | Path, args=None, *, sizes: Sequence[str] = ("1080p", "2k"),
                    log: Callable[[str], None] | None = print, **overrides) -> list[dict]:
    """`harness.run --timing`: time `methods` at 1080p and 2K as the run built them, write
    timing.{json,md,tex} to `out`, and merge the records into `out`/summary.json under "timing". Problems are
    recorded, never raised. `overrides` are `TimingConfig` fields (e.g. min_seconds=0 for a quick run).

    `args` is the run's `harness.evaluation.EvalConfig` (device, modes, threads, weights_dir, weights,
    random_weights, method_args) or an argparse namespace with the older names (`mode` as "auto,text").
    Auto mode is timed when the run has it, else text mode."""
    device = str(_setting(args, "device") or ("cuda" if torch.cuda.is_available() else "cpu"))
    given = _setting(args, "modes", "mode", default="auto")
    given = [given] if isinstance(given, str) else list(given)
    modes = [m.strip() for part in given for m in str(part).split(",") if m.strip()]
    cfg = TimingConfig(device=device, mode="auto" if "auto" in modes or not modes else "text",
                       threads=_setting(args, "threads"))
    cfg = replace(cfg, **overrides)
    method_args = _setting(args, "method_args")
    records = time_methods(list(methods), sizes, cfg, weights_dir=_setting(args, "weights_dir"),
                           weights=_setting(args, "weights"), random_weights=bool(_setting(args, "random_weights")),
                           method_args=dict(method_args) if isinstance(method_args, Mapping) else None, log=log,
                           on_progress=lambda recs: write_timing(recs, out))
    write_timing(records, out)
    summary = Path(out) / "summary.json"
    if summary.is_file():
        try:
            data = json.loads(summary.read_text())
        except (OSError, ValueError) as e:
            if log:
                log(f"note: could not merge timing into {summary}: {e}")
        else:
            if isinstance(data, dict):
                data["timing"] = records
                write_text_atomic(summary, json.dumps(data, indent=1, default=str))
    if log:
        log(render_timing_table(records, "md"))
    return records
