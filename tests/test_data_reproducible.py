"""Bit reproducibility of the embedded cdd11-mini data set: committed hashes, CPU / thread switches, and a
guard against the CPU-dependent numerics that made generator v1 differ from one machine to another."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.data import detmath, mini, synth
from harness.degradations import TYPES

ROOT = Path(__file__).resolve().parents[1]

#: A few scenes, every type of each: the motorcycle (real disparity) full frame, a mirrored crop of coffee,
#: and a crop of a JPEG train source (monocular depth prior).
SCENES = {"test": ("0001_motorcycle_left.png", "0009_coffee.png"), "train": ("0040_grace_hopper.png",)}


def _specs(split: str, names: tuple[str, ...]) -> list[mini.SceneSpec]:
    specs = [s for s in mini.scene_specs(split, "mini") if s.name in names]
    assert [s.name for s in specs] == list(names)
    return specs


def _float_digests(split: str, name: str) -> dict[str, str]:
    """sha256 of the float64 output of every type before the 8-bit quantisation: shows last-bit changes
    that the PNG bytes may hide."""
    spec = _specs(split, (name,))[0]
    clean, disp = mini.render_scene(spec, mini.SIZES["mini"].shape)
    scene = synth.Scene.from_image(clean, disp)
    out = {"clean": hashlib.sha256(clean.tobytes()).hexdigest()[:16]}
    for t in TYPES:
        x = synth.degrade_float(scene, t, mini.DEFAULT_SEED, name)
        out[t] = hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()[:16]
    return out


# ----------------------------------------------------------------------------------------------------
# the committed reference


def test_reference_covers_the_default_splits():
    ref = mini.reference_hashes()
    assert ref["size"] == "mini" and ref["seed"] == mini.DEFAULT_SEED
    assert ref["generator"] == synth.GENERATOR_VERSION and ref["params"] == synth.DEFAULT_PARAMS.digest()
    for split in mini.SPLITS:
        files = mini.expected_files(split)  # raises if written for another version
        assert files is not None
        want = [rel for s in mini.scene_specs(split, "mini") for rel in mini.scene_files(s.name)]
        assert list(files) == [*want, "scenes.json"]
        assert all(len(e["sha256"]) == 64 for e in files.values())
        assert all(len(files[r]["pixels"]) == 16 for r in want)
    assert mini.expected_files("test", "tiny") is None and mini.expected_files("test", "mini", seed=7) is None
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"data/*.json"' in pyproject  # shipped as package data


def test_few_scenes_of_each_type_match_committed_hashes(tmp_path):
    for split, names in SCENES.items():
        out = tmp_path / split
        mini.build(split, "mini", out, specs=_specs(split, names), check=True)  # raises on the first mismatch
        rels = [r for n in names for r in mini.scene_files(n)]
        assert mini.reference_mismatches(out, split, files=rels) == []
        expected = mini.expected_files(split)
        assert all(mini.pixel_digest(out / r) == expected[r]["pixels"] for r in rels)


def test_mismatch_is_an_error_naming_the_first_file(tmp_path, monkeypatch):
    monkeypatch.delenv(mini.ENV_SKIP_CHECK, raising=False)
    real = tmp_path / "real"
    mini.build("test", "tiny", real, check=False)
    files = {rel: {"sha256": mini._sha256(real / rel), "pixels": mini.pixel_digest(real / rel)}
             for s in mini.scene_specs("test", "tiny") for rel in mini.scene_files(s.name)}
    files["scenes.json"] = {"sha256": mini._sha256(real / "scenes.json")}
    victim, later = "rain/0002_coffee.png", "snow/0003_chelsea.png"
    for rel in (victim, later):
        files[rel] = {**files[rel], "sha256": "0" * 64}  # same pixels, other bytes: an encoder difference
    ref = {"size": "tiny", "seed": mini.DEFAULT_SEED,
           "splits": {"test": {"version": mini.version_tag("test", "tiny"), "files": files}}}
    monkeypatch.setattr(mini, "reference_hashes", lambda: ref)

    with pytest.raises(mini.DataMismatchError) as err:
        mini.ensure("test", size="tiny", root=tmp_path / "cache")
    msg = str(err.value)
    assert victim in msg and later not in msg and "pixels are identical" in msg and mini.ENV_SKIP_CHECK in msg
    final = mini.split_dir("test", "tiny", tmp_path / "cache")
    assert not final.exists() and not [p for p in final.parent.iterdir() if p.name.startswith(".")]

    files[victim] = {**files[victim], "pixels": "0" * 16}
    with pytest.raises(mini.DataMismatchError, match="pixels differ"):
        mini.check_reference(real, "test", "tiny")

    monkeypatch.setenv(mini.ENV_SKIP_CHECK, "1")  # custom use: accepted, and cached
    assert mini.ensure("test", size="tiny", root=tmp_path / "cache") == final
    monkeypatch.delenv(mini.ENV_SKIP_CHECK)
    with pytest.raises(mini.DataMismatchError, match="cached split"):  # the cached copy is checked too
        mini.ensure("test", size="tiny", root=tmp_path / "cache")
    assert mini.ensure("test", size="tiny", root=tmp_path / "cache", check=False) == final

    ref["splits"]["test"]["version"] = "g0-stale"
    with pytest.raises(mini.DataMismatchError, match="--write-hashes"):
        mini.expected_files("test", "tiny")


# ----------------------------------------------------------------------------------------------------
# CPU features and threads, in subprocesses


_CHILD = r"""
import hashlib, json, sys, tempfile
from pathlib import Path
import numpy as np
try:
    from numpy._core._multiarray_umath import __cpu_features__ as feats
except ImportError:  # numpy 1.x
    from numpy.core._multiarray_umath import __cpu_features__ as feats
sys.path.insert(0, sys.argv[1])
from test_data_reproducible import SCENES, _float_digests, _specs
from harness.data import mini

split, name, workers = sys.argv[2], sys.argv[3], int(sys.argv[4])
with tempfile.TemporaryDirectory() as tmp:
    mini.build(split, "mini", Path(tmp), specs=_specs(split, (name,)), workers=workers, check=False)
    png = {r: mini._sha256(Path(tmp) / r) for r in mini.scene_files(name)}
print(json.dumps({"on": sorted(k for k, v in feats.items() if v), "float": _float_digests(split, name), "png": png}))
"""


def _simd_switches() -> tuple[str, list[str]]:
    """NPY_DISABLE_CPU_FEATURES value switching off every run-time dispatched SIMD target this NumPy uses here
    (X86_V3 / X86_V4 / AVX512_* on NumPy 2.4; AVX2, FMA3, AVX512F, AVX512_SKX… on older ones)."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # numpy 1.x
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    off = [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]
    return " ".join(off), off


def _run_child(env_extra: dict[str, str], split: str, name: str, workers: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NPY_", "OPENBLAS_", "OMP_", "MKL_"))}
    env.update(env_extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(Path(__file__).parent), split, name, str(workers)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


SWITCHES = {
    # every dispatched SIMD path of NumPy off, OpenBLAS forced to an old kernel, one thread everywhere
    "no-simd-1-thread": ({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                          "ATEN_CPU_CAPABILITY": "default"}, 1),
    # defaults, 2 threads and a process pool of 2 workers
    "2-threads-2-workers": ({"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}, 2),
}


@pytest.mark.parametrize("switch", sorted(SWITCHES))
def test_same_bits_under_cpu_feature_and_thread_switches(switch):
    env, workers = dict(SWITCHES[switch][0]), SWITCHES[switch][1]
    disabled: list[str] = []
    if switch.startswith("no-simd"):
        value, disabled = _simd_switches()
        if value:
            env["NPY_DISABLE_CPU_FEATURES"] = value
        if platform.machine().lower() in ("x86_64", "amd64"):
            env["OPENBLAS_CORETYPE"] = "Nehalem"
    split, name = "test", SCENES["test"][0]
    child = _run_child(env, split, name, workers)
    assert not set(disabled) & set(child["on"]), "NPY_DISABLE_CPU_FEATURES was not honoured"
    # last bits of the float results: identical to this process (default CPU paths)
    assert child["float"] == _float_digests(split, name)
    # the PNG files: identical to the committed reference
    expected = mini.expected_files(split)
    bad = [r for r, h in child["png"].items() if h != expected[r]["sha256"]]
    assert not bad, f"{switch}: {bad[0]} differs from the committed hash ({len(bad)} files)"


# ----------------------------------------------------------------------------------------------------
# the numerics


#: NumPy / math / SciPy calls whose last bits depend on the CPU's SIMD path, BLAS kernel, FFT, libm or the
#: library version (see `harness.data.detmath`); the generator must not use them.
FORBIDDEN_ATTRS = {
    "np": {"exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "power", "float_power", "sin", "cos", "tan",
           "arctan2", "hypot", "sinh", "cosh", "tanh", "matmul", "dot", "vdot", "inner", "einsum", "tensordot",
           "linspace", "sum", "mean", "std", "var", "convolve", "correlate", "fft"},
    "math": {"exp", "log", "pow", "sin", "cos", "tan", "hypot", "atan2"},
    "ndimage": {"gaussian_filter", "gaussian_filter1d", "uniform_filter", "convolve", "correlate", "zoom"},
    "rng": {"uniform", "normal", "standard_normal", "poisson", "exponential", "gamma", "binomial"},
}
FORBIDDEN_METHODS = {"sum", "mean", "std", "var", "dot", "prod"}
FORBIDDEN_MODULES = {"signal", "fft", "scipy.signal", "scipy.fft", "numpy.fft"}


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Pow, ast.MatMult)):
            found.append(f"{where}: operator {type(node.op).__name__} (use detmath.power / explicit sums)")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            attr, owner = node.func.attr, node.func.value
            if isinstance(owner, ast.Name) and attr in FORBIDDEN_ATTRS.get(owner.id, ()):
                found.append(f"{where}: {owner.id}.{attr}")
            elif attr in FORBIDDEN_METHODS and not (isinstance(owner, ast.Name) and owner.id in ("np", "math")):
                found.append(f"{where}: .{attr}() reduction")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{where}: import {n}" for n in names if n in FORBIDDEN_MODULES]
    return found


def test_generator_uses_no_cpu_dependent_numerics():
    src = Path(synth.__file__).parent
    found = _violations(src / "synth.py") + _violations(src / "detmath.py")
    assert not found, found


def test_detmath_accuracy_and_edge_cases():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-700, 700, 20000), rng.uniform(-3, 3, 20000)])
    assert np.max(np.abs(detmath.exp(x) / np.exp(x) - 1)) < 1e-15
    assert detmath.exp(np.array([-800.0, 0.0, 800.0, np.nan])).tolist()[:3] == [0.0, 1.0, np.inf]
    y = np.exp(rng.uniform(-700, 700, 20000))
    assert np.max(np.abs(detmath.log(y) - np.log(y))) < 2e-15 * 700
    assert detmath.log(np.array([0.0, 1.0, 5e-324]))[:2].tolist() == [-np.inf, 0.0]
    assert abs(float(detmath.log(np.array([5e-324]))[0]) - np.log(5e-324)) < 1e-12
    z = rng.uniform(0, 1, 20000)
    for g in (0.75, 2.37):
        assert np.max(np.abs(detmath.power(z, g) / z**g - 1)) < 1e-14
    assert detmath.power(np.array([0.0, 1.0]), 2.5).tolist() == [0.0, 1.0]
    t = rng.uniform(-2, 2, 20000)
    s, c = detmath.sincos_turns(t)
    assert np.max(np.abs(s - np.sin(2 * np.pi * t))) < 1e-14 and np.max(np.abs(c - np.cos(2 * np.pi * t))) < 1e-14
    n = detmath.standard_normal(np.random.default_rng(1), 200001)
    assert abs(n.mean()) < 0.01 and abs(n.std() - 1) < 0.01 and abs((n**4).mean() - 3) < 0.05
    from scipy import ndimage, signal

    a = rng.random((30, 40))
    for mode in ("reflect", "constant"):
        assert np.allclose(detmath.gaussian_filter(a, 1.3, mode), ndimage.gaussian_filter(a, 1.3, mode=mode),
                           atol=1e-14)
    k = rng.random((5, 7))
    assert np.allclose(detmath.convolve_full(a, k), signal.convolve(a, k), atol=1e-12)


def test_resize_equals_pillow():
    from PIL import Image

    rng = np.random.default_rng(0)
    for (ih, iw), (oh, ow) in [((37, 53), (64, 96)), ((300, 451), (17, 9)), ((64, 96), (64, 50))]:
        a = rng.integers(0, 256, (ih, iw, 3), dtype=np.uint8)
        ref = np.asarray(Image.fromarray(a, "RGB").resize((ow, oh), Image.Resampling.BICUBIC))
        assert np.array_equal(mini._resize(a, (oh, ow)), ref)
        f = rng.normal(0, 50, (ih, iw)).astype(np.float32)
        ref_f = np.asarray(Image.fromarray(f, "F").resize((ow, oh), Image.Resampling.BILINEAR), np.float64)
        assert np.array_equal(mini._resize(f, (oh, ow)), ref_f)
