"""OKNet (Cui et al., AAAI 2024, "Omni-Kernel Network for Image Restoration"), re-implemented.

Written from the paper and the published facts about the release (official repository c-yn/OKNet, commit
159cbc1; one architecture for all its released weights: RESIDE ITS / OTS dehazing, CSD / SRRS / Snow100K
desnowing). The released configuration is `OKNet(num_res=4)`: base width 32, three levels (32, 64, 128
channels), 4 residual blocks per encoder / decoder stage. Module names follow the official state_dict
(164 keys, 4,722,857 parameters, including the misspelt `bottelneck`), so the authors' files load unchanged.

Data flow (MIMO-UNet style, multi-input and multi-output)::

    x_2 = nearest ½ resize of x, x_4 = nearest ½ resize of x_2     (F.interpolate default mode: nearest)
    x → 3×3 conv (32) → Encoder[0] ───────────────────────────────────────────────┐ res1
      → stride-2 3×3 conv (64) ⊕ SCM2(x_2) → FAM2 (3×3) → Encoder[1] ─────────────┐ │ res2
      → stride-2 3×3 conv (128) ⊕ SCM1(x_4) → FAM1 (3×3) → Encoder[2]             │ │
      → omni-kernel bottleneck → Decoder[0] → ConvsOut[0] + x_4  = quarter output │ │
      → 4×4 stride-2 transposed conv (64) ⊕ res2 → 1×1 → Decoder[1] → ConvsOut[1] + x_2 = half output
      → 4×4 stride-2 transposed conv (32) ⊕ res1 → 1×1 → Decoder[2] → 3×3 conv + x = full output

(⊕ = channel concatenation; every convolution has a bias; GELU is the exact one.) A residual block is
conv3×3-GELU-conv3×3 plus its input. SCM (shallow convolutional module) maps a downscaled image to features:
3×3 → 1×1 → 3×3 → 1×1 convolutions (GELU after the first three), then an affine InstanceNorm.

The omni-kernel bottleneck (128 channels) takes u = GELU(1×1 conv(z)) and sums
z + dw1×63(u) + dw63×1(u) + dw63×63(u) + dw1×1(u) + global(u), then ReLU and a 1×1 conv. The global
branch: FCA = |ifft2(fac_conv(avgpool(u)) · fft2(u))| (one scalar per channel scaling the spectrum); SCA =
conv1×1(avgpool(FCA)) · FCA; FGM(s) = |ifft2(dwconv1(s) · fft2(dwconv2(s)))| · alpha + s · beta, where the
spatial-domain dwconv1(s) multiplies the spectrum elementwise. FGM's 3×3 `conv` is in the state_dict but
unused by the forward pass; it is kept so the checkpoint loads strictly.

`OKNet.forward(x)` takes B×3×H×W in [0, 1] (no normalisation) with H, W multiples of 4 and returns the list
[quarter, half, full] like the official module, unclamped. The stride-2 convolutions give ceil(H/2) while the
nearest ½ resize gives floor(H/2), so other sizes fail inside the network, as in the original.

Adapter (`OKNetRestorer`), following the official eval.py: reflect-pad bottom / right to the next multiple
of 4 (only when needed; replicate along a side too short to reflect), run, take the full-resolution output
(index 2), crop back to H×W and clamp to [0, 1]. Batch 1 in the official test; batching changes nothing
(every operation is per image). No self-ensemble, no tiling, no resizing. OKNet is blind: a degradation
type, if given, is ignored.

Checkpoints: training saves `torch.save({'model': state_dict})` as `.pkl` files and eval.py loads
`torch.load(path)['model']` strictly into a bare network; the READMEs link a Google Drive folder without
naming its files, so the harness looks for `CHECKPOINT_NAME` in --weights-dir (save the chosen released
file under that name) or takes any file with --weights. Plain state_dicts and `module.` prefixes are also
accepted.
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
    display="OKNet",
    paper=Paper("Omni-Kernel Network for Image Restoration", "AAAI", 2024),
    code="https://github.com/c-yn/OKNet",
    licence="MIT",
    files=("oknet.pkl",),
    checkpoint_format="`{'model': state_dict}` .pkl",
    published_at=(
        "https://github.com/c-yn/OKNet (Dehazing/README.md and Desnowing/README.md: Google Drive folder with the "
        "ITS, OTS, CSD, SRRS and Snow100K models, .pkl files holding {'model': state_dict})"
    ),
    modes=("auto", "text"),
    blind=True,
    adapter="[0,1] input; reflect-pad to a multiple of 4; the full-resolution output of the three scales; "
    "clamp (as eval.py)",
    weights_note="any of the released .pkl renamed, or `--weights FILE`",
)
#: Where the authors publish the released checkpoints.
PUBLISHED_AT = INFO.published_at
#: File name looked up in --weights-dir (the Drive folder does not fix one: save the chosen model under it).
CHECKPOINT_NAME = INFO.files[0]

#: The network needs H and W divisible by this; the adapter pads other sizes.
SIZE_MULTIPLE = 4

_BASE = 32


class BasicConv(nn.Module):
    """A convolution (or a 4×4 stride-2 transposed convolution), with bias, optionally followed by GELU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, gelu: bool = True,
                 transpose: bool = False):
        super().__init__()
        if transpose:
            conv = nn.ConvTranspose2d(cin, cout, kernel, stride=stride, padding=kernel // 2 - 1)
        else:
            conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)
        self.main = nn.Sequential(conv, nn.GELU()) if gelu else nn.Sequential(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class ResBlock(nn.Module):
    """conv3×3-GELU-conv3×3 plus the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.main = nn.Sequential(BasicConv(channels, channels, 3), BasicConv(channels, channels, 3, gelu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.main(x)


class ResStage(nn.Module):
    """`depth` residual blocks at constant width (the official EBlock / DBlock)."""

    def __init__(self, channels: int, depth: int):
        super().__init__()
        self.layers = nn.Sequential(*(ResBlock(channels) for _ in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SCM(nn.Module):
    """Shallow convolutional module: a downscaled image to `channels` features, InstanceNorm at the end."""

    def __init__(self, channels: int):
        super().__init__()
        q, h = channels // 4, channels // 2
        self.main = nn.Sequential(
            BasicConv(3, q, 3),
            BasicConv(q, h, 1),
            BasicConv(h, h, 3),
            BasicConv(h, channels, 1, gelu=False),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class FAM(nn.Module):
    """Feature attention module as released: a 3×3 convolution of the concatenated pair (no activation)."""

    def __init__(self, channels: int):
        super().__init__()
        self.merge = BasicConv(channels * 2, channels, 3, gelu=False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.merge(torch.cat([a, b], dim=1))


class FGM(nn.Module):
    """Frequency gating: |ifft2(dwconv1(s) · fft2(dwconv2(s)))| · alpha + s · beta.

    `conv` (3×3, C → 2C) belongs to the released state_dict but not to the computation.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 2, 3, padding=1)  # unused
        self.dwconv1 = nn.Conv2d(channels, channels, 1)
        self.dwconv2 = nn.Conv2d(channels, channels, 1)
        self.alpha = nn.Parameter(torch.zeros(channels, 1, 1))
        self.beta = nn.Parameter(torch.ones(channels, 1, 1))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        spectrum = torch.fft.fft2(self.dwconv2(s), norm="backward")
        gated = torch.fft.ifft2(self.dwconv1(s) * spectrum, dim=(-2, -1), norm="backward").abs()
        return gated * self.alpha + s * self.beta


class OmniKernel(nn.Module):
    """The omni-kernel bottleneck: large depthwise kernels (1×63, 63×1, 63×63), a 1×1 depthwise local
    branch and a frequency-domain global branch (FCA → SCA → FGM), summed with the input."""

    def __init__(self, channels: int, kernel: int = 63):
        super().__init__()
        pad = kernel // 2
        self.in_conv = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.GELU())
        self.out_conv = nn.Conv2d(channels, channels, 1)
        self.dw_13 = nn.Conv2d(channels, channels, (1, kernel), padding=(0, pad), groups=channels)
        self.dw_31 = nn.Conv2d(channels, channels, (kernel, 1), padding=(pad, 0), groups=channels)
        self.dw_33 = nn.Conv2d(channels, channels, kernel, padding=pad, groups=channels)
        self.dw_11 = nn.Conv2d(channels, channels, 1, groups=channels)
        self.conv = nn.Conv2d(channels, channels, 1)  # SCA: channel weights from the pooled FCA output
        self.fac_conv = nn.Conv2d(channels, channels, 1)  # FCA: per-channel spectrum scale
        self.fgm = FGM(channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        u = self.in_conv(z)
        scale = self.fac_conv(u.mean(dim=(-2, -1), keepdim=True))
        fca = torch.fft.ifft2(scale * torch.fft.fft2(u, norm="backward"), dim=(-2, -1), norm="backward").abs()
        sca = self.conv(fca.mean(dim=(-2, -1), keepdim=True)) * fca
        out = z + self.dw_13(u) + self.dw_31(u) + self.dw_33(u) + self.dw_11(u) + self.fgm(sca)
        return self.out_conv(F.relu(out))


class OKNet(nn.Module):
    """OKNet in the released configuration (`num_res=4`, base width 32).

    `forward(x)`: B×3×H×W in [0, 1], H and W multiples of 4; returns [quarter, half, full] restored images
    (B×3×H/4×W/4, B×3×H/2×W/2, B×3×H×W), unclamped — the official test uses the last one.
    """

    def __init__(self, num_res: int = 4):
        super().__init__()
        c1, c2, c3 = _BASE, _BASE * 2, _BASE * 4
        self.Encoder = nn.ModuleList([ResStage(c1, num_res), ResStage(c2, num_res), ResStage(c3, num_res)])
        self.feat_extract = nn.ModuleList([
            BasicConv(3, c1, 3),
            BasicConv(c1, c2, 3, stride=2),
            BasicConv(c2, c3, 3, stride=2),
            BasicConv(c3, c2, 4, stride=2, transpose=True),
            BasicConv(c2, c1, 4, stride=2, transpose=True),
            BasicConv(c1, 3, 3, gelu=False),
        ])
        self.Decoder = nn.ModuleList([ResStage(c3, num_res), ResStage(c2, num_res), ResStage(c1, num_res)])
        self.Convs = nn.ModuleList([BasicConv(c3, c2, 1), BasicConv(c2, c1, 1)])
        self.ConvsOut = nn.ModuleList([BasicConv(c3, 3, 3, gelu=False), BasicConv(c2, 3, 3, gelu=False)])
        self.FAM1 = FAM(c3)
        self.SCM1 = SCM(c3)
        self.FAM2 = FAM(c2)
        self.SCM2 = SCM(c2)
        self.bottelneck = OmniKernel(c3)  # (sic) the released key prefix

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x_2 = F.interpolate(x, scale_factor=0.5)  # nearest, as released
        x_4 = F.interpolate(x_2, scale_factor=0.5)
        z2 = self.SCM2(x_2)
        z4 = self.SCM1(x_4)

        res1 = self.Encoder[0](self.feat_extract[0](x))
        res2 = self.Encoder[1](self.FAM2(self.feat_extract[1](res1), z2))
        z = self.Encoder[2](self.FAM1(self.feat_extract[2](res2), z4))
        z = self.Decoder[0](self.bottelneck(z))
        out_quarter = self.ConvsOut[0](z) + x_4

        z = self.Convs[0](torch.cat([self.feat_extract[3](z), res2], dim=1))
        z = self.Decoder[1](z)
        out_half = self.ConvsOut[1](z) + x_2

        z = self.Convs[1](torch.cat([self.feat_extract[4](z), res1], dim=1))
        out = self.feat_extract[5](self.Decoder[2](z)) + x
        return [out_quarter, out_half, out]


def pad_to_multiple(x: torch.Tensor, multiple: int = SIZE_MULTIPLE) -> torch.Tensor:
    """`baselines.layers.pad_to_multiple` with this network's size multiple as the default."""
    return layers.pad_to_multiple(x, multiple)


# ---------------------------------------------------------------------------------------------- weights


def oknet_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """The OKNet weights in a file: `{'model': state_dict}` as the authors save them, or a plain state_dict
    (also under `state_dict`), `module.` prefixes removed. Read with `weights_only=True`."""
    path = Path(path)
    sd = extract_state_dict(read_checkpoint(path), path, nested=("model", "state_dict"))
    return strip_prefix(sd, "module.")


def load_oknet(path: Path | str, device: torch.device | str = "cpu") -> OKNet:
    """Build OKNet and load a checkpoint strictly; eval mode.

    Raises `MissingWeightsError` when the file does not exist and `WeightsError` when it is unreadable or
    does not match the network (the message names the file and the first differing keys and shapes).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError("oknet", path, PUBLISHED_AT)
    model = OKNet()
    load_strict(model, oknet_state_dict(path), path)
    return model.eval().to(device)


# ---------------------------------------------------------------------------------------------- adapter


class OKNetRestorer(layers.PaddedRestorer):
    """`Restorer` adapter (blind: the degradation type is ignored): pad to 4, full-resolution output, crop,
    clamp to [0, 1] — the official eval.py convention."""

    name = "oknet"
    multiple = SIZE_MULTIPLE

    def forward_model(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[2]  # the full-resolution output of the three


@register(
    "oknet",
    description="OKNet (AAAI 2024), omni-kernel network, official weights ({'model'} .pkl); blind, text ignored",
    info=INFO,
)
def create(opts: MethodOptions) -> OKNetRestorer:
    """OKNet from --weights, or --weights-dir/oknet.pkl; `random_weights` builds it with seed 0 instead."""
    check_method_args("oknet", opts, {})
    return OKNetRestorer.create(opts, OKNet, load_oknet, CHECKPOINT_NAME)


__all__ = [
    "CHECKPOINT_NAME",
    "FGM",
    "OKNet",
    "OKNetRestorer",
    "OmniKernel",
    "PUBLISHED_AT",
    "SIZE_MULTIPLE",
    "create",
    "load_oknet",
    "oknet_state_dict",
    "pad_to_multiple",
]
