"""Visual comparison grid in the style of VL-UR's Fig. 5: input, each method, ground truth, side by side.

    python -m harness.grid RUN_DIR --out FILE.png [--per-type 1] [--crop 128] [--types haze,rain] [--seed N]

Columns: Input (the degraded image), every method/mode whose restored images the run saved
(`harness.run --save-images` writes RUN_DIR/images/<method>-<mode>/<type>/<stem>.png; the identity method is
the Input column already), and GT. Rows: the first `--per-type` images (by file name) of each type, in
Table I order, among those every column has. Input and GT are read from the data root recorded in
RUN_DIR/run.json (`--data` overrides it). Every row shows the same square crop in every column: the
centre crop by default, or a position drawn from `--seed` (per row, reproducible). Under each crop: the
image's PSNR / SSIM from the records (whole image, not the crop).

Geometry (`Layout`): a header of column labels, a column of row labels on the left, then rows × columns
cells of `crop` pixels each followed by a caption strip; crop (r, c) has its top-left pixel at
(label_w + c·(crop + gap), header_h + r·(crop + caption_h + gap)).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from harness import cli
from harness.degradations import CLEAR, ROMAN, SHORT_NAMES, TABLE1_ORDER, parse_types

BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)


class GridError(ValueError):
    pass


@dataclass(frozen=True)
class Layout:
    rows: int
    cols: int
    crop: int
    label_w: int = 124
    header_h: int = 22
    caption_h: int = 16
    gap: int = 4

    @property
    def width(self) -> int:
        return self.label_w + self.cols * (self.crop + self.gap)

    @property
    def height(self) -> int:
        return self.header_h + self.rows * (self.crop + self.caption_h + self.gap)

    def origin(self, row: int, col: int) -> tuple[int, int]:
        """(x, y) of the top-left pixel of crop (row, col)."""
        x = self.label_w + col * (self.crop + self.gap)
        return x, self.header_h + row * (self.crop + self.caption_h + self.gap)


@dataclass(frozen=True)
class Column:
    label: str
    kind: str  # "input" | "method" | "gt"
    method: str | None = None
    mode: str | None = None


@dataclass(frozen=True)
class GridRow:
    type: str
    file: str
    box: tuple[int, int, int, int]  # (left, top, right, bottom) in the full image


def crop_box(height: int, width: int, size: int, seed: int | None = None, row: int = 0) -> tuple[int, int, int, int]:
    """A size×size box (clamped to the image): centred, or at a position drawn from (seed, row)."""
    s = min(size, height, width)
    if seed is None:
        top, left = (height - s) // 2, (width - s) // 2
    else:
        rng = np.random.default_rng([seed, row])
        top, left = int(rng.integers(0, height - s + 1)), int(rng.integers(0, width - s + 1))
    return left, top, left + s, top + s


def _font(size: int = 12):
    """DejaVu Sans from matplotlib's own data (it has the † of demo-weight labels); Pillow's default otherwise."""
    try:
        from matplotlib import font_manager

        return ImageFont.truetype(font_manager.findfont("DejaVu Sans", fallback_to_default=True), size)
    except (ImportError, OSError, ValueError):
        pass
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without scalable default font
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, width: int, font) -> str:
    """`text`, shortened with an ellipsis until it fits `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _read_rgb(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def plan(run_dir: Path, per_type: int = 1, types: Sequence[str] | None = None, methods: Sequence[str] | None = None,
         data: Path | None = None) -> tuple[Path, list[Column], list[tuple[str, str]], dict]:
    """Decide the columns and the (type, file) rows. Returns (data root, columns, rows, records by key)."""
    from harness import results

    run_dir = Path(run_dir)
    run_json = run_dir / "run.json"
    if not run_json.exists():
        raise GridError(f"{run_json} not found: RUN_DIR must be an output folder of harness.run")
    info = json.loads(run_json.read_text())
    root = Path(data) if data is not None else Path(info["data"]["root"])
    if not (root / CLEAR).is_dir():
        raise GridError(f"data root {root} (from {run_json}) has no clear/ folder; pass --data")
    images = run_dir / "images"
    if not images.is_dir():
        raise GridError(f"{images} not found: run harness.run with --save-images to keep the restored images")
    records, _ = results.load(run_dir)
    labels = results.method_labels(records)
    by_key = {(r["method"], r["mode"], r["type"], r["file"]): r for r in records}
    run_methods = [m for m in info.get("methods", []) if m != "identity"]
    if methods is not None:
        unknown = [m for m in methods if m not in info.get("methods", [])]
        if unknown:
            raise GridError(f"{', '.join(unknown)} not in this run (methods: {', '.join(info.get('methods', []))})")
        run_methods = [m for m in methods if m != "identity"]
    cols = [Column("Input", "input")]
    for m in run_methods:
        for mode in info.get("modes", []):
            if (images / f"{m}-{mode}").is_dir():
                cols.append(Column(labels.get((m, mode), f"{m} ({mode})"), "method", m, mode))
    cols.append(Column("GT", "gt"))
    wanted = [t for t in TABLE1_ORDER if types is None or t in types]
    rows: list[tuple[str, str]] = []
    for t in wanted:
        if not (root / t).is_dir():
            continue
        files = sorted({r["file"] for r in records if r["type"] == t})
        chosen = []
        for f in files:
            stem = Path(f).stem
            ok = (root / t / f).exists() and (root / CLEAR / f).exists() and all(
                (images / f"{c.method}-{c.mode}" / t / f"{stem}.png").exists() for c in cols if c.kind == "method")
            if ok:
                chosen.append((t, f))
            if len(chosen) == per_type:
                break
        rows += chosen
    if not rows:
        raise GridError(f"no image of {run_dir} has a saved result for every column")
    return root, cols, rows, by_key


def _captions(col: Column, t: str, f: str, by_key: dict) -> list[str]:
    """Caption candidates, longest first (the first that fits the crop width is drawn)."""
    if col.kind == "gt":
        return ["reference", "GT"]
    if col.kind == "input":
        rec = next((by_key[k] for k in by_key if k[0] == "identity" and k[2] == t and k[3] == f), None)
    else:
        rec = by_key.get((col.method, col.mode, t, f))
    if rec is None or rec.get("status") != "ok":
        return [""]
    return [f"{rec['psnr']:.2f} dB / {rec['ssim']:.3f}", f"{rec['psnr']:.2f} dB", f"{rec['psnr']:.1f}"]


def make_grid(run_dir: Path, out: Path, per_type: int = 1, crop: int = 128, types: Sequence[str] | None = None,
              methods: Sequence[str] | None = None, seed: int | None = None, data: Path | None = None) -> Layout:
    """Compose the grid PNG at `out`; returns its layout."""
    if per_type < 1 or crop < 8:
        raise GridError("--per-type must be ≥ 1 and --crop ≥ 8")
    run_dir = Path(run_dir)
    root, cols, rows, by_key = plan(run_dir, per_type, types, methods, data)
    layout = Layout(rows=len(rows), cols=len(cols), crop=crop)
    canvas = Image.new("RGB", (layout.width, layout.height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font, small = _font(12), _font(10)
    for c, col in enumerate(cols):
        x, _ = layout.origin(0, c)
        text = _fit(draw, col.label, crop, font)
        w = draw.textlength(text, font=font)
        draw.text((x + (crop - w) / 2, 4), text, fill=TEXT, font=font)
    for r, (t, f) in enumerate(rows):
        stem = Path(f).stem
        sources = []
        for col in cols:
            if col.kind == "input":
                sources.append(root / t / f)
            elif col.kind == "gt":
                sources.append(root / CLEAR / f)
            else:
                sources.append(run_dir / "images" / f"{col.method}-{col.mode}" / t / f"{stem}.png")
        first = _read_rgb(sources[0])
        box = crop_box(first.height, first.width, crop, seed, r)
        for c, (col, src) in enumerate(zip(cols, sources)):
            im = first if c == 0 else _read_rgb(src)
            if im.size != first.size:
                raise GridError(f"{src} is {im.size[0]}x{im.size[1]}, the input {first.size[0]}x{first.size[1]}")
            x, y = layout.origin(r, c)
            patch = im.crop(box)
            canvas.paste(patch, (x + (crop - patch.width) // 2, y + (crop - patch.height) // 2))
            options = _captions(col, t, f, by_key)
            cap = next((o for o in options if draw.textlength(o, font=small) <= crop), None)
            cap = cap if cap is not None else _fit(draw, options[-1], crop, small)
            w = draw.textlength(cap, font=small)
            draw.text((x + (crop - w) / 2, y + crop + 2), cap, fill=TEXT, font=small)
        _, y = layout.origin(r, 0)
        name = f"{ROMAN[t]} {SHORT_NAMES[t]}"
        draw.text((4, y + crop / 2 - 14), _fit(draw, name, layout.label_w - 8, font), fill=TEXT, font=font)
        draw.text((4, y + crop / 2 + 2), _fit(draw, stem, layout.label_w - 8, small), fill=TEXT, font=small)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return layout


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.grid", description=cli.description(__doc__),
                                formatter_class=cli.Formatter)
    p.add_argument("run_dir", type=Path, help="output folder of harness.run (run with --save-images)")
    p.add_argument("--out", type=Path, required=True, help="PNG file to write")
    p.add_argument("--per-type", type=int, default=1, help="images per type (rows per type; default 1)")
    p.add_argument("--crop", type=int, default=128, help="crop size in pixels (default 128)")
    p.add_argument("--types", default=None, help="comma-separated CDD-11 types (default: every type of the run)")
    p.add_argument("--methods", default=None, help="comma-separated methods of the run (default: all)")
    p.add_argument("--seed", type=int, default=None, help="seeded crop position per row (default: centre crop)")
    p.add_argument("--data", type=Path, default=None, help="data root (default: the one in RUN_DIR/run.json)")
    args = p.parse_args(argv)
    try:
        types = parse_types(args.types) if args.types else None
        methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
        layout = make_grid(args.run_dir, args.out, args.per_type, args.crop, types, methods, args.seed, args.data)
    except (GridError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {layout.rows} row(s) x {layout.cols} column(s) of {layout.crop}px crops, "
          f"{layout.width}x{layout.height} px")
    return 0


if __name__ == "__main__":
    sys.exit(main())
