"""Fourmer (Zhou et al., ICML 2023, "Fourmer: An Efficient Global Modeling Paradigm for Image Restoration"),
re-implemented for its only released weights: the low-light enhancement network trained on LOL.

Written from the paper and the published facts about the release (official repository manman1995/Fourmer,
commit 02b66eb, `LLIE/models/archs/EnhanceN_arch.py`, class `InteractNet(nc=8)`). Module names follow the
released state_dict (376 keys, 84,491 parameters), so `LLIE/pretrain/LOL/0_bestavg.pth` loads unchanged.
(The LOL option file selects a variant with 7×7 / 5×5 convolutions; the released file does not fit it, it
fits this one.)

Data flow (nc = 8; channels per level 8 / 16 / 24)::

    x → 1×1 conv 3→8 (`extract`) = f
    ProcessNet(f): 3×3 conv → PB(8) ──────────────────────────────────────────────┐ s1
                   → 2×2 stride-2 conv 8→16 → PB(16) ──────────────────────────┐   │ s2
                   → 2×2 stride-2 conv 16→24 → PB(24)                           │   │
                   → bilinear resize to s2's size ⊕ s2 → 1×1 transposed conv 40→16 → PB(16)
                   → bilinear resize to s1's size ⊕ s1 → 1×1 transposed conv 24→8  → PB(8) → 3×3 conv
    ProcessNet(f) + f → 1×1 conv 8→3 (`recons`)          (no image residual, no clamp)

(⊕ = channel concatenation; bilinear with align_corners False; every convolution has a bias.)
A ProcessBlock (PB) is a SpatialFuse followed by a ChannelFuse; both are "x + cat-conv([spatial, frequency])":
the spatial path is x + InvBlock(x); the frequency path takes rfft2(x), runs conv-LeakyReLU(0.1)-conv on the
real and on the imaginary part separately (depthwise 3×3 in SpatialFuse, 1×1 in ChannelFuse), returns with
irfft2 at the input size and applies a conv (3×3 / 1×1); the concatenation is fused by a 3×3 / 1×1 conv.
The InvBlock splits the channels in halves (x1 | x2): y1 = x1 + F(x2); s = 0.8·(2·sigmoid(H(y1)) − 1);
y2 = x2·exp(s) + G(y1). F, G, H are HIN blocks: conv3×3 → InstanceNorm (affine) on the first half of the
channels → LeakyReLU(0.1) → conv3×3 → LeakyReLU(0.1) → + 1×1 conv of the block input.

`Fourmer.forward(x)` takes B×3×H×W RGB in [0, 1] (no normalisation), any H, W ≥ 4 (halvings floor, the
decoder resizes back to the skip sizes, irfft2 gets the explicit size), and returns B×3×H×W unclamped.

Adapter (`FourmerRestorer`): the official data loader resizes every image (cv2 bilinear) to the next multiple
of 4 in H and W and never resizes back; instead of resizing, the adapter reflect-pads bottom / right to the
next multiple of 4 (replicate along a side too short to reflect), runs the network and crops back, so the
output is pixel-aligned with the input (a no-op at CDD-11's 1080×720 and LOL's 600×400). The output is
clamped to [0, 1] as the official validation does (tensor2img) before quantising. No tiling, no
self-ensemble. Fourmer is blind: a degradation type, if given, is ignored.

Checkpoint: `0_bestavg.pth`, a plain state_dict (no wrapper, no `module.` prefix; the official loader
would strip one), committed to the repository itself.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from baselines import layers
from harness.registry import MethodInfo, MethodOptions, Paper, check_method_args, register
from harness.weights import (
    MissingWeightsError,
    extract_state_dict,
    load_strict,
    read_checkpoint,
    strip_prefix,
)

INFO = MethodInfo(
    display="Fourmer",
    paper=Paper("Fourmer: An Efficient Global Modeling Paradigm for Image Restoration", "ICML", 2023),
    code="https://github.com/manman1995/Fourmer",
    licence="not stated",
    files=("0_bestavg.pth",),
    checkpoint_format="plain state_dict (LOL low-light weights)",
    published_at="https://github.com/manman1995/Fourmer (file LLIE/pretrain/LOL/0_bestavg.pth in the repository)",
    modes=("auto", "text"),
    blind=True,
    adapter="[0,1] input; reflect-pad to a multiple of 4 instead of the loader's resize; clamp",
)
#: Where the authors publish the checkpoint (inside the repository).
PUBLISHED_AT = INFO.published_at
#: File name of the released checkpoint.
CHECKPOINT_NAME = INFO.files[0]

#: The official loader brings every image to multiples of 4; the adapter pads to them instead.
SIZE_MULTIPLE = 4

_SLOPE = 0.1  # every LeakyReLU in Fourmer


class HINBlock(nn.Module):
    """Half-instance-normalised conv block (the official UNetConvBlock):
    conv3×3 → IN(first half) → LReLU → conv3×3 → LReLU, plus a 1×1 conv of the input."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.identity = nn.Conv2d(cin, cout, 1)
        self.conv_1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv_2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.norm = nn.InstanceNorm2d(cout // 2, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_1(x)
        half = self.norm.num_features
        y = torch.cat([self.norm(y[:, :half]), y[:, half:]], dim=1)
        y = F.leaky_relu(self.conv_2(F.leaky_relu(y, _SLOPE)), _SLOPE)
        return y + self.identity(x)


class InvBlock(nn.Module):
    """Affine-coupling block on the two channel halves: y1 = x1 + F(x2); y2 = x2·exp(s) + G(y1),
    s = clamp·(2·sigmoid(H(y1)) − 1)."""

    def __init__(self, channels: int, split: int, clamp: float = 0.8):
        super().__init__()
        self.split = split
        self.clamp = clamp
        self.F = HINBlock(channels - split, split)
        self.G = HINBlock(split, channels - split)
        self.H = HINBlock(split, channels - split)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x[:, : self.split], x[:, self.split :]
        y1 = x1 + self.F(x2)
        s = self.clamp * (torch.sigmoid(self.H(y1)) * 2 - 1)
        y2 = x2 * torch.exp(s) + self.G(y1)
        return torch.cat([y1, y2], dim=1)


class SpaBlock(nn.Module):
    """Spatial path: x + InvBlock(x)."""

    def __init__(self, channels: int):
        super().__init__()
        self.block = InvBlock(channels, channels // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class SpectrumConv(nn.Module):
    """conv-LReLU-conv applied separately to the real and the imaginary part of a spectrum.

    `kernel` 3 → depthwise 3×3 convolutions (spatial mixing), 1 → full 1×1 convolutions (channel mixing).
    """

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        groups = channels if kernel > 1 else 1

        def branch() -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=groups),
                nn.LeakyReLU(_SLOPE),
                nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=groups),
            )

        self.processreal = branch()
        self.processimag = branch()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.complex(self.processreal(z.real), self.processimag(z.imag))


class FuseBlock(nn.Module):
    """x + cat([x + InvBlock(x), conv(irfft2(SpectrumConv(rfft2(x))))]) fused by a conv.

    kernel 3: the official SpatialFuse; kernel 1: ChannelFuse."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.spatial_process = SpaBlock(channels)
        self.frequency_process = SpectrumConv(channels, kernel)
        self.frequency_spatial = nn.Conv2d(channels, channels, kernel, padding=kernel // 2)
        self.cat = nn.Conv2d(2 * channels, channels, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        freq = self.frequency_process(torch.fft.rfft2(x, norm="backward"))
        freq = self.frequency_spatial(torch.fft.irfft2(freq, s=(h, w), norm="backward"))
        return x + self.cat(torch.cat([self.spatial_process(x), freq], dim=1))


class ProcessBlock(nn.Module):
    """Spatial fusion (3×3 / depthwise) then channel fusion (1×1)."""

    def __init__(self, channels: int):
        super().__init__()
        self.spa = FuseBlock(channels, 3)
        self.cha = FuseBlock(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cha(self.spa(x))


class ProcessNet(nn.Module):
    """Three-level U-shaped body (nc, 2nc, 3nc channels) of ProcessBlocks."""

    def __init__(self, nc: int):
        super().__init__()
        self.conv0 = nn.Conv2d(nc, nc, 3, padding=1)
        self.conv1 = ProcessBlock(nc)
        self.downsample1 = nn.Conv2d(nc, nc * 2, 2, stride=2)
        self.conv2 = ProcessBlock(nc * 2)
        self.downsample2 = nn.Conv2d(nc * 2, nc * 3, 2, stride=2)
        self.conv3 = ProcessBlock(nc * 3)
        self.up1 = nn.ConvTranspose2d(nc * 5, nc * 2, 1)
        self.conv4 = ProcessBlock(nc * 2)
        self.up2 = nn.ConvTranspose2d(nc * 3, nc, 1)
        self.conv5 = ProcessBlock(nc)
        self.convout = nn.Conv2d(nc, nc, 3, padding=1)

    @staticmethod
    def _resize_cat(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([x, skip], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = self.conv1(self.conv0(x))
        s2 = self.conv2(self.downsample1(s1))
        z = self.conv3(self.downsample2(s2))
        z = self.conv4(self.up1(self._resize_cat(z, s2)))
        z = self.conv5(self.up2(self._resize_cat(z, s1)))
        return self.convout(z)


class Fourmer(nn.Module):
    """Fourmer's LLIE network (official `InteractNet`) in the released configuration, nc = 8.

    `forward(x)`: B×3×H×W RGB in [0, 1], any H, W ≥ 4; returns B×3×H×W, unclamped.
    """

    def __init__(self, nc: int = 8):
        super().__init__()
        self.extract = nn.Conv2d(3, nc, 1)
        self.process = ProcessNet(nc)
        self.recons = nn.Conv2d(nc, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.extract(x)
        return self.recons(self.process(f) + f)


def pad_to_multiple(x: torch.Tensor, multiple: int = SIZE_MULTIPLE) -> torch.Tensor:
    """`baselines.layers.pad_to_multiple` with this network's size multiple as the default."""
    return layers.pad_to_multiple(x, multiple)


# ---------------------------------------------------------------------------------------------- weights


def fourmer_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """The Fourmer weights in a file: the released plain state_dict (also accepted under `state_dict`,
    `model` or `net`), `module.` prefixes removed. Read with `weights_only=True`."""
    path = Path(path)
    sd = extract_state_dict(read_checkpoint(path), path)
    return strip_prefix(sd, "module.")


def load_fourmer(path: Path | str, device: torch.device | str = "cpu") -> Fourmer:
    """Build Fourmer and load a checkpoint strictly; eval mode.

    Raises `MissingWeightsError` when the file does not exist and `WeightsError` when it is unreadable or
    does not match the network (the message names the file and the first differing keys and shapes).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError("fourmer", path, PUBLISHED_AT)
    model = Fourmer()
    load_strict(model, fourmer_state_dict(path), path)
    return model.eval().to(device)


# ---------------------------------------------------------------------------------------------- adapter


class FourmerRestorer(layers.PaddedRestorer):
    """`Restorer` adapter (blind: the degradation type is ignored): pad to 4 (instead of the official
    resize), run, crop back, clamp to [0, 1]."""

    name = "fourmer"
    multiple = SIZE_MULTIPLE


@register(
    "fourmer",
    description="Fourmer (ICML 2023), official LOL low-light weights 0_bestavg.pth; blind, text ignored",
    info=INFO,
)
def create(opts: MethodOptions) -> FourmerRestorer:
    """Fourmer from --weights, or --weights-dir/0_bestavg.pth; `random_weights` builds it with seed 0."""
    check_method_args("fourmer", opts, {})
    return FourmerRestorer.create(opts, Fourmer, load_fourmer, CHECKPOINT_NAME)


__all__ = [
    "CHECKPOINT_NAME",
    "Fourmer",
    "FourmerRestorer",
    "HINBlock",
    "InvBlock",
    "PUBLISHED_AT",
    "ProcessBlock",
    "SIZE_MULTIPLE",
    "create",
    "fourmer_state_dict",
    "load_fourmer",
    "pad_to_multiple",
]
