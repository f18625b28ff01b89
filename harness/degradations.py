"""CDD-11 degradation types, defined once: official order and spelling, display names, Table I numerals.

Index order is the OneRestore release's (0 = clear, 1..11 the composite types); it is also the order of
the 12 rows of OneRestore's type table. VL-UR's Table I lists the same 11 types in another order, with
roman numerals, which is the order every rendered table uses.
"""

from __future__ import annotations

CLEAR = "clear"

#: The 11 degradation types in the official (OneRestore) order and folder spelling.
TYPES: tuple[str, ...] = (
    "low",
    "haze",
    "rain",
    "snow",
    "low_haze",
    "low_rain",
    "low_snow",
    "haze_rain",
    "haze_snow",
    "low_haze_rain",
    "low_haze_snow",
)

#: clear + the 11 types, index = the official type index (0..11).
ALL_TYPES: tuple[str, ...] = (CLEAR, *TYPES)

#: Human-readable names (used in tables and in VL-UR's prompts "The image has {name} degradation").
DISPLAY_NAMES: dict[str, str] = {
    "clear": "clear",
    "low": "low light",
    "haze": "haze",
    "rain": "rain",
    "snow": "snow",
    "low_haze": "haze and low light",
    "low_rain": "low light and rain",
    "low_snow": "low light and snow",
    "haze_rain": "haze and rain",
    "haze_snow": "haze and snow",
    "low_haze_rain": "haze, low light and rain",
    "low_haze_snow": "haze, low light and snow",
}

#: Short labels for table rows (VL-UR Table I style).
SHORT_NAMES: dict[str, str] = {
    "low": "Low",
    "haze": "Haze",
    "rain": "Rain",
    "snow": "Snow",
    "low_haze": "Haze+Low",
    "low_rain": "Low+Rain",
    "low_snow": "Low+Snow",
    "haze_rain": "Haze+Rain",
    "haze_snow": "Haze+Snow",
    "low_haze_rain": "Haze+Low+Rain",
    "low_haze_snow": "Haze+Low+Snow",
    "clear": "Clear",
}

#: VL-UR Table I row order and numerals.
TABLE1_ORDER: tuple[str, ...] = (
    "haze",
    "low",
    "rain",
    "snow",
    "low_haze",
    "haze_rain",
    "haze_snow",
    "low_rain",
    "low_snow",
    "low_haze_rain",
    "low_haze_snow",
)
ROMAN: dict[str, str] = {
    t: r for t, r in zip(TABLE1_ORDER, ("I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI"))
}


def type_index(name: str) -> int:
    """Official index (0 = clear) of a type name; raises ValueError naming the valid names."""
    try:
        return ALL_TYPES.index(name)
    except ValueError:
        raise ValueError(f"unknown CDD-11 type {name!r}; valid: {', '.join(ALL_TYPES)}") from None


def parse_types(spec: str | None) -> tuple[str, ...]:
    """Parse a comma-separated `--types` value ('all' or empty = the 11 types), keeping official order."""
    if not spec or spec == "all":
        return TYPES
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    for w in wanted:
        type_index(w)
    return tuple(t for t in ALL_TYPES if t in wanted)
