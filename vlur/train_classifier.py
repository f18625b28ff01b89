"""Fine-tune (or train from scratch) VL-UR's Scene Classifier and save it with cached text features.

    python -m vlur.train_classifier [--data ROOT] --out SC.pt [--clip vlur-tiny-clip] [--pretrained none|openai|PATH]
                                    [--steps 600] [--batch 32] [--lr 1e-3] [--seed 0] [--threads T]

Without `--data` the embedded default train split (`harness.data.mini.ensure("train")`) is used.

Training (choices made explicitly; the paper only says CLIP is re-trained in the SC, then frozen):

* Objective: cross-entropy over the 11 prompts of logits = exp(logit_scale)·cos(E_image(I_d), E_text(T_k)),
  i.e. CLIP's contrastive image→text loss with the 11 prompts as the text batch.  The image tower and
  logit_scale are always trained (logit_scale clamped to [0, ln 100] after every step, as CLIP does).
  The text tower: `--text auto` (default) trains it when pretrained CLIP weights were loaded (the paper's
  re-training) and freezes it at its random initialisation when training from scratch (`--pretrained
  none`): trained jointly from scratch, prompts that differ by one word ("rain" / "snow") collapse onto
  the same feature (cosine 1.00 after 300 steps, observed) because the image tower cannot separate those
  images yet, and never come apart; frozen random prompts stay distinct (cosine ≤ 0.96 for vlur-tiny-clip).
  `--text train` / `--text freeze` force either.  AdamW (β 0.9, 0.98, eps 1e-6, weight decay `--wd`, CLIP's
  fine-tuning settings), a linear warm-up of `--warmup` steps, then a constant lr (`--schedule constant`)
  or a cosine decay to 0 at the last step (`--schedule cosine`).
* Images: every degraded image of ROOT/<type>/NAME (clear/ is not a class).  Each is decoded once and kept
  (uint8) resized so that its shorter side is the tower's input size S (CLIP's resize, see
  `vlur.classifier`); a training sample is a random S × S crop of it (random position — CLIP's centre crop
  at inference is one of them), flipped horizontally with p = 0.5 (with `--permute-rgb`, its colour channels
  then put in a random order, as `vlur.train --permute-rgb` does), drawn from numpy
  `default_rng([seed, 3, step])` (deterministic).  `--redraws K` adds K fresh syntheses of every training
  scene and type, as `vlur.train --redraws` does.  Held-out scenes: `--val-fraction` of the scene names,
  chosen as in `vlur.train` (SHA-1 order); validation = the inference preprocessing (centre crop).
* Output: `SceneClassifier.to_checkpoint` — the image tower, the 11 × D cached normalised F_text,
  logit_scale, the open_clip config and metadata (steps, seed, data fingerprint, accuracies, history);
  about 5.6 MB for `vlur-tiny-clip` (a `--pretrained openai` ViT-B-32 image tower is ~350 MB: fine locally,
  not shippable).  `--steps 0` exports a zero-shot SC.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from harness import cli
from harness.checkpoints import save_checkpoint
from harness.degradations import TYPES
from harness.provenance import git_commit
from vlur.classifier import (
    TINY_CLIP,
    SceneClassifier,
    _preprocess_cfg,
    build_clip,
    center_crop,
    prompts,
    resize_shorter,
    tokenize,
)
from vlur.train import split_val_names


def prepare(image_u8: torch.Tensor, size: int, crop: bool) -> torch.Tensor:
    """3×h×w uint8 → 3×h'×w' uint8 with the shorter side `size` (centre-cropped to size × size when `crop`)."""
    t = image_u8.unsqueeze(0).float() / 255.0
    t = center_crop(resize_shorter(t, size), size) if crop else resize_shorter(t, size)
    return (t[0] * 255.0).round().clamp(0, 255).to(torch.uint8)


def load_images(root: Path, names: set[str] | None, exclude: set[str], size: int, crop: bool, redraws: int = 0,
                seed: int = 0):
    """(list of uint8 3×h×w tensors, label indices, fingerprint) for the degraded images under `root`,
    resized so the shorter side is `size` (and centre-cropped to size × size when `crop`), plus
    `redraws` fresh syntheses of every scene and type that has a clear image
    (`vlur.train.PairData.add_redraws`)."""
    from harness.data.cdd11 import read_rgb8, scan

    s = scan(root)
    imgs, labels = [], []
    for p in s.pairs:
        if (names is not None and p.name not in names) or p.name in exclude:
            continue
        a, _ = read_rgb8(p.degraded)
        imgs.append(prepare(torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1), size, crop))
        labels.append(TYPES.index(p.type))
    if redraws > 0:
        from vlur.train import PairData

        for smp, img in PairData(root, names=names, exclude=exclude).redraws(redraws, seed):
            imgs.append(prepare(img, size, crop))  # only the resized copy is kept
            labels.append(TYPES.index(smp.type))
    return imgs, torch.tensor(labels, dtype=torch.long), s.fingerprint


def learning_rate(step: int, steps: int, base: float, warmup: int, schedule: str = "constant") -> float:
    """The lr of 0-based `step`: linear warm-up over `warmup` steps, then constant or cosine-decayed."""
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"unknown lr schedule {schedule!r}")
    if schedule == "constant" or step < warmup:
        return base * min(1.0, (step + 1) / max(1, warmup))
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup + 1) / max(1, steps - warmup))))


def augment(images: Sequence[torch.Tensor], rng: np.random.Generator, size: int,
            permute_rgb: bool = False) -> torch.Tensor:
    """Random size × size crop → random h-flip (→ with `permute_rgb`, a random order of the colour channels);
    uint8 in, float [0, 1] out (B×3×size×size)."""
    out = []
    for im in images:
        h, w = im.shape[-2:]
        top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        x = im[:, top:top + size, left:left + size].float() / 255.0
        x = x.flip(-1) if rng.random() < 0.5 else x
        out.append(x[torch.from_numpy(rng.permutation(3))] if permute_rgb else x)
    return torch.stack(out)


@torch.no_grad()
def accuracy(sc: SceneClassifier, images: Sequence[torch.Tensor], labels: torch.Tensor, batch: int = 64) -> float:
    if not len(labels):
        return math.nan
    correct = 0
    for i in range(0, len(labels), batch):
        x = torch.stack(list(images[i:i + batch])).float() / 255.0
        correct += int((sc.logits(x).argmax(1) == labels[i:i + batch]).sum())
    return correct / len(labels)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m vlur.train_classifier", description=cli.description(__doc__),
                                formatter_class=cli.Formatter)
    p.add_argument("--data", type=Path, default=None, help="CDD-11-layout root (default: embedded mini train)")
    p.add_argument("--out", type=Path, required=True, help="SC checkpoint to write")
    p.add_argument("--clip", default=TINY_CLIP, help="open_clip model config name")
    p.add_argument("--pretrained", "--clip-pretrained", dest="pretrained", default="none",
                   help="'none', an open_clip tag (e.g. openai) or a local file")
    p.add_argument("--image-size", type=int, default=None, help="override the image tower's input size")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--wd", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--schedule", choices=("constant", "cosine"), default="constant",
                   help="lr after the warm-up: constant, or cosine decay to 0 at the last step")
    p.add_argument("--text", choices=("auto", "train", "freeze"), default="auto",
                   help="train the text tower (auto: only when pretrained CLIP weights are loaded)")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--redraws", type=int, default=0,
                   help="add K fresh syntheses of every training scene's 11 types (as in vlur.train)")
    p.add_argument("--permute-rgb", action="store_true",
                   help="augment: a random order of the RGB channels per sample (an exact symmetry of the synthesis)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes as every command (`harness.cli`): 0 trained, 2 bad usage or data, 130 interrupted."""
    args = parse_args(argv)
    cli.setup_logging()
    return cli.run_command(lambda: _main(args), args.out, what="checkpoint (the last one)")


def _main(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if args.data is None:
        from harness.data.mini import ensure

        args.data = ensure("train")
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    model, info = build_clip(args.clip, args.pretrained, args.image_size)
    size = SceneClassifier.from_clip(model, info).image_size
    from vlur.train import PairData

    val_names = split_val_names(PairData.scene_names(args.data), args.val_fraction)
    tr_x, tr_y, fingerprint = load_images(args.data, None, val_names, size, crop=False, redraws=args.redraws,
                                          seed=args.seed)
    va_x, va_y, _ = load_images(args.data, val_names, set(), size, crop=True) if val_names else ([], tr_y[:0], "")
    if not len(tr_y):
        raise SystemExit(f"no training images under {args.data}")
    print(f"SC data: {len(tr_y)} training, {len(va_y)} validation images ({args.data})", file=sys.stderr)

    tokens = tokenize(prompts(), args.clip)
    freeze_text = args.text == "freeze" or (args.text == "auto" and info["pretrained"] == "none")
    if freeze_text:
        for n, p in model.named_parameters():
            if not n.startswith("visual.") and n != "logit_scale":
                p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    _, mean, std = _preprocess_cfg(model)
    mean = torch.tensor(mean).view(1, 3, 1, 1)
    std = torch.tensor(std).view(1, 3, 1, 1)
    history: list[dict] = []
    bar = None
    if not args.no_progress and args.steps:
        from tqdm import tqdm

        bar = tqdm(total=args.steps, desc="train SC", unit="step", dynamic_ncols=True, file=sys.stderr)
    model.train()
    losses, hits = [], []
    for step in range(args.steps):
        lr = learning_rate(step, args.steps, args.lr, args.warmup, args.schedule)
        for g in opt.param_groups:
            g["lr"] = lr
        rng = np.random.default_rng([args.seed, 3, step])
        idx = rng.integers(0, len(tr_y), size=args.batch)
        x = (augment([tr_x[i] for i in idx], rng, size, args.permute_rgb) - mean) / std
        y = tr_y[idx]
        img = model.encode_image(x, normalize=True)
        txt = model.encode_text(tokens, normalize=True)
        logits = model.logit_scale.exp() * img @ txt.t()
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(float(loss.detach()))
        hits.append(float((logits.argmax(1) == y).float().mean()))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss):.3f}")
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            model.eval()
            sc = SceneClassifier.from_clip(model, info)
            acc = accuracy(sc, va_x, va_y)
            model.train()
            rec = {"step": step + 1, "loss": float(np.mean(losses)), "train_acc": float(np.mean(hits)),
                   "val_acc": acc, "time_s": round(time.perf_counter() - t0, 1)}
            history.append(rec)
            losses, hits = [], []
            msg = (f"step {rec['step']}: loss {rec['loss']:.4f} train acc {100 * rec['train_acc']:.1f}% "
                   f"val acc {100 * acc:.1f}%")
            (bar.write if bar is not None else print)(msg, file=sys.stderr)
    if bar is not None:
        bar.close()
    model.eval()
    sc = SceneClassifier.from_clip(model, info)
    val_acc = accuracy(sc, va_x, va_y)
    meta = {"steps": args.steps, "seed": args.seed, "redraws": args.redraws, "schedule": args.schedule,
            "permute_rgb": args.permute_rgb,
            "data": str(args.data), "data_fingerprint": fingerprint,
            "val_scenes": sorted(val_names), "val_acc": val_acc, "history": history, "git_commit": git_commit(),
            "pretrained": info["pretrained"], "clip": args.clip, "freeze_text": freeze_text,
            "torch": torch.__version__, "trained": bool(args.steps)}
    save_checkpoint(sc.to_checkpoint(meta), args.out)
    mb = args.out.stat().st_size / 1e6
    print(f"VLUR-SC DONE clip={args.clip} pretrained={info['pretrained']} steps={args.steps} "
          f"time={time.perf_counter() - t0:.0f}s val_acc={100 * val_acc:.1f}% ({len(va_y)} images) "
          f"-> {args.out} ({mb:.1f} MB)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
