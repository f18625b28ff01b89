"""PSNR/SSIM regression gate: re-evaluate a CI-sized slice and compare it with reports/baseline.json.

    python -m harness.gates                      # gate: exit 1 on a regression, a missing or failed method/type
    python -m harness.gates --update-baseline    # re-evaluate the slice and rewrite the baseline deliberately
    nox -s gate

The baseline file defines the slice (``slice``: data, methods, modes, types, limit per type, metric
convention, plugin modules to import), holds per method, mode and type the mean PSNR/SSIM and the image
count (rounded to 1e-6, keys sorted, so an update diffs line by line), and records where the numbers came
from (``provenance``: git commit, package versions, data fingerprint, weights sha256, taken from the
summary.json that `harness.run` writes).

The gate calls `harness.evaluate` on that slice into a fresh folder (a temporary one unless ``--out``),
printing its progress to stderr, then compares per type. The rule is two-sided, because the slice is
deterministic (fixed data, fixed weights, seeded methods): a PSNR change of more than ``--tolerance-psnr``
dB (default 0.05) or an SSIM change of more than ``--tolerance-ssim`` (default 0.001) fails either way — a
drop is a REGRESSION, a rise is STALE (the baseline no longer describes the code: update it deliberately,
in the same commit, with ``--update-baseline``). So does a method, mode or type of the baseline that is no
longer there (unregistered method, mode not offered, type folder gone, fewer images), that fails (the method
cannot be built, an image fails) or whose baseline or new value is not a finite number (NaN never passes).
Input (the identity method) is evaluated once, whatever the modes.

Exit status: 0 pass (or baseline written), 1 gate failed (or update refused: the run had failures),
2 the gate could not run (no or unreadable baseline, bad arguments, bad data root).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import shutil
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from harness import cli
from harness.degradations import TABLE1_ORDER, TYPES, parse_types
from harness.fileio import write_text_atomic
from harness.results import INPUT_METHOD

SCHEMA = 1
DEFAULT_BASELINE = Path("reports/baseline.json")
MINI_PREFIX = "cdd11-mini:"
#: The slice a fresh baseline uses when neither the old baseline nor the command line says otherwise:
#: the methods that ship demo weights, on 2 images per type of the embedded test split.
DEFAULT_SLICE = {
    "data": "cdd11-mini:test",
    "methods": ["identity", "onerestore", "vlur"],
    "modes": ["auto", "text"],
    "types": list(TYPES),
    "limit": 2,
    "convention": "cdd11",
    "imports": [],
}
TOL_PSNR = 0.05
TOL_SSIM = 0.001
_EPS = 1e-9  # values are compared after rounding to 1e-6; this absorbs the float error of the subtraction


class GateError(RuntimeError):
    """The gate cannot run (exit 2)."""


def _r(v: float | None) -> float | None:
    if v is None or (isinstance(v, float) and (math.isnan(v) or math.isinf(v))):
        return v
    return round(float(v), 6)


def resolve_data(spec: str) -> Path:
    """'cdd11-mini:SPLIT' → the embedded split's root (generated on first use); anything else is a path."""
    if spec.startswith(MINI_PREFIX):
        mini = importlib.import_module("harness.data.mini")
        return Path(mini.ensure(spec[len(MINI_PREFIX):] or "test"))
    return Path(spec)


def load_baseline(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise GateError(f"no baseline at {path}; create it with: python -m harness.gates --update-baseline "
                        f"--baseline {path}")
    try:
        base = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise GateError(f"cannot read the baseline {path}: {e}") from None
    if not isinstance(base, dict) or "slice" not in base or "results" not in base:
        raise GateError(f"{path} is not a gate baseline (no 'slice' / 'results')")
    if base.get("schema") != SCHEMA:
        raise GateError(f"{path} has baseline schema {base.get('schema')!r}; this gate reads schema {SCHEMA}")
    missing = [k for k in ("data", "methods", "modes", "types", "convention") if k not in base["slice"]]
    if missing:
        raise GateError(f"{path}: the slice lacks {', '.join(missing)}")
    base["slice"] = {"limit": None, "imports": [], **base["slice"]}
    return base


def dumps_baseline(base: dict) -> str:
    return json.dumps(base, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


@dataclass
class Evaluation:
    """What one evaluation of the slice produced: {method: {mode: {type: {n, failed, psnr, ssim, error}}}}."""

    results: dict
    summary: dict
    missing: dict  # (method, mode or None, type or None) -> reason
    rc: int
    log: str


def _import_plugins(modules: Sequence[str]) -> None:
    for m in modules:
        try:
            importlib.import_module(m)
        except ImportError as e:
            raise GateError(f"cannot import plugin module {m!r} named in the slice: {e}") from None


def evaluate(slice_: dict, out_dir: Path, progress: bool = True) -> Evaluation:
    """Evaluate the slice with `harness.evaluate` into `out_dir` (must hold no records) and collect per-type
    means of the selected records (Input once, whatever the modes)."""
    from harness import registry
    from harness.data.cdd11 import DatasetError, scan
    from harness.evaluation import ConfigError, EvalConfig
    from harness.evaluation import evaluate as run_evaluation
    from harness.records import RECORDS_FILE

    _import_plugins(slice_.get("imports", []))
    missing: dict[tuple, str] = {}
    methods = []
    for m in slice_["methods"]:
        if m.startswith("outputs:"):  # a folder of restored images is gated like a model method
            from harness.outputs import OutputsSpecError, parse_outputs_spec

            try:
                parse_outputs_spec(m)
                methods.append(m)
            except OutputsSpecError as e:
                missing[(m.split("=", 1)[0].removeprefix("outputs:"), None, None)] = str(e)
            continue
        try:
            registry.get_spec(m)
            methods.append(m)
        except registry.UnknownMethodError as e:
            missing[(m, None, None)] = f"method not registered ({e})"
    root = resolve_data(slice_["data"])
    try:
        present = scan(root).types
    except DatasetError as e:
        raise GateError(f"data {slice_['data']!r}: {e}") from None
    types = [t for t in slice_["types"] if t in present]
    for t in slice_["types"]:
        if t not in present:
            missing[(None, None, t)] = f"no type folder {root / t}"
    if not methods or not types:
        return Evaluation({}, {}, missing, 1, "nothing to run: no method or no type of the slice is available\n")
    if (Path(out_dir) / RECORDS_FILE).exists():
        raise GateError(f"{out_dir} already holds records; the gate needs a fresh folder")
    lines: list[str] = []

    def log(msg: str) -> None:
        lines.append(msg)
        print(msg, file=sys.stderr, flush=True)

    cfg = EvalConfig(methods=tuple(methods), modes=tuple(slice_["modes"]), data=root, out=Path(out_dir),
                     types=tuple(types), limit=slice_.get("limit"), convention=slice_["convention"],
                     progress=progress, workers=1, report=False)
    try:
        res = run_evaluation(cfg, log=log)
    except (ConfigError, DatasetError, registry.UnknownMethodError) as e:
        raise GateError(f"the slice cannot be evaluated: {e}") from None
    results: dict = defaultdict(lambda: defaultdict(dict))
    by: dict[tuple, list[dict]] = defaultdict(list)
    for r in res.records:
        by[(r["method"], r["mode"], r["type"])].append(r)
    for (m, mode, t), recs in by.items():
        ok = [r for r in recs if r["status"] == "ok"]
        errors = [r["error"] for r in recs if r["status"] != "ok"]
        results[m][mode][t] = {
            "n": len(ok), "failed": len(errors),
            "psnr": _r(sum(r["psnr"] for r in ok) / len(ok)) if ok else None,
            "ssim": _r(sum(r["ssim"] for r in ok) / len(ok)) if ok else None,
            "error": errors[0] if errors else None,
        }
    for key, err in res.summary.get("methods_failed", {}).items():
        m, _, mode = key.partition("/")
        missing[(m, mode, None)] = f"cannot build: {err}"
    return Evaluation({m: dict(v) for m, v in results.items()}, res.summary, missing, res.exit_code,
                      "\n".join(lines) + "\n")


def provenance(summary: dict) -> dict:
    env = summary.get("environment", {})
    return {
        "git_commit": env.get("git_commit"),
        "packages": env.get("packages", {}),
        "python": env.get("python"),
        "device": env.get("device_name") or env.get("device"),
        "data_fingerprint": summary.get("data", {}).get("fingerprint"),
        "data_counts": summary.get("data", {}).get("counts", {}),
        "metric": {k: summary.get("metric", {}).get(k) for k in ("convention", "version")},
        "weights_sha256": {m: {Path(f).name: sha for f, sha in files.items()}
                           for m, files in sorted(summary.get("weights_sha256", {}).items())},
    }


def build_baseline(slice_: dict, ev: Evaluation) -> dict:
    results = {m: {mode: {t: {"n": v["n"], "psnr": v["psnr"], "ssim": v["ssim"]} for t, v in per_type.items()}
                   for mode, per_type in per_mode.items()} for m, per_mode in ev.results.items()}
    return {"schema": SCHEMA, "slice": slice_, "provenance": provenance(ev.summary), "results": results}


@dataclass
class Row:
    method: str
    mode: str
    type: str
    n: str
    psnr_base: float | None
    psnr_now: float | None
    ssim_base: float | None
    ssim_now: float | None
    status: str  # ok | REGRESSION | STALE | MISSING | FAILED
    detail: str = ""

    @property
    def failing(self) -> bool:
        return self.status in ("REGRESSION", "STALE", "MISSING", "FAILED")


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _missing_reason(missing: dict, m: str, mode: str, t: str) -> str | None:
    for key in ((m, None, None), (m, mode, None), (None, None, t)):
        if key in missing:
            return missing[key]
    return None


def compare(base: dict, ev: Evaluation, tol_psnr: float = TOL_PSNR, tol_ssim: float = TOL_SSIM) -> list[Row]:
    """One row per (method, mode, type) of the baseline, in baseline method order and Table I type order."""
    rows = []
    for m in sorted(base["results"]):
        for mode in sorted(base["results"][m]):
            per_type = base["results"][m][mode]
            for t in [x for x in TABLE1_ORDER if x in per_type]:
                b = per_type[t]
                row = Row(m, mode, t, str(b["n"]), b["psnr"], None, b["ssim"], None, "ok")
                reason = _missing_reason(ev.missing, m, mode, t)
                now = ev.results.get(m, {}).get(mode, {}).get(t)
                if now is None and m == INPUT_METHOD:  # Input is evaluated once, in the slice's first mode
                    now = next((v[t] for v in ev.results.get(m, {}).values() if t in v), None)
                if now is None:
                    row.status = "FAILED" if reason and reason.startswith("cannot build") else "MISSING"
                    row.detail = reason or f"no result for {m} ({mode}) on {t} (mode not offered any more?)"
                    rows.append(row)
                    continue
                row.psnr_now, row.ssim_now = now["psnr"], now["ssim"]
                if now["n"] != b["n"]:
                    row.n = f"{b['n']}→{now['n']}"
                if now["failed"]:
                    row.status, row.detail = "FAILED", f"{now['failed']} image(s) failed: {now['error']}"
                elif now["n"] < b["n"]:
                    row.status, row.detail = "MISSING", f"{b['n'] - now['n']} image(s) fewer than in the baseline"
                elif not all(_finite(v) for v in (b["psnr"], b["ssim"], now["psnr"], now["ssim"])):
                    row.status = "FAILED"
                    row.detail = (f"not a finite number: baseline PSNR/SSIM {b['psnr']}/{b['ssim']}, "
                                  f"now {now['psnr']}/{now['ssim']}")
                else:
                    dp, ds = now["psnr"] - b["psnr"], now["ssim"] - b["ssim"]
                    worse = []
                    if dp < -tol_psnr - _EPS:
                        worse.append(f"PSNR {dp:+.3f} dB (tolerance {tol_psnr:g})")
                    if ds < -tol_ssim - _EPS:
                        worse.append(f"SSIM {ds:+.4f} (tolerance {tol_ssim:g})")
                    better = []
                    if dp > tol_psnr + _EPS:
                        better.append(f"PSNR {dp:+.3f} dB")
                    if ds > tol_ssim + _EPS:
                        better.append(f"SSIM {ds:+.4f}")
                    if worse:
                        row.status, row.detail = "REGRESSION", "; ".join(worse)
                    elif better:
                        row.status = "STALE"
                        row.detail = ("; ".join(better) + ": better than the baseline, which no longer describes "
                                      "the code: update it deliberately (--update-baseline)")
                rows.append(row)
    return rows


def _f(v: float | None, digits: int) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _d(a: float | None, b: float | None, digits: int) -> str:
    return "–" if a is None or b is None else f"{b - a:+.{digits}f}"


def render(rows: list[Row], detail_width: int = 70) -> str:
    body = []
    for r in rows:
        detail = r.detail if len(r.detail) <= detail_width else r.detail[: detail_width - 1] + "…"
        body.append([r.method, r.mode, r.type, r.n, _f(r.psnr_base, 3), _f(r.psnr_now, 3),
                     _d(r.psnr_base, r.psnr_now, 3), _f(r.ssim_base, 4), _f(r.ssim_now, 4),
                     _d(r.ssim_base, r.ssim_now, 4), r.status, detail])
    return tabulate(body, headers=["Method", "Mode", "Type", "Images", "PSNR base", "PSNR now", "Δ PSNR",
                                   "SSIM base", "SSIM now", "Δ SSIM", "Status", "Detail"],
                    tablefmt="github", disable_numparse=True) + "\n"


def provenance_notes(old: dict, new: dict, commit: bool = True) -> list[str]:
    notes = []
    if old.get("data_fingerprint") != new.get("data_fingerprint"):
        notes.append(f"data fingerprint changed: {old.get('data_fingerprint')} → {new.get('data_fingerprint')}")
    if old.get("weights_sha256") != new.get("weights_sha256"):
        notes.append("weights changed (sha256 differs from the baseline's)")
    if old.get("metric") != new.get("metric"):
        notes.append(f"metric changed: {old.get('metric')} → {new.get('metric')}")
    changed = [f"{p} {v} → {new.get('packages', {}).get(p)}" for p, v in sorted(old.get("packages", {}).items())
               if new.get("packages", {}).get(p) != v]
    if changed:
        notes.append("package versions changed: " + ", ".join(changed))
    if commit and old.get("git_commit") != new.get("git_commit"):
        notes.append(f"baseline from commit {old.get('git_commit')}, now {new.get('git_commit')}")
    return notes


def _slice_from_args(args, old: dict | None) -> dict:
    s = dict(old or DEFAULT_SLICE)
    s.setdefault("imports", [])
    if args.methods:
        s["methods"] = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.modes:
        s["modes"] = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.types:
        s["types"] = list(parse_types(args.types))
    if args.limit is not None:
        s["limit"] = args.limit
    if args.data:
        s["data"] = args.data
    if args.convention:
        s["convention"] = args.convention
    if args.imports:
        s["imports"] = list(args.imports)
    return s


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.gates", description=cli.description(__doc__),
                                formatter_class=cli.Formatter)
    p.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE,
                   help=f"baseline file (default {DEFAULT_BASELINE})")
    p.add_argument("--update-baseline", action="store_true",
                   help="re-evaluate the slice and rewrite the baseline (refused when the run has failures)")
    p.add_argument("--tolerance-psnr", type=float, default=TOL_PSNR,
                   help=f"allowed PSNR drop in dB (default {TOL_PSNR})")
    p.add_argument("--tolerance-ssim", type=float, default=TOL_SSIM, help=f"allowed SSIM drop (default {TOL_SSIM})")
    p.add_argument("--out", type=Path, default=None,
                   help="keep the evaluation in this folder (must hold no records; default: a temporary folder)")
    g = p.add_argument_group("slice (with --update-baseline; a gate run takes the slice from the baseline)")
    g.add_argument("--limit", type=int, default=None, help=f"images per type (default {DEFAULT_SLICE['limit']})")
    g.add_argument("--methods", default=None, help=f"comma-separated (default {','.join(DEFAULT_SLICE['methods'])})")
    g.add_argument("--modes", default=None, help="comma-separated (default auto,text)")
    g.add_argument("--types", default=None, help="comma-separated CDD-11 types (default all 11)")
    g.add_argument("--data", default=None, help="'cdd11-mini:SPLIT' or a data root (default cdd11-mini:test)")
    g.add_argument("--convention", default=None, help="metric convention (default cdd11)")
    g.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="plugin module registering methods (stored in the slice); repeatable")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except GateError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _main(args) -> int:
    for name in ("tolerance_psnr", "tolerance_ssim"):
        v = getattr(args, name)
        if not (isinstance(v, float) and math.isfinite(v) and v >= 0):
            raise GateError(f"--{name.replace('_', '-')} must be a finite number ≥ 0, got {v}")
    old = load_baseline(args.baseline) if (args.baseline.exists() or not args.update_baseline) else None
    if args.update_baseline:
        slice_ = _slice_from_args(args, old["slice"] if old else None)
    else:
        slice_ = old["slice"]
        asked = _slice_from_args(args, slice_)
        if asked != slice_:
            diff = ", ".join(f"{k}: {slice_.get(k)!r} → {asked[k]!r}" for k in asked if asked[k] != slice_.get(k))
            raise GateError(f"the slice is defined by {args.baseline} ({diff}); pass --update-baseline to change it")
    if slice_.get("limit") is not None and slice_["limit"] < 1:
        raise GateError("--limit must be at least 1")
    tmp = None
    if args.out is None:
        tmp = Path(tempfile.mkdtemp(prefix="vlur-gate-"))
        out = tmp / "run"
    else:
        out = args.out
    try:
        ev = evaluate(slice_, out)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"slice: {slice_['data']}, methods {','.join(slice_['methods'])}, modes {','.join(slice_['modes'])}, "
          f"{len(slice_['types'])} type(s), limit {slice_.get('limit')}, convention {slice_['convention']}")
    if args.update_baseline:
        return _update(args, slice_, old, ev)
    rows = compare(old, ev, args.tolerance_psnr, args.tolerance_ssim)
    print(render(rows))
    failing = [r for r in rows if r.failing]
    notes = provenance_notes(old.get("provenance", {}), provenance(ev.summary), commit=bool(failing))
    for note in notes if ev.summary else []:
        print("note: " + note)
    if failing:
        counts = defaultdict(int)
        for r in failing:
            counts[r.status] += 1
        words = {"REGRESSION": "regression(s)", "STALE": "stale (better than the baseline)", "MISSING": "missing",
                 "FAILED": "failed"}
        what = ", ".join(f"{n} {words[s]}" for s, n in sorted(counts.items()))
        print(f"gate FAILED: {what} "
              f"(tolerance: PSNR {args.tolerance_psnr:g} dB, SSIM {args.tolerance_ssim:g})")
        for r in failing:
            print(f"  {r.status}: {r.method} ({r.mode}) {r.type}: {r.detail}")
        if ev.log.strip() and any(r.status != "REGRESSION" for r in failing):
            print("\nharness.run output:\n" + ev.log.rstrip())
        return 1
    print(f"gate passed: {len(rows)} method/type result(s) within tolerance")
    return 0


def _update(args, slice_: dict, old: dict | None, ev: Evaluation) -> int:
    problems = [f"{k[0] or ''} {k[1] or ''} {k[2] or ''}".strip() + f": {v}" for k, v in ev.missing.items()]
    for m, per_mode in ev.results.items():
        for mode, per_type in per_mode.items():
            problems += [f"{m} ({mode}) {t}: {v['failed']} image(s) failed: {v['error']}"
                         for t, v in per_type.items() if v["failed"]]
    if problems or ev.rc != 0:
        print("baseline NOT written: the slice did not evaluate cleanly:")
        for p in problems or [f"harness.run exited with status {ev.rc}"]:
            print("  " + p)
        if ev.log.strip():
            print("\nharness.run output:\n" + ev.log.rstrip())
        return 1
    new = build_baseline(slice_, ev)
    if old is not None and old.get("results"):
        print("compared with the previous baseline:")
        print(render(compare(old, ev, args.tolerance_psnr, args.tolerance_ssim)))
    args.baseline.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.baseline, dumps_baseline(new))
    n = sum(len(pt) for pm in new["results"].values() for pt in pm.values())
    print(f"wrote {args.baseline}: {n} method/mode/type result(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
