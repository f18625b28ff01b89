"""Peak FLOP/s of the device (vendor table for GPUs, SIMD estimate for CPUs) and the Titan RTX floors."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.provenance import device_name

#: The VL-UR paper's speed claims on a Titan RTX, ms, keyed by (width, height).
PAPER_CLAIMS_MS: dict[tuple[int, int], float] = {(1920, 1080): 10.0, (2560, 1440): 20.0}
CLAIM_DEVICE = "Titan RTX"


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


def _cpuinfo() -> tuple[set[str], float | None]:
    """(SIMD flags, max MHz seen) from /proc/cpuinfo; empty where unavailable (the model name:
    `harness.provenance.cpu_model`)."""
    flags, mhz = set(), None
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return flags, mhz
    for line in text.splitlines():
        k, _, v = line.partition(":")
        k, v = k.strip(), v.strip()
        if k in ("flags", "Features") and not flags:
            flags = set(v.split())
        elif k == "cpu MHz":
            with contextlib.suppress(ValueError):
                mhz = max(mhz or 0.0, float(v))
    return flags, mhz


def _cpu_max_ghz() -> tuple[float, str]:
    try:
        khz = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text())
        return khz / 1e6, "cpufreq max"
    except (OSError, ValueError):
        pass
    _, mhz = _cpuinfo()
    if mhz:
        return mhz / 1e3, "/proc/cpuinfo MHz"
    return 4.0, "assumed 4 GHz"


def cpu_peak_tflops(dtype: str, threads: int) -> tuple[float, str]:
    """Rough upper estimate of the CPU's peak TFLOP/s over `threads` cores (see the module doc)."""
    flags, _ = _cpuinfo()
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


def device_peak(device: str | torch.device, dtype: str, override: float | None = None) -> tuple[float | None, str]:
    """(peak TFLOP/s, where it comes from) for the device and dtype."""
    if override:
        return float(override), "--peak-tflops"
    dev = torch.device(device)
    if dev.type == "cuda":
        name = device_name(dev)
        peak = find_gpu_peak(name)
        if peak is None:
            return None, f"unknown GPU {name!r}: pass --peak-tflops"
        value, path = peak.tflops(dtype)
        return value, f"{peak.name} {path}"
    if dev.type == "cpu":
        return cpu_peak_tflops(dtype, torch.get_num_threads())
    return None, f"no peak known for device type {dev.type}"


def titan_floors(total_flops: int | None) -> dict:
    """The time `total_flops` would take on a Titan RTX at 100 % utilisation, FP32 and FP16 tensor cores (ms)."""
    return {
        "fp32": total_flops / (TITAN_RTX.fp32 * 1e12) * 1e3 if total_flops is not None else None,
        "fp16": total_flops / (TITAN_RTX.fp16 * 1e12) * 1e3 if total_flops is not None else None,
    }
