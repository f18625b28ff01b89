"""What to time: named sizes (`parse_size`), dtypes, and `TimingConfig` (the protocol's knobs and defaults)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

import torch

#: Named sizes, as (width, height).
SIZES: dict[str, tuple[int, int]] = {
    "720p": (1280, 720),
    "1080p": (1920, 1080),
    "2k": (2560, 1440),
    "1440p": (2560, 1440),
    "4k": (3840, 2160),
}
SIZE_LABELS = {"1080p": "1080p", "2k": "2K", "720p": "720p", "1440p": "1440p", "4k": "4K"}


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
