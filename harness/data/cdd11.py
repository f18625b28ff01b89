"""Reader for data sets in the CDD-11 layout: ``ROOT/clear/NAME`` + ``ROOT/<type>/NAME``, paired by name.

What is checked, and what happens (structural problems stop the run before any model work; per-image
problems make that image a failed record and the run goes on):

=============================================  ===========================================================
problem                                        handling
=============================================  ===========================================================
ROOT missing / not a folder                    `DatasetError` (structural)
``clear/`` missing                             `DatasetError`
a type asked for with ``--types`` missing      `DatasetError`; with the default (all types) a missing type
                                               folder is skipped and reported (papers evaluate subsets)
type folder with no image file                 `DatasetError` ("empty type folder")
no pair at all                                 `DatasetError`
degraded image with no clear partner           failed record, reason "no clear partner"
size mismatch with its partner                 failed record (checked after decoding)
truncated / unreadable / non-image content     failed record naming the file and the decoder's complaint
file with a non-image extension                ignored, listed in `Scan.ignored` (e.g. README.txt)
file name that is not valid UTF-8              ignored, listed in `Scan.bad_names` (records are UTF-8 JSON)
unreadable folder (permissions)                `DatasetError` naming the folder
image above `MAX_PIXELS` (a decompression      failed record giving its size and the limit; checked from the
bomb, or a valid but huge image)               header before any pixel is decoded (`--max-pixels` raises it)
=============================================  ===========================================================

Conversion rules (every image becomes 8-bit RGB, H×W×3 uint8; each conversion is noted in the record):

* grayscale (L, I;16, LA): the gray value is copied to R, G and B;
* RGBA / LA: the alpha channel is dropped (colour values used as stored, no compositing);
* palette (P): expanded through its palette (transparency dropped as above);
* 16-bit PNG: reduced to 8 bits by keeping the high byte (``v >> 8``) — Pillow's own rule for 16-bit RGB,
  applied to 16-bit grayscale as well so every 16-bit file follows one rule;
* 32-bit integer (mode I): values within 0..255 are used as they are, within 0..65535 as 16-bit (``v >> 8``);
  anything else (negative, or above 65535) is refused with the range found — no wrap-around;
* 32-bit float (mode F): values within [0, 1] become ``round(v·255)``; anything else is refused;
* CMYK, YCbCr and other modes: Pillow's conversion to RGB;
* EXIF orientation: applied (``ImageOps.exif_transpose``) to every image that carries one, degraded and
  clear alike, and noted — what a viewer shows is what is scored.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from harness.degradations import CLEAR, TYPES

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
#: Largest image (pixels) that is decoded: 64 MP — 4K is 8.3 MP, CDD-11 0.78 MP. A larger one, or a tiny file
#: that declares one (a decompression bomb), becomes a failed record; `--max-pixels` / `max_pixels` raise it.
MAX_PIXELS = 64_000_000


class DatasetError(ValueError):
    """A structural problem with a data root; raised before any model work."""


class ImageReadError(ValueError):
    """One image file cannot be used; the message names the file."""


@dataclass(frozen=True)
class Pair:
    type: str
    name: str
    degraded: Path
    clear: Path | None  # None: no clear partner (becomes a failed record)

    @property
    def key(self) -> tuple[str, str]:
        return (self.type, self.name)


@dataclass
class Scan:
    root: Path
    types: tuple[str, ...]
    pairs: list[Pair]
    counts: dict[str, int]
    skipped_types: list[str] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)
    fingerprint: str = ""
    bad_names: list[str] = field(default_factory=list)  # file names that are not valid UTF-8 (escaped)

    def summary(self) -> str:
        parts = [f"{t}: {self.counts[t]}" for t in self.types]
        text = f"{self.root}: {len(self.pairs)} images ({', '.join(parts)})"
        if self.skipped_types:
            text += f"; no folder for {', '.join(self.skipped_types)}"
        if self.ignored:
            text += f"; ignored {len(self.ignored)} non-image file(s), e.g. {self.ignored[0]}"
        if self.bad_names:
            text += (f"; ignored {len(self.bad_names)} file(s) whose name is not valid UTF-8, e.g. "
                     f"{self.bad_names[0]} (rename them to score them)")
        return text


def _image_files(folder: Path, ignored: list[Path], bad_names: list[str] | None = None) -> dict[str, Path]:
    files: dict[str, Path] = {}
    try:
        entries = sorted(folder.iterdir())
    except OSError as e:
        raise DatasetError(f"cannot list {folder}: {e.strerror or e}") from None
    for p in entries:
        try:
            p.name.encode("utf-8")
        except UnicodeEncodeError:
            if bad_names is not None:
                bad_names.append(str(folder / p.name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")))
            continue
        if p.name.startswith(".") or not p.is_file():
            continue
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            files[p.name] = p
        else:
            ignored.append(p)
    return files


def scan(
    root: Path | str,
    types: Sequence[str] | None = None,
    limit: int | None = None,
    names: Sequence[str] | None = None,
) -> Scan:
    """List the (degraded, clear) pairs under `root`.

    `types`: None = all 11 (missing folders skipped), else exactly these (missing folders are errors).
    `limit`: at most N images per type, the first N names in sorted order (deterministic).
    `names`: keep only these file names (papers evaluate subsets).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"data root {root} does not exist or is not a folder")
    clear_dir = root / CLEAR
    if not clear_dir.is_dir():
        found = ", ".join(sorted(p.name for p in root.iterdir() if p.is_dir())[:12]) or "nothing"
        raise DatasetError(
            f"{root} has no '{CLEAR}/' folder (found: {found}); expected the CDD-11 layout "
            f"ROOT/clear/NAME and ROOT/<type>/NAME"
        )
    explicit = types is not None
    wanted = tuple(types) if explicit else TYPES
    for t in wanted:
        if t not in TYPES:
            raise DatasetError(f"unknown CDD-11 type {t!r}; valid: {', '.join(TYPES)}")
    wanted = tuple(t for t in TYPES if t in wanted)  # official order, whatever order was asked
    ignored: list[Path] = []
    bad_names: list[str] = []
    clear_files = _image_files(clear_dir, ignored, bad_names)
    keep = set(names) if names is not None else None
    pairs: list[Pair] = []
    counts: dict[str, int] = {}
    skipped: list[str] = []
    present: list[str] = []
    for t in wanted:
        folder = root / t
        if not folder.is_dir():
            if explicit:
                raise DatasetError(f"type folder {folder} is missing (asked for with --types)")
            skipped.append(t)
            continue
        files = _image_files(folder, ignored, bad_names)
        if not files:
            raise DatasetError(f"empty type folder: {folder} contains no image file")
        selected = [n for n in sorted(files) if keep is None or n in keep]
        if limit is not None:
            selected = selected[:limit]
        present.append(t)
        counts[t] = len(selected)
        pairs += [Pair(t, n, files[n], clear_files.get(n)) for n in selected]
    if not pairs:
        raise DatasetError(f"no image pairs found under {root} for types {', '.join(wanted)}")
    s = Scan(root, tuple(present), pairs, counts, skipped, ignored, bad_names=bad_names)
    s.fingerprint = fingerprint(s)
    return s


def fingerprint(s: Scan) -> str:
    """Identity of the selected files: sha256 over (type, name, byte sizes of both files)."""
    h = hashlib.sha256()
    for p in s.pairs:
        size_d = p.degraded.stat().st_size
        size_c = p.clear.stat().st_size if p.clear is not None else -1
        h.update(f"{p.type}/{p.name}:{size_d}:{size_c}\n".encode())
    return h.hexdigest()[:16]


def read_rgb8(path: Path, max_pixels: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Decode `path` to H×W×3 uint8 following the module's conversion rules; returns (array, notes)."""
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies instead
            # Our own limit, checked from the header below, replaces Pillow's global guard: it names the
            # file, the size and the option, and it is what --max-pixels raises.
            Image.MAX_IMAGE_PIXELS = None
            with Image.open(path) as im:
                w, h = im.size
                if w * h > limit:
                    raise ImageReadError(f"{path}: image is {w}x{h} = {w * h:,} pixels, above the limit of "
                                         f"{limit:,} (a decompression bomb or a huge image; raise it with "
                                         "--max-pixels if the file is genuine)")
                im.load()
                orientation = im.getexif().get(0x0112, 1)
                if orientation not in (None, 1):
                    im = ImageOps.exif_transpose(im)
                    notes.append(f"EXIF orientation {orientation} applied")
                a, more = _to_rgb8(im, path)
                notes += more
    except ImageReadError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageReadError(f"{path}: cannot decode image ({type(e).__name__}: {e})") from None
    if a.ndim != 3 or a.shape[2] != 3 or min(a.shape[:2]) == 0:
        raise ImageReadError(f"{path}: decoded to unexpected shape {a.shape}")
    return a, notes


def _to_rgb8(im: Image.Image, path: Path) -> tuple[np.ndarray, list[str]]:
    notes: list[str] = []
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L"):
        a = (np.array(im).astype(np.uint32) >> 8).astype(np.uint8)
        notes.append(f"16-bit grayscale ({mode}) reduced to 8 bits (v >> 8) and copied to RGB")
        return np.repeat(a[..., None], 3, axis=2), notes
    if mode == "I":
        a = np.array(im).astype(np.int64)
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 65535:
            raise ImageReadError(f"{path}: 32-bit integer image with values {lo}..{hi}: no documented conversion "
                                 "to 8 bits (accepted: 0..255 as is, 0..65535 as 16-bit)")
        if hi <= 255:
            notes.append("32-bit integer grayscale within 0..255 used as 8-bit and copied to RGB")
            a8 = a.astype(np.uint8)
        else:
            notes.append("32-bit integer grayscale within 0..65535 reduced as 16-bit (v >> 8) and copied to RGB")
            a8 = (a >> 8).astype(np.uint8)
        return np.repeat(a8[..., None], 3, axis=2), notes
    if mode == "F":
        a = np.array(im, dtype=np.float64)
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            raise ImageReadError(f"{path}: float image with values outside [0, 1] "
                                 f"({np.nanmin(a):g}..{np.nanmax(a):g}): no documented conversion to 8 bits")
        notes.append("float grayscale in [0, 1] converted by round(v * 255) and copied to RGB")
        return np.repeat(np.round(a * 255.0).astype(np.uint8)[..., None], 3, axis=2), notes
    if _png_bit_depth(path) == 16:
        notes.append("16-bit PNG reduced to 8 bits (v >> 8)")
    if mode in ("L", "1"):
        notes.append(f"grayscale ({mode}) copied to RGB")
    elif mode == "LA":
        notes.append("grayscale+alpha: alpha dropped, gray copied to RGB")
    elif mode == "RGBA":
        notes.append("RGBA: alpha dropped")
    elif mode in ("P", "PA"):
        notes.append("palette image expanded to RGB")
    elif mode != "RGB":
        notes.append(f"{mode} converted to RGB")
    rgb = im.convert("RGBA").convert("RGB") if mode in ("P", "PA") else im.convert("RGB")
    return np.array(rgb, dtype=np.uint8), notes


def _png_bit_depth(path: Path) -> int | None:
    if path.suffix.lower() != ".png":
        return None
    with open(path, "rb") as f:
        head = f.read(25)
    return head[24] if len(head) == 25 and head[12:16] == b"IHDR" else None


@dataclass
class LoadedPair:
    pair: Pair
    degraded: np.ndarray | None = None  # H×W×3 uint8
    clear: np.ndarray | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    sha: str = ""  # sha256 of both files' bytes (detects a file changed in place between runs)


def load_pair(pair: Pair, max_pixels: int | None = None) -> LoadedPair:
    """Read both images of a pair; per-image problems end up in `.error`, never raised."""
    out = LoadedPair(pair)
    try:
        h = hashlib.sha256(pair.degraded.read_bytes())
        if pair.clear is None:
            out.error = f"{pair.degraded}: no clear partner {pair.degraded.parent.parent / CLEAR / pair.name}"
            out.sha = h.hexdigest()[:16]
            return out
        h.update(pair.clear.read_bytes())
        out.sha = h.hexdigest()[:16]
        out.degraded, n1 = read_rgb8(pair.degraded, max_pixels)
        out.clear, n2 = read_rgb8(pair.clear, max_pixels)
        out.notes = [f"degraded: {n}" for n in n1] + [f"clear: {n}" for n in n2]
        if out.degraded.shape != out.clear.shape:
            out.error = (
                f"{pair.degraded}: size {out.degraded.shape[1]}x{out.degraded.shape[0]} differs from its clear "
                f"partner {pair.clear} ({out.clear.shape[1]}x{out.clear.shape[0]})"
            )
    except ImageReadError as e:
        out.error = str(e)
    except OSError as e:
        out.error = f"{pair.degraded}: cannot read ({e})"
    if out.error:
        out.degraded = out.clear = None
    return out


def iter_loaded(pairs: Sequence[Pair], workers: int = 2, prefetch: int = 4,
                max_pixels: int | None = None) -> Iterator[LoadedPair]:
    """Decode pairs in a thread pool, `prefetch` ahead of the consumer, in order (decoding overlaps compute)."""
    if workers <= 0:
        yield from (load_pair(p, max_pixels) for p in pairs)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cdd11-decode") as pool:
        pending = []
        it = iter(pairs)
        for p in it:
            pending.append(pool.submit(load_pair, p, max_pixels))
            if len(pending) > prefetch:
                yield pending.pop(0).result()
        for f in pending:
            yield f.result()
