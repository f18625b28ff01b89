"""A folder of already restored images as a method: ``outputs:NAME=DIR``.

Authors publish restored test images when their code cannot be run (the OneRestore release has one folder
per compared method); `harness.run --save-images` writes the same layout. ``DIR/<type>/<file>`` is matched
to the data set's ``<type>/<name>`` by file stem, whatever the extension (PNG in the releases), or by the
whole name (``a.jpg.png``) when two inputs of a type share a stem. The images are scored exactly like a
model's output:

* an 8-bit image is scored as stored (no re-quantisation can change it);
* a 16-bit image (PNG mode I;16) is converted to 8 bits by round(v / 257) (the nearest 8-bit level) and a
  float TIFF (mode F) by round(clip(v, 0, 1) · 255); the record's notes say which;
* any other mode is converted to RGB as the reader does (grayscale copied, alpha dropped) and noted;
* a missing output is a failed record naming the expected file; an output whose size differs from its
  ground truth is a failed record giving both sizes. Files that match no image are listed by
  `extra_files`, never scored.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from harness.data.cdd11 import IMAGE_EXTENSIONS, LoadedPair

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class OutputsSpecError(ValueError):
    """An ``outputs:NAME=DIR`` method spec that cannot be used."""


def parse_outputs_spec(spec: str) -> tuple[str, Path]:
    """``outputs:NAME=DIR`` → (NAME, DIR); the folder must exist."""
    body = spec.removeprefix("outputs:")
    name, sep, folder = body.partition("=")
    if not sep or not name or not folder:
        raise OutputsSpecError(f"{spec!r}: write a folder of restored images as outputs:NAME=DIR")
    if not NAME_RE.match(name):
        raise OutputsSpecError(f"{spec!r}: NAME may use letters, digits and . _ + - (got {name!r})")
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise OutputsSpecError(f"{spec!r}: {path} is not a folder (expected DIR/<type>/<image>)")
    return name, path


def read_output(path: Path) -> tuple[np.ndarray, list[str]]:
    """Decode a restored image to H×W×3 uint8 by the module's rules; returns (array, notes)."""
    notes: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                a = np.array(im).astype(np.float64)
                if mode == "I" and a.max() <= 255:
                    a8 = a.astype(np.uint8)
                else:
                    a8 = np.clip(np.round(a / 257.0), 0, 255).astype(np.uint8)
                    notes.append(f"16-bit output ({mode}) converted to 8 bits by round(v / 257)")
                return np.repeat(a8[..., None], 3, axis=2), notes
            if mode == "F":
                a = np.array(im, dtype=np.float64)
                a8 = np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)
                notes.append("float output converted to 8 bits by round(clip(v, 0, 1) * 255)")
                return np.repeat(a8[..., None], 3, axis=2), notes
            if _png_16bit_rgb(path):
                raise ValueError("16-bit RGB PNG: save restored images as 8-bit PNG (the release format)")
            if mode != "RGB":
                notes.append(f"{mode} output converted to RGB")
            rgb = im.convert("RGBA").convert("RGB") if mode in ("P", "PA") else im.convert("RGB")
            return np.array(rgb, dtype=np.uint8), notes


def _png_16bit_rgb(path: Path) -> bool:
    if path.suffix.lower() != ".png":
        return False
    with open(path, "rb") as f:
        head = f.read(26)
    return len(head) >= 26 and head[12:16] == b"IHDR" and head[24] == 16 and head[25] in (2, 6)


class OutputsMethod:
    """Restored images read from `folder` instead of computed (see the module doc)."""

    weights_label = "released outputs"

    def __init__(self, name: str, folder: Path):
        self.name = name
        self.folder = Path(folder)
        self._index: dict[str, dict[str, list[Path]]] = {}

    def _files(self, type_name: str) -> dict[str, list[Path]]:
        if type_name not in self._index:
            by: dict[str, list[Path]] = {}
            d = self.folder / type_name
            if d.is_dir():
                for p in sorted(d.iterdir()):
                    if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."):
                        by.setdefault(p.stem, []).append(p)
            self._index[type_name] = by
        return self._index[type_name]

    def find(self, type_name: str, name: str) -> Path:
        """The output file of the data set's `type_name/name`; raises FileNotFoundError naming what was expected."""
        files = self._files(type_name)
        whole = files.get(name)  # NAME.png for a.jpg when stems clash (harness.run --save-images)
        if whole:
            return whole[0]
        found = files.get(Path(name).stem, [])
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise FileNotFoundError(f"{self.name}: several outputs match {type_name}/{name}: "
                                    f"{', '.join(p.name for p in found)}")
        raise FileNotFoundError(f"{self.name}: missing output {self.folder / type_name / Path(name).stem}.png "
                                f"(any image extension) for {type_name}/{name}")

    def produce(self, lp: LoadedPair):
        path = self.find(lp.pair.type, lp.pair.name)
        out, notes = read_output(path)
        if out.shape != lp.clear.shape:
            raise ValueError(f"output {path} is {out.shape[1]}x{out.shape[0]} but its ground truth "
                             f"{lp.pair.clear} is {lp.clear.shape[1]}x{lp.clear.shape[0]}")
        return out, None, [f"output: {n}" for n in notes]

    def extra_files(self, keys: set[tuple[str, str]]) -> list[Path]:
        """Files under the folder that match no (type, name) of `keys` (listed, not scored)."""
        wanted: dict[str, set[str]] = {}
        for t, n in keys:
            wanted.setdefault(t, set()).update({Path(n).stem, n})
        extra = []
        for d in sorted(p for p in self.folder.iterdir() if p.is_dir()):
            for stem, paths in self._files(d.name).items():
                if stem not in wanted.get(d.name, set()):
                    extra += paths
        return extra
