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
=============================================  ===========================================================

Conversion rules (every image becomes 8-bit RGB, H×W×3 uint8; each conversion is noted in the record):

* grayscale (L, I;16, LA): the gray value is copied to R, G and B;
* RGBA / LA: the alpha channel is dropped (colour values used as stored, no compositing);
* palette (P): expanded through its palette (transparency dropped as above);
* 16-bit PNG: reduced to 8 bits by keeping the high byte (``v >> 8``) — Pillow's own rule for 16-bit RGB,
  applied to 16-bit grayscale as well so every 16-bit file follows one rule;
* CMYK, YCbCr and other modes: Pillow's conversion to RGB.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from harness.cdd11 import CLEAR, TYPES

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})


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

    def summary(self) -> str:
        parts = [f"{t}: {self.counts[t]}" for t in self.types]
        text = f"{self.root}: {len(self.pairs)} images ({', '.join(parts)})"
        if self.skipped_types:
            text += f"; no folder for {', '.join(self.skipped_types)}"
        if self.ignored:
            text += f"; ignored {len(self.ignored)} non-image file(s), e.g. {self.ignored[0]}"
        return text


def _image_files(folder: Path, ignored: list[Path]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
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
    clear_files = _image_files(clear_dir, ignored)
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
        files = _image_files(folder, ignored)
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
    s = Scan(root, tuple(present), pairs, counts, skipped, ignored)
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


def read_rgb8(path: Path) -> tuple[np.ndarray, list[str]]:
    """Decode `path` to H×W×3 uint8 following the module's conversion rules; returns (array, notes)."""
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                mode = im.mode
                if mode in ("I;16", "I;16B", "I;16L", "I"):
                    a = np.array(im).astype(np.uint32)
                    a = (a >> 8).astype(np.uint8) if mode != "I" or a.max() > 255 else a.astype(np.uint8)
                    notes.append(f"16-bit grayscale ({mode}) reduced to 8 bits (v >> 8) and copied to RGB")
                    return np.repeat(a[..., None], 3, axis=2), notes
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
                a = np.array(rgb, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as e:
        raise ImageReadError(f"{path}: cannot decode image ({type(e).__name__}: {e})") from None
    if a.ndim != 3 or a.shape[2] != 3 or min(a.shape[:2]) == 0:
        raise ImageReadError(f"{path}: decoded to unexpected shape {a.shape}")
    return a, notes


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


def load_pair(pair: Pair) -> LoadedPair:
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
        out.degraded, n1 = read_rgb8(pair.degraded)
        out.clear, n2 = read_rgb8(pair.clear)
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


def iter_loaded(pairs: Sequence[Pair], workers: int = 2, prefetch: int = 4) -> Iterator[LoadedPair]:
    """Decode pairs in a thread pool, `prefetch` ahead of the consumer, in order (decoding overlaps compute)."""
    if workers <= 0:
        yield from (load_pair(p) for p in pairs)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cdd11-decode") as pool:
        pending = []
        it = iter(pairs)
        for p in it:
            pending.append(pool.submit(load_pair, p))
            if len(pending) > prefetch:
                yield pending.pop(0).result()
        for f in pending:
            yield f.result()
