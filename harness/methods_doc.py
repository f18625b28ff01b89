"""README's method tables, rendered from the methods' `MethodInfo` records (`harness.registry`).

    python -m harness.methods_doc                     # print the tables
    python -m harness.methods_doc --check README.md   # exit 1 (with a diff) if README's tables differ
    python -m harness.methods_doc --write README.md   # rewrite the text between the markers

Only the text between `<!-- methods-table:start -->` and `<!-- methods-table:end -->` is generated; the rest of
README.md is left as it is. Edit a method's `INFO` (in its module), then `--write`; `tests/test_method_info.py`
fails while the two disagree.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from harness import registry
from harness.registry import MethodInfo

START = "<!-- methods-table:start -->"
END = "<!-- methods-table:end -->"
DASH = "—"


def builtin_methods() -> list[str]:
    """The built-in methods in README order (`registry.BUILTIN_MODULES`)."""
    return list(registry.BUILTIN_MODULES)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip() or DASH


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [_row(head), "| " + " | ".join("---" for _ in head) + " |", *(_row(r) for r in rows)]


def _code_link(code: str) -> str:
    m = re.match(r"https://github\.com/([^/\s]+/[^/\s]+)(.*)$", code)
    return f"[{m.group(1)}]({code.split()[0]}){m.group(2)}" if m else code


def _files(info: MethodInfo) -> str:
    files = ", ".join(f"`{f}`" for f in info.files) or DASH
    return f"{files}; {info.weights_note}" if info.weights_note else files


def _modes(info: MethodInfo) -> str:
    if not info.modes:
        return "classifier only"
    if info.blind:
        return f"{', '.join(info.modes)}; blind (a given type is ignored)"
    return f"{', '.join(info.modes)} (auto: its own classifier picks the type)"


def _without(info: MethodInfo) -> str:
    if not info.demo_weights:
        return info.without_weights
    return ", ".join(f"`{f}`" for f in info.demo_weights) + f": {info.without_weights}"


def render_method_table(names: Sequence[str] | None = None) -> str:
    """The generated Markdown (no markers): papers and licences, released files, adapter conventions."""
    names = list(names) if names is not None else builtin_methods()
    infos = [(n, registry.method_info(n)) for n in names]
    lines = _table(
        ["method", "paper", "official code", "licence (as the official repository states it)"],
        [[f"`{n}`", str(i.paper) if i.paper else DASH, _code_link(i.code), i.licence] for n, i in infos],
    )
    lines += [""]
    lines += _table(
        ["method", "file(s) in `--weights-dir`", "format", "where the authors publish them", "without `--weights-dir`"],
        [[f"`{n}`", _files(i), i.checkpoint_format, i.published_at, _without(i)] for n, i in infos],
    )
    lines += ["", "What each adapter does around the official network (following each official test script; where "
              "that script resizes the image, we pad and crop back instead, so scores are always at the ground "
              "truth's size):", ""]
    lines += _table(["method", "modes", "adapter conventions"], [[f"`{n}`", _modes(i), i.adapter] for n, i in infos])
    return "\n".join(lines) + "\n"


def _split(text: str, path: Path) -> tuple[str, str, str]:
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"{path}: needs exactly one {START} … {END} pair")
    head, rest = text.split(START, 1)
    body, tail = rest.split(END, 1)
    return head + START + "\n", body.lstrip("\n"), END + tail


def current_block(path: Path) -> str:
    """The text between the markers of `path`, as `render_method_table` would write it."""
    return _split(path.read_text(encoding="utf-8"), path)[1]


def write(path: Path) -> bool:
    """Rewrite the generated block of `path`; True when it changed. Reads the file just before writing."""
    text = path.read_text(encoding="utf-8")
    head, body, tail = _split(text, path)
    new = render_method_table()
    if body == new:
        return False
    path.write_text(head + new + tail, encoding="utf-8")
    return True


def check(path: Path) -> list[str]:
    """Unified diff lines between README's block and the generated one (empty: they agree)."""
    return list(difflib.unified_diff(current_block(path).splitlines(), render_method_table().splitlines(),
                                     f"{path} (between the markers)", "generated from MethodInfo", lineterm=""))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.methods_doc",
                                description="Render README's method tables from each method's MethodInfo record.")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--check", type=Path, metavar="README", help="exit 1 with a diff if its tables are not current")
    g.add_argument("--write", type=Path, metavar="README", help="rewrite the text between its markers")
    args = p.parse_args(argv)
    try:
        if args.check:
            diff = check(args.check)
            if diff:
                print("\n".join(diff))
                print(f"\n{args.check}: method tables are stale; run python -m harness.methods_doc --write "
                      f"{args.check}", file=sys.stderr)
                return 1
            return 0
        if args.write:
            print(f"{args.write}: {'updated' if write(args.write) else 'already current'}")
            return 0
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(render_method_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
