"""Inference timing at 1080p and 2K: latency, FLOPs, memory, and the distance to the hardware's limit.

    python -m harness.timing --methods vlur,onerestore --sizes 1080p,2k --device cuda --dtype fp32 \
        --weights-dir weights/ --out results/timing
    python -m harness.timing --methods onerestore,promptir,airnet,vlur --flops-only --random-weights

`--random-weights` builds airnet / onerestore / promptir / vlur from their classes with random weights (speed
does not depend on the values; recorded as weights "random"). `--flops-only` counts parameters and FLOPs on
the meta device (nothing runs, seconds on any machine) and fills the FLOPs / Titan RTX floor columns only.
API: `time_methods(...)` / `time_restorer(...)` → JSON-able records; `render_timing_table(records, "md"|"tex")`;
`run_for_harness(...)` for `harness.run --timing`; `write_timing(records, out)`.

What is measured, for every method and size (W×H; 1080p = 1920×1080, 2k = 2560×1440, or any "WxH"):

* **restorer** — `restore(x, [fixed_type] * B)`: the restoration network with the degradation type given
  (text mode), input already on the device. Methods that do not accept a type get `restore(x, None)`.
* **classifier** — `restorer.classifier.classify(x)`, when the method has a classifier (AutoRestorer).
* **total** — what the method costs in the chosen `--mode`: in `auto` mode with a classifier,
  `restore_auto(x)` (classifier + restorer, measured together, not summed); otherwise the restorer time.
* **transfer** — copying a CPU uint8 B×3×H×W batch to the device, converting it to float in [0, 1], and
  the reverse for the output (clamp, ×255, round, uint8, back to the CPU); pageable host memory.
* **e2e** — end-to-end: transfer + total in one call. Measured directly on CUDA (default); on the CPU, where
  there is no copy, it is reported as total + transfer (`"e2e_method": "sum"`) unless `--e2e` is given.

The compute times ("restorer", "classifier", "total") exclude host↔device copies; "e2e" includes them.

Protocol. GPU: `cudnn.benchmark` on (switch off with `--no-cudnn-benchmark`), warm-up calls at each size
(10 by default), then timed calls, each between two CUDA events recorded on the current stream and
synchronised after every call (so a call's time is its full latency, launch gaps included), until at least
50 calls *and* at least 2 s have been timed (capped at 10 000 calls). CPU: the same statistics with
`time.perf_counter`, 1 warm-up call, at least 3 calls and 10 s by default (a mid-size model at 1080p takes
a few minutes per size, not hours), the torch thread count recorded. Reported: median and interquartile
range (numpy's linear percentiles), mean, std, min, max, number of calls; warm-up calls are never in the
statistics. Every call runs under `torch.inference_mode()`.

Precision (`--dtype`): `fp32` disables TF32 for both matmul and cuDNN (true FP32; note that PyTorch's own
default lets cuDNN convolutions use TF32); `tf32` enables both; `bf16` / `fp16` run under
`torch.autocast` with that dtype (TF32 off for what stays in FP32). `--channels-last` converts the
method's modules and the input to channels_last; `--compile` wraps `restore`, `restore_auto` and
`classifier.classify` in `torch.compile` (the warm-up calls include the compilation). All of these
settings, the torch/CUDA/cuDNN versions and the thread counts are recorded in each record's "settings".

FLOPs. `torch.utils.flop_counter.FlopCounterMode` around one eager call at the real size, on the device
being timed (that call is the first warm-up call; with `--compile` it is an extra eager call).
FLOPs = 2 per multiply-accumulate, counted for the operations that counter knows (convolutions, matrix
products, attention) plus torchvision's deformable convolution (registered here: its convolution MACs,
not the bilinear sampling); element-wise operations, normalisations and activations are not counted.
OneRestore at 720×1080 counts 275.1 GFLOPs this way. Because uncounted work only adds time, the *floor*
below remains a valid lower bound. Tiled runs count the FLOPs actually executed (overlaps included).

Distance to the limit. `floor ms` = counted FLOPs / the device's peak FLOP/s for the dtype: the time the
device would need at 100 % utilisation. A measured time below it is impossible and is flagged ("(!)",
`below_floor`). Peaks are the vendors' dense (no sparsity) figures in `GPU_PEAKS`: FP32 = the CUDA-core
rate, TF32 and FP16/BF16 = tensor-core rates with FP32 accumulation (what cuBLAS/cuDNN use under
PyTorch; GeForce cards are twice as fast with FP16 accumulation). Where a dtype has no tensor-core path
(TF32 on Turing) the next slower path is used; where it is not supported natively (BF16 on Turing) the FP16
tensor rate is used, an upper bound on the device's speed, so the floor stays a lower bound. On the CPU the
peak is an estimate (threads × max clock × FLOP/cycle from the SIMD flags: 32 with AVX2+FMA, 64 with
AVX-512, ×2 for BF16 with AVX512_BF16, 2048 per cycle with AMX) unless `--peak-tflops` gives it.
Each record also carries the Titan RTX floors (16.3 TFLOP/s FP32, 130 TFLOP/s FP16 tensor) at 1080p and
2K, which the rendered table checks against the VL-UR paper's claims (10 ms @1080p, 20 ms @2K on a Titan
RTX).

Memory. CUDA: `torch.cuda.max_memory_allocated` after `reset_peak_memory_stats`, over the warm-up and
timed calls of each measurement (weights, input and activations; `increase_mib` = peak − allocated before).
CPU: the rise of the process's peak resident set size over those calls — freed heap memory is first returned to the
OS (glibc `malloc_trim(0)`), the peak (VmHWM) is reset through `/proc/self/clear_refs` ("5") and
`VmHWM after − VmRSS before` is reported, i.e. the activations' working set (weights and input are
already resident); the absolute peak RSS is kept as `peak_rss_mib`; "n/a" where /proc is not available.

Out of memory. If a size does not fit, the restorer (and `restore_auto`'s restorer part) runs through
`harness.tiling.tiled_restore` (tile 512, overlap 32, linear blending; halved while it still does not
fit); the record says `tiled: true` with the tile, and the tables mark it with †.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from harness.tiling import TilingInfo, free_memory, is_oom_error, restore_with_fallback, tiled_fn, tiled_restore

# ------------------------------------------------------------------------------------------------- sizes

#: Named sizes, as (width, height).
SIZES: dict[str, tuple[int, int]] = {
    "720p": (1280, 720),
    "1080p": (1920, 1080),
    "2k": (2560, 1440),
    "1440p": (2560, 1440),
    "4k": (3840, 2160),
}
SIZE_LABELS = {"1080p": "1080p", "2k": "2K", "720p": "720p", "1440p": "1440p", "4k": "4K"}

#: The VL-UR paper's speed claims on a Titan RTX, ms, keyed by (width, height).
PAPER_CLAIMS_MS: dict[tuple[int, int], float] = {(1920, 1080): 10.0, (2560, 1440): 20.0}
CLAIM_DEVICE = "Titan RTX"


def parse_size(spec: str) -> tuple[str, int, int]:
    """'1080p' / '2k' / '1920x1080' (width × height) → (key, width, height)."""
    s = spec.strip()
    key = s.lower()
    if key in SIZES:
        w, h = SIZES[key]
        return key, w, h
    m = re.fullmatch(r"(\d+)\s*[x×]\s*(\d+)", key)
    if not m:
        raise ValueError(f"unknown size {spec!r}: use {', '.join(SIZES)} or WIDTHxHEIGHT (e.g. 1920x1080)")
    w, h = int(m.group(1)), int(m.group(2))
    if w <= 0 or h <= 0:
        raise ValueError(f"size {spec!r} must be positive")
    return f"{w}x{h}", w, h


def parse_sizes(spec: str | Iterable[str]) -> list[tuple[str, int, int]]:
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = [parse_size(s) for s in items if str(s).strip()]
    if not out:
        raise ValueError("no size given; try --sizes 1080p,2k")
    return out


def size_label(key: str) -> str:
    return SIZE_LABELS.get(key, key)


# ------------------------------------------------------------------------------------------ peak FLOP/s


@dataclass(frozen=True)
class DevicePeak:
    """Dense peak TFLOP/s of a device (vendor figures, no structured sparsity)."""

    name: str
    fp32: float  # CUDA cores
    tf32: float | None  # tensor cores (None: no TF32 path)
    fp16: float | None  # tensor cores, FP32 accumulate
    bf16: float | None  # tensor cores, FP32 accumulate (None: not native)
    bandwidth_gbs: float | None = None

    def tflops(self, dtype: str) -> tuple[float, str]:
        """Peak for `dtype` and a note on which path it is."""
        if dtype == "fp32":
            return self.fp32, "FP32 CUDA cores"
        if dtype == "tf32":
            return (self.tf32, "TF32 tensor cores") if self.tf32 else (self.fp32, "FP32 (no TF32 path)")
        if dtype == "fp16":
            return (self.fp16, "FP16 tensor cores, FP32 accumulate") if self.fp16 else (self.fp32, "FP32")
        if dtype == "bf16":
            if self.bf16:
                return self.bf16, "BF16 tensor cores, FP32 accumulate"
            if self.fp16:
                return self.fp16, "BF16 not native: FP16 tensor rate used as an upper bound"
            return self.fp32, "FP32"
        raise ValueError(f"unknown dtype {dtype!r}")


#: (lower-case substrings that must all occur in torch.cuda.get_device_name, peak); first match wins.
GPU_PEAKS: list[tuple[tuple[str, ...], DevicePeak]] = [
    (("gh200",), DevicePeak("GH200", 67.0, 494.7, 989.4, 989.4, 4000)),
    (("h200", "nvl"), DevicePeak("H200 NVL", 60.0, 417.5, 835.5, 835.5, 4800)),
    (("h200",), DevicePeak("H200 SXM", 67.0, 494.7, 989.4, 989.4, 4800)),
    (("h100", "nvl"), DevicePeak("H100 NVL", 60.0, 417.5, 835.5, 835.5, 3900)),
    (("h100", "pcie"), DevicePeak("H100 PCIe", 51.2, 378.0, 756.5, 756.5, 2000)),
    (("h100",), DevicePeak("H100 SXM", 67.0, 494.7, 989.4, 989.4, 3350)),
    (("a100",), DevicePeak("A100", 19.5, 156.0, 312.0, 312.0, 2039)),
    (("titan rtx",), DevicePeak("Titan RTX", 16.3, None, 130.0, None, 672)),
    (("3090", "ti"), DevicePeak("RTX 3090 Ti", 40.0, 40.0, 80.0, 80.0, 1008)),
    (("3090",), DevicePeak("RTX 3090", 35.6, 35.6, 71.0, 71.0, 936)),
    (("4090",), DevicePeak("RTX 4090", 82.6, 82.6, 165.2, 165.2, 1008)),
]

TITAN_RTX = next(p for k, p in GPU_PEAKS if k == ("titan rtx",))


def find_gpu_peak(device_name: str) -> DevicePeak | None:
    n = device_name.lower()
    for keys, peak in GPU_PEAKS:
        if all(k in n for k in keys):
            return peak
    return None


def _cpuinfo() -> tuple[str, set[str], float | None]:
    """(model name, SIMD flags, max MHz seen) from /proc/cpuinfo; empty where unavailable."""
    model, flags, mhz = platform.processor() or "CPU", set(), None
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, flags, mhz
    for line in text.splitlines():
        k, _, v = line.partition(":")
        k, v = k.strip(), v.strip()
        if k == "model name" and v:
            model = v
        elif k in ("flags", "Features") and not flags:
            flags = set(v.split())
        elif k == "cpu MHz":
            with contextlib.suppress(ValueError):
                mhz = max(mhz or 0.0, float(v))
    return model, flags, mhz


def _cpu_max_ghz() -> tuple[float, str]:
    try:
        khz = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text())
        return khz / 1e6, "cpufreq max"
    except (OSError, ValueError):
        pass
    _, _, mhz = _cpuinfo()
    if mhz:
        return mhz / 1e3, "/proc/cpuinfo MHz"
    return 4.0, "assumed 4 GHz"


def cpu_peak_tflops(dtype: str, threads: int) -> tuple[float, str]:
    """Rough upper estimate of the CPU's peak TFLOP/s over `threads` cores (see the module doc)."""
    _, flags, _ = _cpuinfo()
    ghz, ghz_src = _cpu_max_ghz()
    if "avx512f" in flags:
        per_cycle, simd = 64, "AVX-512"
    elif "avx2" in flags and "fma" in flags:
        per_cycle, simd = 32, "AVX2+FMA"
    elif "asimd" in flags:
        per_cycle, simd = 16, "NEON"
    else:
        per_cycle, simd = 8, "SSE"
    if dtype in ("bf16", "fp16"):
        if "amx_bf16" in flags or "amx_fp16" in flags:
            per_cycle, simd = 2048, "AMX"
        elif "avx512_bf16" in flags or "avx512_fp16" in flags:
            per_cycle, simd = per_cycle * 2, simd + " BF16"
    value = threads * ghz * per_cycle / 1e3
    return value, f"estimate: {threads} threads × {ghz:.2f} GHz ({ghz_src}) × {per_cycle} FLOP/cycle ({simd})"


# ----------------------------------------------------------------------------------------------- config

DTYPES = ("fp32", "tf32", "bf16", "fp16")
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class TimingConfig:
    """How to time; `None` fields take the device's default (GPU / CPU protocol, see the module doc)."""

    device: str = "cpu"
    dtype: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    compile_mode: str | None = None  # torch.compile(mode=...)
    cudnn_benchmark: bool = True
    mode: str = "auto"  # "auto" | "text"
    batch: int = 1
    warmup: int | None = None  # GPU 10, CPU 1
    min_iters: int | None = None  # GPU 50, CPU 3
    min_seconds: float | None = None  # GPU 2.0, CPU 10.0
    max_iters: int | None = None  # GPU 10000, CPU 1000
    max_seconds: float | None = None  # optional cap (relaxes min_iters, never below 3 calls); recorded
    e2e: bool | None = None  # measure end-to-end directly; default: on CUDA only (else total + transfer)
    count_flops: bool = True
    tile: int = 512
    overlap: int = 32
    blend: str = "linear"
    force_tiled: bool = False
    fixed_type: str = "low_haze_snow"
    peak_tflops: float | None = None  # overrides the device table / CPU estimate
    threads: int | None = None  # torch.set_num_threads
    seed: int = 0

    def resolved(self) -> TimingConfig:
        cuda = torch.device(self.device).type == "cuda"
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; choose from {', '.join(DTYPES)}")
        if self.mode not in ("auto", "text"):
            raise ValueError(f"mode must be 'auto' or 'text', got {self.mode!r}")
        r = replace(
            self,
            warmup=self.warmup if self.warmup is not None else (10 if cuda else 1),
            min_iters=self.min_iters if self.min_iters is not None else (50 if cuda else 3),
            min_seconds=self.min_seconds if self.min_seconds is not None else (2.0 if cuda else 10.0),
            max_iters=self.max_iters if self.max_iters is not None else (10000 if cuda else 1000),
            e2e=self.e2e if self.e2e is not None else cuda,
        )
        r.max_iters = max(r.max_iters, r.min_iters, 1)
        return r


# ------------------------------------------------------------------------------------------- statistics


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


# ------------------------------------------------------------------------------------------------ memory


def _proc_status_kib(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _malloc_trim() -> bool:
    """Return freed heap memory to the OS (glibc `malloc_trim(0)`), so RSS starts from the live set."""
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0) or True)
    except (OSError, AttributeError):
        return False


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """Context manager measuring peak memory over its body (see the module doc for what is reported)."""

    def __init__(self, device: str | torch.device):
        self.device = torch.device(device)
        self.result: dict = {}

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            free_memory(self.device)
            _malloc_trim()
            self._reset = _reset_peak_rss()
            self._base = _proc_status_kib("VmRSS")
        return self

    def __exit__(self, *exc) -> None:
        mib = 1024.0**2
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            self.result = {
                "peak_mib": peak / mib,
                "base_mib": self._base / mib,
                "increase_mib": (peak - self._base) / mib,
                "reserved_mib": torch.cuda.max_memory_reserved(self.device) / mib,
                "source": "torch.cuda.max_memory_allocated",
            }
        else:
            hwm = _proc_status_kib("VmHWM")
            if self._reset and hwm is not None and self._base is not None:
                self.result = {
                    "peak_mib": None,
                    "peak_rss_mib": hwm / 1024.0,
                    "base_mib": self._base / 1024.0,
                    "increase_mib": max(0, hwm - self._base) / 1024.0,
                    "source": "VmHWM (reset via /proc/self/clear_refs) - VmRSS before (after malloc_trim)",
                }
            else:
                self.result = {"peak_mib": None, "base_mib": None, "increase_mib": None, "source": "n/a"}


# ------------------------------------------------------------------------------------------------- FLOPs


def _deform_conv2d_flop(input_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    """torchvision::deform_conv2d: 2 × (convolution MACs); the bilinear sampling is not counted."""
    b = input_shape[0]
    cout, cin_per_group, kh, kw = weight_shape
    return 2 * b * cout * out_shape[-2] * out_shape[-1] * cin_per_group * kh * kw


def _custom_flop_mapping() -> dict:
    mapping = {}
    with contextlib.suppress(Exception):
        import torchvision  # noqa: F401 - registers torch.ops.torchvision

        mapping[torch.ops.torchvision.deform_conv2d] = _deform_conv2d_flop  # keyed by overload packet
    return mapping


class _GlobalOnlyTracker:
    """Stands in for FlopCounterMode's module tracker: totals only, no per-module attribution.

    The tracker's hooks fail under `torch.inference_mode` when a module is called with a tensor that requires
    grad (e.g. `embedding_mlp(embedding.weight)`: "'NoneType' object has no attribute 'next_functions'"),
    and every restorer here runs under inference mode; the totals do not need it.
    """

    def __init__(self):
        self.parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def flop_counter():
    """A silent `FlopCounterMode` (totals only) that also counts torchvision's deformable convolution."""
    from torch.utils.flop_counter import FlopCounterMode

    fc = FlopCounterMode(display=False, custom_mapping=_custom_flop_mapping())
    if hasattr(fc, "mod_tracker"):
        fc.mod_tracker = _GlobalOnlyTracker()
    return fc


def count_flops(fn: Callable, *args, **kwargs) -> tuple[int, object]:
    """(FLOPs, output) of one call `fn(*args, **kwargs)` — 2 per MAC, as FlopCounterMode counts."""
    with torch.inference_mode(), flop_counter() as fc:
        out = fn(*args, **kwargs)
    return int(fc.get_total_flops()), out


# -------------------------------------------------------------------------------------------- parameters


def _modules_in(obj, seen: set[int] | None = None, depth: int = 3) -> list[nn.Module]:
    """nn.Modules held by `obj` (itself, its attributes, lists/dicts of them; plain objects recursively)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth < 0:
        return []
    seen.add(id(obj))
    if isinstance(obj, nn.Module):
        return [obj]
    if isinstance(obj, torch.Tensor | torch.device | str | bytes | int | float | bool | Path) or obj is None:
        return []
    if isinstance(obj, dict):
        values = list(obj.values())
    elif isinstance(obj, list | tuple | set):
        values = list(obj)
    elif hasattr(obj, "__dict__"):
        values = list(vars(obj).values())
    else:
        return []
    out: list[nn.Module] = []
    for v in values:
        out += _modules_in(v, seen, depth - 1)
    return out


def count_parameters(obj) -> int:
    """Parameters of every module `obj` holds, each counted once (unused ones included)."""
    seen: set[int] = set()
    total = 0
    for m in _modules_in(obj):
        for p in m.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
    return total


# ----------------------------------------------------------------------------------------- device info


def device_name(device: str | torch.device) -> str:
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    if dev.type == "meta":
        return "meta (FLOPs only)"
    model, _, _ = _cpuinfo()
    return f"CPU ({model})"


def device_peak(device: str | torch.device, dtype: str, override: float | None = None) -> tuple[float | None, str]:
    """(peak TFLOP/s, where it comes from) for the device and dtype."""
    if override:
        return float(override), "--peak-tflops"
    dev = torch.device(device)
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        peak = find_gpu_peak(name)
        if peak is None:
            return None, f"unknown GPU {name!r}: pass --peak-tflops"
        value, path = peak.tflops(dtype)
        return value, f"{peak.name} {path}"
    if dev.type == "cpu":
        return cpu_peak_tflops(dtype, torch.get_num_threads())
    return None, f"no peak known for device type {dev.type}"


@contextlib.contextmanager
def backend_settings(cfg: TimingConfig):
    """Set TF32 / cudnn.benchmark for `cfg` and restore the previous values afterwards."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark)
    cuda = torch.device(cfg.device).type == "cuda"
    try:
        matmul.allow_tf32 = cfg.dtype == "tf32"
        cudnn.allow_tf32 = cfg.dtype == "tf32"
        cudnn.benchmark = bool(cfg.cudnn_benchmark and cuda)
        yield
    finally:
        matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark = saved


def _settings(cfg: TimingConfig, compile_info: dict) -> dict:
    cuda = torch.device(cfg.device).type == "cuda"
    return {
        "dtype": cfg.dtype,
        "autocast_dtype": str(AUTOCAST[cfg.dtype]).replace("torch.", "") if cfg.dtype in AUTOCAST else None,
        "allow_tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "allow_tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "channels_last": cfg.channels_last,
        "compile": compile_info,
        "inference_mode": True,
        "batch": cfg.batch,
        "mode": cfg.mode,
        "fixed_type": cfg.fixed_type,
        "warmup": cfg.warmup,
        "min_iters": cfg.min_iters,
        "min_seconds": cfg.min_seconds,
        "max_iters": cfg.max_iters,
        "max_seconds": cfg.max_seconds,
        "timer": "cuda-events" if cuda else "perf_counter",
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "tile": cfg.tile,
        "overlap": cfg.overlap,
        "blend": cfg.blend,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "python": platform.python_version(),
    }


# ------------------------------------------------------------------------------------------ the timing


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


@dataclass
class _Prepared:
    restore: Callable
    classify: Callable | None
    restore_auto: Callable | None
    compile_info: dict = field(default_factory=dict)


def _prepare(restorer, cfg: TimingConfig) -> _Prepared:
    """channels_last conversion and torch.compile wrapping (eager originals stay on `restorer`)."""
    if cfg.channels_last:
        for m in _modules_in(restorer):
            m.to(memory_format=torch.channels_last)
    cls = getattr(restorer, "classifier", None)
    classify = getattr(cls, "classify", None) if cls is not None else None
    auto = getattr(restorer, "restore_auto", None) if classify is not None else None
    info: dict = {"enabled": bool(cfg.compile)}
    restore = restorer.restore
    if cfg.compile:
        kwargs = {"mode": cfg.compile_mode} if cfg.compile_mode else {}
        restore = torch.compile(restore, **kwargs)
        applied = ["restore"]
        if classify is not None:
            classify = torch.compile(classify, **kwargs)
            applied.append("classifier.classify")
        if auto is not None:
            auto = torch.compile(auto, **kwargs)
            applied.append("restore_auto")
        info.update(mode=cfg.compile_mode or "default", applied_to=applied)
    return _Prepared(restore, classify, auto, info)


def _autocast(cfg: TimingConfig):
    if cfg.dtype in AUTOCAST:
        return torch.autocast(device_type=torch.device(cfg.device).type, dtype=AUTOCAST[cfg.dtype])
    return contextlib.nullcontext()


def _count_or_run(fn: Callable, x: torch.Tensor, count: bool) -> int | None:
    if not count:
        fn(x)
        return None
    with flop_counter() as fc:
        fn(x)
    return int(fc.get_total_flops())


def _oom_reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"


def _time_size(restorer, prep: _Prepared, cfg: TimingConfig, key: str, width: int, height: int,
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
            tiling.reason = _oom_reason(e)
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
                    tiling = TilingInfo(True, cfg.tile, cfg.overlap, cfg.blend, None, _oom_reason(e))
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
        "titan_rtx_floor_ms": _titan_floors(total_flops),
        "memory": memory,
        "peak_mem_mib": max(mem_values) if mem_values else None,
        "mem_kind": "peak allocated" if dev.type == "cuda" else "peak RSS increase",
    }


def _titan_floors(total_flops: int | None) -> dict:
    return {
        "fp32": total_flops / (TITAN_RTX.fp32 * 1e12) * 1e3 if total_flops is not None else None,
        "fp16": total_flops / (TITAN_RTX.fp16 * 1e12) * 1e3 if total_flops is not None else None,
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
        "titan_rtx_floor_ms": _titan_floors(total), "memory": {}, "peak_mem_mib": None, "mem_kind": None,
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
    with backend_settings(cfg):
        prep = _prepare(restorer, cfg)
        record["settings"] = _settings(cfg, prep.compile_info)
        reusable = previous.get("sizes", {}) if previous and same_protocol(previous, record) else {}
        with torch.inference_mode(), _autocast(cfg):
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


# ----------------------------------------------------------------------------- methods from the registry


def _random_airnet(device: str):
    from baselines.airnet import AirNet, AirNetRestorer

    return AirNetRestorer(AirNet().eval(), (), device)


def _random_promptir(device: str):
    from baselines.promptir import PromptIR, PromptIRRestorer

    return PromptIRRestorer(PromptIR().eval().to(device))


def _random_onerestore(device: str):
    from baselines.onerestore import Embedder, OneRestore, OneRestoreRestorer

    return OneRestoreRestorer(OneRestore().eval(), Embedder().eval(), weights_label="random").to(device)


def _random_vlur(device: str):
    """VL-UR at its default width with a randomly initialised CLIP ViT-B/32 scene classifier."""
    from vlur.classifier import create_classifier
    from vlur.method import VLURMethod
    from vlur.restorer import VLURRestorer

    sc = create_classifier("ViT-B-32", pretrained=None)
    restorer = VLURRestorer(text_dim=int(sc.text_features.shape[1]), text_features=sc.text_features.clone())
    return VLURMethod(restorer, sc, weights_label="random", device=device)


#: Builders of methods with random weights (`--random-weights`): the speed does not depend on the values
#: (except through the classifier's choice, which does not change the restorer's work).
RANDOM_BUILDERS: dict[str, Callable[[str], object]] = {
    "airnet": _random_airnet,
    "onerestore": _random_onerestore,
    "promptir": _random_promptir,
    "vlur": _random_vlur,
}


def time_methods(
    methods: Sequence[str] | str,
    sizes: Sequence[str] | str = ("1080p", "2k"),
    config: TimingConfig | None = None,
    *,
    weights_dir: str | Path | None = None,
    weights: str | Path | None = None,
    random_weights: bool = False,
    log: Callable[[str], None] | None = None,
    previous: Sequence[dict] = (),
    on_progress: Callable[[list[dict]], None] | None = None,
    **overrides,
) -> list[dict]:
    """Time each named method (built through `harness.registry.create_restorer`) at each size.

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
    records = []
    for name in names:
        try:
            spec = get_spec(name)
            if random_weights and name in RANDOM_BUILDERS:
                restorer, label = RANDOM_BUILDERS[name](cfg.device), "random"
            else:
                opts = MethodOptions(device=cfg.device, mode=cfg.mode,
                                     weights_dir=Path(weights_dir) if weights_dir else None,
                                     weights=Path(weights) if weights else None)
                restorer, label = create_restorer(name, opts), getattr(spec.factory, "weights_label", "released")
                label = getattr(restorer, "weights_label", label)
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


def write_timing(records: Sequence[dict], out: str | Path) -> list[Path]:
    """Write timing.json ({"timing": records}), timing.md (main + detail table) and timing.tex to `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md = render_timing_table(records, "md")
    detail = render_timing_table(records, "md", detail=True, notes=False)
    paths = [out / "timing.json", out / "timing.md", out / "timing.tex"]
    texts = [json.dumps({"timing": list(records)}, indent=1, default=str) + "\n", md + "\n\n" + detail + "\n",
             render_timing_table(records, "tex") + "\n"]
    for path, text in zip(paths, texts):  # atomic: a run killed mid-write leaves the previous complete file
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return paths


def read_timing(path: str | Path) -> list[dict]:
    """The records of a timing.json written by `write_timing` (`--resume`); a clear error when unreadable."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        records = data["timing"]
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise TypeError("'timing' is not a list of records")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a timing.json written by harness.timing ({type(e).__name__}: {e})") from e
    return records


def run_for_harness(methods: Sequence[str], out: str | Path, args=None, *, sizes: Sequence[str] = ("1080p", "2k"),
                    log: Callable[[str], None] | None = print, **overrides) -> list[dict]:
    """`harness.run --timing`: time `methods` at 1080p and 2K with the run's device / weights / mode /
    threads (read from its argparse namespace `args`), write timing.{json,md,tex} to `out`, and merge the
    records into `out`/summary.json under "timing". Problems are recorded, never raised. `overrides` are
    `TimingConfig` fields (e.g. min_seconds=0 for a quick run)."""
    device = str(getattr(args, "device", None) or ("cuda" if torch.cuda.is_available() else "cpu"))
    modes = [m.strip() for m in str(getattr(args, "mode", "auto") or "auto").split(",") if m.strip()]
    cfg = TimingConfig(device=device, mode="auto" if "auto" in modes else "text",
                       threads=getattr(args, "threads", None))
    cfg = replace(cfg, **overrides)
    records = time_methods(list(methods), sizes, cfg, weights_dir=getattr(args, "weights_dir", None),
                           weights=getattr(args, "weights", None), log=log,
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
                tmp = summary.with_name(summary.name + ".timing.tmp")
                tmp.write_text(json.dumps(data, indent=1, default=str))
                os.replace(tmp, summary)
    if log:
        log(render_timing_table(records, "md"))
    return records


# ---------------------------------------------------------------------------------------------- tables


def _size_keys(records: Sequence[dict]) -> list[str]:
    keys: list[str] = []
    for r in records:
        for k in r.get("sizes", {}):
            if k not in keys:
                keys.append(k)
    return keys


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "±": r"$\pm$", "†": r"$^\dagger$", "×": r"$\times$", "−": "-", "–": "--"}


def _tex(s: str) -> str:
    return "".join(_TEX_ESCAPES.get(c, c) for c in str(s))


def _fmt(v, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.{digits}f}"


def _device_cell(r: dict) -> str:
    if r.get("device_type") == "meta":
        return "FLOPs only"
    if r.get("device_type") == "cpu":
        return f"CPU, {r.get('threads')} thr"
    return str(r.get("device", "")).replace("NVIDIA ", "")


def _booktabs(headers: list[str], rows: list[list[str]]) -> str:
    """tabulate's `latex_raw` (cells already LaTeX, not escaped again) with booktabs rules for its hlines."""
    from tabulate import tabulate

    raw = tabulate(rows, headers=headers, tablefmt="latex_raw", disable_numparse=True,
                   colalign=("left",) + ("right",) * (len(headers) - 1))
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        raw = raw.replace(r"\hline", rule, 1)
    return raw


def render_timing_table(records: Sequence[dict], fmt: str = "md", *, detail: bool = False,
                        notes: bool = True) -> str:
    """The timing table as Markdown (`fmt="md"`), LaTeX booktabs (`"tex"`) or any tabulate format.

    Main table, one row per method: Method, Params (M), then per size GFLOPs, ms (median ± IQR of the
    headline compute time; † tiled, (!) below the compute floor) and floor ms, then Peak mem (MiB,
    largest over the sizes; "+" = CPU peak-RSS increase), Device (CPU rows say "CPU"), Dtype. `detail`
    gives one row per method and size with the classifier / restorer / total / transfer / e2e times,
    achieved TFLOP/s and % of peak. Notes (protocol, floors, Titan RTX claims, errors) follow the table.
    """
    from tabulate import tabulate

    tex = fmt in ("tex", "latex")
    tfmt = "pipe" if fmt == "md" else fmt
    esc = _tex if tex else str
    pm = r" $\pm$ " if tex else " ± "
    dagger = r"$^\dagger$" if tex else "†"
    ok = [r for r in records if not r.get("error")]
    keys = _size_keys(ok)
    rows: list[list[str]] = []
    if not detail:
        headers = ["Method", "Params (M)"]
        for k in keys:
            lab = size_label(k)
            headers += [f"GFLOPs@{lab}", f"ms@{lab}", f"floor ms@{lab}"]
        headers += ["Peak mem (MiB)", "Device", "Dtype"]
        for r in ok:
            row = [esc(r["method"]), _fmt(r["params"] / 1e6, 2) if r.get("params") is not None else "n/a"]
            mems = []
            for k in keys:
                s = r["sizes"].get(k)
                if not s or s.get("error"):
                    row += ["n/a", "failed" if s else "", "n/a"]
                    continue
                cell = f"{_fmt(s['ms'], 2)}{pm}{_fmt(s['iqr_ms'], 2)}" if s.get("ms") is not None else "n/a"
                if s.get("tiled"):
                    cell += dagger
                if s.get("below_floor"):
                    cell += " (!)"
                row += [_fmt(s.get("gflops"), 1), cell, _fmt(s.get("floor_ms"), 2)]
                if s.get("peak_mem_mib") is not None:
                    mems.append(s["peak_mem_mib"])
            mem = "n/a" if not mems else (("+" if r.get("device_type") == "cpu" else "") + f"{max(mems):.0f}")
            dtype = r["dtype"] + (", CL" if r.get("settings", {}).get("channels_last") else "") + (
                ", compiled" if r.get("settings", {}).get("compile", {}).get("enabled") else "")
            row += [mem, esc(_device_cell(r)), esc(dtype)]
            rows.append(row)
    else:
        headers = ["Method", "Size", "Tiled", "GFLOPs", "cls ms", "restorer ms", "total ms", "transfer ms",
                   "e2e ms", "TFLOP/s", "% peak", "floor ms", "Peak mem (MiB)", "Device"]
        for r in ok:
            for k in keys:
                s = r["sizes"].get(k)
                if not s or s.get("error"):
                    continue
                t = s["timing"]

                def ms(part, t=t):
                    p = t.get(part)
                    return _fmt(p["median_ms"], 2) if p else "-"

                tiled = f"{s['tiling']['tile']}/{s['tiling']['overlap']}" if s.get("tiled") else "no"
                util = s.get("utilization")
                rows.append([
                    esc(r["method"]), size_label(k), tiled, _fmt(s.get("gflops"), 1), ms("classifier"),
                    ms("restorer"), ms("total") + (" (!)" if s.get("below_floor") else ""), ms("transfer"),
                    ms("e2e") + ("*" if t.get("e2e", {}).get("method") == "sum" else ""),
                    _fmt(s.get("achieved_tflops"), 2), _fmt(util * 100 if util is not None else None, 1),
                    _fmt(s.get("floor_ms"), 2),
                    ("+" if r.get("device_type") == "cpu" else "") + _fmt(s.get("peak_mem_mib"), 0),
                    esc(_device_cell(r)),
                ])
    if tex:
        table = _booktabs([esc(h) for h in headers], rows)
    else:
        table = tabulate(rows, headers=headers, tablefmt=tfmt, disable_numparse=True)
    if not notes:
        return table
    lines = timing_notes(records, detail=detail)
    if tex:
        return table + "\n" + "\n".join(r"\par\noindent{\footnotesize " + _tex(n) + "}" for n in lines)
    return table + "\n\n" + "\n".join(f"- {n}" for n in lines)


def timing_notes(records: Sequence[dict], *, detail: bool = False) -> list[str]:
    """The footnotes of the timing table: protocol, floors, tiling, Titan RTX claims, errors."""
    notes: list[str] = []
    ok = [r for r in records if not r.get("error")]
    if ok:
        timed = [r for r in ok if r.get("device_type") != "meta"]
        s0 = (timed or ok)[0].get("settings", {})
        if len(timed) < len(ok):
            notes.append("FLOPs only (counted on the meta device, nothing run): no timings; auto-mode GFLOPs = "
                         "classifier (scores) + restorer.")
        if any(r.get("device_type") == "cpu" for r in ok):
            r = next(r for r in ok if r.get("device_type") == "cpu")
            notes.append(f"Timed on the CPU ({r['device']}, {r['threads']} torch threads, time.perf_counter): "
                         "not a GPU result.")
        if timed:
            notes.append(
                f"ms: median ± interquartile range of the compute time (input already on the device, host-device "
                f"copies excluded) over at least {s0.get('min_iters')} calls and {s0.get('min_seconds')} s after "
                f"{s0.get('warmup')} warm-up calls, batch {s0.get('batch')}, mode {s0.get('mode')} "
                "(auto: classifier + restorer; text: restorer with the type given)."
            )
        notes.append(
            "GFLOPs: torch.utils.flop_counter at the real size (2 per multiply-accumulate of convolutions, "
            "matrix products and attention; element-wise operations not counted)."
        )
        srcs = sorted({f"{r['device']} {r['dtype']}: {_fmt(r.get('peak_tflops'), 1)} TFLOP/s "
                       f"({r.get('peak_source')})" for r in ok if r.get("peak_tflops")})
        if srcs:
            notes.append("floor ms: counted FLOPs / peak FLOP/s, the time at 100 % utilisation; a measured time "
                         "below it is impossible and is marked (!). Peaks: " + "; ".join(srcs) + ".")
        if any(s.get("below_floor") for r in ok for s in r["sizes"].values()):
            notes.append("(!) measured below the compute floor: check synchronisation, the FLOP count or the "
                         "peak figure - such a time cannot be right.")
        if any(s.get("tiled") for r in ok for s in r["sizes"].values()):
            notes.append("† did not fit in memory whole: run tiled (harness.tiling.tiled_restore; tile/overlap "
                         "in the record).")
        kinds = {r.get("device_type") for r in ok}
        if "cuda" in kinds:
            notes.append("Peak mem (CUDA): torch.cuda.max_memory_allocated over each measurement's calls "
                         "(weights, input and activations).")
        if "cpu" in kinds:
            notes.append("Peak mem (CPU, '+'): rise of the process's peak resident set size (VmHWM) over each "
                         "measurement's calls, i.e. the activations' working set; n/a without /proc.")
        if detail and any(s.get("timing", {}).get("e2e", {}).get("method") == "sum"
                          for r in ok for s in r["sizes"].values()):
            notes.append("e2e*: total + transfer (not measured as one call).")
        notes += titan_rtx_claim_notes(ok)
    for r in records:
        if r.get("error"):
            notes.append(f"{r['method']}: not timed ({str(r['error']).splitlines()[0]}).")
        for k, s in r.get("sizes", {}).items():
            if s.get("error"):
                notes.append(f"{r['method']} @ {size_label(k)}: failed ({s['error'].splitlines()[0]}).")
    return notes


def titan_rtx_claim_notes(records: Sequence[dict]) -> list[str]:
    """Check the VL-UR paper's claims (10 ms @1080p, 20 ms @2K, Titan RTX) against each method's floor."""
    out = []
    for r in records:
        parts = []
        for k, s in r.get("sizes", {}).items():
            claim = PAPER_CLAIMS_MS.get((s.get("width"), s.get("height")))
            fl = s.get("titan_rtx_floor_ms") or {}
            if claim is None or not fl.get("fp32"):
                continue
            f32, f16 = fl["fp32"], fl["fp16"]
            if claim >= f32:
                verdict = "above the FP32 floor: possible"
            elif claim >= f16:
                verdict = "below the FP32 floor: possible only on FP16 tensor cores"
            else:
                verdict = "below even the FP16 tensor-core floor: impossible on a Titan RTX"
            parts.append(f"{size_label(k)}: floor {f32:.1f} ms FP32 / {f16:.2f} ms FP16 vs claimed {claim:g} ms "
                         f"({verdict})")
        if parts:
            out.append(f"{r['method']} on a {CLAIM_DEVICE} (16.3 TFLOP/s FP32, 130 TFLOP/s FP16 tensor), "
                       "paper's claim for VL-UR: " + "; ".join(parts) + ".")
    return out


# -------------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness.timing",
        description="Inference timing, FLOPs, memory and compute floors of restoration methods.",
    )
    p.add_argument("--methods", required=True, help="comma-separated method names (harness.registry)")
    p.add_argument("--sizes", default="1080p,2k", help="comma-separated: 720p, 1080p, 2k, 4k or WxH")
    p.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda if available)")
    p.add_argument("--dtype", default="fp32", choices=DTYPES)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile restore / classify / restore_auto")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. max-autotune")
    p.add_argument("--no-cudnn-benchmark", action="store_true")
    p.add_argument("--mode", default="auto", choices=("auto", "text"))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--weights-dir", type=Path, default=None)
    p.add_argument("--weights", type=Path, default=None, help="one explicit checkpoint (single method)")
    p.add_argument("--random-weights", action="store_true",
                   help=f"build {', '.join(RANDOM_BUILDERS)} from their classes with random weights")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--iters", type=int, default=None, help="minimum timed calls (GPU 50, CPU 3)")
    p.add_argument("--min-seconds", type=float, default=None, help="minimum timed seconds (GPU 2, CPU 10)")
    p.add_argument("--max-iters", type=int, default=None)
    p.add_argument("--max-seconds", type=float, default=None,
                   help="stop a measurement after this long even below --iters (at least 3 calls; recorded)")
    p.add_argument("--e2e", dest="e2e", action="store_true", default=None, help="measure end-to-end directly")
    p.add_argument("--no-e2e", dest="e2e", action="store_false")
    p.add_argument("--no-flops", action="store_true")
    p.add_argument("--flops-only", action="store_true",
                   help="count parameters and FLOPs on the meta device at each size; no timing (any machine)")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--overlap", type=int, default=32)
    p.add_argument("--blend", default="linear", choices=("linear", "crop"))
    p.add_argument("--force-tiled", action="store_true")
    p.add_argument("--fixed-type", default="low_haze_snow", help="the type given in text mode")
    p.add_argument("--peak-tflops", type=float, default=None, help="the device's peak (CPU or unknown GPU)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--detail", action="store_true", help="also print the per-size detail table")
    p.add_argument("--out", type=Path, default=None,
                   help="write timing.json, timing.md and timing.tex here (updated after every size)")
    p.add_argument("--resume", action="store_true",
                   help="keep the sizes already measured in OUT/timing.json the same way; time only the rest")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from harness.cdd11 import type_index
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
    return 0 if all(not r.get("error") and not any(s.get("error") for s in r["sizes"].values())
                    for r in records) else 1


__all__ = [
    "DTYPES",
    "GPU_PEAKS",
    "PAPER_CLAIMS_MS",
    "SIZES",
    "DevicePeak",
    "PeakMemory",
    "TimingConfig",
    "count_flops",
    "count_parameters",
    "cpu_peak_tflops",
    "device_peak",
    "find_gpu_peak",
    "measure",
    "parse_size",
    "parse_sizes",
    "read_timing",
    "render_timing_table",
    "run_for_harness",
    "same_protocol",
    "summarize",
    "time_methods",
    "time_restorer",
    "timing_notes",
    "titan_rtx_claim_notes",
    "write_timing",
]

if __name__ == "__main__":
    sys.exit(main())
