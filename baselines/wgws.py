"""WGWS-Net (Zhu et al., CVPR 2023, "Learning Weather-General and Weather-Specific Features for Image
Restoration Under Multiple Adverse Weather Conditions"), re-implemented for evaluation.

Released configuration reproduced here: the Stage-2 "K1" network of Setting 1 (`--flag K1 --base_channel 18
--num_block 6`, checkpoint `Setting1_K1.pth`), 7,575,354 parameters in 1180 state_dict keys, no buffers.
Module and parameter names follow the authors' code, so their plain state_dict loads unchanged.

The idea. Stage 1 trains one network on all weathers (the weather-general weights). Stage 2 freezes those and
gives every convolution three weather-specific 1×1 residual kernels plus one learned scalar gate per weather;
a gate below 0.1 switches that residual off, so the trained gates decide where each weather gets extra
parameters. Every 1×1 / 3×3 convolution (`WeatherConv`) computes

    y = conv(x, W) + Σ_k flag[k] · [gate_k ≥ 0.1] · conv1×1(x, R_k)

where the residual reuses the main convolution's stride but not its padding (a 1×1 kernel needs none) and no
bias. The two transposed convolutions of the decoder have no residuals. `flag` is a one-hot list of three
numbers naming the weather of the whole batch; for Setting 1 the three slots are

    [1, 0, 0] snow (Snow100K)   [0, 1, 0] rain (Outdoor-Rain: heavy rain streaks with fog)   [0, 0, 1] raindrop

The forward pass (MIMO-UNet-like, C = 18, three scales; every conv is followed by GELU unless noted)::

    x_2, x_4 = nearest ½ and ¼ copies of x         SCM on each: shallow convs, concat with the image, 1×1
    3×3 conv 3→C → Encoder 0 (6 RDBs, C)                                       = res1
    3×3 stride-2 conv → FAM(·, SCM(x_2)) → Encoder 1 (6 RDBs, 2C)              = res2
    3×3 stride-2 conv → FAM(·, SCM(x_4)) → Encoder 2 (6 RDBs, 4C)              = z
    AFF: each scale = 1×1 + 3×3 conv of [res1, res2, z] brought to its size (nearest)
    Decoder 0 (4C) → 4×4 transposed conv ↑ → ⊕ res2 → 1×1 → Decoder 1 (2C) → transposed conv ↑ → ⊕ res1
    → 1×1 → Decoder 2 (C) → 3×3 conv C→3 (no activation) → + x

An RDB is three dense 3×3 layers (each adds C' channels), a 1×1 fusion back to C' and a skip; FAM(a, b) =
a + conv3×3(a·b). H and W must be multiples of 4 (the nearest-downscaled inputs meet stride-2 features).

Differences from the authors' module, none of which changes an output:
* the flag is placed on the input's device (theirs goes to "cuda" whenever CUDA exists, even for a CPU model);
* a residual branch whose flag entry is 0 is skipped (theirs computes all three and multiplies the unused ones
  by 0; set `skip_unused_branches = False` to run them, e.g. to time the code as the authors execute it);
* a clear error for sizes that are not multiples of 4.

The adapter (`WGWSRestorer`), following the authors' Setting-1 test: RGB in [0, 1] straight from ToTensor (no
normalisation), the whole batch with one weather flag, the output returned unclamped (their PSNR uses the
unclamped output; the harness clamps and quantises). Where their test resizes (bilinear) to multiples of 16,
the adapter instead reflect-pads the bottom and right up to the network's own multiple of 4 and crops the
output back, so no pixel is resampled and every pixel is scored (CDD-11's 720×1080 needs no padding at all).
The weather flag is a method option, `--method-arg flag=snow|rain|raindrop` (default snow: [1, 0, 0], the
default of their forward and test function). In "text" mode the given CDD-11 type is ignored: Setting 1 knows
snow, rain and raindrop, and low light and haze, present in most CDD-11 types, have no slot, so no mapping from
the eleven types to the three flags is principled.
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
    strip_prefix,
)

INFO = MethodInfo(
    display="WGWS-Net",
    paper=Paper("Learning Weather-General and Weather-Specific Features for Image Restoration Under Multiple "
                "Adverse Weather Conditions", "CVPR", 2023),
    code="https://github.com/zhuyr97/WGWS-Net",
    licence="not stated",
    files=("Setting1_K1.pth",),
    checkpoint_format="plain state_dict (Setting-1 Stage-2 K1 network)",
    published_at=(
        "https://github.com/zhuyr97/WGWS-Net (README 'Pretrained models': Google Drive folder "
        "https://drive.google.com/drive/folders/1B0R3SI6D5PkAJGkx_axUm6V5NpjkQllo, file Setting1_K1.pth)"
    ),
    modes=("auto", "text"),
    blind=True,
    adapter="one weather flag for the batch: `--method-arg flag=snow|rain|raindrop` (Setting 1: snow [1,0,0], "
    "heavy rain with fog [0,1,0], raindrop [0,0,1]; default snow); reflect-pad to a multiple of 4 instead of "
    "the official resize to 16",
)
#: Where the authors publish the checkpoints (one Google Drive folder for the three settings).
PUBLISHED_AT = INFO.published_at
#: File name of the released Setting-1 Stage-2 K1 checkpoint (a plain state_dict).
CHECKPOINT_NAME = INFO.files[0]

#: H and W must be multiples of this; the adapter pads other sizes.
SIZE_MULTIPLE = 4
#: A weather-specific residual is used only where its gate is at least this (the authors' binarisation).
GATE_THRESHOLD = 0.1

#: Setting 1's weather flags: name -> one-hot list, in the network's slot order.
FLAGS: dict[str, list[int]] = {"snow": [1, 0, 0], "rain": [0, 1, 0], "raindrop": [0, 0, 1]}
#: What each flag means (Setting 1's training sets).
FLAG_MEANINGS: dict[str, str] = {
    "snow": "snow (Snow100K), flag [1,0,0]",
    "rain": "rain streaks with fog (Outdoor-Rain), flag [0,1,0]",
    "raindrop": "raindrops on the lens (RainDrop), flag [0,0,1]",
}
#: The flag used when none is given: [1, 0, 0], the default of the authors' forward and test function.
DEFAULT_FLAG = "snow"


def _flag_values(flag) -> tuple[float, float, float]:
    """The weather flag as three Python floats (accepts a list, tuple, array or tensor of three numbers)."""
    if isinstance(flag, torch.Tensor):
        flag = flag.detach().flatten().tolist()
    values = tuple(float(v) for v in flag)
    if len(values) != 3:
        raise ValueError(f"WGWS-Net's flag must hold 3 numbers (one per weather), got {len(values)}")
    return values  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------- network


class WeatherConv(nn.Conv2d):
    """A bias-free convolution with the general weight `weight` (frozen in Stage 2) plus, per weather k = 1..3,
    a 1×1 residual kernel `Bk_residual` (zero at init) and a scalar gate `Bk_indicator` (0.15 at init).

    `forward(x, flag)` adds flag[k] · [gate_k ≥ 0.1] · conv1×1(x, Bk_residual) (same stride, no padding) to
    the plain convolution, for k in order.
    """

    skip_unused_branches = True

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int = 1, padding: int = 0):
        super().__init__(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        for k in (1, 2, 3):
            self.register_parameter(f"B{k}_residual", nn.Parameter(torch.zeros(cout, cin, 1, 1)))
            self.register_parameter(f"B{k}_indicator", nn.Parameter(torch.full((1,), 0.15)))
        self.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor, flag: Sequence[float] = (1.0, 0.0, 0.0)) -> torch.Tensor:
        out = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        for k, f in enumerate(flag, start=1):
            if f == 0 and self.skip_unused_branches:
                continue  # the authors multiply this branch by 0
            gate = (getattr(self, f"B{k}_indicator") >= GATE_THRESHOLD).to(out.dtype)
            out = out + f * gate * F.conv2d(x, getattr(self, f"B{k}_residual"), self.bias, self.stride)
        return out


class ConvUnit(nn.Module):
    """One convolution (`layer`) with optional GELU: a `WeatherConv` (kernel 1 or 3, padding k // 2) or, for
    the decoder's up-sampling, a plain 4×4 stride-2 transposed convolution with bias and no residuals."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int = 1, act: bool = True,
                 transpose: bool = False):
        super().__init__()
        self.transpose = transpose
        if transpose:
            self.layer = nn.ConvTranspose2d(cin, cout, kernel_size, stride=stride, padding=kernel_size // 2 - 1)
        elif kernel_size in (1, 3):
            self.layer = WeatherConv(cin, cout, kernel_size, stride=stride, padding=kernel_size // 2)
        else:
            raise ValueError(f"kernel size {kernel_size} is not used by WGWS-Net")
        self.act = nn.GELU() if act else None

    def forward(self, x: torch.Tensor, flag: Sequence[float]) -> torch.Tensor:
        x = self.layer(x) if self.transpose else self.layer(x, flag)
        return self.act(x) if self.act is not None else x


class DenseLayer(nn.Module):
    """3×3 conv + GELU producing `growth` channels, concatenated after its input."""

    def __init__(self, cin: int, growth: int):
        super().__init__()
        self.conv = ConvUnit(cin, growth, 3)

    def forward(self, x: torch.Tensor, flag: Sequence[float]) -> torch.Tensor:
        return torch.cat([x, self.conv(x, flag)], 1)


class ResidualDenseBlock(nn.Module):
    """Three dense layers (C → 2C → 3C → 4C channels), a 1×1 fusion back to C, plus the input."""

    def __init__(self, channels: int):
        super().__init__()
        c = channels
        self.conv0 = DenseLayer(c, c)
        self.conv1 = DenseLayer(2 * c, c)
        self.conv2 = DenseLayer(3 * c, c)
        self.LFF = ConvUnit(4 * c, c, 1, act=False)

    def forward(self, x: torch.Tensor, flag: Sequence[float]) -> torch.Tensor:
        y = self.conv2(self.conv1(self.conv0(x, flag), flag), flag)
        return self.LFF(y, flag) + x


class RDBStack(nn.Module):
    """Six residual dense blocks in sequence (`layer1` … `layer6`): an encoder or decoder stage."""

    depth = 6

    def __init__(self, channels: int):
        super().__init__()
        for i in range(1, self.depth + 1):
            self.add_module(f"layer{i}", ResidualDenseBlock(channels))

    def forward(self, x: torch.Tensor, flag: Sequence[float]) -> torch.Tensor:
        for block in self.children():
            x = block(x, flag)
        return x


class AFF(nn.Module):
    """Cross-scale fusion: concatenate the three scales' features, 1×1 conv + GELU, 3×3 conv."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = ConvUnit(cin, cout, 1)
        self.conv2 = ConvUnit(cout, cout, 3, act=False)

    def forward(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, flag: Sequence[float]) -> torch.Tensor:
        return self.conv2(self.conv1(torch.cat([a, b, c], 1), flag), flag)


class SCM(nn.Module):
    """Shallow features of a downscaled image: four convs (3×3, 1×1, 3×3, 1×1, GELU after each) to
    `channels − 3` maps, concatenated after the image, then a 1×1 conv to `channels`."""

    def __init__(self, channels: int):
        super().__init__()
        c = channels
        self.layer1 = ConvUnit(3, c // 4, 3)
        self.layer2 = ConvUnit(c // 4, c // 2, 1)
        self.layer3 = ConvUnit(c // 2, c // 2, 3)
        self.layer4 = ConvUnit(c // 2, c - 3, 1)
        self.conv = ConvUnit(c, c, 1, act=False)

    def forward(self, x: torch.Tensor, flag: Sequence[float]) -> torch.Tensor:
        y = x
        for unit in (self.layer1, self.layer2, self.layer3, self.layer4):
            y = unit(y, flag)
        return self.conv(torch.cat([x, y], 1), flag)


class FAM(nn.Module):
    """Feature attention: a + conv3×3(a · b)."""

    def __init__(self, channels: int):
        super().__init__()
        self.merge = ConvUnit(channels, channels, 3, act=False)

    def forward(self, a: torch.Tensor, b: torch.Tensor, flag: Sequence[float]) -> torch.Tensor:
        return a + self.merge(a * b, flag)


def _nearest(x: torch.Tensor, scale: float) -> torch.Tensor:
    return F.interpolate(x, scale_factor=scale)  # default mode 'nearest', as in the authors' code


class WGWSNet(nn.Module):
    """WGWS-Net Stage-2 K1 network; `WGWSNet()` is the released Setting-1 configuration (base_channel 18).

    `forward(x, flag=[1, 0, 0])`: x is B×3×H×W RGB in [0, 1] with H, W multiples of 4; flag is the one-hot
    weather of the whole batch (Setting 1: [1,0,0] snow, [0,1,0] rain, [0,0,1] raindrop). Returns the restored
    batch, same shape, unclamped. `num_res` is accepted, like the authors' `UNet(base_channel, num_res)`, and
    ignored: six blocks per stage are fixed.
    """

    def __init__(self, base_channel: int = 18, num_res: int = 6, skip_unused_branches: bool = True):
        super().__init__()
        del num_res
        c = base_channel
        self.Encoder = nn.ModuleList([RDBStack(c), RDBStack(2 * c), RDBStack(4 * c)])
        self.feat_extract = nn.ModuleList([
            ConvUnit(3, c, 3),
            ConvUnit(c, 2 * c, 3, stride=2),
            ConvUnit(2 * c, 4 * c, 3, stride=2),
            ConvUnit(4 * c, 2 * c, 4, stride=2, transpose=True),
            ConvUnit(2 * c, c, 4, stride=2, transpose=True),
            ConvUnit(c, 3, 3, act=False),
        ])
        self.Decoder = nn.ModuleList([RDBStack(4 * c), RDBStack(2 * c), RDBStack(c)])
        self.Convs = nn.ModuleList([ConvUnit(4 * c, 2 * c, 1), ConvUnit(2 * c, c, 1)])
        self.AFFs = nn.ModuleList([AFF(7 * c, c), AFF(7 * c, 2 * c), AFF(7 * c, 4 * c)])
        self.FAM1 = FAM(4 * c)
        self.SCM1 = SCM(4 * c)
        self.FAM2 = FAM(2 * c)
        self.SCM2 = SCM(2 * c)
        self.skip_unused_branches = skip_unused_branches

    @property
    def skip_unused_branches(self) -> bool:
        """Skip residual branches whose flag entry is 0 (same output; False runs them as the authors do)."""
        return self._skip_unused

    @skip_unused_branches.setter
    def skip_unused_branches(self, value: bool) -> None:
        self._skip_unused = bool(value)
        for m in self.modules():
            if isinstance(m, WeatherConv):
                m.skip_unused_branches = self._skip_unused

    def forward(self, x: torch.Tensor, flag: Sequence[float] = (1, 0, 0)) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
            raise ValueError(f"WGWS-Net needs H and W divisible by {SIZE_MULTIPLE}, got {h}×{w} (pad first)")
        f = _flag_values(flag)
        x_2 = _nearest(x, 0.5)
        x_4 = _nearest(x_2, 0.5)
        z2 = self.SCM2(x_2, f)
        z4 = self.SCM1(x_4, f)

        res1 = self.Encoder[0](self.feat_extract[0](x, f), f)
        z = self.FAM2(self.feat_extract[1](res1, f), z2, f)
        res2 = self.Encoder[1](z, f)
        z = self.FAM1(self.feat_extract[2](res2, f), z4, f)
        z = self.Encoder[2](z, f)

        z42 = _nearest(z, 2)
        z = self.AFFs[2](_nearest(res1, 0.25), _nearest(res2, 0.5), z, f)
        res2_fused = self.AFFs[1](_nearest(res1, 0.5), res2, z42, f)
        res1 = self.AFFs[0](res1, _nearest(res2, 2), _nearest(z42, 2), f)

        z = self.feat_extract[3](self.Decoder[0](z, f), f)
        z = self.Decoder[1](self.Convs[0](torch.cat([z, res2_fused], 1), f), f)
        z = self.feat_extract[4](z, f)
        z = self.Decoder[2](self.Convs[1](torch.cat([z, res1], 1), f), f)
        return self.feat_extract[5](z, f) + x

    def gates_on(self) -> dict[str, int]:
        """How many convolutions use each weather's residual (gate ≥ 0.1), e.g. {'snow': 120, ...}."""
        counts = dict.fromkeys(FLAGS, 0)
        for m in self.modules():
            if isinstance(m, WeatherConv):
                for k, name in enumerate(FLAGS, start=1):
                    counts[name] += int(getattr(m, f"B{k}_indicator").item() >= GATE_THRESHOLD)
        return counts


def pad_to_multiple(x: torch.Tensor, multiple: int = SIZE_MULTIPLE) -> torch.Tensor:
    """`baselines.layers.pad_to_multiple` with this network's size multiple as the default."""
    return layers.pad_to_multiple(x, multiple)


# ---------------------------------------------------------------------------------------------- weights


def wgws_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """The WGWS-Net weights in a file: the released plain state_dict (saved from `net.module.state_dict()`),
    also accepted under 'state_dict' / 'model' / 'net' or with a DataParallel `module.` prefix."""
    path = Path(path)
    sd = extract_state_dict(read_checkpoint(path), path)
    return strip_prefix(sd, "module.")


def load_wgws(path: Path | str, device: torch.device | str = "cpu") -> WGWSNet:
    """Build `WGWSNet()` and load a Setting-1 checkpoint strictly; eval mode.

    Raises `MissingWeightsError` (naming the file and where it is published) when the file does not exist and
    `WeightsError` when it is unreadable or does not match (the message lists the differing keys and shapes).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError("wgws-net", path, PUBLISHED_AT)
    model = WGWSNet()
    load_strict(model, wgws_state_dict(path), path)
    return model.eval().to(device)


# ---------------------------------------------------------------------------------------------- adapter


class WGWSRestorer:
    """`Restorer` around WGWS-Net with one fixed weather flag (`flag_name`, a key of `FLAGS`).

    Pads to multiples of 4 (reflect, bottom / right), runs the whole batch with the flag, crops back; no
    normalisation, no clamping. The degradation type, if given, is ignored (see the module docstring).
    """

    name = "wgws-net"

    def __init__(self, model: WGWSNet, flag_name: str = DEFAULT_FLAG, weights_files: Sequence[Path | str] = (),
                 weights_label: str = "official"):
        if flag_name not in FLAGS:
            raise ValueError(f"unknown WGWS-Net flag {flag_name!r}; valid: {', '.join(FLAGS)}")
        self.model = model.eval()
        self.flag_name = flag_name
        self.flag = list(FLAGS[flag_name])
        self.weights_files = [Path(p) for p in weights_files]
        self.weights_label = weights_label

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def restore(self, images: torch.Tensor, degradation: Sequence[str] | None = None) -> torch.Tensor:
        del degradation  # no principled map from CDD-11's types to Setting 1's three weathers
        x = images.to(self.device, torch.float32)
        h, w = x.shape[-2:]
        with torch.inference_mode():
            return self.model(pad_to_multiple(x), flag=self.flag)[..., :h, :w]

    def to(self, device: torch.device | str) -> WGWSRestorer:
        self.model.to(device)
        return self


_FLAG_ARG = (
    "weather flag of Setting 1: " + "; ".join(f"{k} = {v}" for k, v in FLAG_MEANINGS.items())
    + f" (default {DEFAULT_FLAG})"
)


@register(
    "wgws-net",
    description="WGWS-Net (CVPR 2023), Setting-1 Stage-2 K1 weights; one weather flag for all images "
    "(--method-arg flag=snow|rain|raindrop, default snow); blind: a given type is ignored",
    info=INFO,
)
def create(opts: MethodOptions) -> WGWSRestorer:
    """WGWS-Net with `Setting1_K1.pth` (from --weights, or --weights-dir/Setting1_K1.pth), or with its own
    seeded initialisation when `opts.random_weights`; the weather flag from `--method-arg flag=...`."""
    args = check_method_args("wgws-net", opts, {"flag": _FLAG_ARG})
    flag_name = str(args.get("flag", DEFAULT_FLAG)).strip().lower()
    if flag_name not in FLAGS:
        raise MethodArgError(f"wgws-net: unknown flag {args['flag']!r}; accepted: {_FLAG_ARG}")
    if opts.random_weights:
        with torch.random.fork_rng(devices=[]):  # seeded, leaving the caller's RNG as it was
            torch.manual_seed(0)
            model = WGWSNet()
        model = model.eval().to(opts.device)
        return WGWSRestorer(model, flag_name, (), weights_label="random")
    if opts.weights is not None:
        path = Path(opts.weights)
    elif opts.weights_dir is not None:
        path = Path(opts.weights_dir) / CHECKPOINT_NAME
    else:
        path = Path(CHECKPOINT_NAME)  # no demo weights: the error says where to get the file
    model = load_wgws(path, device=opts.device)
    return WGWSRestorer(model, flag_name, [path])


__all__ = [
    "CHECKPOINT_NAME",
    "DEFAULT_FLAG",
    "FLAGS",
    "FLAG_MEANINGS",
    "PUBLISHED_AT",
    "SIZE_MULTIPLE",
    "WGWSNet",
    "WGWSRestorer",
    "WeatherConv",
    "create",
    "load_wgws",
    "pad_to_multiple",
    "wgws_state_dict",
]
