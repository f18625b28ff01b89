"""`python -m harness.classify`: evaluate methods' degradation classifiers alone (no restoration).

Each method is built as for an auto-mode run (`harness.registry.create_restorer` with
``MethodOptions(mode="auto")``) and its ``.classifier`` (a `harness.protocol.DegradationClassifier`)
classifies every degraded image of the data root — and, with ``--include-clear``, the clear images, whose
true type is "clear". One JSON line per image is appended to OUT/predictions.jsonl as it is produced
(fields: method, mode "classify", weights, classifier, type, file, predicted, status, error, notes,
pair_sha, seconds); re-running the same command resumes. Then the confusion outputs of `harness.confusion`
are written into OUT (confusion_<method>.md/.tex/.png, classifiers.md, confusion.json).

Only the degraded image is needed: an image without a clear partner is classified too.

Exit status: 0 every image classified; 1 some images or methods failed; 2 nothing was run (bad arguments,
bad data root, output folder locked, no method with a classifier); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from harness import cli, confusion, registry
from harness.data.cdd11 import DatasetError, LoadedPair, Pair, Scan, iter_loaded, scan
from harness.degradations import CLEAR, parse_types
from harness.evaluation import check_device, default_data_root
from harness.producers import _to_tensor
from harness.protocol import DegradationClassifier
from harness.records import RecordStore, error_text
from harness.weights import WeightsError

DEFAULT_OUT = Path("runs/classify")
MODE = "classify"  # the `mode` field of prediction records


class NoClassifierError(ValueError):
    pass


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.classify", formatter_class=cli.Formatter,
                                description="Evaluate the degradation classifiers of methods on CDD-11 "
                                            "(confusion matrix, accuracies); no restoration.")
    p.add_argument("--methods", default="vlur,onerestore",
                   help="comma-separated method names (default vlur,onerestore)")
    p.add_argument("--data", type=Path, default=None,
                   help="data root in the CDD-11 layout (default: the embedded cdd11-mini test split)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    p.add_argument("--types", default=None, help="comma-separated CDD-11 types (default: all 11)")
    p.add_argument("--limit", type=cli.positive_int, default=None, help="at most N images per type (first N by name)")
    p.add_argument("--include-clear", action="store_true",
                   help="also classify the clear images (true type 'clear'), those partnering the selected images")
    p.add_argument("--weights-dir", type=Path, default=None, help="folder with the authors' released weights")
    p.add_argument("--weights", type=Path, default=None, help="one checkpoint file (single-method runs)")
    p.add_argument("--workers", type=cli.non_negative_int, default=2, help="image-decoding threads (0 = inline)")
    p.add_argument("--retry-failed", action="store_true", help="redo images recorded as failed")
    cli.add_common(p, mode=False)
    return p


def items_to_classify(pairs: Sequence[Pair], include_clear: bool, limit: int | None) -> list[Pair]:
    """What to classify, as self-paired `Pair`s (degraded = clear = the image to classify), so the reader
    decodes only that image's file and a missing or mismatched clear partner does not matter.

    Clear images (with `include_clear`): the distinct partners of the selected pairs, sorted by name,
    at most `limit` of them."""
    items = [Pair(p.type, p.name, p.degraded, p.degraded) for p in pairs]
    if include_clear:
        clear = sorted({p.name: p.clear for p in pairs if p.clear is not None}.items())
        if limit is not None:
            clear = clear[:limit]
        items += [Pair(CLEAR, name, path, path) for name, path in clear]
    return items


def get_classifier(name: str, restorer) -> DegradationClassifier:
    clf = getattr(restorer, "classifier", None)
    if clf is None or not isinstance(clf, DegradationClassifier):
        what = "no `.classifier`" if clf is None else f"a `.classifier` of type {type(clf).__name__} that is not a " \
                                                       "DegradationClassifier (name, labels, scores, classify)"
        raise NoClassifierError(f"method {name!r} has {what}: it has no degradation classifier to evaluate "
                                f"(classifier-driven methods: e.g. vlur, onerestore)")
    return clf


def classify_record(name: str, weights: str, clf: DegradationClassifier, lp: LoadedPair,
                    device: torch.device) -> dict:
    p = lp.pair
    notes = [n for n in lp.notes if not n.startswith("clear: ")]  # the image is read twice (self-pair)
    base = {"method": name, "mode": MODE, "weights": weights, "classifier": getattr(clf, "name", ""),
            "type": p.type, "file": p.name, "pair_sha": lp.sha, "notes": notes, "predicted": None}
    if lp.error:
        return {**base, "status": "failed", "error": lp.error, "seconds": 0.0}
    t0 = time.perf_counter()
    try:
        with torch.inference_mode():
            pred = clf.classify(_to_tensor(lp.degraded, device))
        if len(pred) != 1 or not isinstance(pred[0], str):
            raise ValueError(f"classify returned {pred!r} for one image; expected one type name")
    except Exception as e:  # noqa: BLE001 - one bad image must not end the run
        return {**base, "status": "failed", "error": error_text(e, p.degraded),
                "seconds": round(time.perf_counter() - t0, 4)}
    return {**base, "status": "ok", "error": None, "predicted": pred[0], "seconds": round(time.perf_counter() - t0, 4)}


def device_and_data(args: argparse.Namespace, log) -> tuple[torch.device, Scan]:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = check_device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DatasetError("--device cuda asked for, but torch sees no CUDA device")
    types = parse_types(args.types) if args.types else None
    data = scan(args.data if args.data is not None else default_data_root(), types=types, limit=args.limit)
    log(data.summary())
    return device, data


def _todo(store: RecordStore, items: Sequence[Pair], name: str, retry_failed: bool) -> list[Pair]:
    todo = []
    for p in items:
        rec = store.get((name, MODE, p.type, p.name))
        if rec is None or (retry_failed and rec["status"] != "ok"):
            todo.append(p)
    return todo


def _progress(total: int, desc: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=quiet, unit="img", dynamic_ncols=True, file=sys.stderr,
                bar_format="{desc}: {n}/{total} images [{elapsed}<{remaining}, {rate_fmt}]")


def run(args: argparse.Namespace, log=cli.route) -> int:
    methods = registry.parse_methods(args.methods)
    device, data = device_and_data(args, log)
    items = items_to_classify(data.pairs, args.include_clear, args.limit)
    out: Path = args.out
    failed_methods: dict[str, str] = {}
    store = RecordStore(out, confusion.PREDICTIONS_FILE)  # not records.jsonl: these records carry no PSNR/SSIM
    with store:
        for w in store.warnings:
            log(f"warning: {w}")
        (out / "classify.json").write_text(json.dumps(
            {"methods": methods, "types": list(data.types), "limit": args.limit, "include_clear": args.include_clear,
             "data": {"root": str(data.root), "fingerprint": data.fingerprint, "counts": data.counts},
             "command": ["python", "-m", "harness.classify", *args.argv]}, indent=1))
        todos = {name: _todo(store, items, name, args.retry_failed) for name in methods}
        pbar = _progress(sum(len(t) for t in todos.values()), "classifying", args.quiet)  # one overall count + ETA
        for name in methods:
            todo = todos[name]
            try:
                opts = registry.MethodOptions(device=str(device), mode="auto", weights_dir=args.weights_dir,
                                              weights=args.weights)
                restorer = registry.create_restorer(name, opts)
                if hasattr(restorer, "to"):
                    restorer = restorer.to(device) or restorer
                clf = get_classifier(name, restorer)
            except (NoClassifierError, WeightsError, OSError, RuntimeError, ValueError, ImportError) as e:
                failed_methods[name] = str(e)
                log(f"error: {e}" if isinstance(e, NoClassifierError) else f"error: cannot build {name}: {e}")
                continue
            if hasattr(clf, "eval"):
                clf.eval()
            weights = getattr(restorer, "weights_label", "none")
            pbar.set_description(f"{name} (classify)")
            for lp in iter_loaded(todo, workers=args.workers):
                rec = classify_record(name, weights, clf, lp, device)
                store.append(rec)
                if rec["status"] != "ok":
                    log(f"failed: {rec['error']}")
                pbar.update(1)
        pbar.close()
        current = {p.key for p in items}
        records = [r for r in store if (r["type"], r["file"]) in current and r["method"] in methods
                   and r["mode"] == MODE]
        confusion.write_outputs(out, records, log=log)
    for line in confusion.summary_lines(confusion.confusions(records)):
        log(line)
    if len(failed_methods) == len(methods):
        log("error: no method could be evaluated")
        return 2
    n_failed = sum(1 for r in records if r["status"] != "ok")
    log(f"wrote {store.path} and the confusion outputs in {out}")
    if n_failed or failed_methods:
        log(f"{n_failed} image(s) failed; {len(failed_methods)} method(s) could not run")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    cli.setup_logging(args.quiet)
    return cli.run_command(lambda: run(args), args.out / confusion.PREDICTIONS_FILE, args.imports,
                           what="classified image")


if __name__ == "__main__":
    sys.exit(main())
