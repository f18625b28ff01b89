"""How each method produces restored images, and how one image becomes one record.

A `MethodRun` is one column-to-be: a method in one mode, with a `produce(LoadedPair)` function returning
(restored image, predicted type or None, notes). Model methods restore through their `Restorer`
(`model_producer`: whole image first, overlapping tiles on out-of-memory; optional autocast dtype,
channels-last and torch.compile); `outputs:NAME=DIR` methods read files (`harness.outputs`). `score_one`
turns a produced image into a record with the metrics of the run's convention, never raising.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from harness import metrics, registry, results
from harness.data.cdd11 import LoadedPair
from harness.protocol import AutoRestorer, DegradationClassifier
from harness.records import error_text
from harness.weights import WeightsError, sha256_file

if TYPE_CHECKING:
    from harness.evaluation import EvalConfig


@dataclass
class MethodRun:
    """One column-to-be: how to produce restored images for (method, mode)."""

    name: str
    mode: str
    weights: str
    weights_files: dict[str, str]  # path -> sha256
    produce: Callable[[LoadedPair], tuple[torch.Tensor | np.ndarray, str | None, list[str]]]
    digest: str | None = None
    extra: dict = field(default_factory=dict)
    compute: Compute | None = None  # None for methods that run no model (outputs:NAME=DIR)


def weights_digest(files_sha: Mapping[str, str]) -> str | None:
    """One short fingerprint of a method's weights files (None for a method without weights files)."""
    if not files_sha:
        return None
    return hashlib.sha256("\n".join(sorted(files_sha.values())).encode()).hexdigest()[:16]


def _to_tensor(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """H×W×3 uint8 → 1×3×H×W float32 in [0, 1] on `device`; on CUDA the uint8 copy goes through pinned memory,
    non-blocking, and the conversion to float happens on the GPU."""
    t = torch.from_numpy(a).permute(2, 0, 1).unsqueeze(0)
    if device.type == "cuda":
        t = t.contiguous().pin_memory().to(device, non_blocking=True)
        return t.to(torch.float32) / 255.0
    return t.to(device=device, dtype=torch.float32) / 255.0


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Compute:
    """How a model method runs: autocast dtype (fp32 = no autocast, the published protocol), channels-last
    memory format, torch.compile. Recorded in every record (`record()`) and in the summary."""

    dtype: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    batch: int = 1

    def record(self) -> dict:
        return {"dtype": self.dtype, "channels_last": self.channels_last, "compile": self.compile,
                "batch": self.batch}


def prepare_model(restorer, compute: Compute) -> list[str]:
    """Apply channels-last / torch.compile to the restorer's network (its `model` attribute, when it is an
    `nn.Module`); returns notes saying what was applied."""
    notes = []
    model = getattr(restorer, "model", None)
    if not isinstance(model, torch.nn.Module):
        if compute.channels_last or compute.compile:
            notes.append("channels-last / compile asked for, but the restorer exposes no `model` network: "
                         "inputs only")
        return notes
    if compute.channels_last:
        model.to(memory_format=torch.channels_last)
        notes.append("network in channels-last memory format")
    if compute.compile:
        restorer.model = torch.compile(model)
        notes.append("network compiled with torch.compile (warm-up excluded from per-image times)")
    return notes


def _autocast(device: torch.device, compute: Compute):
    import contextlib

    if compute.dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[compute.dtype])


def model_producer(restorer, mode: str, device: torch.device, compute: Compute = Compute()):
    """Restore one loaded pair with a `Restorer` in `mode`; whole image first, overlapping tiles on OOM.
    The returned function has a `.batch(lps)` attribute restoring several same-size pairs in one call."""

    def forward(x: torch.Tensor, true_types: list[str]) -> tuple[torch.Tensor, list[str | None]]:
        if compute.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), _autocast(device, compute):
            if mode == "text":
                out, preds = restorer.restore(x, list(true_types)), [None] * len(true_types)
            elif isinstance(restorer, AutoRestorer):
                out, preds = restorer.restore_auto(x)
            else:
                clf = getattr(restorer, "classifier", None)  # a classifier that does not drive restore_auto
                preds = clf.classify(x) if isinstance(clf, DegradationClassifier) else [None] * x.shape[0]
                out = restorer.restore(x, None)
        return (out.float() if isinstance(out, torch.Tensor) else out), list(preds)

    def produce(lp: LoadedPair):
        from harness.tiling import restore_with_fallback

        x = _to_tensor(lp.degraded, device)
        pred: list[str | None] = [None]
        whole = [True]

        def fn(images: torch.Tensor) -> torch.Tensor:
            if whole[0] or mode == "text":
                out, preds = forward(images, [lp.pair.type] * images.shape[0])
                pred[0] = preds[0] if whole[0] else pred[0]
                whole[0] = False
                return out
            clf = getattr(restorer, "classifier", None)  # tiles of a blind run: classify the whole image once
            if pred[0] is None and isinstance(clf, DegradationClassifier):
                with torch.inference_mode():
                    pred[0] = clf.classify(x)[0]
            with torch.inference_mode():
                return restorer.restore(images, [pred[0]] if pred[0] else None)

        out, info = restore_with_fallback(fn, x)
        notes = [f"out of memory ({info.reason}): restored in {info.tiles} overlapping {info.tile}x{info.tile} "
                 f"tiles, overlap {info.overlap}, {info.blend} blend"] if info.tiled else []
        return _checked(out, x), pred[0], notes

    def produce_batch(lps: list[LoadedPair]) -> list[tuple[torch.Tensor, str | None, list[str]]]:
        """Several same-size pairs in one forward (no tiling fallback: callers fall back to `produce`)."""
        x = torch.cat([_to_tensor(lp.degraded, device) for lp in lps])
        out, preds = forward(x, [lp.pair.type for lp in lps])
        out = _checked(out, x)
        return [(out[i : i + 1], preds[i], []) for i in range(len(lps))]

    produce.batch = produce_batch
    return produce


def _checked(out, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(x.shape):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"output shape {shape} differs from the input {tuple(x.shape)}")
    bad = (~torch.isfinite(out)).sum().item()
    if bad:
        raise ValueError(f"output has {bad} NaN/Inf value(s)")
    return out.cpu()


def build_method_runs(cfg: EvalConfig, device: torch.device, log) -> tuple[list[MethodRun], dict[str, str]]:
    """Build every (method, mode) of the config; a method that cannot be built is reported, not fatal."""
    from harness.outputs import OutputsMethod, parse_outputs_spec

    runs: list[MethodRun] = []
    failed: dict[str, str] = {}
    compute = Compute(cfg.dtype, cfg.channels_last, cfg.compile, cfg.batch)
    for m in cfg.methods:
        if isinstance(m, str) and m.startswith("outputs:"):
            name, folder = parse_outputs_spec(m)
            om = OutputsMethod(name, folder)
            runs.append(MethodRun(name, cfg.modes[0], "released outputs", {}, om.produce, extra={"outputs": om}))
            continue
        if not isinstance(m, str):
            name = getattr(m, "name", type(m).__name__)
            notes = prepare_model(m, compute)
            for mode in cfg.modes:
                runs.append(MethodRun(name, mode, getattr(m, "weights_label", "object"), {},
                                      model_producer(m, mode, device, compute), compute=compute,
                                      extra={"compute_notes": notes}))
            continue
        spec = registry.get_spec(m)
        modes = cfg.modes if m != results.INPUT_METHOD else cfg.modes[:1]  # Input does not depend on the mode
        for mode in modes:
            if mode not in spec.modes:
                log(f"note: {m} has no {mode!r} mode (modes: {', '.join(spec.modes)}); skipped")
                continue
            try:
                torch.manual_seed(0)
                opts = registry.MethodOptions(device=str(device), mode=mode, weights_dir=cfg.weights_dir,
                                              weights=cfg.weights, random_weights=cfg.random_weights,
                                              method_args=dict(cfg.method_args))
                restorer = registry.create_restorer(m, opts)
                if hasattr(restorer, "to"):
                    restorer = restorer.to(device) or restorer
                files = {str(f): sha256_file(Path(f)) for f in _weights_files(restorer)}
                notes = prepare_model(restorer, compute) if m != results.INPUT_METHOD else []
            except (WeightsError, OSError, RuntimeError, ValueError, ImportError, KeyError, TypeError) as e:
                failed[f"{m}/{mode}"] = f"{type(e).__name__}: {e}" if not isinstance(e, WeightsError) else str(e)
                log(f"error: cannot build {m} ({mode}): {failed[f'{m}/{mode}']}")
                continue
            run = MethodRun(m, mode, getattr(restorer, "weights_label", "none"), files,
                            model_producer(restorer, mode, device, compute), compute=compute,
                            extra={"compute_notes": notes})
            run.digest = weights_digest(files)
            runs.append(run)
    return runs, failed


def _weights_files(restorer) -> list[Path]:
    """Every file the restorer's weights come from, its classifier's included."""
    files = [Path(f) for f in getattr(restorer, "weights_files", [])]
    clf = getattr(restorer, "classifier", None)
    for f in getattr(clf, "weights_files", []) if clf is not None else []:
        if Path(f) not in files:
            files.append(Path(f))
    return files


# ------------------------------------------------------------------------------------------ scoring


def score_one(run: MethodRun, lp: LoadedPair, convention: str, produced=None,
              seconds: float | None = None) -> tuple[dict, torch.Tensor | np.ndarray | None]:
    """The record of one image (never raises) and the restored image to save (None when failed).

    `produced`: the (image, predicted, notes) of a batched forward, whose time `seconds` is shared out."""
    phase = produce_phase(run, lp, convention, produced, seconds)
    if phase[0] == "done":
        return phase[1], phase[2]
    _, base, out, elapsed = phase
    return finish_record(base, lp, out, convention, elapsed)


def produce_phase(run: MethodRun, lp: LoadedPair, convention: str, produced=None, seconds: float | None = None):
    """The model part of `score_one`: ("done", record, None) when it already failed, else ("score", partial
    record, restored image, seconds spent) for `finish_record`."""
    p = lp.pair
    base = {"method": run.name, "mode": run.mode, "weights": run.weights, "weights_sha": run.digest,
            "type": p.type, "file": p.name, "pair_sha": lp.sha, "convention": convention,
            "notes": list(lp.notes), "predicted": None, "psnr": None, "ssim": None}
    if run.compute is not None:
        base["compute"] = run.compute.record()
    t0 = time.perf_counter()
    if lp.error:
        return "done", {**base, "status": "failed", "error": lp.error, "seconds": 0.0}, None
    try:
        out, pred, notes = produced if produced is not None else run.produce(lp)
    except Exception as e:  # noqa: BLE001 - one bad image must not end the run
        return "done", {**base, "status": "failed", "error": error_text(e, p.degraded),
                        "seconds": round(time.perf_counter() - t0, 4)}, None
    base["predicted"] = pred
    base["notes"] = base["notes"] + notes
    return "score", base, out, time.perf_counter() - t0 + (seconds or 0.0)


def finish_record(base: dict, lp: LoadedPair, out, convention: str, seconds: float) -> tuple[dict, object]:
    """Score a produced image against its ground truth: the CPU part, which may overlap the next forward."""
    t0 = time.perf_counter()
    try:
        gt = torch.from_numpy(lp.clear).permute(2, 0, 1).unsqueeze(0)  # uint8: exact integer scoring
        ps, ss = metrics.score(gt, out, convention)
    except Exception as e:  # noqa: BLE001 - one bad image must not end the run
        return {**base, "status": "failed", "error": error_text(e, lp.pair.degraded),
                "seconds": round(seconds + time.perf_counter() - t0, 4)}, None
    return {**base, "status": "ok", "error": None, "psnr": float(ps[0]), "ssim": float(ss[0]),
            "seconds": round(seconds + time.perf_counter() - t0, 4)}, out
