"""Inline SVG charts of the results page: grouped bars (gains) and log-scale timing bars."""

from __future__ import annotations

import math
from collections.abc import Sequence

from harness.report.fmt import _esc, _fmt, _fmt_ms, _num

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
FLOOR_COLOUR = "#9aa5ad"


def _nice_step(span: float, n: int = 5) -> float:
    raw = span / max(n, 1)
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def _tick_text(v: float, step: float) -> str:
    digits = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    if step * 10 ** digits % 1:
        digits += 1
    return f"{v:.{digits}f}"


def bar_chart(element_id: str, title: str, groups: Sequence[str], series: Sequence[str],
              values: dict[str, Sequence[float]], unit: str, digits: int) -> str:
    """Grouped vertical bars (one group per type, one bar per series) as inline SVG, zero line included."""
    width, left, right, top, bottom = 1150, 64, 12, 52, 56
    height = 330
    pw, ph = width - left - right, height - top - bottom
    finite = [v for s in series for v in values[s] if math.isfinite(_num(v))]
    lo, hi = min([0.0, *finite]), max([0.0, *finite])
    if hi - lo < 1e-12:
        hi = lo + 1.0
    step = _nice_step(hi - lo)
    lo, hi = math.floor(lo / step) * step, math.ceil(hi / step) * step

    def y(v: float) -> float:
        return top + ph * (hi - v) / (hi - lo)

    out = [f'<svg class="chart" id="{_esc(element_id)}" viewBox="0 0 {width} {height}" role="img" '
           f'xmlns="http://www.w3.org/2000/svg"><title>{_esc(title)}</title>',
           f'<text x="{left}" y="16" font-size="14" font-weight="600">{_esc(title)}</text>']
    x = left
    for i, s in enumerate(series):  # legend
        colour = PALETTE[i % len(PALETTE)]
        out.append(f'<rect x="{x}" y="26" width="11" height="11" fill="{colour}"/>'
                   f'<text x="{x + 15}" y="36" font-size="12">{_esc(s)}</text>')
        x += 26 + 7 * len(s)
    n_ticks = int(round((hi - lo) / step))
    for k in range(n_ticks + 1):
        v = lo + k * step
        yy = y(v)
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#e3e7ea"/>'
                   f'<text x="{left - 6}" y="{yy + 4:.1f}" font-size="11" text-anchor="end">'
                   f"{_tick_text(v, step)}</text>")
    out.append(f'<text transform="translate(14 {top + ph / 2:.0f}) rotate(-90)" font-size="12" '
               f'text-anchor="middle">{_esc(unit)}</text>')
    gw = pw / max(len(groups), 1)
    bw = gw * 0.8 / max(len(series), 1)
    for g, name in enumerate(groups):
        gx = left + g * gw
        for i, s in enumerate(series):
            v = _num(values[s][g])
            if not math.isfinite(v):
                continue
            y0, y1 = sorted((y(0.0), y(v)))
            out.append(f'<rect class="bar" x="{gx + gw * 0.1 + i * bw:.1f}" y="{y0:.1f}" width="{max(bw - 1, 1):.1f}" '
                       f'height="{max(y1 - y0, 0.5):.1f}" fill="{PALETTE[i % len(PALETTE)]}">'
                       f"<title>{_esc(s)}, {_esc(name)}: {_fmt(v, digits, sign=True)} {_esc(unit)}</title></rect>")
        roman, _, short = name.partition(" ")
        lines = [short]
        if len(short) * 6.5 > gw * 0.9 and "+" in short:  # too wide for its group: break after a "+"
            cut = short.rfind("+", 0, len(short) // 2 + 2) + 1 or short.find("+") + 1
            lines = [short[:cut], short[cut:]]
        out.append(f'<text x="{gx + gw / 2:.1f}" y="{top + ph + 16}" font-size="11.5" text-anchor="middle" '
                   f'font-weight="600">{_esc(roman)}</text>')
        for k, line in enumerate(lines):
            out.append(f'<text x="{gx + gw / 2:.1f}" y="{top + ph + 30 + 12 * k}" font-size="10.5" '
                       f'text-anchor="middle" fill="#5f6b73">{_esc(line)}</text>')
    out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(0.0):.1f}" y2="{y(0.0):.1f}" stroke="#333"/>')
    out.append("</svg>")
    return "".join(out)


def timing_chart(rows: Sequence[dict]) -> str:
    """Horizontal bars on a log axis: measured ms (per method colour) and the FLOP floor (grey) per size."""
    vals = [v for r in rows for v in (r["ms"], r["floor"]) if math.isfinite(v) and v > 0]
    if not vals:
        return ""
    lo = 10 ** math.floor(math.log10(min(vals)))
    hi = 10 ** math.ceil(math.log10(max(vals)))
    if hi <= lo:
        hi = lo * 10
    left, right, top, row_h = 230, 170, 46, 34
    width = 1150
    pw = width - left - right
    height = top + row_h * len(rows) + 30

    def x(v: float) -> float:
        return left + pw * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))

    colours = {}
    for r in rows:
        colours.setdefault(r["method"], PALETTE[len(colours) % len(PALETTE)])
    out = [f'<svg class="chart" id="timing-chart" viewBox="0 0 {width} {height}" role="img" '
           f'xmlns="http://www.w3.org/2000/svg"><title>Time per image against the FLOP floor</title>',
           '<text x="10" y="16" font-size="14" font-weight="600">Time per image (median, log scale) against the '
           'FLOP floor (counted FLOPs / peak FLOP/s)</text>',
           f'<rect x="{left}" y="24" width="11" height="11" fill="#555"/><text x="{left + 15}" y="34" '
           f'font-size="12">measured</text><rect x="{left + 95}" y="27" width="11" height="6" '
           f'fill="{FLOOR_COLOUR}"/><text x="{left + 110}" y="34" font-size="12">floor (100 % of peak)</text>']
    d = lo
    while d <= hi * 1.0001:
        xx = x(d)
        out.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{top - 4}" y2="{height - 24}" stroke="#e3e7ea"/>'
                   f'<text x="{xx:.1f}" y="{height - 8}" font-size="11" text-anchor="middle">{_fmt_ms(d)}</text>')
        d *= 10
    for i, r in enumerate(rows):
        y0 = top + i * row_h
        out.append(f'<text x="{left - 8}" y="{y0 + 15}" font-size="12" text-anchor="end">'
                   f'{_esc(r["label"])} · {_esc(r["size"])}</text>')
        if math.isfinite(r["ms"]) and r["ms"] > 0:
            out.append(f'<rect class="bar" x="{left}" y="{y0 + 4}" width="{max(x(r["ms"]) - left, 1):.1f}" '
                       f'height="13" fill="{colours[r["method"]]}"><title>{_esc(r["label"])} {_esc(r["size"])}: '
                       f'{r["ms"]:.2f} ms</title></rect>')
        if math.isfinite(r["floor"]) and r["floor"] > 0:
            out.append(f'<rect class="floor" x="{left}" y="{y0 + 19}" width="{max(x(r["floor"]) - left, 1):.1f}" '
                       f'height="7" fill="{FLOOR_COLOUR}"><title>floor: {r["floor"]:.2f} ms</title></rect>')
        ratio = r["ms"] / r["floor"] if math.isfinite(r["ms"]) and r["floor"] > 0 else math.nan
        text = (f"{_fmt_ms(r['ms'])}" + (f" = {ratio:.3g}× floor" if math.isfinite(ratio) else "")
                + (" (!) below floor" if r["below"] else ""))
        if r["error"] and not math.isfinite(r["ms"]):
            text = "failed"
        fill = ' fill="#c0392b"' if r["below"] or text == "failed" else ""
        out.append(f'<text x="{width - right + 6}" y="{y0 + 15}" font-size="12"{fill}>{_esc(text)}</text>')
    out.append("</svg>")
    return "".join(out)
