"""Peak memory over a block: CUDA allocator peaks, or the rise of the process's peak RSS on the CPU."""

from __future__ import annotations

from pathlib import Path

import torch

from harness.tiling import free_memory


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
