from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.degradations import TYPES

TESTS = Path(__file__).parent
DATA = TESTS / "data"
sys.path.insert(0, str(TESTS))  # helpers: pngwrite, methods_for_tests


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    torch.set_num_threads(1)


def make_layout(root: Path, n: int = 2, size: tuple[int, int] = (24, 32), types=TYPES, seed: int = 0) -> Path:
    """A tiny CDD-11 layout: clear images and a noisier copy per type, all PNG."""
    rng = np.random.default_rng(seed)
    (root / "clear").mkdir(parents=True, exist_ok=True)
    for t in types:
        (root / t).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        clear = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(clear).save(root / "clear" / f"im{i}.png")
        for k, t in enumerate(types):
            noisy = np.clip(clear.astype(int) + rng.integers(-10 - 5 * k, 10 + 5 * k, clear.shape), 0, 255)
            Image.fromarray(noisy.astype(np.uint8)).save(root / t / f"im{i}.png")
    return root


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    return make_layout(tmp_path / "data")
