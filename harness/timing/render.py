"""The timing tables (Markdown, LaTeX booktabs) and their notes, Titan RTX claim checks included."""

from __future__ import annotations

import math
from collections.abc import Sequence

from harness.texutil import tex_escape
from harness.timing.config import size_label
from harness.timing.peaks import CLAIM_DEVICE, PAPER_CLAIMS_MS


def _size_keys(records: Sequence[dict]) -> list[str]:
    keys: list[str] = []
    for r in records:
        for k in r.get("sizes", {}):
            if k not in keys:
                keys.append(k)
    return keys


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
    esc = tex_escape if tex else str
    pm = r" $\pm$ " if tex else " ± "
    dagger = tex_escape("†") if tex else "†"
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
        return table + "\n" + "\n".join(r"\par\noindent{\footnotesize " + tex_escape(n) + "}" for n in lines)
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
        notes += sampler_step_notes(ok)
        notes += [f"{r['method']}: {r['flops_note']}" for r in ok if r.get("flops_note")]
        notes += titan_rtx_claim_notes(ok)
    for r in records:
        if r.get("error"):
            notes.append(f"{r['method']}: not timed ({str(r['error']).splitlines()[0]}).")
        for k, s in r.get("sizes", {}).items():
            if s.get("error"):
                notes.append(f"{r['method']} @ {size_label(k)}: failed ({s['error'].splitlines()[0]}).")
    return notes


def sampler_step_notes(records: Sequence[dict]) -> list[str]:
    """For methods with an iterative sampler (`sampler_steps` in their sizes): the GFLOPs (and ms) per step."""
    out = []
    for r in records:
        sizes = {k: s for k, s in r.get("sizes", {}).items() if s.get("sampler_steps") and not s.get("error")}
        if not sizes:
            continue
        steps = sorted({s["sampler_steps"] for s in sizes.values()})
        parts = []
        for k, s in sizes.items():
            part = f"{size_label(k)} {_fmt(s.get('gflops_per_step'), 1)} GFLOPs"
            if s.get("ms_per_step") is not None:
                part += f", {_fmt(s['ms_per_step'], 2)} ms"
            parts.append(part)
        out.append(f"{r['method']}: GFLOPs (and ms) are per restored image with its {'/'.join(map(str, steps))}-step "
                   "sampler; per network step (one pass over the whole image): " + "; ".join(parts) + ".")
    return out


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
