"""The timing loop (`measure`: warm-up, CUDA events or perf_counter, stopping rule) and its statistics."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch


def summarize(times_ms: Sequence[float], *, warmup: int = 0, timer: str = "perf_counter") -> dict:
    """Median, quartiles (numpy linear), IQR, mean, std, min, max of per-call times in ms."""
    t = np.asarray(list(times_ms), dtype=np.float64)
    if t.size == 0:
        raise ValueError("no timed calls")
    q1, med, q3 = np.percentile(t, [25, 50, 75])
    return {
        "n": int(t.size),
        "warmup": int(warmup),
        "median_ms": float(med),
        "q1_ms": float(q1),
        "q3_ms": float(q3),
        "iqr_ms": float(q3 - q1),
        "mean_ms": float(t.mean()),
        "std_ms": float(t.std(ddof=1)) if t.size > 1 else 0.0,
        "min_ms": float(t.min()),
        "max_ms": float(t.max()),
        "total_s": float(t.sum() / 1e3),
        "timer": timer,
    }


def measure(
    fn: Callable[[], object],
    *,
    device: str | torch.device = "cpu",
    warmup: int = 1,
    min_iters: int = 3,
    min_seconds: float = 0.0,
    max_iters: int | None = None,
    max_seconds: float | None = None,
    clock: Callable[[], float] | None = None,
) -> dict:
    """Time `fn()`: `warmup` untimed calls, then timed calls until `min_iters` calls and `min_seconds`
    of wall time have both passed (or `max_iters` calls, or — if given — `max_seconds` with at least 3
    calls). `max_seconds` also caps the warm-up (at least one call is made), so a slow model at a large
    size does not spend minutes warming up. CUDA: per-call CUDA events, synchronised after each call; CPU:
    `clock` (default `time.perf_counter`) around each call. Returns `summarize`'s dict ("warmup" = the
    warm-up calls actually made).
    """
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    clock = clock or time.perf_counter
    max_iters = max(max_iters or 10**9, min_iters, 1)
    warm_start = clock()
    done_warmup = 0
    for _ in range(warmup):
        fn()
        done_warmup += 1
        if max_seconds is not None:
            if cuda:
                torch.cuda.synchronize(dev)
            if clock() - warm_start >= max_seconds:
                break
    warmup = done_warmup
    if cuda:
        torch.cuda.synchronize(dev)
    times: list[float] = []
    start = clock()
    while True:
        if cuda:
            e0 = torch.cuda.Event(enable_timing=True)
            e1 = torch.cuda.Event(enable_timing=True)
            e0.record()
            fn()
            e1.record()
            e1.synchronize()
            times.append(float(e0.elapsed_time(e1)))
        else:
            t0 = clock()
            fn()
            times.append((clock() - t0) * 1e3)
        n = len(times)
        elapsed = clock() - start
        if n >= max_iters or (n >= min_iters and elapsed >= min_seconds):
            break
        if max_seconds is not None and elapsed >= max_seconds and n >= min(3, min_iters):
            break
    return summarize(times, warmup=warmup, timer="cuda-events" if cuda else "perf_counter")
