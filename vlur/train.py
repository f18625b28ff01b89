"""Train VL-UR's Scene Restorer (or, with `--arch onerestore`, the OneRestore ablation) on CDD-11-layout data.

    python -m vlur.train --data ROOT --out DIR [--arch vlur|onerestore] [--channel 32] [--sc SC.pt]
                         [--lr 1e-3] [--steps N | --epochs E] [--patch 128] [--batch 4] [--negatives 3]
                         [--seed 0] [--threads T] [--workers K] [--amp off|bf16|fp16] [--resume]
    torchrun --standalone --nproc_per_node N -m vlur.train ... [--device cuda]   # N processes, DDP
    python -m vlur.train --recipe paper --data CDD-11_train --vgg vgg16-397923af.pth --out DIR --device cuda

Without `--data` the embedded default train split (`harness.data.mini.ensure("train")`) is used.

Pipeline (identical for both archs, so `--arch onerestore` is the direct ablation of PGCA):

* Data: every (type, NAME) pair of ROOT/<type>/NAME with its ROOT/clear/NAME.  A held-out validation set is
  either `--val ROOT2` or `--val-fraction` (default 0.1, at least one scene when there are ≥ 2) of the scene
  names, chosen by the SHA-1 of the name (independent of the seed); all types of a held-out scene are held
  out.  Images are decoded from the files when a sample needs them (nothing is preloaded), in `--workers` K
  DataLoader worker processes (0 = in the training process); each process keeps a bounded cache of decoded
  images (`--cache-mb`, least recently used first out; the embedded split fits whole).
* `--redraws K` (off by default): K more syntheses of every training scene, made in memory at start from
  its clean image by `harness.data.synth` (default parameters, haze depth from the monocular prior) with
  fresh random draws — new rain/snow layers, noise, γ, β, A — seeded by (seed, scene, draw, type).  Draw k
  of scene NAME is scene NAME#rk (its negatives come from the same draw).  They cost ~0.27 s per scene and
  draw (all 11 types) on one core — 137 s for 43 scenes × 12 draws — counted in `--max-minutes`.
* Sampling: epoch e visits the training pairs in the order of a permutation drawn from
  numpy `default_rng([seed, 1, e])`, `--batch` pairs per step (a last partial batch is dropped; an epoch is
  at least one step; `--epoch-steps` overrides its length).  Each sample draws from `default_rng([seed, 2,
  step, i])`: a random `--patch`² crop (the same window on the clear image, the degraded image and its
  negatives; images smaller than the patch are reflect-padded), a random horizontal flip (p = 0.5), and
  `--negatives` N negatives = the same scene under N other degradation types, drawn without replacement
  among the types present (with replacement if fewer than N exist; the degraded input itself if none).
  `--permute-rgb` (off by default) then puts the colour channels of all images of a sample in one random
  order: every stage of `harness.data.synth` treats R, G and B alike (grey airlight, rain and snow; max-RGB
  illumination; i.i.d. noise), so a permuted pair is as likely a pair as the original.
  Because every random draw is a function of (seed, step), `--resume` continues exactly, and neither the
  number of workers nor the number of processes changes the samples (`vlur.data_stream`).
* Processes (torchrun, `WORLD_SIZE` > 1): DistributedDataParallel, gloo on the CPU, NCCL with `--device cuda`
  (one GPU per process, `cuda:LOCAL_RANK`).  `--batch` is the global batch (a multiple of N); the sampler
  (`vlur.data_stream.GlobalOrderSampler`, a DistributedSampler whose epoch seeds the shuffle) gives rank r the
  positions r, r + N, … of every global batch, and the loss is reduced so that its value and gradient are those
  of one process over the global batch (`vlur.distributed`; CDRL's batch-mean ratios are all-reduced).  Rank 0
  validates, logs and writes the checkpoints.  Same trajectory as one process up to floating-point order.
* `--amp bf16|fp16`: the model and the VGG-16 of CDRL run under autocast, every loss term in float32; fp16 adds a
  GradScaler (its state is checkpointed).  Off by default.
* `--recipe paper`: the paper's recipe as defaults (explicit options still override): VL-UR, C = 32, 8 heads,
  PGCA; Adam (0.9, 0.999), lr 1e-3 halved every 30 epochs (`--lr-decay-epochs 30`), 200 epochs over the
  training pairs; 256² crops, batch 4, all 10 other degradation types of the scene as CDRL negatives (as
  OneRestore's training code), CDRL every step, SmoothL1 β = 1, loss weights 0.6 / 0.3 / 0.1 and the MS-SSIM
  level weights of `vlur.losses`; no held-out scenes; CDRL's VGG-16 must be the ImageNet one (`--vgg FILE`).
* Model init: `torch.manual_seed(seed)` right before building the model.  `--arch vlur`: the restorer's
  text table is the Scene Classifier's cached F_text (`--sc` checkpoint of `vlur.train_classifier`; without
  it an untrained, seeded `vlur-tiny-clip` SC gives the table and a warning says so).  `--arch onerestore`:
  `baselines.onerestore.OneRestore(channel=C)` driven by `forward(x, embedding)`, embedding = the row of a
  12 × 324 type table whose rows 1..11 are the same SC text features mapped by a fixed random projection
  (seed 0, N(0, 1/D) entries; row 0, "clear", is zero) — both arms see the same type information.
* Loss: `vlur.losses.VLURLoss` (0.6·SmoothL1 + 0.3·(1 − MS-SSIM) + 0.1·CDRL); `--smooth-l1-beta` sets SmoothL1's β
  (default 1, as OneRestore; see `vlur.losses` for why a small β is L1-like and weighs more at these errors).
* Optimiser: Adam (β 0.9, 0.999), lr `--lr` (paper: 1e-3) multiplied by `--lr-gamma` (0.5) every
  `--lr-decay-every` steps (default: OneRestore's "halve every 30 of 200 epochs" scaled to the budget,
  ceil(0.15·steps); `--lr-decay-epochs E` = every E epochs); or, with `--schedule cosine`, decayed along a half
  cosine to 0 at the last step.  The lr is a function of the step (checkpointed as the scheduler state).
* Each epoch: validation PSNR (text mode, true types; `--val-max` images spread over the types, centre crop
  `--val-crop`; 8-bit-quantised outputs scored with `harness.metrics`, mean per type then over types), a
  line in DIR/train.log (with the measured steps per second and the time the whole run would take at that
  rate), and DIR/last.pt written atomically (model, Adam, scheduler and GradScaler state, sampler position,
  every rank's RNG state, history).  At the end DIR/model.pt (no optimiser state) and DIR/sc.pt (a copy of the
  SC used; it drives auto mode) are written and one summary line starting with "VLUR-TRAIN DONE" is printed.
* Determinism: seeds as above, `torch.use_deterministic_algorithms(True, warn_only=True)`; the same command
  on the same machine (same thread count) gives the same weights.  `--max-minutes` stops early (saving
  everything) and is the one non-deterministic option.

Checkpoints: {"format": "vlur-harness-checkpoint", "version": 1, "arch", "config", "state_dict", "meta":
{steps, seed, data_fingerprint, vgg ("imagenet" | "random-seeded"), git_commit, history, ...}} plus
"type_table" (onerestore) and "train_state" (last.pt only); all load with torch.load(weights_only=True).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import os
import shutil
import signal
import sys
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness import cli
from harness.checkpoints import check_checkpoint, make_checkpoint, save_checkpoint
from harness.degradations import TYPES
from harness.provenance import count_parameters, git_commit
from vlur.data_stream import GlobalOrderSampler, TrainSet, collate, epoch_order, sample_crops
from vlur.restorer import VLURRestorer

ARCHS = ("vlur", "onerestore")
TYPE_TABLE_SEED = 0
EMBED_LEN = 324


# ----------------------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class Sample:
    type: str
    name: str
    degraded: Path
    clear: Path


class PairData:
    """CDD-11-layout pairs, scene-indexed for negatives, with an in-memory uint8 image cache of at most
    `cache_bytes` (None = unbounded; least recently used images leave first).  Redrawn images (`add_redraws`)
    exist only in memory and are kept outside that bound."""

    def __init__(self, root: Path, names: set[str] | None = None, exclude: set[str] | None = None,
                 cache_bytes: int | None = None):
        from harness.data.cdd11 import scan

        s = scan(root)
        self.root = Path(root)
        self.fingerprint = s.fingerprint
        self.samples: list[Sample] = []
        self.by_scene: dict[str, dict[str, Path]] = {}
        for p in s.pairs:
            if p.clear is None:
                continue
            if names is not None and p.name not in names:
                continue
            if exclude is not None and p.name in exclude:
                continue
            self.samples.append(Sample(p.type, p.name, p.degraded, p.clear))
            self.by_scene.setdefault(p.name, {})[p.type] = p.degraded
        self._cache: OrderedDict[Path, torch.Tensor] = OrderedDict()
        self._cached_bytes = 0
        self.cache_bytes = cache_bytes
        self._pinned: dict[Path, torch.Tensor] = {}

    @staticmethod
    def scene_names(root: Path) -> list[str]:
        from harness.data.cdd11 import scan

        return sorted({p.name for p in scan(root).pairs if p.clear is not None})

    def redraws(self, draws: int, seed: int) -> Iterator[tuple[Sample, torch.Tensor]]:
        """`draws` fresh syntheses of every degradation type of every scene, as (sample, 3×H×W uint8).

        Draw k of scene NAME is scene ``NAME#rk`` (so its negatives come from the same draw), made by
        `harness.data.synth` with its default parameters from the clean image alone (haze depth from the
        monocular prior), seed = the training seed: every draw is a function of (seed, NAME, k, type).
        """
        if draws <= 0:
            return
        from harness.data import synth

        clears = {s.name: s.clear for s in self.samples}
        for name in sorted(clears):
            scene = synth.Scene.from_image(self.image(clears[name]).permute(1, 2, 0).numpy())
            for k in range(1, draws + 1):
                key = f"{name}#r{k}"
                for t in TYPES:
                    deg = torch.from_numpy(synth.degrade(scene, t, seed, key)).permute(2, 0, 1).contiguous()
                    yield Sample(t, key, Path(f"<redraw>/{key}/{t}"), clears[name]), deg

    def add_redraws(self, draws: int, seed: int) -> int:
        """Adds the `redraws` to the data (kept in memory); returns the number of pairs added."""
        added = 0
        for smp, img in list(self.redraws(draws, seed)):
            self._pinned[smp.degraded] = img
            self.samples.append(smp)
            self.by_scene.setdefault(smp.name, {})[smp.type] = smp.degraded
            added += 1
        return added

    def image(self, path: Path) -> torch.Tensor:
        """3×H×W uint8 tensor (cached, see the class docstring)."""
        from harness.data.cdd11 import read_rgb8

        t = self._pinned.get(path)
        if t is not None:
            return t
        t = self._cache.get(path)
        if t is not None:
            self._cache.move_to_end(path)
            return t
        a, _ = read_rgb8(path)
        t = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).contiguous()
        limit = self.cache_bytes
        if limit is None or t.numel() <= limit:
            self._cache[path] = t
            self._cached_bytes += t.numel()
            while limit is not None and self._cached_bytes > limit:
                _, old = self._cache.popitem(last=False)
                self._cached_bytes -= old.numel()
        return t

    def __len__(self) -> int:
        return len(self.samples)


def split_val_names(names: Sequence[str], fraction: float) -> set[str]:
    """Held-out scene names: the first round(fraction·n) names in SHA-1 order (at least 1 when n ≥ 2)."""
    if fraction <= 0 or len(names) < 2:
        return set()
    k = min(len(names) - 1, max(1, round(fraction * len(names))))
    order = sorted(names, key=lambda n: hashlib.sha1(n.encode()).hexdigest())
    return set(order[:k])


def make_batch(data: PairData, indices: Sequence[int], seed: int, step: int, patch: int, negatives: int,
               permute_rgb: bool = False):
    """(degraded B×3×P×P, clear, negatives B×N×3×P×P or None, types) for one training step: sample i of the batch
    is `vlur.data_stream.sample_crops` at position i.  With `permute_rgb`, one random order of the colour channels
    per sample, the same on all its images (drawn after the crop and flip, so the other draws do not change)."""
    return collate([sample_crops(data, idx, seed, step, i, patch, negatives, permute_rgb)
                    for i, idx in enumerate(indices)])


def learning_rate(step: int, total: int, base: float, schedule: str, gamma: float, decay_every: int) -> float:
    """The lr of 0-based `step`: `step` multiplies `base` by `gamma` every `decay_every` steps (OneRestore);
    `cosine` decays it from `base` at step 0 to 0 after the last of `total` steps.  (Not shared with
    `vlur.train_classifier.learning_rate`, which warms up and reaches 0 at its last step: each formula stays
    as the shipped weights were trained with it, so their commands reproduce bit for bit.)"""
    if schedule == "step":
        return base * gamma ** (step // decay_every)
    if schedule == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(1, total)))
    raise ValueError(f"unknown lr schedule {schedule!r}")


def loss_description(cdrl_every: int, smooth_l1_beta: float = 1.0) -> str:
    base = "0.6*SmoothL1" + (f"(beta={smooth_l1_beta:g})" if smooth_l1_beta != 1.0 else "") + " + 0.3*(1-MS-SSIM)"
    if cdrl_every == 1:
        return base + " + 0.1*CDRL"
    if cdrl_every <= 0:
        return base + " (CDRL off)"
    return base + f" + 0.1*CDRL on one step in {cdrl_every}"


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def batch_indices(n: int, batch: int, seed: int, step: int, steps_per_epoch: int) -> list[int]:
    """The training pairs of the global batch of `step` (what `GlobalOrderSampler` splits over the ranks)."""
    epoch, k = divmod(step, steps_per_epoch)
    perm = epoch_order(n, seed, epoch)
    return [int(perm[j % n]) for j in range(k * batch, (k + 1) * batch)]


# ----------------------------------------------------------------------------------------------------------
# models


def onerestore_type_table(text_features: torch.Tensor) -> torch.Tensor:
    """12 × 324: row 0 (clear) zero, rows 1..11 = text_features @ P, P fixed N(0, 1/D) (seed 0)."""
    d = text_features.shape[1]
    g = torch.Generator().manual_seed(TYPE_TABLE_SEED)
    proj = torch.randn(d, EMBED_LEN, generator=g) / math.sqrt(d)
    return torch.cat([torch.zeros(1, EMBED_LEN), text_features.float() @ proj])


def build_model(arch: str, channel: int, heads: int, attention: str, text_features: torch.Tensor, seed: int):
    torch.manual_seed(seed)
    if arch == "vlur":
        return VLURRestorer(channel=channel, heads=heads, text_dim=text_features.shape[1], attention=attention,
                            text_features=text_features)
    try:
        from baselines.onerestore import OneRestore
    except ImportError as e:
        raise SystemExit(f"--arch onerestore needs baselines/onerestore.py (OneRestore(channel=C)): {e}") from None
    return OneRestore(channel=channel)


class ModelRunner:
    """Calls either arch with a list of type names."""

    def __init__(self, arch: str, model: torch.nn.Module, type_table: torch.Tensor | None):
        self.arch, self.model, self.type_table = arch, model, type_table

    def __call__(self, x: torch.Tensor, types: Sequence[str]) -> torch.Tensor:
        if self.arch == "vlur":
            return self.model.forward_types(x, types)
        from harness.degradations import type_index

        emb = self.type_table[[type_index(t) for t in types]].to(x)
        return self.model(x, emb)


def model_config(arch: str, model: torch.nn.Module, channel: int) -> dict:
    if arch == "vlur":
        return dict(model.config)
    return {"channel": channel, "antialias": bool(getattr(model, "antialias", False))}


# ----------------------------------------------------------------------------------------------------------
# validation


def _psnr_quantised(gt: torch.Tensor, out: torch.Tensor) -> float:
    try:
        from harness.metrics import psnr, quantize
    except ImportError:  # pragma: no cover - harness.metrics is part of the project
        q = torch.floor(out.detach().double().clamp(0, 1) * 255 + 0.5) / 255
        return float(10 * torch.log10(1 / (gt.double() - q).pow(2).mean()))
    return float(psnr(gt, quantize(out))[0])


def pick_val(data: PairData, max_images: int) -> list[Sample]:
    """Up to `max_images` validation samples, round-robin over types (deterministic)."""
    by_type: dict[str, list[Sample]] = {}
    for s in sorted(data.samples, key=lambda s: (TYPES.index(s.type), s.name)):
        by_type.setdefault(s.type, []).append(s)
    out: list[Sample] = []
    depth = 0
    while len(out) < max_images and any(depth < len(v) for v in by_type.values()):
        for t in TYPES:
            if t in by_type and depth < len(by_type[t]) and len(out) < max_images:
                out.append(by_type[t][depth])
        depth += 1
    return out


def _center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    if size <= 0:
        return x
    h, w = x.shape[-2:]
    ch, cw = min(h, size), min(w, size)
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[..., top:top + ch, left:left + cw]


@torch.no_grad()
def validate(runner: ModelRunner, data: PairData, samples: Sequence[Sample], crop: int) -> tuple[float, float]:
    """(mean PSNR of outputs, of inputs) — per type means, then the unweighted mean over types."""
    if not samples:
        return math.nan, math.nan
    was = runner.model.training
    runner.model.eval()
    per_type: dict[str, list[tuple[float, float]]] = {}
    for s in samples:
        x = _center_crop(data.image(s.degraded).float().unsqueeze(0) / 255.0, crop)
        y = _center_crop(data.image(s.clear).float().unsqueeze(0) / 255.0, crop)
        out = runner(x, [s.type])
        per_type.setdefault(s.type, []).append((_psnr_quantised(y, out), _psnr_quantised(y, x)))
    runner.model.train(was)
    means = [np.mean(np.array(v), axis=0) for v in per_type.values()]
    return float(np.mean([m[0] for m in means])), float(np.mean([m[1] for m in means]))


# ----------------------------------------------------------------------------------------------------------
# helpers


def load_sc(path: str | None, seed: int, log):
    """(SceneClassifier, sc description) — an untrained seeded tiny-CLIP SC when `path` is None."""
    from harness.weights import sha256_file
    from vlur.classifier import SceneClassifier, load_classifier

    if path:
        sc = load_classifier(path)
        return sc, {"file": "sc.pt", "source": str(path), "sha256": sha256_file(Path(path)), "trained": True}
    msg = ("no --sc given: the type table comes from an UNTRAINED seeded vlur-tiny-clip scene classifier; "
           "'text' mode is fine, 'auto' mode will be meaningless (train one: python -m vlur.train_classifier)")
    warnings.warn(msg, stacklevel=2)
    log(f"WARNING: {msg}")
    torch.manual_seed(seed)
    sc = SceneClassifier.zero_shot("vlur-tiny-clip", "none")
    sc.meta = {"trained": False, "seed": seed}
    return sc, {"file": "sc.pt", "source": None, "sha256": None, "trained": False}


RESUME_KEYS = ("arch", "channel", "heads", "attention", "patch", "batch", "negatives", "seed", "lr", "lr_gamma",
               "lr_decay_every", "steps_per_epoch", "val_fraction", "data_fingerprint", "cdrl_every",
               "redraws", "smooth_l1_beta", "schedule", "permute_rgb", "amp")
#: values of settings added after the first checkpoints were written (a checkpoint without them used these)
SETTING_DEFAULTS = {"cdrl_every": 1, "redraws": 0, "smooth_l1_beta": 1.0, "schedule": "step", "permute_rgb": False,
                    "amp": "off"}

#: `--recipe paper`: option defaults (explicit options override them).  From the paper: Adam, lr 1e-3, 200
#: epochs, the loss and its weights (0.6 / 0.3 / 0.1, MS-SSIM level weights and CDRL with ImageNet VGG-16, fixed
#: in `vlur.losses`), C = 32.  From OneRestore's training code, which the paper's loss follows: halving the lr
#: every 30 epochs, 256² crops, batch 4, and the 10 other degraded versions of the scene as CDRL negatives.
PAPER_RECIPE = {"arch": "vlur", "attention": "pgca", "channel": 32, "heads": 8, "lr": 1e-3, "schedule": "step",
                "lr_gamma": 0.5, "lr_decay_epochs": 30, "epochs": 200, "patch": 256, "batch": 4, "negatives": 10,
                "cdrl_every": 1, "smooth_l1_beta": 1.0, "val_fraction": 0.0, "redraws": 0, "permute_rgb": False}
RECIPES = {"none": {}, "paper": PAPER_RECIPE}
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: test hook: SIGKILL rank 0 right after this optimisation step (before its checkpoint), like a crash
KILL_ENV = "VLUR_TRAIN_KILL_AFTER_STEP"


# ----------------------------------------------------------------------------------------------------------
# main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m vlur.train", description=cli.description(__doc__),
                                formatter_class=cli.Formatter)
    p.add_argument("--recipe", choices=tuple(RECIPES), default="none",
                   help="preset option defaults; paper: " + ", ".join(f"{k}={v}" for k, v in PAPER_RECIPE.items())
                        + " (needs --vgg)")
    p.add_argument("--data", type=Path, default=None, help="CDD-11-layout train root (default: embedded mini train)")
    p.add_argument("--val", type=Path, default=None, help="separate validation root (default: held-out scenes)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="fraction of scene names held out")
    p.add_argument("--val-max", type=int, default=22, help="validation images per epoch (spread over types)")
    p.add_argument("--val-crop", type=int, default=256, help="centre crop for validation (0 = full image)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--arch", choices=ARCHS, default="vlur")
    p.add_argument("--attention", choices=("pgca", "cross"), default="pgca", help="vlur only: block attention")
    p.add_argument("--channel", type=int, default=32)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--sc", type=str, default=None, help="scene-classifier checkpoint (vlur.train_classifier)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-gamma", type=float, default=0.5)
    p.add_argument("--schedule", choices=("step", "cosine"), default="step",
                   help="step: ×--lr-gamma every --lr-decay-every steps (OneRestore); cosine: to 0 at the last step")
    p.add_argument("--lr-decay-every", type=int, default=0, help="steps between lr decays (0 = ceil(0.15·steps))")
    p.add_argument("--lr-decay-epochs", type=int, default=0,
                   help="epochs between lr decays (overrides --lr-decay-every; 0 = unused)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=int, default=None, help="total optimisation steps")
    g.add_argument("--epochs", type=int, default=None, help="total epochs (default 1 when --steps is absent)")
    p.add_argument("--epoch-steps", type=int, default=0, help="steps per epoch (0 = pairs // batch)")
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--batch", type=int, default=4, help="global batch (split over the processes under torchrun)")
    p.add_argument("--negatives", type=int, default=3, help="negatives per sample for CDRL")
    p.add_argument("--cdrl-every", type=int, default=1,
                   help="evaluate the CDRL term on every K-th step only (1 = every step, the paper; 0 = never)")
    p.add_argument("--smooth-l1-beta", type=float, default=1.0,
                   help="β of the SmoothL1 term (1 = PyTorch's default, as OneRestore; small = L1-like)")
    p.add_argument("--redraws", type=int, default=0,
                   help="add K fresh syntheses of every training scene's 11 types (in memory, seeded; "
                        "needs clean images the synthesis can re-degrade, e.g. the embedded train split)")
    p.add_argument("--permute-rgb", action="store_true",
                   help="augment: a random order of the RGB channels per sample (an exact symmetry of the synthesis)")
    p.add_argument("--amp", choices=("off", "bf16", "fp16"), default="off",
                   help="autocast the model and CDRL's VGG-16 (fp16 with a GradScaler); loss terms stay float32")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (0 = load in this process)")
    p.add_argument("--cache-mb", type=float, default=1024,
                   help="decoded-image cache per process (each worker has its own), MiB")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--vgg", type=str, default=None, help="VGG-16 ImageNet weights file (vgg16-397923af.pth)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--max-minutes", type=float, default=0, help="stop early after this wall time (0 = never)")
    p.add_argument("--device", default="cpu", help="cpu, cuda (under torchrun: cuda:LOCAL_RANK), cuda:1, ...")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--recipe", choices=tuple(RECIPES), default="none")
    known, _ = pre.parse_known_args(argv)
    p.set_defaults(**RECIPES[known.recipe])
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes as every command (`harness.cli`): 0 trained, 2 bad usage or data, 130 interrupted (Ctrl-C or
    SIGTERM; the last checkpoint is kept, `--resume` continues)."""
    args = parse_args(argv)
    cli.setup_logging()
    return cli.run_command(lambda: _main(args), args.out, what="checkpoint (the last one)")


def _main(args: argparse.Namespace) -> int:
    from vlur import distributed as D

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    env = D.setup(args.device)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    logf = open(out / "train.log", "a", encoding="utf-8") if env.main else None  # noqa: SIM115 - closed in finally

    def log(msg: str, echo: bool = False) -> None:
        if logf is None:
            return
        logf.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")
        logf.flush()
        if echo:
            print(msg, file=sys.stderr, flush=True)

    try:
        return _train(args, out, log, env)
    finally:
        if logf is not None:
            logf.close()
        D.teardown(env)


class _TrainNet(torch.nn.Module):
    """`ModelRunner` as a module (what DistributedDataParallel wraps): forward(x, types)."""

    def __init__(self, runner: ModelRunner):
        super().__init__()
        self.model = runner.model
        self.runner = runner

    def forward(self, x: torch.Tensor, types: Sequence[str]) -> torch.Tensor:
        return self.runner(x, types)


def _rate_text(steps_done: int, seconds: float, total: int, world: int) -> str:
    if steps_done <= 0 or seconds <= 0:
        return ""
    rate = steps_done / seconds
    hours = total / rate / 3600
    return (f"{rate:.3f} steps/s ({world} process{'es' if world > 1 else ''}); all {total} steps at this rate: "
            f"{hours:.2f} h = {hours * world:.2f} device-hours")


def _train(args: argparse.Namespace, out: Path, log, env) -> int:
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader

    from vlur import distributed as D

    started = time.perf_counter()  # --max-minutes counts from here (data preparation included)
    log(f"start: {' '.join(sys.argv)}")
    device = env.device
    if args.recipe == "paper":
        from vlur.losses import find_vgg16_weights

        if find_vgg16_weights(args.vgg) is None:
            raise SystemExit("--recipe paper: CDRL needs the ImageNet VGG-16 weights (torchvision's "
                             "vgg16-397923af.pth): pass --vgg FILE (or set $VLUR_VGG16)")
    if args.batch % env.world:
        raise SystemExit(f"--batch {args.batch} (the global batch) is not a multiple of the {env.world} processes")
    if args.data is None:
        from harness.data.mini import ensure

        args.data = ensure("train")
    names = PairData.scene_names(args.data)
    val_names = set() if args.val is not None else split_val_names(names, args.val_fraction)
    train = PairData(args.data, exclude=val_names, cache_bytes=int(args.cache_mb * 2 ** 20))
    if not len(train):
        raise SystemExit(f"no training pairs under {args.data}")
    if args.redraws:
        t_r = time.perf_counter()
        n = train.add_redraws(args.redraws, args.seed)
        log(f"redraws: {n} pairs synthesised in memory ({args.redraws} per scene and type) in "
            f"{time.perf_counter() - t_r:.0f}s", echo=not args.no_progress)
    val = PairData(args.val) if args.val is not None else (PairData(args.data, names=val_names) if val_names else None)
    val_samples = pick_val(val, args.val_max) if val is not None and env.main else []
    spe = args.epoch_steps or max(1, len(train) // args.batch)
    total = args.steps if args.steps is not None else (args.epochs or 1) * spe
    if args.lr_decay_epochs:
        decay_every = args.lr_decay_epochs * spe
    else:
        decay_every = args.lr_decay_every or max(1, math.ceil(0.15 * total))
    fingerprint = train.fingerprint + (f"-minus{len(val_names)}" if val_names else "")
    settings = {"arch": args.arch, "channel": args.channel, "heads": args.heads, "attention": args.attention,
                "patch": args.patch, "batch": args.batch, "negatives": args.negatives, "seed": args.seed,
                "lr": args.lr, "lr_gamma": args.lr_gamma, "lr_decay_every": decay_every, "steps_per_epoch": spe,
                "val_fraction": args.val_fraction, "data_fingerprint": fingerprint,
                "cdrl_every": args.cdrl_every, "redraws": args.redraws,
                "smooth_l1_beta": args.smooth_l1_beta, "schedule": args.schedule, "permute_rgb": args.permute_rgb,
                "amp": args.amp}
    log(f"data {args.data}: {len(train)} training pairs, {len(val_names)} held-out scenes, "
        f"{len(val_samples)} validation images; {spe} steps/epoch, {total} steps; {env.world} process(es) "
        f"({env.backend or 'single'}, {device}), global batch {args.batch}, {args.workers} loader worker(s) each"
        + (f"; recipe {args.recipe}" if args.recipe != "none" else ""))

    sc, sc_info = load_sc(args.sc, args.seed, log)
    text_features = sc.text_features.detach().cpu()
    model = build_model(args.arch, args.channel, args.heads, args.attention, text_features, args.seed).to(device)
    type_table = onerestore_type_table(text_features) if args.arch == "onerestore" else None
    runner = ModelRunner(args.arch, model, type_table.to(device) if type_table is not None else None)
    criterion = VLURLossLazy(args.vgg, args.smooth_l1_beta).get().to(device)
    log(f"model {args.arch}: {count_parameters(model)} parameters; CDRL VGG-16 weights: "
        f"{criterion.vgg_source}")
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999))
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")
    step, history = 0, []
    last = out / "last.pt"
    if args.resume:
        if not last.is_file():
            raise SystemExit(f"--resume: {last} does not exist")
        ck = check_checkpoint(torch.load(last, map_location="cpu", weights_only=True), str(last), args.arch)
        state = ck["train_state"]
        saved = state["settings"]
        diff = {k: (saved.get(k, SETTING_DEFAULTS.get(k)), settings[k]) for k in RESUME_KEYS
                if saved.get(k, SETTING_DEFAULTS.get(k)) != settings[k]}
        if diff:
            raise SystemExit(f"--resume: settings differ from {last}: " +
                             ", ".join(f"{k} saved {a!r} now {b!r}" for k, (a, b) in diff.items()))
        model.load_state_dict(ck["state_dict"])
        opt.load_state_dict(state["optimizer"])
        if scaler.is_enabled() and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        step = int(state["step"])
        history = list(ck["meta"].get("history", []))
        rng = "restored" if D.set_rng_state(state.get("rng"), env) else "not restored (other number of processes)"
        log(f"resumed from {last} at step {step} (epoch {step // spe}, step {step % spe} of it; RNG state {rng})",
            echo=env.main)
    model.train()

    meta_base = {"seed": args.seed, "data": str(args.data), "data_fingerprint": fingerprint,
                 "vgg": criterion.vgg_source, "git_commit": git_commit(), "sc": sc_info,
                 "torch": torch.__version__, "threads": torch.get_num_threads(), "world_size": env.world,
                 "recipe": args.recipe, "loss": loss_description(args.cdrl_every, args.smooth_l1_beta),
                 "settings": settings}
    config = model_config(args.arch, model, args.channel)
    lr = learning_rate(max(0, step - 1), total, args.lr, args.schedule, args.lr_gamma, decay_every)

    def checkpoint(rng_states: list[dict] | None = None) -> dict:
        meta = {**meta_base, "steps": step, "history": history}
        extra = {}
        if type_table is not None:
            extra["type_table"] = type_table
        if rng_states is not None:
            extra["train_state"] = {
                "optimizer": opt.state_dict(), "step": step, "settings": settings,
                "scheduler": {"schedule": args.schedule, "next_step": step, "last_lr": lr, "base_lr": args.lr,
                              "gamma": args.lr_gamma, "decay_every": decay_every, "total": total},
                "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                "sampler": {"epoch": step // spe, "step_in_epoch": step % spe, "seed": args.seed,
                            "global_batch": args.batch, "world_size": env.world},
                "rng": rng_states}
        return make_checkpoint(args.arch, config, model.state_dict(), meta, **extra)

    net: torch.nn.Module = _TrainNet(runner)
    if env.enabled:
        # OneRestore(channel) has one parameter its forward never uses (encoder.conv_esstesss)
        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None,
                                      find_unused_parameters=args.arch == "onerestore")
    trainset = TrainSet(train, args.seed, args.patch, args.negatives, args.permute_rgb)
    sampler = GlobalOrderSampler(trainset, len(train), args.batch, spe, args.seed, total, env.world, env.rank)
    loader = DataLoader(trainset, batch_size=args.batch // env.world, sampler=sampler, num_workers=args.workers,
                        collate_fn=collate, persistent_workers=args.workers > 0, pin_memory=device.type == "cuda")
    amp_dtype = AMP_DTYPES.get(args.amp)

    def autocast():
        return torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()

    reduced_loss = env.enabled or amp_dtype is not None  # else: the one-process float32 path, as always
    kill_at = int(os.environ.get(KILL_ENV, "0") or 0)

    t0 = time.perf_counter()
    first_step = step
    bar = None
    if not args.no_progress and env.main:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=step, desc=f"train {args.arch}", unit="step", dynamic_ncols=True,
                   file=sys.stderr)
    epoch_terms: list[dict] = []
    stopped_early = False
    vpsnr, ipsnr = math.nan, math.nan
    while step < total and not stopped_early:
        sampler.set_epoch(step // spe)
        sampler.set_start(step)
        for x, y, neg, types, steps in loader:
            if steps[0] != step:  # pragma: no cover - the sampler yields the steps in order
                raise RuntimeError(f"loader out of step: got step {steps[0]}, expected {step}")
            lr = learning_rate(step, total, args.lr, args.schedule, args.lr_gamma, decay_every)
            for gparam in opt.param_groups:
                gparam["lr"] = lr
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            neg = neg.to(device, non_blocking=True) if neg is not None else None
            with_cdrl = args.cdrl_every > 0 and step % args.cdrl_every == 0
            if reduced_loss:
                with autocast():
                    pred = net(x, types)
                loss, tt = D.loss_terms(criterion, pred, y, x, neg if with_cdrl else None, with_cdrl, env, autocast)
                vals = D.all_mean([float(loss.detach()), float(tt["smooth_l1"].detach()),
                                   float(tt["ms_ssim"].detach()),
                                   float(tt["cdrl"].detach()) if "cdrl" in tt else math.nan], env)
                terms = dict(zip(("smooth_l1", "ms_ssim", "cdrl"), vals[1:]))
                loss_value = vals[0]
                if not math.isfinite(loss_value):
                    raise SystemExit(f"non-finite loss at step {step}: {terms}")
            else:
                pred = net(x, types)
                loss, terms = criterion(pred, y, x, neg if with_cdrl else None, with_cdrl=with_cdrl)
                if not torch.isfinite(loss):
                    raise SystemExit(f"non-finite loss at step {step}: {terms}")
                loss_value = float(loss.detach())
            opt.zero_grad(set_to_none=True)
            if scaler.is_enabled():
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            step += 1
            if kill_at and step == kill_at and env.main:
                os.kill(os.getpid(), signal.SIGKILL)
            epoch_terms.append({"loss": loss_value, **terms})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.1e}")
            over_time = args.max_minutes > 0 and (time.perf_counter() - started) > args.max_minutes * 60
            if args.max_minutes > 0:
                over_time = D.any_rank(over_time, env)
            if step % spe == 0 or step == total or over_time:
                if val_samples:
                    vpsnr, ipsnr = validate(runner, val, val_samples, args.val_crop)
                mean = {k: _nanmean([e[k] for e in epoch_terms]) for k in epoch_terms[0]}
                elapsed = time.perf_counter() - t0
                rec = {"epoch": math.ceil(step / spe), "step": step, "lr": lr, **mean, "val_psnr": vpsnr,
                       "val_input_psnr": ipsnr, "time_s": round(elapsed, 1)}
                history.append(rec)
                epoch_terms = []
                line = (f"epoch {rec['epoch']} step {step}/{total} loss {mean['loss']:.4f} (smoothL1 "
                        f"{mean['smooth_l1']:.4f}, 1-msssim {mean['ms_ssim']:.4f}, cdrl {mean['cdrl']:.4f}) "
                        f"lr {lr:.2e} val PSNR {vpsnr:.2f} dB (input {ipsnr:.2f}) {rec['time_s']:.0f}s; "
                        + _rate_text(step - first_step, elapsed, total, env.world))
                log(line)
                if bar is not None:
                    bar.write(line, file=sys.stderr)
                rng_states = D.gather_rng_states(env)  # every rank takes part
                if env.main:
                    save_checkpoint(checkpoint(rng_states), last)
                if over_time and step < total:
                    stopped_early = True
                    log(f"--max-minutes {args.max_minutes} reached: stopping at step {step}/{total}", echo=True)
                    break
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - t0
    if not env.main:
        return 0
    save_checkpoint(checkpoint(), out / "model.pt")
    # both archs: the SC drives auto mode (for onerestore through its type table)
    sc_meta = {**getattr(sc, "meta", {}), "used_by": str(out / "model.pt")}
    if sc_info["source"]:
        shutil.copyfile(sc_info["source"], out / "sc.pt")
    else:
        save_checkpoint(sc.to_checkpoint(sc_meta), out / "sc.pt")
    if not history or history[-1]["step"] != step:  # resumed at the end: nothing new
        vpsnr, ipsnr = validate(runner, val, val_samples, args.val_crop) if val_samples else (math.nan, math.nan)
    else:
        vpsnr, ipsnr = history[-1]["val_psnr"], history[-1]["val_input_psnr"]
    final_loss = history[-1]["loss"] if history else math.nan
    rate = _rate_text(step - first_step, elapsed, total, env.world)
    if rate:
        log(f"throughput: {rate}")
    summary = (f"VLUR-TRAIN DONE arch={args.arch} steps={step}/{total}{' (stopped early)' if stopped_early else ''} "
               f"time={elapsed:.0f}s loss={final_loss:.4f} val_psnr={vpsnr:.2f}dB input_psnr={ipsnr:.2f}dB "
               f"gain={vpsnr - ipsnr:+.2f}dB vgg={criterion.vgg_source} -> {out / 'model.pt'}")
    log(summary)
    print(summary, flush=True)
    return 0


class VLURLossLazy:
    """Builds the loss (imports pytorch_msssim / torchvision only when training)."""

    def __init__(self, vgg_path: str | None, smooth_l1_beta: float = 1.0):
        self.vgg_path = vgg_path
        self.smooth_l1_beta = smooth_l1_beta

    def get(self):
        from vlur.losses import VLURLoss

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loss = VLURLoss(self.vgg_path, smooth_l1_beta=self.smooth_l1_beta)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
        return loss


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        raise SystemExit(main())
