"""`python -m harness.run`: evaluate restorers on a CDD-11-layout folder and write records, summary, tables.

Data flows one way: reader → restorer → clamp + 8-bit quantise → metrics → per-image records (JSONL,
appended as produced) → summary JSON and tables (rendered from the records alone). Re-running the same
command with the same ``--out`` resumes: images already recorded are not recomputed.

Exit status: 0 all images scored; 1 the run finished but some images or methods failed (see the
summary); 2 nothing was run (bad arguments, bad data root, output folder locked); 130 interrupted.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from harness import metrics, registry
from harness.cdd11 import parse_types
from harness.data.cdd11 import DatasetError, LoadedPair, Pair, Scan, iter_loaded, scan
from harness.protocol import AutoRestorer, DegradationClassifier
from harness.provenance import environment
from harness.records import RecordStore, RunLockedError, dumps, record_key
from harness.weights import WeightsError, sha256_file

DEFAULT_OUT = Path("runs/eval")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness.run",
        description="Evaluate restorers on CDD-11 (or any folder in its layout) with the official scoring.",
    )
    p.add_argument("--methods", default="identity", help="comma-separated method names (see --list)")
    p.add_argument("--list", action="store_true", help="list the registered methods and exit")
    p.add_argument("--data", type=Path, default=None,
                   help="data root in the CDD-11 layout (default: the embedded cdd11-mini test split)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--types", default=None, help="comma-separated CDD-11 types (default: all 11)")
    p.add_argument("--limit", type=int, default=None, help="at most N images per type (first N by name)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    p.add_argument("--mode", default="auto",
                   help="auto (the method's classifier picks the type) | text (true type given) | auto,text")
    p.add_argument("--weights-dir", type=Path, default=None, help="folder with the authors' released weights")
    p.add_argument("--weights", type=Path, default=None, help="one checkpoint file (single-method runs)")
    p.add_argument("--convention", default="cdd11", choices=sorted(metrics.CONVENTIONS),
                   help="metric convention (default cdd11, the published tables')")
    p.add_argument("--save-images", action="store_true", help="also write restored images as 8-bit PNG")
    p.add_argument("--workers", type=int, default=2, help="image-decoding threads (0 = decode inline)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--retry-failed", action="store_true", help="redo images recorded as failed")
    p.add_argument("--published", action="store_true",
                   help="show the published CDD-11 numbers beside the measured ones in the tables")
    p.add_argument("--timing", action="store_true", help="also time each method at 1080p and 2K")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import MODULE first (a plugin that registers more methods); repeatable")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def list_methods() -> str:
    lines = []
    for name in registry.available():
        try:
            spec = registry.get_spec(name)
            lines.append(f"{name:<12} modes={','.join(spec.modes):<10} {spec.description}")
        except Exception as e:  # noqa: BLE001 - listing must survive a broken plugin
            lines.append(f"{name:<12} (unavailable: {type(e).__name__}: {e})")
    return "\n".join(lines)


def default_data_root() -> Path:
    from harness.data import mini

    return mini.ensure("test")


def _pair_sha(pair: Pair) -> str:
    h = hashlib.sha256(pair.degraded.read_bytes())
    if pair.clear is not None:
        h.update(pair.clear.read_bytes())
    return h.hexdigest()[:16]


def _to_tensor(a: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1).unsqueeze(0).to(device=device, dtype=torch.float32) / 255.0


class MethodRunner:
    """Runs one method in one mode over pairs, turning every per-image problem into a failed record."""

    def __init__(self, name: str, mode: str, restorer, device: torch.device, convention: str,
                 images_dir: Path | None, weights_sha: str | None = None):
        self.name, self.mode, self.restorer, self.device = name, mode, restorer, device
        self.convention = convention
        self.images_dir = images_dir
        self.weights = getattr(restorer, "weights_label", "none")
        self.weights_sha = weights_sha

    def _forward(self, x: torch.Tensor, true_type: str) -> tuple[torch.Tensor, str | None]:
        with torch.inference_mode():
            if self.mode == "text":
                return self.restorer.restore(x, [true_type]), None
            if isinstance(self.restorer, AutoRestorer):
                out, pred = self.restorer.restore_auto(x)
                return out, pred[0]
            # a classifier that does not drive restore_auto: its prediction is still recorded (harness.confusion)
            clf = getattr(self.restorer, "classifier", None)
            if isinstance(clf, DegradationClassifier):
                return self.restorer.restore(x, None), clf.classify(x)[0]
            return self.restorer.restore(x, None), None

    def _forward_with_fallback(self, x, true_type) -> tuple[torch.Tensor, str | None, list[str]]:
        """Whole image first; on out-of-memory, overlapping tiles (harness.tiling), never a dead run."""
        from harness.tiling import restore_with_fallback

        pred: list[str | None] = [None]
        whole = [True]

        def fn(images: torch.Tensor) -> torch.Tensor:
            if whole[0] or self.mode == "text":
                out, pred[0] = self._forward(images, true_type)
                whole[0] = False
                return out
            # tiles of a blind run: classify the whole image once, then restore every tile with that type
            clf = getattr(self.restorer, "classifier", None)
            if pred[0] is None and isinstance(clf, DegradationClassifier):
                with torch.inference_mode():
                    pred[0] = clf.classify(x)[0]
            with torch.inference_mode():
                return self.restorer.restore(images, [pred[0]] if pred[0] else None)

        out, info = restore_with_fallback(fn, x)
        notes = [f"out of memory ({info.reason}): restored in {info.tiles} overlapping {info.tile}x{info.tile} "
                 f"tiles, overlap {info.overlap}, {info.blend} blend"] if info.tiled else []
        return out, pred[0], notes

    def record(self, lp: LoadedPair) -> dict:
        p = lp.pair
        base = {"method": self.name, "mode": self.mode, "weights": self.weights, "weights_sha": self.weights_sha,
                "type": p.type, "file": p.name, "pair_sha": lp.sha, "convention": self.convention,
                "notes": lp.notes, "predicted": None, "psnr": None, "ssim": None}
        t0 = time.perf_counter()
        if lp.error:
            return {**base, "status": "failed", "error": lp.error, "seconds": 0.0}
        try:
            x = _to_tensor(lp.degraded, self.device)
            out, pred, notes = self._forward_with_fallback(x, p.type)
            base["predicted"] = pred
            base["notes"] = lp.notes + notes
            if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(x.shape):
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(f"output shape {shape} differs from the input {tuple(x.shape)}")
            bad = (~torch.isfinite(out)).sum().item()
            if bad:
                raise ValueError(f"output has {bad} NaN/Inf value(s)")
            gt = torch.from_numpy(lp.clear).permute(2, 0, 1).unsqueeze(0)  # uint8: exact integer scoring
            ps, ss = metrics.score(gt, out.cpu(), self.convention)
            if self.images_dir is not None:
                self._save(out, p)
        except Exception as e:  # noqa: BLE001 - one bad image must not end the run
            last = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
            where = f" (at {Path(last.filename).name}:{last.lineno})" if last else ""
            return {**base, "status": "failed", "error": f"{p.degraded}: {type(e).__name__}: {e}{where}",
                    "seconds": round(time.perf_counter() - t0, 4)}
        return {**base, "status": "ok", "error": None, "psnr": float(ps[0]), "ssim": float(ss[0]),
                "seconds": round(time.perf_counter() - t0, 4)}

    def _save(self, out: torch.Tensor, p: Pair) -> None:
        from PIL import Image

        d = self.images_dir / f"{self.name}-{self.mode}" / p.type
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(metrics.to_uint8(out)[0]).save(d / (Path(p.name).stem + ".png"))


def _reconcile(store: RecordStore, data: Scan, out: Path, log) -> None:
    """Move records of files no longer in the data root aside, so tables reflect the data as it is now."""
    current = {p.key for p in data.pairs}
    stale = [r for r in store.records.values() if (r["type"], r["file"]) not in current and r["type"] in data.types]
    if not stale:
        return
    _move_aside(store, stale, out)
    files = sorted({f"{r['type']}/{r['file']}" for r in stale})
    log(f"note: {len(files)} file(s) recorded earlier are no longer in {data.root} (e.g. {files[0]}); "
        f"their records were moved to {out / 'records.stale.jsonl'}")


def weights_digest(files_sha: dict[str, str]) -> str | None:
    """One short fingerprint of a method's weights files (None for a method without weights files)."""
    if not files_sha:
        return None
    joined = "\n".join(sorted(files_sha.values()))
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def _drop_changed_weights(store: RecordStore, name: str, mode: str, digest: str | None, out: Path, log) -> None:
    """Records of `name`/`mode` scored with other weights files are moved aside, so they are recomputed.

    A record without a fingerprint (written before weights were fingerprinted) counts as changed when the
    method now has weights files: nothing proves it was scored with the same ones."""
    stale = [r for r in store.records.values() if r["method"] == name and r["mode"] == mode
             and r.get("weights_sha") != digest]
    if not stale:
        return
    _move_aside(store, stale, out)
    before = stale[0].get("weights_sha") or "not recorded"
    log(f"note: the weights of {name} changed since {len(stale)} of its {mode}-mode records were written "
        f"({before} -> {digest}); those images are evaluated again, the old records were moved "
        f"to {out / 'records.stale.jsonl'}")


def _move_aside(store: RecordStore, stale: list[dict], out: Path) -> None:
    stale_keys = {record_key(r) for r in stale}
    keep = [r for k, r in store.records.items() if k not in stale_keys]
    with open(out / "records.stale.jsonl", "a", encoding="utf-8") as f:
        f.writelines(dumps(r) + "\n" for r in stale)
    tmp = store.path.with_name("records.jsonl.tmp")
    tmp.write_text("".join(dumps(r) + "\n" for r in keep), encoding="utf-8")
    store._fh.close()
    os.replace(tmp, store.path)
    store._fh = open(store.path, "a", encoding="utf-8")
    store.records = {record_key(r): r for r in keep}


def _check_previous_run(out: Path, data: Scan, config: dict, log) -> None:
    prev_path = out / "run.json"
    if not prev_path.exists():
        return
    try:
        prev = json.loads(prev_path.read_text())
    except (OSError, json.JSONDecodeError):
        log(f"note: {prev_path} is unreadable; it will be rewritten")
        return
    prev_fp = prev.get("data", {}).get("fingerprint")
    if prev_fp and prev_fp != data.fingerprint:
        log(f"note: the data under {data.root} changed since the last run in {out} "
            f"(fingerprint {prev_fp} -> {data.fingerprint}); new or changed images are evaluated, "
            "finished ones are kept")
    if prev.get("convention") and prev["convention"] != config["convention"]:
        raise DatasetError(f"{out} holds results scored with convention {prev['convention']!r}; "
                           f"use another --out for {config['convention']!r}")


def device_and_data(args: argparse.Namespace, log) -> tuple[torch.device, Scan]:
    """The set-up shared by `harness.run` and `harness.classify`: threads, device check, data scan."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DatasetError("--device cuda asked for, but torch sees no CUDA device")
    types = parse_types(args.types) if args.types else None
    root = args.data if args.data is not None else default_data_root()
    data = scan(root, types=types, limit=args.limit)
    log(data.summary())
    return device, data


def run(args: argparse.Namespace, log=print) -> int:
    methods = registry.parse_methods(args.methods)
    modes = [m.strip() for m in args.mode.split(",") if m.strip()]
    for m in modes:
        if m not in ("auto", "text"):
            raise DatasetError(f"unknown --mode {m!r}; use auto, text or auto,text")
    device, data = device_and_data(args, log)
    out: Path = args.out
    config = {"methods": methods, "modes": modes, "convention": args.convention,
              "metric_version": metrics.get_convention(args.convention).version,
              "types": list(data.types), "limit": args.limit}
    images_dir = out / "images" if args.save_images else None
    failed_methods: dict[str, str] = {}
    weights_sha: dict[str, dict[str, str]] = {}
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    with RecordStore(out) as store:
        for w in store.warnings:
            log(f"warning: {w}")
        _check_previous_run(out, data, config, log)
        _reconcile(store, data, out, log)
        (out / "run.json").write_text(json.dumps(
            {**config, "data": {"root": str(data.root), "fingerprint": data.fingerprint, "counts": data.counts},
             "command": sys.argv}, indent=1))
        for name in methods:
            spec = registry.get_spec(name)
            for mode in modes:
                if mode not in spec.modes:
                    log(f"note: {name} has no {mode!r} mode (modes: {', '.join(spec.modes)}); skipped")
                    continue
                try:
                    torch.manual_seed(0)
                    opts = registry.MethodOptions(device=str(device), mode=mode, weights_dir=args.weights_dir,
                                                  weights=args.weights)
                    restorer = registry.create_restorer(name, opts)
                    if hasattr(restorer, "to"):
                        restorer = restorer.to(device) or restorer
                except (WeightsError, OSError, RuntimeError, ValueError, ImportError) as e:
                    failed_methods[f"{name}/{mode}"] = str(e)
                    log(f"error: cannot build {name}: {e}")
                    continue
                weights_sha[name] = {str(f): sha256_file(Path(f)) for f in getattr(restorer, "weights_files", [])}
                digest = weights_digest(weights_sha[name])
                _drop_changed_weights(store, name, mode, digest, out, log)
                todo = _todo(store, data.pairs, name, mode, args.retry_failed)
                if not todo:
                    continue
                runner = MethodRunner(name, mode, restorer, device, args.convention, images_dir, digest)
                pbar = _progress(len(todo), f"{name} ({mode})", args.quiet)
                for lp in iter_loaded(todo, workers=args.workers):
                    rec = runner.record(lp)
                    store.append(rec)
                    if rec["status"] != "ok":
                        log(f"failed: {rec['error']}")
                    pbar.update(1)
                pbar.close()
        current = {p.key for p in data.pairs}
        records = [r for r in store.records.values() if (r["type"], r["file"]) in current
                   and r["method"] in methods and r["mode"] in modes]
    summary = write_summary(out, records, data, config, args, weights_sha, failed_methods, started)
    if (out / "records.jsonl").exists() and (out / "records.jsonl").stat().st_size:
        from harness import confusion, tables  # confusion: confusion_*, classifiers.md, misclassification_*

        tables.write_tables(out, published=args.published)
        confusion.write_run_outputs(out, log=log)
    else:
        log(f"no records in {out}: no tables written")
    if args.timing:
        from harness import timing

        timing.run_for_harness(methods, out, args)
    n_failed = summary["failed_images"]
    log(f"wrote {out / 'records.jsonl'}, {out / 'summary.json'} and tables in {out}")
    if n_failed or failed_methods:
        log(f"{n_failed} image(s) failed; {len(failed_methods)} method(s) could not run (see {out / 'summary.json'})")
        return 1
    return 0


def _todo(store: RecordStore, pairs: Sequence[Pair], name: str, mode: str, retry_failed: bool) -> list[Pair]:
    todo = []
    for p in pairs:
        rec = store.records.get((name, mode, p.type, p.name))
        if rec is None or (retry_failed and rec["status"] != "ok") or rec.get("pair_sha") != _pair_sha(p):
            todo.append(p)
    return todo


def _progress(total: int, desc: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=quiet, unit="img", dynamic_ncols=True, file=sys.stderr)


def write_summary(out: Path, records: list[dict], data: Scan, config: dict, args, weights_sha: dict,
                  failed_methods: dict, started: str) -> dict:
    from harness.tables import aggregate

    per = aggregate(records)
    summary = {
        "schema": 1,
        "config": config,
        "data": {"root": str(data.root), "fingerprint": data.fingerprint, "counts": data.counts,
                 "skipped_types": data.skipped_types},
        "metric": {"convention": args.convention,
                   "version": metrics.get_convention(args.convention).version,
                   "description": metrics.get_convention(args.convention).description},
        "environment": environment(args.device),
        "dtype": "float32",
        "weights_sha256": weights_sha,
        "methods_failed": failed_methods,
        "failed_images": sum(1 for r in records if r["status"] != "ok"),
        "results": per,
        "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1, allow_nan=True))
    os.replace(tmp, out / "summary.json")
    return summary


def guarded_main(args: argparse.Namespace, run_fn, saved: Path, what: str = "finished image") -> int:
    """Shared CLI frame: --import plugins, --limit check, and errors/Ctrl-C turned into messages + exit codes."""
    for module in args.imports:
        try:
            importlib.import_module(module)
        except ImportError as e:
            print(f"error: --import {module}: {e}", file=sys.stderr)
            return 2
    if args.limit is not None and args.limit < 1:
        print("error: --limit must be at least 1", file=sys.stderr)
        return 2
    try:
        return run_fn(args)
    except (DatasetError, RunLockedError, registry.UnknownMethodError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted: every {what} is saved in {saved}; run the same command again to resume",
              file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        for module in args.imports:
            importlib.import_module(module)
        print(list_methods())
        return 0
    return guarded_main(args, run, args.out / "records.jsonl")


if __name__ == "__main__":
    sys.exit(main())
