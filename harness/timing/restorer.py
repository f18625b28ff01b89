"""Timing one built restorer at each size (`time_restorer`), or counting its FLOPs on the meta device, and
`same_protocol` for `--resume`."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from harness.provenance import count_parameters, device_name
from harness.tiling import (
    TilingInfo,
    free_memory,
    is_oom_error,
    oom_reason,
    restore_with_fallback,
    tiled_fn,
    tiled_restore,
)
from harness.timing.backend import Prepared, autocast_for, backend_settings, prepare, recorded_settings
from harness.timing.config import TimingConfig, parse_sizes, size_label
from harness.timing.flops import count_flops, flop_counter, sampler_steps
from harness.timing.measure import measure
from harness.timing.memory import PeakMemory
from harness.timing.peaks import device_peak, titan_floors


def _make_batch(cfg: TimingConfig, width: int, height: int) -> torch.Tensor:
    """A reproducible CPU uint8 B×3×H×W batch (the content does not matter for the speed)."""
    g = torch.Generator().manual_seed(cfg.seed)
    return torch.randint(0, 256, (cfg.batch, 3, height, width), generator=g, dtype=torch.uint8)


def _to_device(x_host: torch.Tensor, dev: torch.device, channels_last: bool) -> torch.Tensor:
    x = x_host.to(dev).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _to_host(out: torch.Tensor) -> torch.Tensor:
    return out.detach().float().clamp(0, 1).mul(255.0).round_().to(torch.uint8).cpu()


def _has_text_mode(restorer, modes: Sequence[str] | None) -> bool:
    return modes is None or "text" in modes


def _count_or_run(fn: Callable, x: torch.Tensor, count: bool) -> int | None:
    if not count:
        fn(x)
        return None
    with flop_counter() as fc:
        fn(x)
    return int(fc.get_total_flops())


def _per_step(restorer, flops: dict, timing: dict | None = None) -> dict:
    """`sampler_steps`, `gflops_per_step` (restorer FLOPs / steps) and, when timed, `ms_per_step` (restorer
    median / steps) for a restorer with an iterative sampler (`flops.sampler_steps`); {} for any other."""
    steps = sampler_steps(restorer)
    if steps is None:
        return {}
    out = {"sampler_steps": steps,
           "gflops_per_step": flops["restorer"] / steps / 1e9 if flops.get("restorer") is not None else None}
    if timing is not None and "restorer" in timing:
        out["ms_per_step"] = timing["restorer"]["median_ms"] / steps
    return out


def _time_size(restorer, prep: Prepared, cfg: TimingConfig, key: str, width: int, height: int,
               text_ok: bool, peak: float | None, clock, log) -> dict:
    dev = torch.device(cfg.device)
    x_host = _make_batch(cfg, width, height)
    x = _to_device(x_host, dev, cfg.channels_last)
    types = [cfg.fixed_type] * cfg.batch if text_ok else None
    eager_restore = lambda t: restorer.restore(t, types)  # noqa: E731
    timed_restore = lambda t: prep.restore(t, types)  # noqa: E731
    has_cls = prep.classify is not None
    measure_total = cfg.mode == "auto" and has_cls
    count = cfg.count_flops
    compiled = bool(cfg.compile)

    # --- probe: one eager call per part (FLOPs counted), deciding whether the size needs tiling
    flops: dict[str, int | None] = {"restorer": None, "classifier": None, "total": None}
    tiling = TilingInfo()
    probed_warm = {}
    if not cfg.force_tiled:
        try:
            flops["restorer"] = _count_or_run(eager_restore, x, count)
        except Exception as e:  # noqa: BLE001
            if not is_oom_error(e):
                raise
            tiling.reason = oom_reason(e)
        else:
            probed_warm["restorer"] = not compiled
    if cfg.force_tiled or tiling.reason:
        free_memory(dev)
        reason = tiling.reason or "forced"
        if count:
            with flop_counter() as fc:
                _, tiling = restore_with_fallback(eager_restore, x, cfg.tile, cfg.overlap, blend=cfg.blend,
                                                  force_tiled=True)
            flops["restorer"] = int(fc.get_total_flops())
        else:
            _, tiling = restore_with_fallback(eager_restore, x, cfg.tile, cfg.overlap, blend=cfg.blend,
                                              force_tiled=True)
        tiling.reason = reason
        log(f"    {key}: tiled ({tiling.tile}x{tiling.tile}, overlap {tiling.overlap}, {tiling.tiles} tiles)"
            f" after {reason}")
    restorer_fn = tiled_fn(timed_restore, tiling.tile, tiling.overlap, blend=cfg.blend) if tiling.tiled \
        else timed_restore

    parts: dict[str, Callable] = {"restorer": restorer_fn}
    if has_cls:
        flops["classifier"] = _count_or_run(restorer.classifier.classify, x, count)
        probed_warm["classifier"] = not compiled
        parts["classifier"] = prep.classify
    total_tiled = tiling.tiled
    if measure_total:
        eager_total = (lambda t: restorer.restore_auto(t)[0]) if prep.restore_auto is not None else \
            (lambda t: restorer.restore(t, None))
        if not total_tiled:
            try:
                flops["total"] = _count_or_run(eager_total, x, count)
                probed_warm["total"] = not compiled
            except Exception as e:  # noqa: BLE001
                if not is_oom_error(e):
                    raise
                free_memory(dev)
                total_tiled = True
                if not tiling.tiled:
                    tiling = TilingInfo(True, cfg.tile, cfg.overlap, cfg.blend, None, oom_reason(e))
        if total_tiled:
            classify = prep.classify
            restore_fn = prep.restore

            def total_fn(t):
                predicted = classify(t)
                return tiled_restore(lambda u: restore_fn(u, predicted), t, tiling.tile, tiling.overlap,
                                     blend=cfg.blend)

            if count:
                flops["total"] = (flops["classifier"] or 0) + (flops["restorer"] or 0)
        elif prep.restore_auto is not None:
            auto = prep.restore_auto

            def total_fn(t):
                return auto(t)[0]
        else:
            total_fn = lambda t: prep.restore(t, None)  # noqa: E731
        parts["total"] = total_fn
    else:
        flops["total"] = flops["restorer"]
    headline = "total" if measure_total else "restorer"

    # --- timed measurements
    timing: dict[str, dict] = {}
    memory: dict[str, dict] = {}
    for name, fn in parts.items():
        warm = max(0, cfg.warmup - 1) if probed_warm.get(name) else cfg.warmup
        with PeakMemory(dev) as pm:
            timing[name] = measure(lambda fn=fn: fn(x), device=dev, warmup=warm, min_iters=cfg.min_iters,
                                   min_seconds=cfg.min_seconds, max_iters=cfg.max_iters,
                                   max_seconds=cfg.max_seconds, clock=clock)
        timing[name]["warmup"] = cfg.warmup  # the probe call counted as the first warm-up call
        memory[name] = pm.result
        log(f"    {key} {name}: {timing[name]['median_ms']:.2f} ms (IQR {timing[name]['iqr_ms']:.2f}, "
            f"n={timing[name]['n']})")
    if not measure_total:
        timing["total"] = dict(timing["restorer"], source="restorer")

    main_fn = parts[headline]

    def transfer():
        return _to_host(_to_device(x_host, dev, cfg.channels_last))

    def end_to_end():
        return _to_host(main_fn(_to_device(x_host, dev, cfg.channels_last)))

    tmin = max(1, min(cfg.min_iters, 10))
    timing["transfer"] = measure(transfer, device=dev, warmup=1, min_iters=tmin,
                                 min_seconds=min(cfg.min_seconds, 1.0), max_iters=cfg.max_iters, clock=clock)
    if cfg.e2e:
        timing["e2e"] = measure(end_to_end, device=dev, warmup=1, min_iters=cfg.min_iters,
                                min_seconds=cfg.min_seconds, max_iters=cfg.max_iters,
                                max_seconds=cfg.max_seconds, clock=clock)
        timing["e2e"]["method"] = "measured"
    else:
        timing["e2e"] = {
            "median_ms": timing[headline]["median_ms"] + timing["transfer"]["median_ms"],
            "iqr_ms": None,
            "method": "sum",
        }
    if has_cls and measure_total:
        timing["classifier_plus_restorer_ms"] = timing["classifier"]["median_ms"] + timing["restorer"]["median_ms"]

    ms = timing[headline]["median_ms"]
    total_flops = flops["total"]
    has_flops = total_flops is not None
    floor = total_flops / (peak * 1e12) * 1e3 if (has_flops and peak) else None
    floors = {}
    for name in ("restorer", "classifier"):
        f = flops.get(name)
        if f is not None and peak and name in timing:
            floors[name] = {"floor_ms": f / (peak * 1e12) * 1e3,
                            "below_floor": timing[name]["median_ms"] < f / (peak * 1e12) * 1e3}
    mems = [m for m in memory.values() if m]
    mem_key = "peak_mib" if dev.type == "cuda" else "increase_mib"
    mem_values = [m[mem_key] for m in mems if m.get(mem_key) is not None]
    return {
        "width": width,
        "height": height,
        "batch": cfg.batch,
        "tiled": tiling.tiled or total_tiled,
        "tiling": tiling.to_dict(),
        "flops": flops,
        "gflops": total_flops / 1e9 if has_flops else None,
        "timing": timing,
        "headline": headline,
        "ms": ms,
        "iqr_ms": timing[headline]["iqr_ms"],
        "achieved_tflops": total_flops / (ms / 1e3) / 1e12 if (has_flops and ms > 0) else None,
        "utilization": (total_flops / (ms / 1e3) / 1e12) / peak if (has_flops and peak and ms > 0) else None,
        "floor_ms": floor,
        "below_floor": bool(floor is not None and ms < floor),
        "part_floors": floors,
        "titan_rtx_floor_ms": titan_floors(total_flops),
        "memory": memory,
        "peak_mem_mib": max(mem_values) if mem_values else None,
        "mem_kind": "peak allocated" if dev.type == "cuda" else "peak RSS increase",
        **_per_step(restorer, flops, timing),
    }


def _count_size(restorer, cfg: TimingConfig, width: int, height: int, text_ok: bool, peak: float | None) -> dict:
    """FLOPs only, on the meta device (no data, no time): restorer in text mode, classifier via `scores`
    (its arg-max cannot leave the meta device), total = their sum in auto mode."""
    x = torch.empty(cfg.batch, 3, height, width, device="meta")
    types = [cfg.fixed_type] * cfg.batch if text_ok else None
    flops: dict[str, int | None] = {"restorer": None, "classifier": None, "total": None}
    flops["restorer"], _ = count_flops(restorer.restore, x, types)
    cls = getattr(restorer, "classifier", None)
    if cls is not None and hasattr(cls, "scores"):
        flops["classifier"], _ = count_flops(cls.scores, x)
    auto = cfg.mode == "auto" and flops["classifier"] is not None
    total = flops["restorer"] + (flops["classifier"] if auto else 0)
    flops["total"] = total
    floor = total / (peak * 1e12) * 1e3 if peak else None
    return {
        "width": width, "height": height, "batch": cfg.batch, "tiled": False, "tiling": TilingInfo().to_dict(),
        "flops": flops, "gflops": total / 1e9, "flops_device": "meta", "timing": {},
        "headline": "total" if auto else "restorer",
        "ms": None, "iqr_ms": None, "achieved_tflops": None, "utilization": None,
        "floor_ms": floor, "below_floor": False, "part_floors": {},
        "titan_rtx_floor_ms": titan_floors(total), "memory": {}, "peak_mem_mib": None, "mem_kind": None,
        **_per_step(restorer, flops),
    }


def time_restorer(
    restorer,
    sizes: Sequence[str] | str = ("1080p", "2k"),
    config: TimingConfig | None = None,
    *,
    name: str | None = None,
    modes: Sequence[str] | None = None,
    weights: str = "released",
    clock: Callable[[], float] | None = None,
    log: Callable[[str], None] | None = None,
    previous: dict | None = None,
    on_size: Callable[[dict], None] | None = None,
) -> dict:
    """Time one already-built `Restorer` at each size; returns one JSON-able record (see `time_methods`).

    `modes` is the method's registry modes (("text",) / ("auto",) / both; None = accepts a type).
    `clock` replaces `time.perf_counter` for the CPU protocol (tests use a fake clock).
    `previous`: an earlier record of this method (`--resume`); its finished sizes are kept, not re-timed,
    when it was measured the same way (`same_protocol`). `on_size(record)` is called after every size.
    """
    cfg = (config or TimingConfig()).resolved()
    log = log or (lambda s: None)
    dev = torch.device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if dev.type == "cuda" and dev.index is not None:
        torch.cuda.set_device(dev)
    size_list = parse_sizes(sizes)
    name = name or getattr(restorer, "name", type(restorer).__name__)
    restorer = restorer.to(dev) or restorer
    text_ok = _has_text_mode(restorer, modes)
    peak, peak_source = device_peak(dev, cfg.dtype, cfg.peak_tflops)
    cls = getattr(restorer, "classifier", None)
    record = {
        "method": name,
        "mode": cfg.mode,
        "weights": weights,
        "params": count_parameters(restorer),
        "params_classifier": count_parameters(cls) if cls is not None else None,
        "device": device_name(dev),
        "device_type": dev.type,
        "dtype": cfg.dtype,
        "threads": torch.get_num_threads(),
        "peak_tflops": peak,
        "peak_source": peak_source,
        "restorer_call": "restore(x, [fixed_type] * B)" if text_ok else "restore(x, None)",
        "sizes": {},
        "error": None,
    }
    if dev.type == "meta" and getattr(restorer, "meta_flops_note", None):
        record["flops_note"] = str(restorer.meta_flops_note)  # how its meta-device count differs (table note)
    with backend_settings(cfg):
        prep = prepare(restorer, cfg)
        record["settings"] = recorded_settings(cfg, prep.compile_info)
        reusable = previous.get("sizes", {}) if previous and same_protocol(previous, record) else {}
        with torch.inference_mode(), autocast_for(cfg):
            for key, w, h in size_list:
                done = reusable.get(key)
                if (isinstance(done, dict) and not done.get("error")
                        and (done.get("width"), done.get("height")) == (w, h)):
                    record["sizes"][key] = done
                    log(f"  {name} @ {size_label(key)}: kept from the earlier run (--resume)")
                    continue
                log(f"  {name} @ {size_label(key)} ({w}x{h}) on {record['device']} [{cfg.dtype}]")
                t_size = time.perf_counter()
                try:
                    if dev.type == "meta":
                        record["sizes"][key] = _count_size(restorer, cfg, w, h, text_ok, peak)
                    else:
                        record["sizes"][key] = _time_size(restorer, prep, cfg, key, w, h, text_ok, peak, clock,
                                                          log)
                except Exception as e:  # noqa: BLE001 - one failing size must not lose the others
                    if cfg.compile and not isinstance(e, KeyboardInterrupt):
                        record["settings"]["compile"]["error"] = f"{type(e).__name__}: {e}"[:500]
                    record["sizes"][key] = {"width": w, "height": h, "error": f"{type(e).__name__}: {e}"[:500]}
                    log(f"    {key}: FAILED {type(e).__name__}: {e}")
                else:
                    log(f"    {key}: done in {time.perf_counter() - t_size:.1f} s")
                free_memory(dev)
                if on_size is not None:
                    on_size(record)
    return record


#: Record fields that must agree for an earlier measurement to be reused by `--resume`.
PROTOCOL_FIELDS = ("device", "device_type", "dtype", "mode", "weights", "threads")
PROTOCOL_SETTINGS = ("autocast_dtype", "allow_tf32_matmul", "allow_tf32_cudnn", "cudnn_benchmark", "channels_last",
                     "batch", "fixed_type", "warmup", "min_iters", "min_seconds", "max_iters", "max_seconds", "tile",
                     "overlap", "blend", "torch")


def same_protocol(a: dict, b: dict) -> bool:
    """Whether two records of a method were measured on the same device, dtype, mode, weights and settings."""
    if a.get("method") != b.get("method") or any(a.get(k) != b.get(k) for k in PROTOCOL_FIELDS):
        return False
    sa, sb = a.get("settings") or {}, b.get("settings") or {}
    ca, cb = sa.get("compile") or {}, sb.get("compile") or {}
    return (all(sa.get(k) == sb.get(k) for k in PROTOCOL_SETTINGS)
            and (ca.get("enabled"), ca.get("mode")) == (cb.get("enabled"), cb.get("mode")))
