"""VL-UR's training loss: 0.6·SmoothL1 + 0.3·(1 − MS-SSIM) + 0.1·CDRL (OneRestore's recipe, the paper's weights).

Choices made explicitly:

* SmoothL1: `torch.nn.functional.smooth_l1_loss(out, gt, beta=β)`, mean over all values, β = 1 by default
  (PyTorch's default, as OneRestore).  On [0, 1] images β = 1 makes the term quadratic for every error
  (0.5·e²), so its gradient is ~2 % of the total's at PSNRs around 20 dB; `smooth_l1_beta` (the trainer's
  `--smooth-l1-beta`) lowers β to make it L1-like (the weights stay the paper's).
* MS-SSIM: `pytorch_msssim.ms_ssim(out, gt, data_range=1, weights=(0.0448, 0.2856, 0.3001, 0.2363, 0.1333))`
  on [0, 1] images ("normalised" in OneRestore's wording), Gaussian window σ = 1.5.  pytorch-msssim asserts
  min(H, W) > (win_size − 1)·2⁴ (four 2× downsamplings), so the window is the largest odd size ≤ 11 that
  fits: 11 for patches > 160 px, 9 for > 128, 7 for > 96 (the 128-px training patches use 7), 5 for > 64,
  3 for > 32; smaller images raise a ValueError.  pytorch-msssim clamps negative contrast terms to 0 (ReLU).
* CDRL (contrastive, OneRestore's "CDRL"): VGG-16 features at relu1_2, relu2_2, relu3_3 (torchvision's
  `features[:4]`, `[4:9]`, `[9:16]`) of ImageNet-normalised images; per layer
      L1(φ(out), φ(gt)) / (λ1·L1(φ(out), φ(in)) + λ2·Σ_j L1(φ(out), φ(neg_j)) + ε),
  λ1 = λ2 = 1/(N + 1), ε = 1e-7, L1 = mean absolute difference over the whole batch; the 3 layer ratios
  are averaged (the mean over layers). Positive / anchor / negative features are computed without
  gradient (they are targets); only φ(out) is differentiated.  Negatives = the same scene under other
  degradation types (chosen by the training loop); with N = 0 the denominator is L1(φ(out), φ(in)).
* VGG-16 weights: ImageNet weights (torchvision's `vgg16-397923af.pth`) from an explicit path, `$VLUR_VGG16`,
  or torchvision's hub cache (`torch.hub.get_dir()/checkpoints`); nothing is downloaded.  When absent, a
  warning is issued and a VGG-16 truncated at relu3_3 is initialised randomly with a fixed seed
  (`RANDOM_VGG_SEED`, torchvision's init scheme, the global RNG left untouched).  The loss records which
  ("imagenet" or "random-seeded") so training checkpoints carry it in their metadata.  Only the 16 layers
  up to relu3_3 are built (torchvision's layer indices, so the ImageNet file's `features.*` keys load);
  the VGG is frozen and stays in eval mode.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
LOSS_WEIGHTS = {"smooth_l1": 0.6, "ms_ssim": 0.3, "cdrl": 0.1}
VGG16_FILE = "vgg16-397923af.pth"
VGG_SLICES = ((0, 4), (4, 9), (9, 16))  # relu1_2, relu2_2, relu3_3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CDRL_EPS = 1e-7
RANDOM_VGG_SEED = 0


def msssim_win_size(height: int, width: int) -> int:
    """Largest odd window ≤ 11 with min(H, W) > (win − 1)·16 (pytorch-msssim's requirement)."""
    side = min(height, width)
    for win in (11, 9, 7, 5, 3):
        if side > (win - 1) * 16:
            return win
    raise ValueError(f"images of {height}×{width} are too small for 5-level MS-SSIM (need min side > 32)")


def msssim_loss(out: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """1 − MS-SSIM(out, gt), data range 1, the paper's 5 level weights, window from `msssim_win_size`."""
    from pytorch_msssim import ms_ssim

    win = msssim_win_size(*out.shape[-2:])
    return 1.0 - ms_ssim(out, gt, data_range=1.0, size_average=True, win_size=win, weights=list(MSSSIM_WEIGHTS))


def find_vgg16_weights(path: str | os.PathLike | None = None) -> Path | None:
    """The ImageNet VGG-16 file: `path`, else $VLUR_VGG16, else torchvision's hub cache; None when absent."""
    candidates = []
    if path:
        candidates.append(Path(path))
    if os.environ.get("VLUR_VGG16"):
        candidates.append(Path(os.environ["VLUR_VGG16"]))
    candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE)
    for c in candidates:
        if c.expanduser().is_file():
            return c.expanduser()
    if path:
        raise FileNotFoundError(f"VGG-16 weights file not found: {path}")
    return None


VGG16_PREFIX = ((3, 64), (64, 64), "M", (64, 128), (128, 128), "M", (128, 256), (256, 256), (256, 256))


def vgg16_relu3_3() -> nn.Sequential:
    """torchvision's `vgg16().features[:16]` layer for layer (same indices, so the same state_dict keys),
    initialised as torchvision initialises VGG (Kaiming-normal fan_out convs, zero biases)."""
    layers: list[nn.Module] = []
    for item in VGG16_PREFIX:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            conv = nn.Conv2d(item[0], item[1], kernel_size=3, padding=1)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            layers += [conv, nn.ReLU(inplace=False)]
    return nn.Sequential(*layers)


def build_vgg16_features(path: str | os.PathLike | None = None, *, warn: bool = True) -> tuple[nn.Sequential, str]:
    """VGG-16 `features[:16]` (up to relu3_3), frozen; returns (module, "imagenet" | "random-seeded")."""
    found = find_vgg16_weights(path)
    if found is not None:
        features = vgg16_relu3_3()
        sd = torch.load(found, map_location="cpu", weights_only=True)
        sd = {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}
        wanted = set(features.state_dict())
        if not wanted <= set(sd):
            raise ValueError(f"{found}: not a torchvision VGG-16 state_dict (missing {sorted(wanted - set(sd))[:4]})")
        features.load_state_dict({k: sd[k] for k in wanted})
        source = "imagenet"
    else:
        if warn:
            warnings.warn(
                f"VGG-16 ImageNet weights not found ({VGG16_FILE} in {Path(torch.hub.get_dir()) / 'checkpoints'} "
                f"or $VLUR_VGG16); the CDRL term uses a randomly initialised VGG-16 (seed {RANDOM_VGG_SEED})",
                stacklevel=2,
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_VGG_SEED)
            features = vgg16_relu3_3()
        source = "random-seeded"
    for p in features.parameters():
        p.requires_grad_(False)
    return features.eval(), source


class CDRL(nn.Module):
    """Contrastive loss over VGG-16 features (see module docstring)."""

    def __init__(self, vgg_path: str | os.PathLike | None = None, features: nn.Sequential | None = None,
                 source: str | None = None, warn: bool = True):
        super().__init__()
        if features is None:
            features, source = build_vgg16_features(vgg_path, warn=warn)
        self.vgg = features
        self.source = source or "custom"
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):  # the VGG always stays in eval mode
        super().train(mode)
        self.vgg.eval()
        return self

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.mean) / self.std
        feats = []
        for a, b in VGG_SLICES:
            for layer in self.vgg[a:b]:
                x = layer(x)
            feats.append(x)
        return feats

    def forward(self, out: torch.Tensor, gt: torch.Tensor, inp: torch.Tensor,
                negatives: torch.Tensor | None = None) -> torch.Tensor:
        """`negatives`: B×N×3×H×W (N may be 0) or None."""
        n = 0 if negatives is None else negatives.shape[1]
        lam = 1.0 / (n + 1)
        b = out.shape[0]
        f_out = self.features(out)
        with torch.no_grad():  # targets: one batched VGG pass over gt, input and the negatives
            stack = [gt, inp] + [negatives[:, j] for j in range(n)]
            f_all = [f.split(b) for f in self.features(torch.cat(stack).to(out.dtype))]
        f_gt = [f[0] for f in f_all]
        f_in = [f[1] for f in f_all]
        f_neg = [[f[2 + j] for f in f_all] for j in range(n)]
        total = out.new_zeros(())
        for i in range(len(VGG_SLICES)):
            pos = F.l1_loss(f_out[i], f_gt[i])
            den = lam * F.l1_loss(f_out[i], f_in[i])
            if n:
                den = den + lam * sum(F.l1_loss(f_out[i], f[i]) for f in f_neg)
            total = total + pos / (den + CDRL_EPS)
        return total / len(VGG_SLICES)


class VLURLoss(nn.Module):
    """0.6·SmoothL1 + 0.3·(1 − MS-SSIM) + 0.1·CDRL; `forward` returns (total, {term: value})."""

    def __init__(self, vgg_path: str | os.PathLike | None = None, weights: dict | None = None,
                 cdrl: CDRL | None = None, warn: bool = True, smooth_l1_beta: float = 1.0):
        super().__init__()
        if not smooth_l1_beta > 0:
            raise ValueError(f"smooth_l1_beta must be > 0, got {smooth_l1_beta}")
        self.weights = dict(weights or LOSS_WEIGHTS)
        self.smooth_l1_beta = float(smooth_l1_beta)
        self.cdrl = cdrl if cdrl is not None else CDRL(vgg_path, warn=warn)

    @property
    def vgg_source(self) -> str:
        return self.cdrl.source

    def forward(self, out: torch.Tensor, gt: torch.Tensor, inp: torch.Tensor,
                negatives: torch.Tensor | None = None, *, with_cdrl: bool = True
                ) -> tuple[torch.Tensor, dict[str, float]]:
        """`with_cdrl=False` leaves the CDRL term out of this step's total (reported as NaN); the other
        weights are unchanged (`vlur.train --cdrl-every`)."""
        terms = {
            "smooth_l1": F.smooth_l1_loss(out, gt, beta=self.smooth_l1_beta),
            "ms_ssim": msssim_loss(out, gt),
        }
        if with_cdrl:
            terms["cdrl"] = self.cdrl(out, gt, inp, negatives)
        total = sum(self.weights[k] * v for k, v in terms.items())
        values = {k: float(v.detach()) for k, v in terms.items()}
        values.setdefault("cdrl", math.nan)
        return total, values
