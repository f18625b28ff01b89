"""LaTeX escaping for every rendered table (Table I, confusion matrices, timing), defined once."""

from __future__ import annotations

#: character → LaTeX: the special characters, and the marks and signs the tables print (†: demo weights or
#: tiled timing, ‡: not significantly different from the best).
TEX_ESCAPES: dict[str, str] = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "†": r"$^\dagger$", "‡": r"$^\ddagger$", "×": r"$\times$", "−": "-", "–": "--", "—": "---",
}


def tex_escape(text: object) -> str:
    """`text` (made a string) with every character of `TEX_ESCAPES` replaced: safe in a LaTeX table cell."""
    return "".join(TEX_ESCAPES.get(c, c) for c in str(text))
