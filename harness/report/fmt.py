"""Number and text formatting shared by the results page's modules."""

from __future__ import annotations

import html
import math

from harness.degradations import ROMAN, SHORT_NAMES
from harness.results import AVG


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _jnum(v: float, digits: int = 4):
    """A JSON-safe number: rounded, or "inf" / "-inf" / None (JSON has no infinities or NaN)."""
    v = _num(v)
    if math.isnan(v):
        return None
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return round(v, digits)


def _esc(s) -> str:
    return html.escape(str(s), quote=True)


def _type_label(t: str) -> str:
    return f"{ROMAN[t]} {SHORT_NAMES[t]}" if t in ROMAN else ("Avg" if t == AVG else SHORT_NAMES.get(t, t))


def _fmt(v: float, digits: int, sign: bool = False) -> str:
    v = _num(v)
    if math.isnan(v):
        return "–"
    if math.isinf(v):
        return ("+" if sign and v > 0 else "") + ("inf" if v > 0 else "-inf")
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def _fmt_ms(ms: float) -> str:
    if not math.isfinite(ms):
        return "–"
    if ms >= 1000:
        return f"{ms / 1000:.3g} s" if ms < 1e6 else f"{ms / 1000:.0f} s"
    return f"{ms:.3g} ms"
