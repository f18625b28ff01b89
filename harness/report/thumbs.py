"""Thumbnails (JPEG) and full-size image links of the results page, under RUN/report/."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from harness.fileio import replace_atomic
from harness.results import INPUT_METHOD

REPORT_FILE = "report.html"
REPORT_DIR = "report"
THUMBS = "thumbs"
FULL = "full"
INPUT_KEY = "_input"
GT_KEY = "_gt"
THUMB_SIZE = 320
THUMB_QUALITY = 85


def thumb_relpath(key: str, type_: str, file: str) -> str:
    """Thumbnail path relative to the run folder; `key` is <method>-<mode>, INPUT_KEY or GT_KEY."""
    if key == GT_KEY:
        return f"{REPORT_DIR}/{THUMBS}/{GT_KEY}/{file}.jpg"
    return f"{REPORT_DIR}/{THUMBS}/{key}/{type_}/{file}.jpg"


def _full_relpath(key: str, type_: str, file: str) -> str:
    """Path (relative to the run folder) of a full-size Input or GT image linked into the report folder."""
    if key == GT_KEY:
        return f"{REPORT_DIR}/{FULL}/{GT_KEY}/{file}"
    return f"{REPORT_DIR}/{FULL}/{INPUT_KEY}/{type_}/{file}"


def _as_uint8_hwc(image) -> np.ndarray:
    """H×W×3 uint8 from an H×W×3 uint8/float array, or a (1×)3×H×W tensor in [0, 1] (as `harness.metrics`)."""
    if hasattr(image, "detach"):  # a torch tensor: float in [0, 1] (round half up, as harness.metrics) or uint8
        t = image.detach().cpu()
        t = t[0] if t.ndim == 4 else t
        image = t.permute(1, 2, 0).numpy() if t.ndim == 3 and t.shape[0] in (1, 3) else t.numpy()
    a = np.asarray(image)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.dtype != np.uint8:
        a = np.floor(np.clip(a.astype(np.float64), 0, 1) * 255 + 0.5).astype(np.uint8)
    if a.ndim != 3 or a.shape[-1] not in (1, 3):
        raise ValueError(f"expected an H×W×3 image, got shape {np.shape(image)}")
    return np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a


def _write_thumb(im: Image.Image, path: Path) -> Path:
    im = im.convert("RGB")
    im.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomic(path, lambda tmp: im.save(tmp, format="JPEG", quality=THUMB_QUALITY))
    return path


def save_thumbnail(run_dir: Path, method: str, mode: str, type_: str, file: str, image) -> Path:
    """Write the report thumbnail of one scored image (the run calls this for every image it scores).

    `image`: the restored image, H×W×3 uint8 (or a (1×)3×H×W tensor in [0, 1]). The identity method's output
    is the degraded input: it becomes the Input thumbnail (once, whatever the mode). Raises OSError when the
    file cannot be written (the caller keeps the score)."""
    if method == INPUT_METHOD:
        path = Path(run_dir) / thumb_relpath(INPUT_KEY, type_, file)
        if path.exists():
            return path
    else:
        path = Path(run_dir) / thumb_relpath(f"{method}-{mode}", type_, file)
    return _write_thumb(Image.fromarray(_as_uint8_hwc(image)), path)


def _fresh(target: Path, source: Path) -> bool:
    try:
        return target.stat().st_mtime >= source.stat().st_mtime
    except OSError:
        return False


def _thumb_from(source: Path, target: Path, notes: list[str]) -> bool:
    if _fresh(target, source):
        return True
    try:
        with Image.open(source) as im:
            _write_thumb(im, target)
        return True
    except (OSError, ValueError) as e:
        notes.append(f"cannot make a thumbnail of {source}: {type(e).__name__}: {e}")
        return False


def _link(source: Path, target: Path, notes: list[str]) -> bool:
    """Hard-link (or copy) a full-size image into the report folder."""
    if _fresh(target, source):
        return True
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        if target.exists():
            target.unlink()
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
        return True
    except OSError as e:
        notes.append(f"cannot copy {source} into the report: {e}")
        return False
