"""experiments/: every module imports and answers --help; each runs for real on tiny data where that is quick
(the calibration of the whole split is slow: `nox -s eval`)."""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TESTS, make_layout
from PIL import Image
from torch import nn

from harness.data import mini, synth
from harness.degradations import TYPES
from harness.tiling import tile_count

ROOT = TESTS.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `experiments` is a folder of the repository, not an installed package

MODULES = sorted(p.stem for p in (ROOT / "experiments").glob("*.py") if p.stem != "__init__")


def test_every_experiment_is_found():
    assert {"calibration", "tiling_cost", "dev_photos_build", "five_photos_build", "smooth_l1_beta_probe",
            "smooth_l1_grad_norms"} <= set(MODULES)
    assert not list((ROOT / "reports").rglob("*.py")), "reports/ holds generated artefacts only"


@pytest.mark.parametrize("name", MODULES)
def test_imports_and_help(name):
    mod = importlib.import_module(f"experiments.{name}")  # importing runs nothing
    assert callable(mod.main) and mod.__doc__
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, "-m", f"experiments.{name}", "--help"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"usage: python -m experiments.{name}")
    assert "default: None" not in proc.stdout
    body = proc.stdout.split("\n\n")[1].strip()
    assert body.endswith((".", ")", ":")), f"description stops mid-sentence: {body!r}"


def test_regenerate_names_the_experiments():
    from harness import regenerate

    text = Path(regenerate.__file__).read_text()
    assert "experiments.calibration" in text and "experiments.tiling_cost" in text


# ------------------------------------------------------------------------------------------------ tiling cost


def conv_stack(depth: int = 2, channels: int = 6, seed: int = 0) -> nn.Module:
    """`depth` zero-padded 3×3 convolutions: receptive radius = depth."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    cin = 3
    for i in range(depth):
        cout = 3 if i == depth - 1 else channels
        layers += [nn.Conv2d(cin, cout, 3, padding=1)] + ([nn.Tanh()] if i < depth - 1 else [])
        cin = cout
    return nn.Sequential(*layers).eval()


def test_tiling_psnr_cost_zero_for_an_exact_model():
    from experiments.tiling_cost import tiling_psnr_cost

    model = conv_stack(depth=2)
    g = torch.Generator().manual_seed(3)
    pairs = [(torch.rand(3, 40, 56, generator=g), torch.rand(3, 40, 56, generator=g)) for _ in range(2)]
    with torch.no_grad():
        res = tiling_psnr_cost(model, pairs, tile=24, overlap=8, blend="crop")
    assert res["images"] == 2 and len(res["rows"]) == 2
    assert res["rows"][0]["tiles"] == tile_count(40, 56, 24, 8)
    assert abs(res["mean_cost_db"]) < 1e-6
    assert res["rows"][0]["max_abs_diff"] < 1e-5
    assert math.isinf(res["rows"][0]["psnr_tiled_vs_whole"]) or res["rows"][0]["psnr_tiled_vs_whole"] > 60
    assert res["psnr_source"]


def test_tiling_psnr_cost_measures_a_seam():
    """A model with global context (subtracts the image mean) differs when tiled: the cost is reported."""
    from experiments.tiling_cost import tiling_psnr_cost

    def global_model(t):
        return (t - t.mean(dim=(-2, -1), keepdim=True) + 0.5).clamp(0, 1)

    g = torch.Generator().manual_seed(4)
    base = torch.linspace(0, 1, 64).view(1, 1, 64).expand(3, 48, 64)
    x = (base + 0.05 * torch.rand(3, 48, 64, generator=g)).clamp(0, 1)
    gt = global_model(x.unsqueeze(0))[0]
    res = tiling_psnr_cost(global_model, [(x, gt)], tile=24, overlap=8)
    assert res["rows"][0]["cost_db"] > 1.0
    assert math.isfinite(res["rows"][0]["psnr_tiled_vs_whole"])


def test_tiling_cost_command(tmp_path, monkeypatch):
    """The tiling-cost command on a tiny layout with a pixel-local method: tiling costs nothing."""
    import methods_for_tests  # noqa: F401 - registers test-slow (x·0.95: pixel-local)

    from experiments.tiling_cost import main

    data = make_layout(tmp_path / "d", n=1, size=(96, 160), types=("haze", "low"))
    out = tmp_path / "cost.md"
    monkeypatch.setenv("TEST_SLOW_SECONDS", "0")
    assert main(["--methods", "test-slow", "--data", str(data), "--tile", "64", "--overlap", "16", "--limit", "1",
                 "--out", str(out)]) == 0
    assert "| test-slow | 2 |" in out.read_text()
    row = json.loads(out.with_suffix(".json").read_text())[0]
    # pixel-local method: blending equal values changes at most a rare 8-bit rounding
    assert row["images"] == 2 and abs(row["mean_cost_db"]) < 0.01


# ------------------------------------------------------------------------------------------------ calibration

#: 3-scene subset (the full frame of each test source): wider tolerance than the ±1.5 dB / ±0.07 of
#: the whole split, since three images carry more sampling noise (observed worst: 1.1 dB, 0.064).
SUBSET_PSNR_TOL, SUBSET_SSIM_TOL = 2.0, 0.09


def test_calibration_on_small_subset():
    from experiments import calibration

    specs = [s for s in mini.scene_specs("test", "mini") if s.name.startswith(("0001", "0006", "0011"))]
    assert {s.source for s in specs} == set(mini.TEST_SOURCES)
    scores: dict[str, list[tuple[float, float]]] = {t: [] for t in TYPES}
    for spec in specs:
        clean, disp = mini.render_scene(spec, mini.SIZES["mini"].shape)
        out = synth.synthesize(clean, spec.name, mini.DEFAULT_SEED, disparity=disp)
        for t in TYPES:
            scores[t].append(calibration.score_pair(clean, out[t], backend="skimage"))
    rows = calibration.compare({t: tuple(np.mean(v, axis=0)) for t, v in scores.items()},
                               SUBSET_PSNR_TOL, SUBSET_SSIM_TOL)
    assert len(rows) == 11
    bad = [f"{r['type']}: {r['dpsnr']:+.2f} dB {r['dssim']:+.3f}" for r in rows if not r["pass"]]
    assert not bad, bad


def test_reference_row_is_cdd11_input():
    from experiments import calibration

    ref = calibration.reference_input_row()
    assert set(ref) == set(TYPES)
    assert ref["low"] == pytest.approx((11.999491, 0.368524))
    assert np.mean([p for p, _ in ref.values()]) == pytest.approx(16.00, abs=0.01)


def test_score_pair_backends_agree():
    from experiments import calibration

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    p1, s1 = calibration.score_pair(a, b, "metrics")
    p2, s2 = calibration.score_pair(a, b, "skimage")
    assert p1 == pytest.approx(p2, abs=1e-6) and s1 == pytest.approx(s2, abs=1e-6)


@pytest.mark.slow
def test_calibration_whole_mini_test_split(tmp_path):
    from experiments import calibration

    assert calibration.main(["--out", str(tmp_path)]) == 0
    assert (tmp_path / "calibration.md").exists() and (tmp_path / "calibration.csv").exists()
    assert "python -m experiments.calibration" in (tmp_path / "calibration.md").read_text()


# ---------------------------------------------------------------------------------------------- training probes


def _photos(folder: Path) -> Path:
    """Stand-ins for scikit-learn's china.jpg and flower.jpg."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for name in ("china", "flower"):
        Image.fromarray(rng.integers(0, 256, (120, 180, 3), dtype=np.uint8)).save(folder / f"{name}.jpg")
    return folder


def test_dev_photos_build_tiny(tmp_path):
    from experiments import dev_photos_build

    out = tmp_path / "dev"
    assert dev_photos_build.main(["--photos", str(_photos(tmp_path / "photos")), "--out", str(out),
                                  "--per-source", "1", "--size", "tiny"]) == 0
    names = sorted(p.name for p in (out / "clear").iterdir())
    assert len(names) == 2 and all(int(n[:4]) > 100 for n in names)
    assert all((out / t / names[0]).is_file() for t in TYPES)
    assert "train5" not in mini.SPLITS and "train5" not in mini.SIZES["tiny"].per_source  # global state restored


def test_dev_photos_build_names_missing_photos(tmp_path):
    from experiments import dev_photos_build

    with pytest.raises(FileNotFoundError, match="china.jpg"):
        dev_photos_build.write_photo_scenes(tmp_path / "o", tmp_path / "nowhere")


def test_five_photos_build_tiny(tmp_path):
    from experiments import five_photos_build

    train = make_layout(tmp_path / "train", n=2, size=(64, 96))
    added = five_photos_build.build(tmp_path / "t5", _photos(tmp_path / "photos"), train=train, per_source=1,
                                    size="tiny")
    assert len(added) == 2 and len(list((tmp_path / "t5" / "clear").iterdir())) == 4


def test_smooth_l1_probes_tiny(tmp_path, capsys):
    from experiments import smooth_l1_beta_probe, smooth_l1_grad_norms

    data = make_layout(tmp_path / "d", n=2, size=(64, 64), types=("haze", "low"))
    assert smooth_l1_beta_probe.main(["0.01", "1", "1e-3", "scratch", "--train", str(data), "--test", str(data),
                                      "--val-images", "2", "--batch", "1", "--patch", "48"]) == 0
    out = capsys.readouterr().out
    assert "before (" in out and "after (" in out and "steps 1" in out
    assert smooth_l1_grad_norms.main(["--train", str(data), "--batches", "1", "--batch", "1", "--patch", "48",
                                      "--threads", "1"]) == 0
    assert "gnorm" in capsys.readouterr().out
