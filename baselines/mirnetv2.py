"""MIRNet-v2 (Zamir et al., TPAMI 2022, "Learning enriched features for fast image restoration and
enhancement"), re-implemented for evaluation.

A single-scale convolutional restorer that keeps a full-resolution stream throughout and exchanges
information with ½- and ¼-resolution streams inside every block. It is a blind method: it sees only the
image, never a degradation type.

Released configuration (the LoL / MIT-Adobe FiveK enhancement and SIDD real-denoising weights all share it):
3 → 3 channels, n_feat 80, chan_factor 1.5, n_RRG 4, n_MRB 2, height 3, width 2, scale 1, bias-free convs,
task None. `MIRNetV2()` builds exactly that; module and attribute names follow the official
`MIRNet_v2`, so the released state_dict (238 tensors, 5,858,560 parameters) loads key for key.

Data flow (stream widths 80 / 120 / 180 at full / ½ / ¼ resolution, int(80·1.5^k))::

    x → 3×3 conv 3→80 → RRG(groups 1) → RRG(2) → RRG(4) → RRG(4) → 3×3 conv 80→3 → + x

* RRG (recursive residual group) = MRB → MRB → 3×3 conv, plus the group's input.
* MRB (multi-scale residual block): the input feeds three streams (full; ½ via Down; ¼ via Down, Down).
  Each stream goes through its own RCB; then the ¼ stream is upsampled into the ½ stream and the two are
  fused by an SKFF, and the fused ½ stream is upsampled into the full stream and fused likewise. This
  "RCB, fuse, fuse" round runs twice with the *same* three RCBs and the *same* two SKFFs (weight sharing,
  as in the official code); the four upsamplers (`up21_1`, `up21_2`, `up32_1`, `up32_2`) are distinct.
  The full stream then passes a 1×1 conv and the block's input is added.
* RCB (residual context block): 3×3 conv → LeakyReLU → 3×3 conv (grouped as the RRG says) → global context
  (a 1×1 conv gives one logit per pixel, softmax over all H·W pixels, attention-weighted channel sum, then
  1×1 → LeakyReLU → 1×1, broadcast-added) → LeakyReLU → + input.
* SKFF (selective kernel feature fusion, 2 branches): global average pool of the branch sum, 1×1 conv to
  max(C/8, 4) channels + LeakyReLU, one 1×1 conv per branch, softmax across the branches per channel,
  weighted sum of the branches.
* Down = 2×2 average pool (ceil mode, padding excluded) then 1×1 conv to 1.5× channels; Up = 1×1 conv to
  C/1.5 channels then bilinear ×2 (align_corners False). Every LeakyReLU has slope 0.2.

As in the official module, `n_RRG`, `height`, `width` and `scale` are accepted but do not change the network
(the body is always four RRGs with groups 1, 2, 4, 4 and every SKFF fuses two branches), and only
`task="defocus_deblurring"` changes the forward (a feature-level skip instead of the image residual).

`MIRNetV2.forward(x)` is the official forward: x in [0, 1], no normalisation, H and W multiples of 4 (two
ceil-mode halvings must come back to the same size; other sizes cannot run), output unclamped.

The adapter (`MIRNetV2Restorer`) does what the official enhancement test (`Enhancement/test.py`) does around
the model: reflect-pad the bottom and right up to the next multiple of 4 (only when the side is not one
already), run, crop back to H×W, clamp to [0, 1]. Padding falls back to replicate along a side too short to
reflect (fewer pixels than the padding plus one), where the official script would fail. The official demo's
optional tiling is not used: the harness has its own tiling for large images.

Weights: the authors publish BasicSR checkpoints `{'params': state_dict}` (no `module.` prefix) as assets of
the GitHub release v1.0.0: `enhancement_lol.pth`, `enhancement_fivek.pth`, `real_denoising.pth` (`sr_x4.pth`
is a different, scale-4 graph and does not load here). `load_mirnetv2` also reads `params_ema`, a plain
state_dict, `state_dict` / `model` / `net` nesting and DataParallel `module.` prefixes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from baselines import layers
from harness.registry import MethodArgError, MethodInfo, MethodOptions, Paper, check_method_args, register
from harness.weights import (
    MissingWeightsError,
    extract_state_dict,
    load_strict,
    read_checkpoint,
    sha256_file,
    strip_prefix,
)

INFO = MethodInfo(
    display="MIRNet-v2",
    paper=Paper("Learning Enriched Features for Fast Image Restoration and Enhancement", "TPAMI", 2022),
    code="https://github.com/swz30/MIRNetv2",
    licence="Academic Public License (non-commercial use only)",
    files=("enhancement_lol.pth",),
    checkpoint_format="BasicSR `{'params'}`",
    published_at=(
        "https://github.com/swz30/MIRNetv2/releases/tag/v1.0.0 (release assets enhancement_lol.pth, "
        "enhancement_fivek.pth, real_denoising.pth)"
    ),
    modes=("auto", "text"),
    blind=True,
    adapter="[0,1] input; reflect-pad bottom/right to a multiple of 4, crop back, clamp (as Enhancement/test.py)",
    weights_note="`--method-arg release=enhancement_fivek|real_denoising` picks another released file",
)
#: Where the authors publish the checkpoints.
PUBLISHED_AT = INFO.published_at
#: The released file the method loads by default from a weights folder.
CHECKPOINT_NAME = INFO.files[0]
#: `--method-arg release=...` choices: the released files with the n_feat 80 / chan_factor 1.5 graph.
RELEASES: dict[str, str] = {
    "enhancement_lol": CHECKPOINT_NAME,
    "enhancement_fivek": "enhancement_fivek.pth",
    "real_denoising": "real_denoising.pth",
}
#: Keys a checkpoint may nest the network under, in the order they are tried ('params' is what the
#: official test scripts load; BasicSR adds 'params_ema' when it trains with EMA).
CHECKPOINT_KEYS = ("params", "params_ema", "state_dict", "model", "net")

#: H and W must be multiples of this (two 2× down-samplings that must come back to the same size).
SIZE_MULTIPLE = 4

_SLOPE = 0.2  # every LeakyReLU in MIRNet-v2


def _conv(cin: int, cout: int, k: int = 1, groups: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=bias)


class SKFF(nn.Module):
    """Selective kernel feature fusion of `branches` same-shaped maps with per-channel softmax weights."""

    def __init__(self, channels: int, branches: int = 2, reduction: int = 8, bias: bool = False):
        super().__init__()
        hidden = max(int(channels / reduction), 4)
        self.branches = branches
        self.conv_du = nn.Sequential(_conv(channels, hidden, bias=bias), nn.LeakyReLU(_SLOPE))
        self.fcs = nn.ModuleList(_conv(hidden, channels, bias=bias) for _ in range(branches))

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(feats) != self.branches:
            raise ValueError(f"SKFF expects {self.branches} inputs, got {len(feats)}")
        stacked = torch.stack(tuple(feats), dim=1)  # B×n×C×H×W
        squeezed = self.conv_du(stacked.sum(dim=1).mean(dim=(-2, -1), keepdim=True))  # B×d×1×1
        logits = torch.stack([fc(squeezed) for fc in self.fcs], dim=1)  # B×n×C×1×1
        return (stacked * logits.softmax(dim=1)).sum(dim=1)


class ContextBlock(nn.Module):
    """Global context: softmax-over-pixels pooling of the map, a 1×1-LReLU-1×1 transform, added everywhere."""

    def __init__(self, channels: int, bias: bool = False):
        super().__init__()
        self.conv_mask = _conv(channels, 1, bias=bias)
        self.channel_add_conv = nn.Sequential(
            _conv(channels, channels, bias=bias), nn.LeakyReLU(_SLOPE), _conv(channels, channels, bias=bias)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        weights = self.conv_mask(x).reshape(b, h * w, 1).softmax(dim=1)  # B×HW×1
        context = torch.bmm(x.reshape(b, c, h * w), weights).reshape(b, c, 1, 1)
        return x + self.channel_add_conv(context)


class RCB(nn.Module):
    """Residual context block: conv3×3-LReLU-conv3×3 (grouped), global context, LReLU, plus the input."""

    def __init__(self, channels: int, groups: int = 1, bias: bool = False):
        super().__init__()
        self.body = nn.Sequential(
            _conv(channels, channels, 3, groups, bias), nn.LeakyReLU(_SLOPE), _conv(channels, channels, 3, groups, bias)
        )
        self.gcnet = ContextBlock(channels, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.gcnet(self.body(x)), _SLOPE) + x


class _HalveStep(nn.Module):
    """½ resolution (2×2 average, ceil mode, padding not counted), then 1×1 conv to int(C·factor)."""

    def __init__(self, channels: int, factor: float):
        super().__init__()
        self.bot = nn.Sequential(
            nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False), _conv(channels, int(channels * factor))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bot(x)


class _DoubleStep(nn.Module):
    """1×1 conv to int(C // factor), then bilinear ×2 (align_corners False)."""

    def __init__(self, channels: int, factor: float):
        super().__init__()
        self.bot = nn.Sequential(
            _conv(channels, int(channels // factor)), nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bot(x)


class Rescale(nn.Module):
    """One 2× resampling step (`halve` or double), kept in a `body` sequence as the checkpoint names it."""

    def __init__(self, channels: int, factor: float, halve: bool):
        super().__init__()
        self.body = nn.Sequential(_HalveStep(channels, factor) if halve else _DoubleStep(channels, factor))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class MRB(nn.Module):
    """Multi-scale residual block: three streams (1, ½, ¼), two rounds of shared RCBs and SKFF fusions."""

    def __init__(self, n_feat: int, chan_factor: float, groups: int = 1, bias: bool = False):
        super().__init__()
        c1, c2, c3 = (int(n_feat * chan_factor**k) for k in range(3))
        self.dau_top = RCB(c1, groups, bias)
        self.dau_mid = RCB(c2, groups, bias)
        self.dau_bot = RCB(c3, groups, bias)
        self.down2 = Rescale(c1, chan_factor, halve=True)
        self.down4 = nn.Sequential(Rescale(c1, chan_factor, halve=True), Rescale(c2, chan_factor, halve=True))
        self.up21_1 = Rescale(c2, chan_factor, halve=False)
        self.up21_2 = Rescale(c2, chan_factor, halve=False)
        self.up32_1 = Rescale(c3, chan_factor, halve=False)
        self.up32_2 = Rescale(c3, chan_factor, halve=False)
        self.conv_out = _conv(n_feat, n_feat, bias=bias)
        self.skff_top = SKFF(c1, 2)
        self.skff_mid = SKFF(c2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, mid, bot = x, self.down2(x), self.down4(x)
        for up_mid, up_top in ((self.up32_1, self.up21_1), (self.up32_2, self.up21_2)):
            top, mid, bot = self.dau_top(top), self.dau_mid(mid), self.dau_bot(bot)
            mid = self.skff_mid([mid, up_mid(bot)])
            top = self.skff_top([top, up_top(mid)])
        return self.conv_out(top) + x


class RRG(nn.Module):
    """Recursive residual group: `n_mrb` MRBs and a 3×3 conv, plus the group's input."""

    def __init__(self, n_feat: int, n_mrb: int, chan_factor: float, bias: bool = False, groups: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            *(MRB(n_feat, chan_factor, groups, bias) for _ in range(n_mrb)), _conv(n_feat, n_feat, 3, bias=bias)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class MIRNetV2(nn.Module):
    """MIRNet-v2; the defaults are the released configuration (see the module docstring).

    `forward(inp_img)`: B×C×H×W in [0, 1] with H and W multiples of 4; returns the restored images,
    unclamped. The keyword arguments are the official ones (`network_g` of the authors' option files);
    `n_RRG`, `height`, `width` and `scale` are accepted and, as in the official code, have no effect.
    """

    #: channel groups of the RCB convolutions in the four RRGs (fixed in the official code)
    GROUPS = (1, 2, 4, 4)

    def __init__(
        self,
        inp_channels: int = 3,
        out_channels: int = 3,
        n_feat: int = 80,
        chan_factor: float = 1.5,
        n_RRG: int = 4,  # noqa: N803 - the official keyword
        n_MRB: int = 2,  # noqa: N803
        height: int = 3,
        width: int = 2,
        scale: int = 1,
        bias: bool = False,
        task: str | None = None,
    ):
        super().__init__()
        del n_RRG, height, width, scale  # accepted for option-file compatibility; unused, as upstream
        self.task = task
        self.conv_in = _conv(inp_channels, n_feat, 3, bias=bias)
        self.body = nn.Sequential(*(RRG(n_feat, n_MRB, chan_factor, bias, groups=g) for g in self.GROUPS))
        self.conv_out = _conv(n_feat, out_channels, 3, bias=bias)

    def forward(self, inp_img: torch.Tensor) -> torch.Tensor:
        h, w = inp_img.shape[-2:]
        if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
            raise ValueError(
                f"MIRNetV2 needs H and W divisible by {SIZE_MULTIPLE}, got {h}×{w} "
                "(pad first, e.g. with pad_to_multiple, as MIRNetV2Restorer does)"
            )
        shallow = self.conv_in(inp_img)
        deep = self.body(shallow)
        if self.task == "defocus_deblurring":
            return self.conv_out(deep + shallow)
        return self.conv_out(deep) + inp_img


def pad_to_multiple(x: torch.Tensor, multiple: int = SIZE_MULTIPLE) -> torch.Tensor:
    """`baselines.layers.pad_to_multiple` with this network's size multiple as the default."""
    return layers.pad_to_multiple(x, multiple)


# ---------------------------------------------------------------------------------------------- weights


def mirnetv2_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """The MIRNet-v2 weights in a file: the released BasicSR `{'params': state_dict}` (or `params_ema`), a
    plain state_dict or one nested under 'state_dict' / 'model' / 'net'; DataParallel `module.` removed."""
    path = Path(path)
    # 'params' is tried before 'params_ema', as the official test scripts load it
    sd = extract_state_dict(read_checkpoint(path), path, CHECKPOINT_KEYS)
    return strip_prefix(sd, "module.")


def load_mirnetv2(path: Path | str, device: torch.device | str = "cpu") -> MIRNetV2:
    """Build the released MIRNet-v2 and load a checkpoint strictly (see `mirnetv2_state_dict`); eval mode.

    Raises `MissingWeightsError` when the file does not exist and `WeightsError` when it is unreadable or
    does not match the network (the message lists the first differing keys and shapes).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError("mirnetv2", path, PUBLISHED_AT)
    model = MIRNetV2()
    load_strict(model, mirnetv2_state_dict(path), path)
    return model.eval().to(device)


# ---------------------------------------------------------------------------------------------- adapter


class MIRNetV2Restorer(layers.PaddedRestorer):
    """`Restorer` adapter: pad to a multiple of 4 (reflect, bottom/right), run, crop, clamp to [0, 1].

    Blind: the degradation type, if given, is ignored.
    """

    name = "mirnetv2"
    multiple = SIZE_MULTIPLE

    def weights_sha256(self) -> dict[str, str]:
        return {p.name: sha256_file(p) for p in self.weights_files}


_METHOD_ARGS = {"release": f"which released file to load from --weights-dir: {', '.join(RELEASES)}"}


@register(
    "mirnetv2",
    description="MIRNet-v2 (TPAMI 2022), official release weights (default enhancement_lol.pth); "
    "blind, a given degradation type is ignored",
    info=INFO,
)
def create(opts: MethodOptions) -> MIRNetV2Restorer:
    """MIRNet-v2 from --weights, or --weights-dir/<release file> (`--method-arg release=...`, default
    enhancement_lol); with `random_weights` the seeded default initialisation, no file."""
    args = check_method_args("mirnetv2", opts, _METHOD_ARGS)
    release = args.get("release", "enhancement_lol")
    if release not in RELEASES:
        raise MethodArgError(f"mirnetv2: unknown release {release!r} (accepted: {', '.join(RELEASES)})")
    if opts.random_weights:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = MIRNetV2()
        return MIRNetV2Restorer(model.eval().to(opts.device), (), weights_label="random")
    if opts.weights is not None:
        path = Path(opts.weights)
    else:
        path = Path(opts.weights_dir or ".") / RELEASES[release]
    if not path.is_file():
        raise MissingWeightsError("mirnetv2", path, PUBLISHED_AT)
    return MIRNetV2Restorer(load_mirnetv2(path, device=opts.device), [path])


__all__ = [
    "CHECKPOINT_NAME",
    "PUBLISHED_AT",
    "MIRNetV2",
    "MIRNetV2Restorer",
    "MRB",
    "RCB",
    "RRG",
    "SKFF",
    "ContextBlock",
    "create",
    "load_mirnetv2",
    "mirnetv2_state_dict",
    "pad_to_multiple",
]
