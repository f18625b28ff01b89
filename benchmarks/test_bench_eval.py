"""End-to-end scoring throughput on full-size (1080×720) pairs: pairs per second of the harness's evaluation
path (decode + metrics + records; the identity method and a folder of released outputs) against the official
script's approach (decode each pair, skimage PSNR and 7×7 SSIM, one after the other).

Run with `nox -s bench` (or `pytest benchmarks/test_bench_eval.py --benchmark-only -o addopts=`). The pairs per
second are in each benchmark's `extra_info`; the README quotes them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

H, W, N = 720, 1080, 8
TYPES = ("haze", "rain")


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    """A CDD-11 layout of N full-size pairs per type, plus the same images as a release-shaped outputs folder."""
    root = tmp_path_factory.mktemp("bench-eval")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:H, 0:W]
    (root / "data" / "clear").mkdir(parents=True)
    for t in TYPES:
        (root / "data" / t).mkdir(parents=True)
        (root / "outputs" / t).mkdir(parents=True)
    for i in range(N):
        base = ((np.sin(xx / (40 + i)) + np.cos(yy / 55)) * 60 + 128)[..., None] + rng.normal(0, 8, (H, W, 3))
        clear = np.clip(base, 0, 255).astype(np.uint8)
        Image.fromarray(clear).save(root / "data" / "clear" / f"{i:04d}.png")
        for t in TYPES:
            deg = np.clip(clear * 0.7 + 40 + rng.normal(0, 6, clear.shape), 0, 255).astype(np.uint8)
            Image.fromarray(deg).save(root / "data" / t / f"{i:04d}.png")
            shutil.copy(root / "data" / t / f"{i:04d}.png", root / "outputs" / t / f"{i:04d}.png")
    return root


def _official(root: Path) -> None:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    for t in TYPES:
        for i in range(N):
            gt = np.asarray(Image.open(root / "data" / "clear" / f"{i:04d}.png")) / 255.0
            out = np.asarray(Image.open(root / "outputs" / t / f"{i:04d}.png")) / 255.0
            peak_signal_noise_ratio(gt, out, data_range=1.0)
            structural_similarity(gt, out, win_size=7, channel_axis=-1, data_range=1.0)


def _harness(root: Path, tmp: Path, methods: list[str], workers: int) -> None:
    import harness

    out = tmp / f"run-{len(list(tmp.iterdir()))}"
    harness.evaluate(data=root / "data", out=out, methods=methods, modes="text", workers=workers, progress=False,
                     report=False, log=lambda m: None)


def _pairs_per_second(benchmark) -> float:
    return len(TYPES) * N / benchmark.stats.stats.median


def test_official_skimage_loop(benchmark, release):
    benchmark.pedantic(_official, args=(release,), rounds=2, iterations=1)
    benchmark.extra_info["pairs_per_second"] = _pairs_per_second(benchmark)


@pytest.mark.parametrize("workers", [0, 2])
def test_harness_identity(benchmark, release, tmp_path, workers):
    benchmark.pedantic(_harness, args=(release, tmp_path, ["identity"], workers), rounds=2, iterations=1)
    benchmark.extra_info["pairs_per_second"] = _pairs_per_second(benchmark)


@pytest.mark.parametrize("workers", [1, 2])
def test_harness_model_method(benchmark, release, tmp_path, workers):
    """The demo OneRestore (text mode) on 2 full-size pairs: on a CPU the forward is the whole cost."""
    import harness

    def run():
        out = tmp_path / f"m-{len(list(tmp_path.iterdir()))}"
        harness.evaluate(data=release / "data", out=out, methods=["onerestore"], modes="text", types=["haze"],
                         limit=2, workers=workers, progress=False, report=False, log=lambda m: None)

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info["pairs_per_second"] = 2 / benchmark.stats.stats.median


def test_harness_released_outputs(benchmark, release, tmp_path):
    spec = f"outputs:bench={release / 'outputs'}"
    benchmark.pedantic(_harness, args=(release, tmp_path, [spec], 2), rounds=2, iterations=1)
    benchmark.extra_info["pairs_per_second"] = _pairs_per_second(benchmark)
