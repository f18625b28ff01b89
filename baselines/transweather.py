"""TransWeather (Valanarasu, Yasarla and Patel, CVPR 2022): a transformer encoder-decoder for all-weather removal.

Re-implemented from the paper and the authors' release (jeya-maria-jose/TransWeather, `Transweather()` in
transweather_model.py, which has no configuration arguments). Module names follow the release, so a
checkpoint saved by the authors' training script loads key for key (38,052,078 parameters, 347 tensors).

Released configuration and data flow (C = channels, sizes relative to the input H×W)::

    input (normalised to [-1, 1]) --7×7/4 embed--> t1 (C 64, 1/4)
      stage 1: t1 → 2 blocks (1 head, reduction 4) → LN → f1        t1 --3×3/2 embed--> p1 → 1 block → LN
      stage 2: (3×3/2 embed of f1) + p1 = m2 (C 128, 1/8) → 2 blocks (2 heads, reduction 2) → LN → f2
               m2 --3×3/2 embed--> p2 (C 320) → 1 intra-patch block (2 heads, reduction 2) → LN
      stage 3: (embed of f2) + p2 = m3 (C 320, 1/16) → 2 blocks (4 heads, reduction 2) → LN → f3
               m3 --3×3/2 embed--> p3 (C 512) → 1 intra-patch block (2 heads, reduction 2) → LN
      stage 4: (embed of f3) + p3 (C 512, 1/32) → 2 blocks (4 heads, no reduction) → LN → f4
    decoder: f4 --3×3/2 embed--> (1/64) → 3 blocks whose attention queries are 48 learned weather queries
             (8 heads, MLP ratio 4) → LN → d
    tail:    up(d) + f4 → up → residual block + f3 → up → residual block + f2 → up → residual block + f1
             → up (C 16, 1/2) → residual block → up (C 8, full size) → `clean` 3×3 conv → tanh

Encoder blocks are SegFormer blocks: pre-LN (eps 1e-6) spatial-reduction attention (keys / values from a
stride-r conv of the tokens, then LN eps 1e-5), and an MLP with a 3×3 depth-wise conv between its two linears
(GELU); MLP ratio 2 in the encoder. "up" is a 4×4 stride-2 transposed conv (padding 1); a residual block is
x + 0.1·conv3×3(relu(conv3×3(x))). In the decoder blocks the 48 queries (one learned 1×48×512 tensor per
block) go through the block's query linear and are resampled to the number N of decoder tokens with
nearest-neighbour interpolation (query ⌊i·48/N⌋ serves token i), exactly as the release does; keys and values
come from the tokens. The release's tail upsamplings at 1/32 and 1/16 drop their last row / column where they
overshoot the skip connection (sides not multiples of 64); so does this module.

The network holds two modules its forward pass never uses (`Tenc.mini_patch_embed4`,
`convtail.conv_output`); they are kept so the state_dict equals the release's. Dropout and drop-path are
training-only and omitted (identity at test time).

`TransWeather.forward(x)` takes what the official module takes: images already normalised with
(x − 0.5)/0.5, B×3×H×W with H and W multiples of 16 and at least 48, and returns tanh(...) of the same size.

The adapter (`TransWeatherRestorer`) around it:

- normalises [0, 1] images with (x − 0.5)/0.5, as the authors' data loaders do;
- reads the output as the restored [0, 1] image without any remapping: the network was trained (smooth-L1 +
  perceptual loss) directly against [0, 1] ground truth, and the official test scores the raw tanh output
  (only its saved PNGs are clamped). The adapter does not clamp; the harness clamps and quantises;
- the official test *resizes* input and ground truth (PIL Lanczos) to the next multiples of 16, first
  shrinking the long side to 1024 when larger. Resizing would change the image being scored, so the adapter
  instead reflect-pads the bottom / right up to multiples of 16 (at least 48; replicate where a side is too
  short to reflect), runs the network at full resolution and crops the result back to H×W.

TransWeather is blind: any degradation type given to the adapter is ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from harness.registry import MethodInfo, MethodOptions, Paper, check_method_args, register
from harness.weights import MissingWeightsError, extract_state_dict, load_strict, read_checkpoint, strip_prefix

INFO = MethodInfo(
    display="TransWeather",
    paper=Paper("TransWeather: Transformer-based Restoration of Images Degraded by Adverse Weather Conditions",
                "CVPR", 2022),
    code="https://github.com/jeya-maria-jose/TransWeather",
    licence="MIT",
    files=("best",),
    checkpoint_format="DataParallel state_dict (`module.`) written by the authors' train.py",
    published_at=(
        "https://github.com/jeya-maria-jose/TransWeather (no trained weights are linked in the README; the "
        "authors' train.py saves ./<exp_name>/best, a DataParallel state_dict that the test scripts load)"
    ),
    modes=("auto", "text"),
    blind=True,
    adapter="input (x−0.5)/0.5; tanh output read as [0,1]; reflect-pad to multiples of 16 instead of the "
    "official resize",
    weights_note="no trained weights are published",
)
#: Where the authors publish the network. Their README links no trained weights; their scripts save them.
PUBLISHED_AT = INFO.published_at
#: File name the authors' training script writes and their test scripts read.
CHECKPOINT_NAME = INFO.files[0]

#: H and W must be multiples of this (five stride-2 stages, the tail matches up to 1/16) ...
SIZE_MULTIPLE = 16
#: ... and at least this (the 2×2 key/value reduction of the 1/32 intra-patch block needs a 2×2 map).
MIN_SIZE = 48

ENCODER_DIMS = (64, 128, 320, 512)


# ---------------------------------------------------------------------------------------------- blocks


def _to_map(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """B×(h·w)×C tokens → B×C×h×w map."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)


def _to_tokens(x: torch.Tensor) -> torch.Tensor:
    """B×C×h×w map → B×(h·w)×C tokens."""
    return x.flatten(2).transpose(1, 2)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q·kᵀ/√d)·v per head, then heads merged: B×heads×N×d → B×N×(heads·d).

    Written out (not `F.scaled_dot_product_attention`) so FLOP counters see the matmuls, as in the release.
    """
    attn = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    return (attn.softmax(dim=-1) @ v).transpose(1, 2).flatten(2)


def _heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """B×N×C → B×heads×N×(C/heads)."""
    b, n, c = t.shape
    return t.reshape(b, n, heads, c // heads).transpose(1, 2)


class PatchEmbed(nn.Module):
    """Overlapping patch embedding: a k×k conv of stride s (padding k//2), flattened to tokens, LayerNorm."""

    def __init__(self, cin: int, dim: int, kernel: int = 3, stride: int = 2):
        super().__init__()
        self.proj = nn.Conv2d(cin, dim, kernel, stride=stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(_to_tokens(x)), h, w


class ReducedAttention(nn.Module):
    """Multi-head self-attention whose keys / values come from the tokens downsampled by a stride-r conv."""

    def __init__(self, dim: int, heads: int, reduction: int = 1):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.reduction = reduction
        if reduction > 1:
            self.sr = nn.Conv2d(dim, dim, reduction, stride=reduction)
            self.norm = nn.LayerNorm(dim)

    def _keys_values(self, x: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.reduction > 1:
            x = self.norm(_to_tokens(self.sr(_to_map(x, h, w))))
        k, v = self.kv(x).chunk(2, dim=-1)
        return _heads(k, self.heads), _heads(v, self.heads)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        k, v = self._keys_values(x, h, w)
        return self.proj(_attend(_heads(self.q(x), self.heads), k, v))


class WeatherQueryAttention(ReducedAttention):
    """Attention whose queries are 48 learned weather-type embeddings instead of the tokens.

    The projected queries are resampled (nearest) from 48 to the number of tokens, so the output has one
    row per token, as in the release.
    """

    def __init__(self, dim: int, heads: int, queries: int = 48):
        super().__init__(dim, heads, reduction=1)
        self.task_query = nn.Parameter(torch.randn(1, queries, dim))

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        k, v = self._keys_values(x, h, w)
        q = _heads(self.q(self.task_query), self.heads).expand(x.shape[0], -1, -1, -1)
        q = F.interpolate(q, size=tuple(v.shape[-2:]), mode="nearest")  # 48 → N query rows
        return self.proj(_attend(q, k, v))


class DepthwiseConv(nn.Module):
    """3×3 depth-wise conv applied to tokens laid out as an h×w map."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return _to_tokens(self.dwconv(_to_map(x, h, w)))


class ConvMlp(nn.Module):
    """Linear → 3×3 depth-wise conv → GELU → linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DepthwiseConv(hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return self.fc2(F.gelu(self.dwconv(self.fc1(x), h, w)))


class Block(nn.Module):
    """Pre-LN transformer block (LayerNorm eps 1e-6): x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, reduction: int = 1, weather_queries: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = WeatherQueryAttention(dim, heads) if weather_queries else ReducedAttention(dim, heads, reduction)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), h, w)
        return x + self.mlp(self.norm2(x), h, w)


def _run(blocks: nn.ModuleList, norm: nn.LayerNorm, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    for blk in blocks:
        x = blk(x, h, w)
    return _to_map(norm(x), h, w)


# ---------------------------------------------------------------------------------------------- network


class Encoder(nn.Module):
    """Four-stage SegFormer-like encoder with intra-patch branches; returns the maps at 1/4 … 1/32."""

    def __init__(self):
        super().__init__()
        d1, d2, d3, d4 = ENCODER_DIMS
        heads, mlp, red = (1, 2, 4, 4), 2, (4, 2, 2, 1)
        self.patch_embed1 = PatchEmbed(3, d1, kernel=7, stride=4)
        self.patch_embed2 = PatchEmbed(d1, d2)
        self.patch_embed3 = PatchEmbed(d2, d3)
        self.patch_embed4 = PatchEmbed(d3, d4)
        # Intra-patch embeddings; the fourth is in the release but never used.
        self.mini_patch_embed1 = PatchEmbed(d1, d2)
        self.mini_patch_embed2 = PatchEmbed(d2, d3)
        self.mini_patch_embed3 = PatchEmbed(d3, d4)
        self.mini_patch_embed4 = PatchEmbed(d1, d4)

        def stage(dim: int, h: int, r: int, depth: int) -> nn.ModuleList:
            return nn.ModuleList(Block(dim, h, mlp, r) for _ in range(depth))

        self.block1 = stage(d1, heads[0], red[0], 2)
        self.norm1 = nn.LayerNorm(d1, eps=1e-6)
        self.patch_block1 = stage(d2, heads[0], red[0], 1)
        self.pnorm1 = nn.LayerNorm(d2, eps=1e-6)
        self.block2 = stage(d2, heads[1], red[1], 2)
        self.norm2 = nn.LayerNorm(d2, eps=1e-6)
        self.patch_block2 = stage(d3, heads[1], red[1], 1)
        self.pnorm2 = nn.LayerNorm(d3, eps=1e-6)
        self.block3 = stage(d3, heads[2], red[2], 2)
        self.norm3 = nn.LayerNorm(d3, eps=1e-6)
        self.patch_block3 = stage(d4, heads[1], red[2], 1)
        self.pnorm3 = nn.LayerNorm(d4, eps=1e-6)
        self.block4 = stage(d4, heads[3], red[3], 2)
        self.norm4 = nn.LayerNorm(d4, eps=1e-6)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        t, h, w = self.patch_embed1(x)
        p, ph, pw = self.mini_patch_embed1(_to_map(t, h, w))
        f1 = _run(self.block1, self.norm1, t, h, w)
        p = _run(self.patch_block1, self.pnorm1, p, ph, pw)
        feats = [f1]
        stages = (
            (self.patch_embed2, self.mini_patch_embed2, self.block2, self.norm2, self.patch_block2, self.pnorm2),
            (self.patch_embed3, self.mini_patch_embed3, self.block3, self.norm3, self.patch_block3, self.pnorm3),
        )
        for embed, mini, blocks, norm, pblocks, pnorm in stages:
            t, h, w = embed(feats[-1])
            m = _to_map(t, h, w) + p
            p, ph, pw = mini(m)
            feats.append(_run(blocks, norm, _to_tokens(m), h, w))
            p = _run(pblocks, pnorm, p, ph, pw)
        t, h, w = self.patch_embed4(feats[-1])
        m = _to_map(t, h, w) + p
        feats.append(_run(self.block4, self.norm4, _to_tokens(m), h, w))
        return feats


class Decoder(nn.Module):
    """Embeds the 1/32 map to 1/64 and runs 3 weather-query blocks over it."""

    def __init__(self, dim: int = 512, depth: int = 3, heads: int = 8, mlp_ratio: float = 4.0):
        super().__init__()
        self.patch_embed1 = PatchEmbed(dim, dim)
        self.block1 = nn.ModuleList(Block(dim, heads, mlp_ratio, weather_queries=True) for _ in range(depth))
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, h, w = self.patch_embed1(x)
        return _run(self.block1, self.norm1, t, h, w)


class UpConv(nn.Module):
    """4×4 transposed conv, stride 2, padding 1 (exact 2× upsampling)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv2d = nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(x)


class Conv3x3(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv2d = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(x)


class ResidualBlock(nn.Module):
    """x + 0.1 · conv(relu(conv(x)))."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = Conv3x3(channels, channels)
        self.conv2 = Conv3x3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.1 * self.conv2(F.relu(self.conv1(x)))


def _match(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """Drop the trailing row / column an upsampling produced beyond the skip connection's size."""
    return x[..., : skip.shape[-2], : skip.shape[-1]]


class ConvTail(nn.Module):
    """Transposed-conv upsampling path from the decoder output to full resolution (8 channels)."""

    def __init__(self):
        super().__init__()
        self.convd32x = UpConv(512, 512)
        self.convd16x = UpConv(512, 320)
        self.dense_4 = nn.Sequential(ResidualBlock(320))
        self.convd8x = UpConv(320, 128)
        self.dense_3 = nn.Sequential(ResidualBlock(128))
        self.convd4x = UpConv(128, 64)
        self.dense_2 = nn.Sequential(ResidualBlock(64))
        self.convd2x = UpConv(64, 16)
        self.dense_1 = nn.Sequential(ResidualBlock(16))
        self.convd1x = UpConv(16, 8)
        self.conv_output = Conv3x3(8, 3)  # in the release, never used

    def forward(self, feats: Sequence[torch.Tensor], dec: torch.Tensor) -> torch.Tensor:
        f1, f2, f3, f4 = feats
        x = _match(self.convd32x(dec), f4) + f4
        x = _match(self.convd16x(x), f3)
        x = self.convd8x(self.dense_4(x) + f3)
        x = self.convd4x(self.dense_3(x) + f2)
        x = self.convd2x(self.dense_2(x) + f1)
        return self.convd1x(self.dense_1(x))


class TransWeather(nn.Module):
    """TransWeather in its released (only) configuration; state_dict keys equal the release's.

    `forward(x)`: x normalised to [-1, 1] ((img − 0.5)/0.5), B×3×H×W, H and W multiples of 16 and ≥ 48;
    returns tanh(...) B×3×H×W, read as a [0, 1] image. Other sizes fail or come back at 4·⌈H/4⌉×4·⌈W/4⌉,
    as with the release; `TransWeatherRestorer` pads and crops instead.
    """

    def __init__(self):
        super().__init__()
        self.Tenc = Encoder()
        self.Tdec = Decoder()
        self.convtail = ConvTail()
        self.clean = Conv3x3(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.Tenc(x)
        return torch.tanh(self.clean(self.convtail(feats, self.Tdec(feats[-1]))))


def pad_for_transweather(x: torch.Tensor) -> torch.Tensor:
    """Pad the bottom / right of a B×C×H×W batch to multiples of 16, at least 48 per side.

    Reflect padding, or replicate along a side too short to reflect (padding ≥ its length).
    """
    h, w = x.shape[-2:]
    ph = max(MIN_SIZE, -(-h // SIZE_MULTIPLE) * SIZE_MULTIPLE) - h
    pw = max(MIN_SIZE, -(-w // SIZE_MULTIPLE) * SIZE_MULTIPLE) - w
    if ph:
        x = F.pad(x, (0, 0, 0, ph), mode="reflect" if ph < h else "replicate")
    if pw:
        x = F.pad(x, (0, pw, 0, 0), mode="reflect" if pw < w else "replicate")
    return x


# ---------------------------------------------------------------------------------------------- weights


def transweather_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """The TransWeather weights in a file, `module.` prefixes removed.

    Reads what the authors' scripts write (`torch.save(net.state_dict())` of an `nn.DataParallel`: every key
    starts with `module.`), a `{'state_dict': ...}` dict (what `Transweather(path)` expects), or a plain
    state_dict.
    """
    path = Path(path)
    sd = extract_state_dict(read_checkpoint(path), path)
    return strip_prefix(sd, "module.")


def load_transweather(path: Path | str, device: torch.device | str = "cpu") -> TransWeather:
    """Build TransWeather and load a checkpoint strictly (see `transweather_state_dict`); eval mode.

    Raises `MissingWeightsError` when the file does not exist and `WeightsError` when it is unreadable or does
    not match the network (the message lists the first differing keys and shapes).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError("transweather", path, PUBLISHED_AT)
    model = TransWeather()
    load_strict(model, transweather_state_dict(path), path)
    return model.eval().to(device)


# ---------------------------------------------------------------------------------------------- adapter


class TransWeatherRestorer:
    """`Restorer` adapter: [0, 1] images → (x − 0.5)/0.5 → pad to 16 (≥ 48) → TransWeather → crop.

    Blind: the degradation type is ignored. The output is not clamped (see the module docstring).
    """

    name = "transweather"

    def __init__(
        self, model: TransWeather, weights_files: Sequence[Path | str] = (), weights_label: str = "official"
    ):
        self.model = model.eval()
        self.weights_files = [Path(p) for p in weights_files]
        self.weights_label = weights_label

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def restore(self, images: torch.Tensor, degradation: Sequence[str] | None = None) -> torch.Tensor:
        del degradation  # TransWeather infers the weather from the image itself
        h, w = images.shape[-2:]
        x = (images.to(self.device, torch.float32) - 0.5) / 0.5
        with torch.inference_mode():
            return self.model(pad_for_transweather(x))[..., :h, :w]

    def to(self, device: torch.device | str) -> TransWeatherRestorer:
        self.model.to(device)
        return self


@register(
    "transweather",
    description="TransWeather (CVPR 2022), blind all-weather transformer; the authors' `best` state_dict "
    "(text mode accepted, the type is ignored)",
    info=INFO,
)
def create(opts: MethodOptions) -> TransWeatherRestorer:
    """TransWeather with weights from --weights, or --weights-dir/best; seeded random init with random_weights."""
    check_method_args("transweather", opts, {})
    if opts.random_weights:
        with torch.random.fork_rng(devices=[]):  # seeded, leaving the caller's RNG as it was
            torch.manual_seed(0)
            model = TransWeather()
        return TransWeatherRestorer(model.to(opts.device), weights_label="random")
    if opts.weights is not None:
        path = Path(opts.weights)
    elif opts.weights_dir is not None:
        path = Path(opts.weights_dir) / CHECKPOINT_NAME
    else:
        path = Path(CHECKPOINT_NAME)  # nothing is published: the error says where the file comes from
    model = load_transweather(path, device=opts.device)
    return TransWeatherRestorer(model, [path])


__all__ = [
    "CHECKPOINT_NAME",
    "PUBLISHED_AT",
    "TransWeather",
    "TransWeatherRestorer",
    "create",
    "load_transweather",
    "pad_for_transweather",
    "transweather_state_dict",
]
