"""`harness.evaluate` (defined here): the one evaluation path, as a function a notebook can call.

    import harness
    res = harness.evaluate(methods=["identity", "onerestore"], modes=["text"], limit=2)
    res.table            # per-type PSNR/SSIM, one row per (column, type), as a pandas DataFrame
    res.records          # one row per scored image

`methods` holds registered method names, ``outputs:NAME=DIR`` folders of already restored images
(`harness.outputs`), or `Restorer` objects. With `out` the run writes records (appended as produced, so a
re-run resumes), run.json, summary.json and the tables there, holding the folder's lock until the last file
is written; without it, the same files go to a temporary folder that is removed afterwards.

Data flows one way: reader → method → clamp + 8-bit quantise → metrics → per-image records →
`harness.results` (select, aggregate) → summary and tables. `python -m harness.run` and the gate are thin
layers over `evaluate`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from harness import distributed, metrics, registry, results
from harness.data.cdd11 import LoadedPair, Pair, Scan, iter_loaded, scan
from harness.degradations import TYPES
from harness.fileio import replace_atomic, strict_json, write_json_atomic
from harness.producers import DTYPES, MethodRun, build_method_runs, finish_record, produce_phase, score_one
from harness.protocol import Restorer
from harness.provenance import environment
from harness.records import RecordStore

#: --quick: this many images per type (every type present); about 2 minutes for the README's first command.
QUICK_LIMIT = 2
MODES = ("auto", "text")
DEVICES = ("cpu", "cuda", "cuda:N")


class ConfigError(ValueError):
    """An argument of `evaluate` (or of the command line) that cannot be used; nothing has run."""


@dataclass
class EvalConfig:
    """Everything `evaluate` needs; every field has the command line's default."""

    methods: Sequence[str | Restorer] = ("identity",)
    modes: Sequence[str] = ("auto",)
    data: Path | None = None  # CDD-11 layout root; None = the embedded cdd11-mini test split
    out: Path | None = None  # output folder; None = a temporary one (results returned, files discarded)
    types: Sequence[str] | None = None
    limit: int | None = None  # at most N images per type (first N names)
    quick: bool = False  # QUICK_LIMIT images per type unless `limit` says otherwise
    device: str = "cpu"
    threads: int | None = None
    workers: int = 2  # image-decoding threads (0 = decode inline)
    weights_dir: Path | None = None
    weights: Path | None = None
    random_weights: bool = False
    method_args: Mapping[str, str] = field(default_factory=dict)
    convention: str = "cdd11"
    max_pixels: int | None = None  # largest image decoded (default harness.data.cdd11.MAX_PIXELS)
    dtype: str = "fp32"  # autocast dtype of model methods: fp32 (no autocast; the published protocol), bf16, fp16
    channels_last: bool = False
    compile: bool = False  # torch.compile the networks; the warm-up is kept out of the per-image times
    batch: int = 1  # images per forward for model methods (same-size images only; equal to batch 1 within 1e-5 dB)
    save_images: bool = False
    retry_failed: bool = False
    published: bool = False
    significance: bool = False
    timing: bool = False
    report: bool = True  # write report.html (and the small thumbnails it shows) into the output folder
    progress: bool = True
    command: Sequence[str] | None = None  # the command line, when called from one (provenance)

    def validate(self) -> EvalConfig:
        """Check every argument before any work; returns a normalised copy (tuples, Paths)."""
        methods = self.methods
        if isinstance(methods, (str, Restorer)):
            methods = [methods]
        methods = list(methods)
        if not methods:
            raise ConfigError("no method given; try methods=['identity'] (--methods identity)")
        for m in methods:
            if isinstance(m, str):
                if m.startswith("outputs:"):
                    from harness.outputs import parse_outputs_spec

                    parse_outputs_spec(m)
                else:
                    registry.get_spec(m)  # unknown names raise with a suggestion
            elif not isinstance(m, Restorer):
                raise ConfigError(f"methods must be names or Restorer objects, got {type(m).__name__}")
        modes = [self.modes] if isinstance(self.modes, str) else list(self.modes)
        modes = [m.strip() for part in modes for m in part.split(",") if m.strip()]
        if not modes:
            raise ConfigError("no mode given; use auto, text or auto,text")
        for m in modes:
            if m not in MODES:
                raise ConfigError(f"unknown mode {m!r}; use auto, text or auto,text")
        modes = list(dict.fromkeys(modes))
        types = None
        if self.types is not None:
            types = [self.types] if isinstance(self.types, str) else list(self.types)
            types = [t.strip() for part in types for t in part.split(",") if t.strip()]
            bad = [t for t in types if t not in TYPES]
            if bad or not types:
                raise ConfigError(f"unknown type(s) {', '.join(bad) or '(none)'}; valid: {', '.join(TYPES)}")
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 1):
            raise ConfigError(f"limit must be a whole number of at least 1, got {self.limit!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigError(f"threads must be at least 1, got {self.threads!r}")
        if self.max_pixels is not None and (not isinstance(self.max_pixels, int) or self.max_pixels < 1):
            raise ConfigError(f"max_pixels must be a positive whole number, got {self.max_pixels!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {self.dtype!r}; use {', '.join(DTYPES)}")
        if not isinstance(self.batch, int) or isinstance(self.batch, bool) or self.batch < 1:
            raise ConfigError(f"batch must be a whole number of at least 1, got {self.batch!r}")
        if not isinstance(self.workers, int) or self.workers < 0:
            raise ConfigError(f"workers must be 0 (decode inline) or more, got {self.workers!r}")
        if self.convention not in metrics.CONVENTIONS:
            raise ConfigError(f"unknown convention {self.convention!r}; use {', '.join(sorted(metrics.CONVENTIONS))}")
        check_device(self.device)
        if self.weights is not None and sum(isinstance(m, str) and not m.startswith("outputs:")
                                            and m != results.INPUT_METHOD for m in methods) > 1:
            raise ConfigError("weights names one checkpoint file: use it with a single method (or weights_dir)")
        limit = self.limit if self.limit is not None else (QUICK_LIMIT if self.quick else None)
        return replace(self, methods=tuple(methods), modes=tuple(modes), types=tuple(types) if types else None,
                       limit=limit, data=Path(self.data) if self.data is not None else None,
                       out=Path(self.out) if self.out is not None else None)


def check_device(device: str) -> torch.device:
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}") from None
    if d.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device {device!r}; use one of {', '.join(DEVICES)}")
    return d


@dataclass
class Results:
    """What `evaluate` returns: the selected records and the per-type table as DataFrames, the summary."""

    records: list[dict]
    summary: dict
    out: Path | None
    exit_code: int

    @property
    def table(self):
        """Long form: column, type (Table I order, then 'average'), n, failed, psnr, ssim."""
        import pandas as pd

        rows = [{"column": label, "type": t, **{k: v.get(k) for k in ("n", "failed", "psnr", "ssim")}}
                for label, per in results.aggregate(self.records).items() for t, v in per.items()]
        return pd.DataFrame(rows, columns=["column", "type", "n", "failed", "psnr", "ssim"])

    @property
    def records_frame(self):
        import pandas as pd

        return pd.DataFrame(self.records)

    def psnr(self):
        """PSNR pivot: rows = types + average, columns = methods."""
        return self.table.pivot(index="type", columns="column", values="psnr")


def saved_image_name(pair: Pair, same_stem: bool) -> str:
    """File name of a saved restored image: STEM.png, or NAME.png (e.g. a.jpg.png) when two inputs of the type
    folder share the stem, so neither overwrites the other."""
    return (pair.name if same_stem else Path(pair.name).stem) + ".png"


def _stem_clashes(pairs: Sequence[Pair]) -> set[tuple[str, str]]:
    seen: dict[tuple[str, str], int] = {}
    for p in pairs:
        k = (p.type, Path(p.name).stem)
        seen[k] = seen.get(k, 0) + 1
    return {k for k, n in seen.items() if n > 1}


def save_image(images_dir: Path, run: MethodRun, pair: Pair, out, clash: bool) -> None:
    from PIL import Image

    d = images_dir / f"{run.name}-{run.mode}" / pair.type
    d.mkdir(parents=True, exist_ok=True)
    arr = metrics.to_uint8(out)[0] if isinstance(out, torch.Tensor) else np.asarray(out)
    replace_atomic(d / saved_image_name(pair, clash), lambda tmp: Image.fromarray(arr).save(tmp, format="PNG"))


# ------------------------------------------------------------------------------------------ the run


def _pair_sha_cache(pairs: Sequence[Pair]) -> Callable[[Pair], str]:
    cache: dict[tuple[str, str], str] = {}

    def get(p: Pair) -> str:
        if p.key not in cache:
            h = hashlib.sha256(p.degraded.read_bytes())
            if p.clear is not None:
                h.update(p.clear.read_bytes())
            cache[p.key] = h.hexdigest()[:16]
        return cache[p.key]

    return get


def _todo(store: RecordStore, pairs: Sequence[Pair], run: MethodRun, retry_failed: bool, sha) -> list[Pair]:
    todo = []
    for p in pairs:
        rec = store.get((run.name, run.mode, p.type, p.name))
        if rec is None or (retry_failed and rec["status"] != "ok") or rec.get("pair_sha") != sha(p):
            todo.append(p)
    return todo


def _drop_stale(store: RecordStore, run: MethodRun, log) -> None:
    """Records of this (method, mode) that no longer describe it are moved aside and recomputed: scored with
    other weights files (a record without a fingerprint counts as changed when the method now has weights
    files), or with another autocast dtype (channels-last, compile and batch do not change the numbers beyond
    1e-5 dB, so they are only recorded)."""
    dtype = run.compute.dtype if run.compute is not None else None
    mine = [r for r in store if r["method"] == run.name and r["mode"] == run.mode]
    weights = [r for r in mine if r.get("weights_sha") != run.digest]
    dtypes = [r for r in mine if dtype is not None and r.get("weights_sha") == run.digest
              and (r.get("compute") or {}).get("dtype", "fp32") != dtype]
    if weights:
        log(f"note: the weights of {run.name} changed since {len(weights)} of its {run.mode}-mode records were "
            f"written ({weights[0].get('weights_sha') or 'not recorded'} -> {run.digest}); those images are "
            f"evaluated again, the old records were moved to {store.stale_path}")
    if dtypes:
        log(f"note: {len(dtypes)} {run.name} ({run.mode}) record(s) were computed with another dtype; they are "
            f"evaluated again in {dtype}, the old records were moved to {store.stale_path}")
    if weights or dtypes:
        store.move_aside(weights + dtypes)


def _drop_vanished(store: RecordStore, root: Path, log) -> None:
    """Records of files no longer in the data root are moved aside. A narrower --limit or --types is a view,
    not a change of data: only files that are gone count."""
    stale = [r for r in store if (root / r["type"]).is_dir() and not (root / r["type"] / r["file"]).is_file()]
    if stale:
        store.move_aside(stale)
        files = sorted({f"{r['type']}/{r['file']}" for r in stale})
        log(f"note: {len(files)} file(s) recorded earlier are no longer in {root} (e.g. {files[0]}); "
            f"their records were moved to {store.stale_path}")


def _check_previous_run(out: Path, data: Scan, root_fingerprint: str, cfg: EvalConfig, log) -> None:
    prev_path = out / results.RUN_FILE
    if not prev_path.exists():
        return
    try:
        prev = json.loads(prev_path.read_text())
    except (OSError, json.JSONDecodeError):
        log(f"note: {prev_path} is unreadable; it will be rewritten")
        return
    prev_fp = (prev.get("data") or {}).get("root_fingerprint")
    if prev_fp and prev_fp != root_fingerprint:
        log(f"note: the data under {data.root} changed since the last run in {out} "
            f"(fingerprint {prev_fp} -> {root_fingerprint}); new or changed images are evaluated, "
            "finished ones are kept")
    if prev.get("convention") and prev["convention"] != cfg.convention:
        raise ConfigError(f"{out} holds results scored with convention {prev['convention']!r}; "
                          f"use another output folder for {cfg.convention!r}")


def default_data_root() -> Path:
    from harness.data import mini

    return mini.ensure("test")


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, unit="img", dynamic_ncols=True, file=sys.stderr,
                desc="evaluating", bar_format="{desc}: {n}/{total} images [{elapsed}<{remaining}, {rate_fmt}]")


def evaluate(config: EvalConfig | Mapping | None = None, restorers: Sequence[Restorer] | None = None,
             log: Callable[[str], None] | None = None, **kwargs) -> Results:
    """Evaluate methods on a CDD-11-layout folder (see the module doc). `config` is an `EvalConfig`, a dict
    of its fields, or None with the fields as keyword arguments; `restorers` adds `Restorer` objects to the
    methods. Raises `ConfigError` / `DatasetError` / `RunLockedError` before any work when the arguments,
    the data or the output folder cannot be used."""
    if config is None:
        config = EvalConfig(**kwargs)
    elif isinstance(config, Mapping):
        config = EvalConfig(**{**config, **kwargs})
    elif kwargs:
        config = replace(config, **kwargs)
    if restorers:
        config = replace(config, methods=(*([config.methods] if isinstance(config.methods, str)
                                             else config.methods), *restorers))
    cfg = config.validate()
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if cfg.out is None:
        with tempfile.TemporaryDirectory(prefix="vlur-eval-") as tmp:
            res = _evaluate(replace(cfg, out=Path(tmp)), log)
            res.out = None
            return res
    return _evaluate(cfg, log)


def _evaluate(cfg: EvalConfig, log) -> Results:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = check_device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda asked for, but torch sees no CUDA device")
    root = cfg.data if cfg.data is not None else default_data_root()
    data = scan(root, types=cfg.types, limit=cfg.limit)
    # the data as it is, whatever the view (--limit, --types) of this run; the same scan when there is no view
    whole = data if cfg.types is None and cfg.limit is None else scan(root)
    log(data.summary())
    out = cfg.out
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output folder {out} is an existing file; name a folder")
    images_dir = out / "images" if cfg.save_images else None
    names = [m if isinstance(m, str) else getattr(m, "name", type(m).__name__) for m in cfg.methods]
    names = [n.split("=", 1)[0].removeprefix("outputs:") for n in names]
    selection = results.Selection(methods=tuple(names), modes=tuple(cfg.modes),
                                  keys=frozenset(p.key for p in data.pairs))
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    interrupted: BaseException | None = None
    rank, world = distributed.rank_world()
    if world > 1:
        device = distributed.init(device)
    main = RecordStore(out) if rank == 0 else contextlib.nullcontext()
    with main as store:
        if rank == 0:
            for w in store.warnings:
                log(f"warning: {w}")
            merged = distributed.merge_rank_files(store, out)  # what ranks of an earlier run finished
            if merged:
                log(f"note: merged {merged} record(s) that the processes of an earlier run had finished")
            _check_previous_run(out, data, whole.fingerprint, cfg, log)
            _drop_vanished(store, data.root, log)
            write_json_atomic(out / results.RUN_FILE, _run_info(cfg, data, whole, names, selection, world))
        runs, failed_methods = build_method_runs(cfg, device, log)
        if rank == 0:
            _note_extra_outputs(runs, whole, log)
            for run in runs:
                _drop_stale(store, run, log)
        distributed.barrier(world)
        pairs = data.pairs[rank::world]  # deterministic shard: the same images for this rank on every run
        done = store if rank == 0 else _Lookup(distributed.main_records(out))
        sha = _pair_sha_cache(pairs)
        plan = [(run, _todo(done, pairs, run, cfg.retry_failed, sha)) for run in runs]
        clashes = _stem_clashes(data.pairs)
        save_errors: list[str] = []
        mine = distributed.rank_store(out, rank) if world > 1 else contextlib.nullcontext(store)
        with mine as writer:
            pbar = _progress(sum(len(t) for _, t in plan), cfg.progress and rank == 0)
            try:
                for run, todo in plan:
                    pbar.set_description(f"{run.name} ({run.mode})")
                    loaded = iter_loaded(todo, workers=cfg.workers, max_pixels=cfg.max_pixels)
                    for lp, rec, image in scored(run, loaded, cfg.convention, overlap=device.type == "cuda"):
                        writer.append(rec)
                        if rec["status"] != "ok":
                            log(f"failed: {rec['error']}")
                        else:
                            _save_side_effects(cfg, out, images_dir, run, lp, image, clashes, save_errors, log)
                        pbar.update(1)
            except KeyboardInterrupt as e:
                interrupted = e
            finally:
                pbar.close()
        if interrupted is None:
            distributed.barrier(world)
        if rank != 0:
            distributed.finish(world)
            if interrupted is not None:
                raise interrupted
            return Results([], {}, out, 1 if failed_methods else 0)
        if world > 1:
            distributed.merge_rank_files(store, out)
        selected = store.select(selection)
        summary = _summary(cfg, data, selected, runs, failed_methods, started, save_errors,
                           interrupted is not None)
        summary["processes"] = world
        write_json_atomic(out / "summary.json", summary)
        if selected:
            _write_tables(out, selected, cfg, log)
        else:
            log(f"no records for this selection in {out}: no tables written")
        if cfg.timing and interrupted is None:
            from harness import timing

            timing.run_for_harness([n for n in names if n in registry.available()], out, cfg)
        if cfg.report and (selected or cfg.timing):
            from harness import report_html

            try:
                log(f"wrote {report_html.write_report(out, log=log)}")
            except Exception as e:  # noqa: BLE001 - the page is a side effect: every score is already saved
                log(f"warning: could not write {out / report_html.REPORT_FILE}: {type(e).__name__}: {e}")
    if interrupted is None:
        distributed.finish(world)
    if interrupted is not None:
        raise interrupted
    ran = bool(runs)
    n_failed = summary["failed_images"]
    code = 2 if not ran else (1 if n_failed or failed_methods else 0)
    return Results(selected, summary, out, code)


class _Lookup:
    """Read-only `get(key)` over records (what ranks other than 0 know of the finished images)."""

    def __init__(self, records: Sequence[dict]):
        self._by = {(r["method"], r["mode"], r["type"], r["file"]): r for r in records}

    def get(self, key):
        return self._by.get(key)


def _run_info(cfg: EvalConfig, data: Scan, whole: Scan, names: list[str], selection, world: int) -> dict:
    return {"methods": names, "modes": list(cfg.modes), "convention": cfg.convention,
            "metric_version": metrics.get_convention(cfg.convention).version,
            "types": list(data.types), "limit": cfg.limit,
            "data": {"root": str(data.root), "fingerprint": data.fingerprint, "counts": data.counts,
                     "root_fingerprint": whole.fingerprint},
            "selection": selection.to_json(), "processes": world,
            "command": list(cfg.command) if cfg.command else None,
            "api": None if cfg.command else "harness.evaluate"}


def _note_extra_outputs(runs: list[MethodRun], whole: Scan, log) -> None:
    for run in runs:
        if "outputs" in run.extra:
            extra = run.extra["outputs"].extra_files({p.key for p in whole.pairs})
            if extra:
                shown = ", ".join(str(p) for p in extra[:5]) + (" ..." if len(extra) > 5 else "")
                log(f"note: {run.name}: {len(extra)} file(s) match no image of the data and are not scored: {shown}")


def scored(run: MethodRun, loaded: Iterator[LoadedPair], convention: str,
           overlap: bool = False) -> Iterator[tuple[LoadedPair, dict, object]]:
    """(pair, record, restored image) for every loaded pair, in order. Model methods with compute.batch > 1
    restore consecutive same-size pairs in one forward (falling back to one at a time if that fails); with
    compile, one untimed warm-up forward runs first, so compilation is not in any per-image time. With
    `overlap` (the default on CUDA) the metrics of image k run in a worker thread while image k+1 is restored;
    the numbers are the same, only the order of work changes."""
    batch = run.compute.batch if run.compute is not None else 1
    warm = run.compute is not None and run.compute.compile
    pending: list[LoadedPair] = []
    queue: deque = deque()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics") if overlap else None

    def emit(lp: LoadedPair, produced=None, seconds: float | None = None) -> None:
        if pool is None:
            queue.append((lp, score_one(run, lp, convention, produced, seconds)))
            return
        phase = produce_phase(run, lp, convention, produced, seconds)
        if phase[0] == "done":
            queue.append((lp, (phase[1], phase[2])))
        else:
            queue.append((lp, pool.submit(finish_record, phase[1], lp, phase[2], convention, phase[3])))

    def drain(keep: int) -> Iterator[tuple[LoadedPair, dict, object]]:
        while len(queue) > keep:
            lp, result = queue.popleft()
            rec, image = result.result() if isinstance(result, Future) else result
            yield lp, rec, image

    def flush() -> None:
        group = list(pending)
        pending.clear()
        if len(group) == 1:
            emit(group[0])
            return
        t0 = time.perf_counter()
        try:
            produced = run.produce.batch(group)
        except Exception:  # noqa: BLE001 - e.g. out of memory: one at a time, with the tiling fallback
            for lp in group:
                emit(lp)
            return
        share = (time.perf_counter() - t0) / len(group)
        for lp, pr in zip(group, produced):
            emit(lp, pr, share)

    try:
        for lp in loaded:
            if warm and not lp.error:
                warm = False
                t0 = time.perf_counter()
                try:
                    run.produce(lp)
                except Exception:  # noqa: BLE001 - the timed call records the failure
                    pass
                run.extra["warmup_seconds"] = round(time.perf_counter() - t0, 3)
            if batch == 1 or lp.error or not hasattr(run.produce, "batch"):
                if pending:
                    flush()
                emit(lp)
            else:
                if pending and pending[0].degraded.shape != lp.degraded.shape:
                    flush()
                pending.append(lp)
                if len(pending) == batch:
                    flush()
            yield from drain(1 if pool is not None else 0)
        if pending:
            flush()
        yield from drain(0)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)


def _save_side_effects(cfg: EvalConfig, out: Path, images_dir: Path | None, run: MethodRun, lp: LoadedPair, image,
                       clashes: set, save_errors: list[str], log) -> None:
    """The results page's thumbnail and, with save_images, the full restored image. Both are side effects: a
    failure is reported (summary.json lists it) and the score is kept."""
    if cfg.report:
        from harness import report_html

        try:
            report_html.save_thumbnail(out, run.name, run.mode, lp.pair.type, lp.pair.name, image)
        except (OSError, ValueError) as e:
            save_errors.append(f"{out}: cannot save the report thumbnail of {lp.pair.key}: {e}")
            log(f"warning: {save_errors[-1]} (its score is kept)")
    if images_dir is not None:
        try:
            save_image(images_dir, run, lp.pair, image, (lp.pair.type, Path(lp.pair.name).stem) in clashes)
        except OSError as e:
            save_errors.append(f"{images_dir}: cannot save the restored {lp.pair.key}: {e}")
            log(f"warning: {save_errors[-1]} (its score is kept)")


def _write_tables(out: Path, selected: list[dict], cfg: EvalConfig, log) -> None:
    from harness import confusion, tables

    tables.write_tables(out, published=cfg.published, significance=cfg.significance, records=selected)
    confusion.write_outputs(out, selected, log=log)
    log(f"wrote {out / 'records.jsonl'}, {out / 'summary.json'} and the tables {out / 'table1.md'}")


def _summary(cfg: EvalConfig, data: Scan, selected: list[dict], runs: list[MethodRun], failed_methods: dict,
             started: str, save_errors: list[str], interrupted: bool) -> dict:
    conv = metrics.get_convention(cfg.convention)
    options = {k: v for k, v in asdict(replace(cfg, methods=(), data=None, out=None)).items()
               if k not in ("methods", "data", "out", "command", "progress")}
    return {
        "schema": 2,
        "config": {"methods": sorted({r.name for r in runs} | {k.split('/')[0] for k in failed_methods}),
                   "modes": list(cfg.modes), "types": list(data.types), "limit": cfg.limit,
                   "convention": cfg.convention, "options": strict_json(json.loads(json.dumps(options, default=str)))},
        "data": {"root": str(data.root), "fingerprint": data.fingerprint, "counts": data.counts,
                 "skipped_types": data.skipped_types},
        "metric": {"convention": cfg.convention, "version": conv.version, "description": conv.description,
                   "infinite_psnr": "an identical pair scores PSNR = inf (as skimage); a mean that includes one "
                                    "is inf, written as the string \"inf\" in JSON"},
        "environment": environment(cfg.device),
        "dtype": {"fp32": "float32", "bf16": "bfloat16 autocast", "fp16": "float16 autocast"}[cfg.dtype],
        "compute": {"dtype": cfg.dtype, "channels_last": cfg.channels_last, "compile": cfg.compile,
                    "batch": cfg.batch,
                    "notes": {f"{r.name}/{r.mode}": r.extra.get("compute_notes", []) for r in runs
                              if r.extra.get("compute_notes")},
                    "compile_warmup_seconds": {f"{r.name}/{r.mode}": r.extra["warmup_seconds"] for r in runs
                                               if "warmup_seconds" in r.extra}},
        # per method, every file of any of its modes (auto adds the classifier's files to text mode's)
        "weights_sha256": {n: {f: h for r in runs if r.name == n for f, h in r.weights_files.items()}
                           for n in dict.fromkeys(r.name for r in runs if r.weights_files)},
        "methods_failed": failed_methods,
        "failed_images": sum(1 for r in selected if r["status"] != "ok"),
        "save_errors": save_errors,
        "interrupted": interrupted,
        "results": results.aggregate(selected),
        "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def iter_records(out: Path) -> Iterator[dict]:
    """The selected records of an output folder (see `harness.results.load`)."""
    yield from results.load(out)[0]
