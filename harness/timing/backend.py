"""Backend set-up for a measurement: TF32 / cudnn.benchmark, autocast, channels_last, torch.compile, and the
settings recorded with every record."""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from harness.provenance import modules_in
from harness.timing.config import AUTOCAST, TimingConfig


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


def recorded_settings(cfg: TimingConfig, compile_info: dict) -> dict:
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


@dataclass
class Prepared:
    """The callables a measurement times (compiled where asked) and what `torch.compile` was applied to."""

    restore: Callable
    classify: Callable | None
    restore_auto: Callable | None
    compile_info: dict = field(default_factory=dict)


def prepare(restorer, cfg: TimingConfig) -> Prepared:
    """channels_last conversion and torch.compile wrapping (eager originals stay on `restorer`)."""
    if cfg.channels_last:
        for m in modules_in(restorer):
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
    return Prepared(restore, classify, auto, info)


def autocast_for(cfg: TimingConfig):
    """`torch.autocast` for a bf16 / fp16 config, a no-op context otherwise."""
    if cfg.dtype in AUTOCAST:
        return torch.autocast(device_type=torch.device(cfg.device).type, dtype=AUTOCAST[cfg.dtype])
    return contextlib.nullcontext()
