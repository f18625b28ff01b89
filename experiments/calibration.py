"""Experiment: calibration of the synthetic CDD-11 generator — the mean Input PSNR / SSIM per type of a freshly
built cdd11-mini test split against the real CDD-11 test inputs (OneRestore release, row `01_input`).

Writes OUT/calibration.md and OUT/calibration.csv (reports/calibration.{md,csv} come from here, see
reports/README.md); exit 1 when a type is outside the tolerance. From the repository root:

    python -m experiments.calibration --out reports/ --seeds 7,11
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from harness import cli, metrics
from harness.data import mini, synth
from harness.degradations import CLEAR, SHORT_NAMES, TABLE1_ORDER, TYPES


def reference_input_row() -> dict[str, tuple[float, float]]:
    """The real CDD-11 test Input row (PSNR, SSIM) per type, from the packaged OneRestore table."""
    from importlib import resources

    text = resources.files("harness").joinpath("reference/onerestore_cdd11_metrics.csv").read_text()
    rows = csv.DictReader(text.splitlines())
    return {r["degradation"]: (float(r["psnr"]), float(r["ssim"])) for r in rows if r["method"] == "01_input"}


def score_pair(gt: np.ndarray, out: np.ndarray, backend: str = "metrics") -> tuple[float, float]:
    """Official CDD-11 PSNR / SSIM of two uint8 H×W×3 images (/255; SSIM 7×7 uniform, per-channel mean).

    backend "metrics": the project's `harness.metrics`; "skimage": scikit-image directly (the two agree
    within 1e-6; scikit-image is faster on a busy CPU).
    """
    if backend not in ("metrics", "skimage"):
        raise ValueError(f"backend must be 'metrics' or 'skimage', got {backend!r}")
    if backend == "metrics":
        g, o = np.array(gt, copy=True), np.array(out, copy=True)  # writable, as torch.from_numpy wants
        return float(metrics.psnr(g, o)[0]), float(metrics.ssim(g, o, "cdd11")[0])
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    g = gt.astype(np.float64) / 255.0
    o = out.astype(np.float64) / 255.0
    psnr = float(peak_signal_noise_ratio(g, o, data_range=1.0))
    ssim = float(structural_similarity(g, o, win_size=7, channel_axis=-1, data_range=1.0))
    return psnr, ssim


def score_split(root: Path, names: Sequence[str] | None = None, types: Sequence[str] = TYPES,
                backend: str = "metrics") -> dict[str, tuple[float, float]]:
    """Mean Input PSNR / SSIM per type of a CDD-11-layout folder (degraded input vs clear)."""
    root = Path(root)
    names = sorted(p.name for p in (root / CLEAR).glob("*.png")) if names is None else list(names)
    result = {}
    for t in types:
        ps, ss = [], []
        for n in names:
            gt = np.asarray(Image.open(root / CLEAR / n).convert("RGB"))
            x = np.asarray(Image.open(root / t / n).convert("RGB"))
            p, s = score_pair(gt, x, backend)
            ps.append(p)
            ss.append(s)
        result[t] = (float(np.mean(ps)), float(np.mean(ss)))
    return result


PSNR_TOL = 1.5
SSIM_TOL = 0.07


def compare(ours: dict[str, tuple[float, float]], psnr_tol: float = PSNR_TOL,
            ssim_tol: float = SSIM_TOL) -> list[dict]:
    """Per-type rows: ours vs CDD-11 with differences and pass/fail."""
    ref = reference_input_row()
    rows = []
    for t in TABLE1_ORDER:
        if t not in ours:
            continue
        (p, s), (rp, rs) = ours[t], ref[t]
        ok = abs(p - rp) <= psnr_tol and abs(s - rs) <= ssim_tol
        rows.append({"type": t, "psnr": p, "psnr_cdd11": rp, "dpsnr": p - rp, "ssim": s, "ssim_cdd11": rs,
                     "dssim": s - rs, "pass": ok})
    return rows


def _build_and_score(seed: int, backend: str) -> tuple[dict[str, tuple[float, float]], float, str]:
    """Scores per type, build time and a sentence on the committed reference hashes (default seed only)."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        mini.build("test", "mini", Path(tmp), seed=seed, check=False)
        t_build = time.perf_counter() - t0
        try:
            bad = mini.reference_mismatches(Path(tmp), "test", "mini", seed)
        except mini.DataMismatchError as e:  # reference written for another generator version
            bad, stale = None, str(e)
        else:
            stale = ""
        if stale:
            note = f"**The committed reference hashes are stale**: {stale}."
        elif bad is None:
            note = ""
        else:
            n = len(mini.expected_files("test", "mini", seed) or {})
            note = (f"All {n} files of the split are byte-identical to the committed reference hashes "
                    f"(`harness/data/{mini.REFERENCE_HASHES}`)." if not bad else
                    f"**{len(bad)} of the {n} files differ from the committed reference hashes** "
                    f"(`harness/data/{mini.REFERENCE_HASHES}`), first {bad[0][0]}.")
        return score_split(Path(tmp), backend=backend), t_build, note


def calibrate(out_dir: Path, *, extra_seeds: Sequence[int] = ()) -> list[dict]:
    """Generate the mini test split afresh, score it and write calibration.md / calibration.csv.

    ``extra_seeds``: also build the split with these seeds (scored with scikit-image, which equals
    `harness.metrics` within 1e-6) and report the worst deviation per seed — a robustness check.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ours, t_build, ref_note = _build_and_score(mini.DEFAULT_SEED, "metrics")
    rows = compare(ours)
    with open(out_dir / "calibration.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    n = len(mini.scene_specs("test", "mini"))
    lines = [
        "# Calibration of the synthetic CDD-11 generator",
        "",
        f"Mean Input PSNR / SSIM per type of the embedded `cdd11-mini` **test** split ({n} scenes of "
        f"{mini.SIZES['mini'].shape[0]}×{mini.SIZES['mini'].shape[1]} from {', '.join(mini.TEST_SOURCES)}; seed "
        f"{mini.DEFAULT_SEED}; generator v{synth.GENERATOR_VERSION}, params `{synth.DEFAULT_PARAMS.digest()}`) "
        "against the real CDD-11 test inputs (OneRestore release, row `01_input`).",
        "",
        "Scoring: official convention — 8-bit PNGs /255, PSNR over all RGB values and SSIM with a 7×7 "
        "uniform window, sample covariance, mean of the channels (`harness.metrics`, convention `cdd11`, "
        "equal to skimage `peak_signal_noise_ratio(data_range=1)` / `structural_similarity(win_size=7, "
        "channel_axis=-1, data_range=1)` within 1e-6); mean per image, then per type. "
        f"Tolerance: ±{PSNR_TOL} dB PSNR and ±{SSIM_TOL} SSIM.",
        "",
        "| Type | PSNR ours | PSNR CDD-11 | Δ PSNR | SSIM ours | SSIM CDD-11 | Δ SSIM | |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {SHORT_NAMES[r['type']]} (`{r['type']}`) | {r['psnr']:.2f} | {r['psnr_cdd11']:.2f} | "
            f"{r['dpsnr']:+.2f} | {r['ssim']:.4f} | {r['ssim_cdd11']:.4f} | {r['dssim']:+.4f} | "
            f"{'pass' if r['pass'] else '**FAIL**'} |"
        )
    mp = float(np.mean([r["psnr"] for r in rows]))
    ms = float(np.mean([r["ssim"] for r in rows]))
    rp = float(np.mean([r["psnr_cdd11"] for r in rows]))
    rs = float(np.mean([r["ssim_cdd11"] for r in rows]))
    lines += [
        f"| **Avg** | {mp:.2f} | {rp:.2f} | {mp - rp:+.2f} | {ms:.4f} | {rs:.4f} | {ms - rs:+.4f} | |",
        "",
        f"{sum(r['pass'] for r in rows)}/{len(rows)} types within tolerance. Generating the split "
        f"({n} scenes × 12 PNGs) took {t_build:.1f} s here (single process, shared 2-core machine). {ref_note}",
        "",
    ]
    if extra_seeds:
        lines += [
            "## Other seeds (robustness of the defaults)",
            "",
            "| Seed | types within tolerance | worst \\|Δ PSNR\\| | worst \\|Δ SSIM\\| | Avg PSNR | Avg SSIM |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for seed in extra_seeds:
            other = compare(_build_and_score(seed, "skimage")[0])
            lines.append(
                f"| {seed} | {sum(r['pass'] for r in other)}/{len(other)} | "
                f"{max(abs(r['dpsnr']) for r in other):.2f} | {max(abs(r['dssim']) for r in other):.4f} | "
                f"{np.mean([r['psnr'] for r in other]):.2f} | {np.mean([r['ssim'] for r in other]):.4f} |"
            )
        lines.append("")
    lines += [
        "## Notes",
        "",
        "- Synthesis (see `harness/data/synth.py`): low light → rain → snow → haze, as CDD-11. Low light is "
        "Retinex R·(k·L)^γ + n with L the guided-filtered max-RGB map, γ ~ U[2, 3], σ ~ U[0.03, 0.08] "
        "and a slight exposure factor k ~ U[0.95, 1]; haze is J·t + A(1−t), t = exp(−β·min(1−D̃, 0.7)), "
        "β ~ U[1, 2], A ~ U[0.6, 0.9], D̃ the box-smoothed near-ness (real disparity for the motorcycle "
        "scenes, monocular prior otherwise) raised to 0.75.",
        "- CDD-11's own inputs show that rain and snow lift a low-light image towards the clean one "
        "(low 12.0 dB → low+rain 14.6, low+snow 13.5) although rain alone costs 22 dB: their layers carry "
        "a diffuse brightening, modelled here as faint low-frequency veils (rain 0.015–0.045, snow "
        "0.015–0.04) next to the streaks / flakes. Without them low+rain and low+snow fell 1.7–2.7 dB short.",
        "- The test sources were chosen for a mean brightness (0.39–0.45) close to CDD-11's daylight "
        "scenes; with a dark dusk photo (`rocket`) in the test split, haze and haze+rain fell ~2 dB below "
        "the reference. `rocket` is in the train split.",
        "- The numbers hold for the 256×384 mini scenes. The `full` size (720×1080, upscaled crops) is "
        "meant for throughput; its smoother upscaled content gives somewhat different input scores.",
        f"- Generator v{synth.GENERATOR_VERSION} is bit-reproducible across CPUs (SIMD paths), thread counts and "
        "library versions: only IEEE basic operations in a fixed order (`harness/data/detmath.py`: own exp / "
        "log / power / sin-cos, Gaussian filter, direct convolutions; uniform and Box–Muller Gaussian draws "
        "from `Generator.random`; Pillow's resampling reimplemented in integer arithmetic). Every build of the "
        "default splits is checked against the committed sha256 of each file. v1 used NumPy's SIMD "
        "exp/power, FFT convolution, BLAS and SciPy's Gaussian filter, whose last bits depend on the CPU.",
        "",
        "Regenerate with `python -m experiments.calibration --out reports/ --seeds 7,11` (also "
        "writes `calibration.csv`).",
        "",
    ]
    (out_dir / "calibration.md").write_text("\n".join(lines))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.calibration", description=cli.description(__doc__),
                                 formatter_class=cli.Formatter)
    ap.add_argument("--out", type=Path, default=Path("reports"), help="folder for calibration.md / calibration.csv")
    ap.add_argument("--seeds", default="", help="extra seeds to check (robustness of the defaults), comma-separated")
    a = ap.parse_args(argv)
    rows = calibrate(a.out, extra_seeds=[int(x) for x in a.seeds.split(",") if x.strip()])
    for r in rows:
        print(f"{r['type']:>14}  {r['psnr']:6.2f} ({r['dpsnr']:+.2f})  {r['ssim']:.4f} ({r['dssim']:+.4f})"
              f"  {'ok' if r['pass'] else 'FAIL'}")
    print(f"wrote {a.out / 'calibration.md'}")
    return 0 if all(r["pass"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
