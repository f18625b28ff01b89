"""The embedded default data set "cdd11-mini": synthetic CDD-11 built from photographs bundled with the
dependencies, generated on first use into the user cache.

Sources (no download: all ship inside scikit-image / matplotlib); train and test use DISJOINT photos:

* **test** split: ``motorcycle_left`` (scikit-image ``stereo_motorcycle``; its real disparity map drives
  the haze depth), ``coffee`` and ``chelsea`` (scikit-image) — chosen for mean brightness close to
  CDD-11's daylight scenes (0.39–0.45), which the calibration depends on;
* **train** split: ``astronaut``, ``rocket`` (scikit-image) and ``grace_hopper`` (matplotlib sample data);
  haze depth from the monocular prior.

Scenes are 2:3 crops (CDD-11's aspect) of a source at several scales and positions, some mirrored,
resized with a bicubic filter (disparity bilinearly):

* ``size="mini"`` (default): 15 test scenes (5 per source: the full frame, its mirror and three crops of
  60–90 % of it) and 48 train scenes (16 per source), each 256×384 (H×W);
* ``size="full"``: the real CDD-11 test-set shape, 200 scenes per split at 720×1080 (H×W) — crops of
  50–100 % of each source **upscaled** to 720×1080 (the sources are 300–512 px tall, so these are
  smoother than real photos of that size: use them for throughput, not for quality numbers); generated
  only when asked (2,400 PNGs, about 2.5 GB, minutes of CPU);
* ``size="tiny"``: one full-frame 64×96 scene per source, for smoke tests.

Every scene is degraded into the 11 types by `harness.data.synth` (default parameters) with
`DEFAULT_SEED`. The cache directory name carries the generator version and a hash of the generator
parameters, the scene list and the seed, so a changed generator never reuses stale data (old versions are
left in place; delete the cache folder to reclaim them).

Bit reproducibility: the generator (see `harness.data.synth`, `harness.data.detmath`) and the resampling
here (Pillow's algorithm, reimplemented in integer / IEEE basic arithmetic) give the same bytes on every
CPU, with any thread count and library version. The expected sha256 of every file of the "mini" splits
(default seed) is committed in ``harness/data/mini_sha256.json`` (package data, written only by
``--write-hashes``); each scene is compared as soon as it is built, and a cached split through its
manifest, and a difference raises `DataMismatchError` naming the first file that differs (and whether
only the PNG encoding differs). ``VLUR_HARNESS_SKIP_DATA_CHECK=1`` (or ``check=False``) turns the check
off; other seeds and sizes are never checked.

API: ``ensure(split="test", *, size="mini", root=None) -> Path`` (see its docstring).
CLI: ``python -m harness.data.mini [--split test] [--size mini]`` builds if needed and prints the split
root; ``--check-hashes`` builds both mini splits afresh and lists every file that differs from the
committed hashes; ``--write-hashes`` rewrites them (deliberate generator changes). The calibration against
the real CDD-11 inputs (``reports/calibration.{md,csv}``) is an experiment: ``python -m experiments.calibration``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from harness import cli
from harness.data import synth
from harness.degradations import CLEAR, TYPES
from harness.fileio import write_text_atomic

#: Seed of the embedded data set.
DEFAULT_SEED = 2024
#: Bump when the scene list / layout logic changes (2: resampling reimplemented, bit-reproducible data).
MINI_VERSION = "2"

TEST_SOURCES: tuple[str, ...] = ("motorcycle_left", "coffee", "chelsea")
TRAIN_SOURCES: tuple[str, ...] = ("astronaut", "rocket", "grace_hopper")
SPLITS: dict[str, tuple[str, ...]] = {"test": TEST_SOURCES, "train": TRAIN_SOURCES}


@dataclass(frozen=True)
class SizeSpec:
    """Scenes per source for each split, output shape (H, W) and the crop-scale range."""

    per_source: dict[str, int]
    shape: tuple[int, int]
    scale: tuple[float, float]


SIZES: dict[str, SizeSpec] = {
    "mini": SizeSpec(per_source={"test": 5, "train": 16}, shape=(256, 384), scale=(0.6, 0.9)),
    # smoke tests: one full-frame scene per source
    "tiny": SizeSpec(per_source={"test": 1, "train": 1}, shape=(64, 96), scale=(0.6, 0.9)),
    # 3 sources: 67 + 67 + 66 = 200 scenes
    "full": SizeSpec(per_source={"test": 67, "train": 67}, shape=(720, 1080), scale=(0.5, 1.0)),
}
FULL_SCENES = 200

MANIFEST = "manifest.json"
ENV_CACHE = "VLUR_HARNESS_CACHE"

#: Committed sha256 of every file of the default splits (size "mini", DEFAULT_SEED, default parameters),
#: shipped as package data; written only by ``python -m harness.data.mini --write-hashes``.
REFERENCE_HASHES = "mini_sha256.json"
#: Set to 1 to skip that check (custom environments: the data may then differ from the committed bytes).
ENV_SKIP_CHECK = "VLUR_HARNESS_SKIP_DATA_CHECK"


class DataMismatchError(RuntimeError):
    """The embedded data set generated here differs from the committed reference hashes."""


# ----------------------------------------------------------------------------------------------------
# sources and scenes


def load_source(name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A bundled photograph as uint8 RGB, with its disparity map (larger = nearer) when it has one.

    Cached; the arrays are read-only.
    """
    img, disp = _load_source(name)
    for a in (img, disp):
        if a is not None:
            a.setflags(write=False)
    return img, disp


@cache
def _load_source(name: str) -> tuple[np.ndarray, np.ndarray | None]:
    import skimage.data

    if name == "motorcycle_left":
        left, _right, disp = skimage.data.stereo_motorcycle()
        return np.ascontiguousarray(left), synth.fill_invalid(disp)
    if name in ("astronaut", "chelsea", "coffee", "rocket"):
        return np.ascontiguousarray(getattr(skimage.data, name)()), None
    if name == "grace_hopper":
        from matplotlib import cbook

        with cbook.get_sample_data("grace_hopper.jpg") as f, Image.open(f) as im:
            return np.asarray(im.convert("RGB")), None
    raise ValueError(f"unknown source photograph {name!r}")


@dataclass(frozen=True)
class SceneSpec:
    """A crop (top, left, height, width in source pixels), optionally mirrored, of a source photo."""

    name: str
    source: str
    top: int
    left: int
    height: int
    width: int
    flip: bool


def _max_crop(h: int, w: int, aspect: float) -> tuple[int, int]:
    """Largest crop of aspect W/H = ``aspect`` inside an h×w image."""
    if w / h >= aspect:
        return h, int(round(h * aspect))
    return int(round(w / aspect)), w


def scene_specs(split: str, size: str = "mini") -> list[SceneSpec]:
    """The deterministic scene list of a split."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; valid: {', '.join(SIZES)}")
    spec = SIZES[size]
    out_h, out_w = spec.shape
    aspect = out_w / out_h
    n_per = spec.per_source[split]
    specs: list[SceneSpec] = []
    idx = 0
    for si, src in enumerate(SPLITS[split]):
        img, _ = load_source(src)
        h, w = img.shape[:2]
        ch, cw = _max_crop(h, w, aspect)
        rng = np.random.default_rng([DEFAULT_SEED, si, sum(map(ord, split + size))])
        n = n_per if not (size == "full" and si == len(SPLITS[split]) - 1) else FULL_SCENES - idx
        for k in range(n):
            if k < 2:  # full frame and its mirror
                s, flip = 1.0, bool(k)
            else:
                s, flip = float(rng.uniform(*spec.scale)), bool(rng.integers(0, 2))
            hh, ww = max(int(round(ch * s)), 8), max(int(round(cw * s)), 8)
            top = int(rng.integers(0, h - hh + 1)) if k >= 2 else (h - hh) // 2
            left = int(rng.integers(0, w - ww + 1)) if k >= 2 else (w - ww) // 2
            idx += 1
            specs.append(SceneSpec(f"{idx:04d}_{src}.png", src, top, left, hh, ww, flip))
    return specs


#: Fractional bits of Pillow's fixed-point 8-bit resampling coefficients (32 − 8 − 2).
_PRECISION_BITS = 22


def _bicubic(x: np.ndarray) -> np.ndarray:
    """Pillow's bicubic kernel (a = −0.5), same operations in the same order."""
    x = np.abs(x)
    near = (1.5 * x - 2.5) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * -0.5
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _bilinear(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


def _coeffs(in_size: int, out_size: int, kernel: Callable[[np.ndarray], np.ndarray],
            support: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pillow's ``precompute_coeffs``: (first source index, tap mask, normalised weights) per output index."""
    scale = filterscale = in_size / out_size
    filterscale = max(filterscale, 1.0)
    support = support * filterscale
    ksize = int(np.ceil(support)) * 2 + 1
    center = (np.arange(out_size) + 0.5) * scale
    ss = 1.0 / filterscale
    xmin = np.maximum(np.trunc(center - support + 0.5), 0.0).astype(np.int64)
    xmax = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size) - xmin
    taps = np.arange(ksize)
    mask = taps[None, :] < xmax[:, None]
    pos = (xmin[:, None] + taps[None, :]).astype(np.float64)
    w = np.where(mask, kernel((pos - center[:, None] + 0.5) * ss), 0.0)
    ww = w[:, 0].copy()
    for t in range(1, ksize):  # sequential, as Pillow
        ww = ww + w[:, t]
    w = w / np.where(ww != 0.0, ww, 1.0)[:, None]
    return xmin, mask, w


def _resample_axis(a: np.ndarray, axis: int, out_size: int, kernel: Callable[[np.ndarray], np.ndarray],
                   support: float) -> np.ndarray:
    """One pass of Pillow's separable convolution resampling along ``axis`` (uint8: fixed point; float32)."""
    in_size = a.shape[axis]
    xmin, mask, w = _coeffs(in_size, out_size, kernel, support)
    src = np.moveaxis(a, axis, 0)
    idx = np.minimum(xmin[:, None] + np.arange(w.shape[1])[None, :], in_size - 1)
    extra = (1,) * (src.ndim - 1)
    if a.dtype == np.uint8:
        kk = np.where(w < 0, -0.5, 0.5) + w * float(1 << _PRECISION_BITS)
        kk = np.trunc(kk).astype(np.int64)
        acc = np.full((out_size, *src.shape[1:]), 1 << (_PRECISION_BITS - 1), np.int64)
        for t in range(w.shape[1]):
            acc += src[idx[:, t]].astype(np.int64) * (kk[:, t] * mask[:, t]).reshape(-1, *extra)
        out = np.clip(acc >> _PRECISION_BITS, 0, 255).astype(np.uint8)
    else:
        acc = np.zeros((out_size, *src.shape[1:]), np.float64)
        for t in range(w.shape[1]):
            m = mask[:, t].reshape(-1, *extra)
            term = src[idx[:, t]].astype(np.float64) * w[:, t].reshape(-1, *extra)
            acc = acc + np.where(m, term, 0.0)
        out = acc.astype(np.float32)
    return np.moveaxis(out, 0, axis)


def _resize(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pillow's ``resize`` reimplemented bit for bit in integer / IEEE basic arithmetic (no dependence on
    the Pillow version or build): uint8 RGB with the bicubic filter, a disparity map (float32) bilinearly
    (returned as float64). Horizontal pass first, then vertical, as Pillow."""
    h, w = shape
    if a.ndim == 3:
        x, kernel, support = np.asarray(a, np.uint8), _bicubic, 2.0
    else:
        x, kernel, support = np.asarray(a, np.float32), _bilinear, 1.0
    if x.shape[1] != w:
        x = _resample_axis(x, 1, w, kernel, support)
    if x.shape[0] != h:
        x = _resample_axis(x, 0, h, kernel, support)
    return x if a.ndim == 3 else x.astype(np.float64)


def render_scene(spec: SceneSpec, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
    """Clean uint8 image (and disparity, if the source has one) of a scene at ``shape`` = (H, W)."""
    img, disp = load_source(spec.source)
    sl = (slice(spec.top, spec.top + spec.height), slice(spec.left, spec.left + spec.width))
    crop = np.ascontiguousarray(img[sl])
    dcrop = None if disp is None else disp[sl]
    if spec.flip:
        crop = np.ascontiguousarray(crop[:, ::-1])
        dcrop = None if dcrop is None else dcrop[:, ::-1]
    crop = _resize(crop, shape)
    if dcrop is not None:
        dcrop = _resize(np.ascontiguousarray(dcrop), shape)
    return crop, dcrop


# ----------------------------------------------------------------------------------------------------
# building and caching


def cache_base() -> Path:
    """$VLUR_HARNESS_CACHE, else $XDG_CACHE_HOME/vlur-harness, else ~/.cache/vlur-harness."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "vlur-harness"


def version_tag(split: str, size: str, params: synth.SynthParams = synth.DEFAULT_PARAMS,
                seed: int = DEFAULT_SEED) -> str:
    """Generator version + hash of (parameters, scene list, shape, seed)."""
    blob = json.dumps(
        {
            "params": params.to_dict(),
            "scenes": [asdict(s) for s in scene_specs(split, size)],
            "shape": SIZES[size].shape,
            "seed": seed,
            "mini": MINI_VERSION,
        },
        sort_keys=True,
        default=str,
    ).encode()
    return f"g{synth.GENERATOR_VERSION}-{hashlib.sha256(blob).hexdigest()[:10]}"


def split_dir(split: str = "test", size: str = "mini", root: Path | None = None) -> Path:
    """Where `ensure` keeps a split: BASE/cdd11-SIZE-VERSION/SPLIT."""
    base = Path(root) if root is not None else cache_base()
    return base / f"cdd11-{size}-{version_tag(split, size)}" / split


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(root: Path, meta: dict) -> dict:
    """Hash every file under ``root`` (except the manifest) into ROOT/manifest.json."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)
    entries = {p.relative_to(root).as_posix(): {"sha256": _sha256(p), "bytes": p.stat().st_size}
               for p in files}
    manifest = {**meta, "files": entries}
    write_text_atomic(root / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def verify(root: Path, mode: str = "hash") -> list[str]:
    """Problems found in a built split (empty list = intact).

    mode "hash" checks every file's SHA-256; "size" only existence and byte counts (fast, for "full").
    """
    root = Path(root)
    mf = root / MANIFEST
    if not mf.is_file():
        return [f"{mf} missing"]
    try:
        manifest = json.loads(mf.read_text())
        files = manifest["files"]
    except (ValueError, KeyError) as e:
        return [f"{mf} unreadable: {e}"]
    problems = []
    for rel, entry in files.items():
        p = root / rel
        if not p.is_file():
            problems.append(f"{rel} missing")
        elif p.stat().st_size != entry["bytes"]:
            problems.append(f"{rel} has {p.stat().st_size} bytes, expected {entry['bytes']}")
        elif mode == "hash" and _sha256(p) != entry["sha256"]:
            problems.append(f"{rel} checksum mismatch")
    n_scenes = manifest.get("scenes")
    for t in (CLEAR, *TYPES):
        listed = sum(1 for rel in files if rel.startswith(t + "/"))
        if n_scenes is not None and listed != n_scenes:
            problems.append(f"manifest lists {listed} files in {t}/, expected {n_scenes}")
        present = sum(1 for p in (root / t).glob("*.png")) if (root / t).is_dir() else 0
        if present != listed:
            problems.append(f"{t}/ holds {present} PNGs, manifest lists {listed}")
    return problems


# ----------------------------------------------------------------------------------------------------
# committed reference hashes


@cache
def reference_hashes() -> dict:
    """The committed reference (``harness/data/mini_sha256.json``): per split, the version tag and, per file
    in build order, its ``sha256`` and, for PNGs, ``pixels`` (sha256 of the decoded RGB, first 16 hex)."""
    from importlib import resources

    return json.loads(resources.files("harness.data").joinpath(REFERENCE_HASHES).read_text())


def check_enabled(check: bool | None = None) -> bool:
    """``check`` if given, else on unless $VLUR_HARNESS_SKIP_DATA_CHECK is set to a true value."""
    if check is not None:
        return bool(check)
    return os.environ.get(ENV_SKIP_CHECK, "").strip().lower() in ("", "0", "false", "no")


def expected_files(split: str, size: str = "mini", seed: int = DEFAULT_SEED) -> dict[str, dict] | None:
    """Committed {relative path: {"sha256", "pixels"}} of a split, in build order; None when the reference
    does not cover (split, size, seed) — custom seeds and sizes are not checked.

    Raises DataMismatchError if the reference was written for another generator version.
    """
    ref = reference_hashes()
    if size != ref.get("size") or seed != ref.get("seed") or split not in ref.get("splits", {}):
        return None
    entry = ref["splits"][split]
    current = version_tag(split, size, seed=seed)
    if entry.get("version") != current:
        raise DataMismatchError(
            f"{REFERENCE_HASHES} holds hashes of cdd11-{size} {split} version {entry.get('version')}, but this "
            f"generator makes version {current}: regenerate the reference with "
            "`python -m harness.data.mini --write-hashes` (and commit it) after a deliberate change")
    return entry["files"]


def pixel_digest(path: Path) -> str:
    """sha256 (first 16 hex) of a PNG's decoded RGB pixels and shape: independent of the PNG encoder."""
    with Image.open(path) as im:
        a = np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))
    return hashlib.sha256(f"{a.shape}".encode() + a.tobytes()).hexdigest()[:16]


def _environment() -> str:
    import platform

    import PIL
    import scipy
    from PIL import features

    return (f"numpy {np.__version__}, scipy {scipy.__version__}, Pillow {PIL.__version__} "
            f"(zlib {features.version('zlib')}), {platform.machine()} {platform.processor() or ''}").strip()


def _mismatch(split: str, size: str, rel: str, got: str, entry: dict, root: Path, n_bad: int, note: str) -> str:
    p = root / rel
    if "pixels" in entry and p.suffix == ".png" and p.is_file():
        same = pixel_digest(p) == entry["pixels"]
        if same:
            what = "its decoded pixels are identical: the PNG encoder (Pillow / zlib) writes other bytes"
        elif rel.startswith(CLEAR + "/"):
            what = ("its pixels differ: the clean scene differs (the source photograph decodes differently here, "
                    "e.g. another JPEG decoder or scikit-image data version)")
        else:
            what = "its pixels differ: the generator does not reproduce the embedded data set bit for bit here"
    else:
        what = "the file differs"
    more = f" ({n_bad} of the files checked differ)" if n_bad > 1 else ""
    return (f"cdd11-{size} {split}: {rel}{note} differs from the committed reference "
            f"harness/data/{REFERENCE_HASHES}{more}: "
            f"sha256 {got[:16]}…, expected {entry['sha256'][:16]}…; {what}. Environment: {_environment()}. "
            "Please report it with the output of `python -m harness.data.mini --check-hashes`; to use the data "
            f"anyway, set {ENV_SKIP_CHECK}=1 (scores are then not comparable bit for bit with reports/).")


def scene_files(name: str) -> list[str]:
    """Relative paths of one scene's files in build order: clear/NAME, then each type."""
    return [f"{t}/{name}" for t in (CLEAR, *TYPES)]


def reference_mismatches(root: Path, split: str, size: str = "mini", seed: int = DEFAULT_SEED, *,
                         files: Sequence[str] | None = None,
                         hashes: dict[str, str] | None = None) -> list[tuple[str, str]] | None:
    """(relative path, sha256 found or "") of every file under ``root`` that differs from the committed
    reference, in build order; None when the reference does not cover (split, size, seed).

    files: relative paths to compare (default: every file of the reference, scenes.json included);
    hashes: {relative path: sha256} already computed (e.g. from the split's manifest), else files are hashed.
    """
    expected = expected_files(split, size, seed)
    if expected is None:
        return None
    root = Path(root)
    rels = list(expected) if files is None else list(files)
    unknown = [r for r in rels if r not in expected]
    if unknown:
        raise DataMismatchError(f"cdd11-{size} {split}: {unknown[0]} is not in the committed reference "
                                f"{REFERENCE_HASHES}")
    bad: list[tuple[str, str]] = []
    for rel in rels:
        if hashes is not None:
            got = hashes.get(rel, "")
        else:
            got = _sha256(root / rel) if (root / rel).is_file() else ""
        if got != expected[rel]["sha256"]:
            bad.append((rel, got))
    return bad


def check_reference(root: Path, split: str, size: str = "mini", seed: int = DEFAULT_SEED, *,
                    files: Sequence[str] | None = None, hashes: dict[str, str] | None = None,
                    note: str = "") -> None:
    """Raise DataMismatchError naming the first file under ``root`` (in build order) that differs from the
    committed reference (see `reference_mismatches`); a no-op when the reference does not cover
    (split, size, seed). note: appended to the file name in the message."""
    bad = reference_mismatches(root, split, size, seed, files=files, hashes=hashes)
    if bad:
        rel, got = bad[0]
        entry = expected_files(split, size, seed)[rel]
        raise DataMismatchError(_mismatch(split, size, rel, got or "(missing)", entry, Path(root), len(bad), note))


def write_reference(path: Path | None = None, *, workers: int = 1) -> Path:
    """Build the default splits afresh (no check) and write their hashes to ``path`` (default: the package's
    ``harness/data/mini_sha256.json``). Only for a deliberate change of the generator or the scene list."""
    path = Path(path) if path is not None else Path(__file__).with_name(REFERENCE_HASHES)
    splits = {}
    for split in SPLITS:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            build(split, "mini", root, workers=workers, check=False)
            files: dict[str, dict] = {}
            for spec in scene_specs(split, "mini"):
                for rel in scene_files(spec.name):
                    files[rel] = {"sha256": _sha256(root / rel), "pixels": pixel_digest(root / rel)}
            files["scenes.json"] = {"sha256": _sha256(root / "scenes.json")}
            splits[split] = {"version": version_tag(split, "mini"), "files": files}
    ref = {
        "about": "sha256 of every file of the embedded cdd11-mini splits (default seed, size and parameters) "
                 "and of each PNG's decoded RGB pixels (`pixels`); checked on every build; written by "
                 "`python -m harness.data.mini --write-hashes`",
        "dataset": "cdd11-mini", "size": "mini", "seed": DEFAULT_SEED,
        "generator": synth.GENERATOR_VERSION, "params": synth.DEFAULT_PARAMS.digest(),
        "written_with": _environment(),
        "splits": splits,
    }
    path.write_text(json.dumps(ref, indent=1) + "\n")
    reference_hashes.cache_clear()
    return path


# ----------------------------------------------------------------------------------------------------
# building


def _build_one(args: tuple[SceneSpec, tuple[int, int], str, int]) -> str:
    spec, shape, out, seed = args
    clean, disp = render_scene(spec, shape)
    synth.write_scene(Path(out), spec.name, clean, seed, disparity=disp)
    return spec.name


def build(split: str, size: str, out: Path, *, seed: int = DEFAULT_SEED, workers: int = 1,
          specs: Sequence[SceneSpec] | None = None,
          progress: Callable[[int, int, str], None] | None = None, check: bool | None = None) -> dict:
    """Generate a split into ``out`` (no caching logic) and write its manifest.

    check: compare every scene, as soon as it is written, with the committed reference hashes (default seed
    and "mini" size only; the scenes of ``specs`` must come from the default list) and raise
    DataMismatchError naming the first file that differs; None = on unless $VLUR_HARNESS_SKIP_DATA_CHECK.
    """
    default_specs = scene_specs(split, size)
    specs = list(default_specs if specs is None else specs)
    shape = SIZES[size].shape
    out = Path(out)
    checking = check_enabled(check) and expected_files(split, size, seed) is not None
    if checking and any(s not in default_specs for s in specs):
        raise ValueError("check=True needs scenes of the default scene list (pass check=False for others)")
    for t in (CLEAR, *TYPES):
        (out / t).mkdir(parents=True, exist_ok=True)
    jobs = [(s, shape, str(out), seed) for s in specs]

    def done(i: int, name: str) -> None:
        if checking:
            check_reference(out, split, size, seed, files=scene_files(name))
        if progress:
            progress(i + 1, len(jobs), name)

    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        ex = ProcessPoolExecutor(workers)
        try:
            for i, n in enumerate(ex.map(_build_one, jobs)):
                done(i, n)
        finally:
            ex.shutdown(wait=True, cancel_futures=True)
    else:
        for i, job in enumerate(jobs):
            done(i, _build_one(job))
    (out / "scenes.json").write_text(json.dumps([asdict(s) for s in specs], indent=1))
    if checking and specs == default_specs:
        check_reference(out, split, size, seed, files=["scenes.json"])
    meta = {"dataset": f"cdd11-{size}", "split": split, "size": size, "seed": seed,
            "shape": list(shape), "scenes": len(specs), "version": version_tag(split, size, seed=seed),
            "sources": list(SPLITS[split])}
    return write_manifest(out, meta)


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Exclusive inter-process lock (POSIX flock; elsewhere only the atomic rename protects)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def ensure(split: str = "test", *, size: str = "mini", root: Path | None = None,
           verify_mode: str | None = None, workers: int | None = None, quiet: bool = True,
           check: bool | None = None) -> Path:
    """Return the root of a generated split (holding clear/ and the 11 type folders), building it if needed.

    split: "test" or "train"; size: "mini" (default, seconds), "full" (200 scenes at 720×1080, minutes) or
    "tiny" (one 64×96 scene per source, for smoke tests).
    root: base directory instead of the cache ($VLUR_HARNESS_CACHE, default ~/.cache/vlur-harness); the
    split lives in ROOT/cdd11-SIZE-VERSION/SPLIT. On every call the manifest is verified (SHA-256 of every
    file for "mini" and "tiny", sizes only for "full" unless verify_mode="hash"); a missing, partial or corrupted
    split is rebuilt in a temporary directory next to it and swapped in by rename, under a lock file, so
    concurrent processes never see or produce a half-written split.
    check: the "mini" splits are compared with the committed reference hashes (`REFERENCE_HASHES`) while
    they are built, and a cached one through its manifest on every call; a difference raises
    DataMismatchError naming the first file that differs. None = on unless $VLUR_HARNESS_SKIP_DATA_CHECK.
    """
    final = split_dir(split, size, root)
    mode = verify_mode or ("size" if size == "full" else "hash")

    def usable() -> bool:
        if not final.is_dir() or verify(final, mode):
            return False
        if check_enabled(check) and expected_files(split, size) is not None:
            files = json.loads((final / MANIFEST).read_text())["files"]
            check_reference(final, split, size, hashes={k: v["sha256"] for k, v in files.items()},
                            note=f" (cached split {final}: delete it to rebuild)")
        return True

    if usable():
        return final
    parent = final.parent
    with _locked(parent.parent / f".{parent.name}-{split}.lock"):
        if usable():  # built meanwhile by another process
            return final
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{split}-build-", dir=parent))
        try:
            n_workers = workers if workers is not None else (1 if size == "mini" else min(4, os.cpu_count() or 1))
            t0 = time.perf_counter()

            def report(i: int, n: int, name: str) -> None:
                if not quiet:
                    print(f"\r[cdd11-{size} {split}] {i}/{n} scenes  {time.perf_counter() - t0:.0f}s",
                          end="" if i < n else "\n", file=sys.stderr, flush=True)

            build(split, size, tmp, workers=n_workers, progress=report, check=check)
            if final.exists():
                trash = Path(tempfile.mkdtemp(prefix=f".{split}-stale-", dir=parent))
                os.replace(final, trash / "old")
                shutil.rmtree(trash, ignore_errors=True)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def _check_hashes_cli(workers: int) -> int:
    print(f"environment: {_environment()}")
    n_bad = 0
    for split in SPLITS:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            build(split, "mini", Path(tmp), workers=workers, check=False)
            bad = reference_mismatches(Path(tmp), split) or []
            expected = expected_files(split, "mini") or {}
            n_bad += len(bad)
            print(f"cdd11-mini {split}: {len(expected) - len(bad)}/{len(expected)} files match the committed "
                  f"hashes (built in {time.perf_counter() - t0:.1f} s)")
            for rel, got in bad[:20]:
                entry = expected[rel]
                pix = ""
                if "pixels" in entry and (Path(tmp) / rel).is_file():
                    pix = "pixels identical" if pixel_digest(Path(tmp) / rel) == entry["pixels"] else "pixels differ"
                print(f"  {rel}: sha256 {got[:16] or '(missing)'} expected {entry['sha256'][:16]} {pix}")
            if len(bad) > 20:
                print(f"  … and {len(bad) - 20} more")
    return 1 if n_bad else 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.data.mini", description=cli.description(__doc__),
                                 formatter_class=cli.Formatter)
    ap.add_argument("--split", default="test", choices=sorted(SPLITS))
    ap.add_argument("--size", default="mini", choices=sorted(SIZES))
    ap.add_argument("--root", type=Path, default=None, help="base directory instead of the user cache")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--check-hashes", action="store_true",
                    help=f"build both mini splits afresh in a temporary folder and list every file that differs "
                         f"from the committed {REFERENCE_HASHES} (exit 1 if any)")
    ap.add_argument("--write-hashes", action="store_true",
                    help=f"rebuild both mini splits and rewrite harness/data/{REFERENCE_HASHES} (after a deliberate "
                         "change of the generator; commit the result)")
    a = ap.parse_args(argv)
    if a.write_hashes:
        print(f"wrote {write_reference(workers=a.workers or 1)}")
        return 0
    if a.check_hashes:
        return _check_hashes_cli(a.workers or 1)
    print(ensure(a.split, size=a.size, root=a.root, workers=a.workers, quiet=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
