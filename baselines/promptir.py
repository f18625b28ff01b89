"""PromptIR (Potlapalli et al., NeurIPS 2023): a Restormer with prompt-generation blocks in its decoder.

Re-implemented from the paper and the published facts about the release (see the shared reference notes):
the all-in-one "decoder" variant, Restormer backbone with dim 48, [4, 6, 6, 8] transformer blocks per
level, 4 refinement blocks, [1, 2, 4, 8] heads, FFN expansion 2.66, bias-free convolutions and a
LayerNorm with bias. Module names follow the released checkpoint, so `model.ckpt` (a PyTorch Lightning
checkpoint with the network under `net.`) loads unchanged.

Data flow (channels at full / half / quarter / eighth resolution: 48 / 96 / 192 / 384)::

    3×3 conv 3→48 → enc1 (4 blocks) → down → enc2 (6) → down → enc3 (6) → down → latent (8 blocks, 384)
    latent ⊕ prompt3 (320 ch) → block (704) → 1×1 → 192 → up → ⊕ enc3 → 1×1 → dec3 (6 blocks, 192)
    dec3 ⊕ prompt2 (128 ch)  → block (320) → 1×1 → 192 → up → ⊕ enc2 → 1×1 → dec2 (6 blocks, 96)
    dec2 ⊕ prompt1 (64 ch)   → block (160) → 1×1 →  96 → up → ⊕ enc1 → dec1 (4 blocks, 96)
    → refinement (4 blocks, 96) → 3×3 conv 96→3 → + input

(⊕ = channel concatenation.) A prompt-generation block pools its input over space, maps the pooled
vector to softmax weights over its 5 learned prompt tensors, sums the weighted prompts, resizes the sum
bilinearly to the feature size and applies a 3×3 convolution. The released network also holds a few 1×1
convolutions that its forward pass never uses (`chnl_reduce*`, `reduce_noise_channel_*`); they are kept
so that the state_dict matches the release key for key.

PromptIR is blind: the adapter ignores any degradation type it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from baselines import layers
from baselines.layers import ChannelLayerNorm, ChannelSelfAttention, GatedFFN
from harness.registry import MethodInfo, MethodOptions, Paper, register
from harness.weights import (
    MissingWeightsError,
    extract_state_dict,
    load_strict,
    read_checkpoint_stubbing_objects,
    select_prefix,
    strip_prefix,
)

INFO = MethodInfo(
    display="PromptIR",
    paper=Paper("PromptIR: Prompting for All-in-One Blind Image Restoration", "NeurIPS", 2023),
    code="https://github.com/va1shn9v/PromptIR",
    licence="Academic Public License (non-commercial use only)",
    files=("model.ckpt",),
    checkpoint_format="Lightning checkpoint, model under `net.`",
    published_at="https://github.com/va1shn9v/PromptIR (README: pretrained checkpoint link, file model.ckpt)",
    modes=("auto", "text"),
    blind=True,
    adapter="[0,1] input; reflect-pad to a multiple of 8, crop back (the official test crops to multiples of 16)",
)
#: Where the authors publish the pretrained all-in-one checkpoint.
PUBLISHED_AT = INFO.published_at
#: File name of the released checkpoint.
CHECKPOINT_NAME = INFO.files[0]

#: Spatial sizes must be divisible by this (three 2× down-samplings); other sizes are padded.
SIZE_MULTIPLE = 8


class TransformerBlock(nn.Module):
    """Restormer block: x + Attn(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, dim: int, heads: int, expansion: float = 2.66, bias: bool = False):
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim, bias=True)
        self.attn = ChannelSelfAttention(dim, heads, bias=bias)
        self.norm2 = ChannelLayerNorm(dim, bias=True)
        self.ffn = GatedFFN(dim, expansion, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


def _stage(dim: int, heads: int, depth: int) -> nn.Sequential:
    return nn.Sequential(*(TransformerBlock(dim, heads) for _ in range(depth)))


class Downsample(nn.Module):
    """3×3 conv halving the channels, then pixel-unshuffle (×4 channels, ½ resolution): C → 2C."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """3×3 conv doubling the channels, then pixel-shuffle (¼ channels, 2× resolution): C → C/2."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels * 2, 3, padding=1, bias=False), nn.PixelShuffle(2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class PatchEmbed(nn.Module):
    """Overlapping patch embedding: a 3×3 conv from the image to the first feature map."""

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class PromptGenBlock(nn.Module):
    """Prompt generation: a softmax-weighted sum of `length` learned prompts, resized to the input, 3×3 conv.

    The weights come from a linear map of the input's spatial mean (`in_dim` channels).
    """

    def __init__(self, prompt_dim: int, length: int, size: int, in_dim: int):
        super().__init__()
        self.prompt_param = nn.Parameter(torch.rand(1, length, prompt_dim, size, size))
        self.linear_layer = nn.Linear(in_dim, length)
        self.conv3x3 = nn.Conv2d(prompt_dim, prompt_dim, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        weights = self.linear_layer(x.mean(dim=(-2, -1))).softmax(dim=1)  # B×L
        prompts = self.prompt_param[0]  # L×P×S×S
        prompt = torch.einsum("bl,lpij->bpij", weights, prompts)
        prompt = F.interpolate(prompt, size=(h, w), mode="bilinear", align_corners=False)
        return self.conv3x3(prompt)


class PromptIR(nn.Module):
    """PromptIR, all-in-one decoder variant, with the released configuration.

    `forward(x)` takes B×3×H×W images in [0, 1] (any H, W ≥ 1) and returns the restored images, same shape,
    unclamped. The network itself needs H and W divisible by 8 (three 2× down-samplings); other sizes are
    reflect-padded at the bottom and right up to the next multiple of 8 (replicate-padded where a side is
    too small to reflect), run, and cropped back to H×W — i.e. `forward(x)` equals
    `net(F.pad(x, (0, pw, 0, ph), "reflect"))[..., :H, :W]`. Sizes already divisible by 8 are run as they
    are. (The authors' own test script instead crops inputs to multiples of 16, which drops border pixels;
    padding keeps every pixel so the whole image can be scored.)
    """

    def __init__(self, dim: int = 48):
        super().__init__()
        d1, d2, d3, d4 = dim, dim * 2, dim * 4, dim * 8
        blocks, refinement, heads = (4, 6, 6, 8), 4, (1, 2, 4, 8)

        self.patch_embed = PatchEmbed(3, d1)
        # Prompt blocks: (prompt channels, 5 prompts, prompt size, input channels), fixed in the release.
        self.prompt1 = PromptGenBlock(64, 5, 64, d2)
        self.prompt2 = PromptGenBlock(128, 5, 32, d3)
        self.prompt3 = PromptGenBlock(320, 5, 16, d4)
        # Present in the released state_dict, unused by the forward pass.
        self.chnl_reduce1 = nn.Conv2d(64, 64, 1, bias=False)
        self.chnl_reduce2 = nn.Conv2d(128, 128, 1, bias=False)
        self.chnl_reduce3 = nn.Conv2d(320, 256, 1, bias=False)
        self.reduce_noise_channel_1 = nn.Conv2d(d1 + 64, d1, 1, bias=False)

        self.encoder_level1 = _stage(d1, heads[0], blocks[0])
        self.down1_2 = Downsample(d1)
        self.reduce_noise_channel_2 = nn.Conv2d(d2 + 128, d2, 1, bias=False)  # unused
        self.encoder_level2 = _stage(d2, heads[1], blocks[1])
        self.down2_3 = Downsample(d2)
        self.reduce_noise_channel_3 = nn.Conv2d(d3 + 256, d3, 1, bias=False)  # unused
        self.encoder_level3 = _stage(d3, heads[2], blocks[2])
        self.down3_4 = Downsample(d3)
        self.latent = _stage(d4, heads[3], blocks[3])

        # Level 3: the latent (384) plus prompt3 (320) -> 704, back to 192, up-sampled to 96 channels.
        self.up4_3 = Upsample(d3)
        self.reduce_chan_level3 = nn.Conv2d(d2 + d3, d3, 1, bias=False)
        self.noise_level3 = TransformerBlock(d4 + 320, heads[2])
        self.reduce_noise_level3 = nn.Conv2d(d4 + 320, d3, 1, bias=False)
        self.decoder_level3 = _stage(d3, heads[2], blocks[2])

        self.up3_2 = Upsample(d3)
        self.reduce_chan_level2 = nn.Conv2d(d3, d2, 1, bias=False)
        self.noise_level2 = TransformerBlock(d3 + 128, heads[2])
        self.reduce_noise_level2 = nn.Conv2d(d3 + 128, d3, 1, bias=False)
        self.decoder_level2 = _stage(d2, heads[1], blocks[1])

        self.up2_1 = Upsample(d2)
        self.noise_level1 = TransformerBlock(d2 + 64, heads[2])
        self.reduce_noise_level1 = nn.Conv2d(d2 + 64, d2, 1, bias=False)
        self.decoder_level1 = _stage(d2, heads[0], blocks[0])

        self.refinement = _stage(d2, heads[0], refinement)
        self.output = nn.Conv2d(d2, 3, 3, padding=1, bias=False)

    def forward_aligned(self, x: torch.Tensor) -> torch.Tensor:
        """The network proper; H and W must be multiples of 8."""
        enc1 = self.encoder_level1(self.patch_embed(x))
        enc2 = self.encoder_level2(self.down1_2(enc1))
        enc3 = self.encoder_level3(self.down2_3(enc2))
        lat = self.latent(self.down3_4(enc3))

        lat = self.reduce_noise_level3(self.noise_level3(torch.cat([lat, self.prompt3(lat)], 1)))
        dec3 = self.reduce_chan_level3(torch.cat([self.up4_3(lat), enc3], 1))
        dec3 = self.decoder_level3(dec3)

        dec3 = self.reduce_noise_level2(self.noise_level2(torch.cat([dec3, self.prompt2(dec3)], 1)))
        dec2 = self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1))
        dec2 = self.decoder_level2(dec2)

        dec2 = self.reduce_noise_level1(self.noise_level1(torch.cat([dec2, self.prompt1(dec2)], 1)))
        dec1 = self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], 1))
        return self.output(self.refinement(dec1)) + x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % SIZE_MULTIPLE, (-w) % SIZE_MULTIPLE
        if ph == 0 and pw == 0:
            return self.forward_aligned(x)
        return self.forward_aligned(pad_to_multiple(x, SIZE_MULTIPLE))[..., :h, :w]


def pad_to_multiple(x: torch.Tensor, multiple: int = SIZE_MULTIPLE) -> torch.Tensor:
    """`baselines.layers.pad_to_multiple` with this network's size multiple as the default."""
    return layers.pad_to_multiple(x, multiple)


# ---------------------------------------------------------------------------------------------- weights


_STUB_HINT = (
    f"PromptIR's weights are published at {PUBLISHED_AT}; from another file, save its 'state_dict' entry once in"
    " the authors' environment (torch.save(c['state_dict'], 'promptir_state_dict.pt')) and pass that with --weights."
)


def promptir_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The PromptIR weights in a file: the released Lightning checkpoint (network under `net.` in its
    `state_dict`, next to optimizer and loop state) or a plain state_dict, `module.` prefixes removed."""
    path = Path(path)
    obj = read_checkpoint_stubbing_objects(path, _STUB_HINT)
    sd = extract_state_dict(obj, path)
    sd = strip_prefix(sd, "module.")
    if any(k.startswith("net.") for k in sd):
        sd = select_prefix(sd, "net.")
    return strip_prefix(sd, "module.")


def load_promptir(path: Path | str, device: torch.device | str = "cpu") -> PromptIR:
    """Build PromptIR and load a checkpoint strictly (see `promptir_state_dict`); eval mode.

    Raises `MissingWeightsError` when the file does not exist and `WeightsError` when it is unreadable or
    does not match the network (the message lists the first differing keys and shapes).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError("promptir", path, PUBLISHED_AT)
    sd = promptir_state_dict(path)
    model = PromptIR()
    load_strict(model, sd, path)
    return model.eval().to(device)


# ---------------------------------------------------------------------------------------------- adapter


class PromptIRRestorer:
    """`Restorer` adapter around the official PromptIR weights (blind: the degradation type is ignored)."""

    name = "promptir"
    weights_label = "official"

    def __init__(self, model: PromptIR, weights_files: Sequence[Path | str] = (), *, weights_label: str = "official"):
        self.model = model.eval()
        self.weights_files = [Path(p) for p in weights_files]
        self.weights_label = weights_label

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def restore(self, images: torch.Tensor, degradation: Sequence[str] | None = None) -> torch.Tensor:
        del degradation  # PromptIR infers the degradation from the image itself
        with torch.inference_mode():
            return self.model(images.to(self.device, torch.float32))

    def to(self, device: torch.device | str) -> PromptIRRestorer:
        self.model.to(device)
        return self


@register(
    "promptir", description="PromptIR (NeurIPS 2023), official all-in-one weights", info=INFO
)
def create(opts: MethodOptions) -> PromptIRRestorer:
    """PromptIR with the authors' `model.ckpt` (from --weights, or --weights-dir/model.ckpt); with
    `opts.random_weights` the seeded (seed 0) default initialisation instead, no file (label "random")."""
    if opts.random_weights:
        with torch.random.fork_rng(devices=[]):  # seeded, leaving the caller's RNG as it was
            torch.manual_seed(0)
            model = PromptIR()
        return PromptIRRestorer(model.eval().to(opts.device), weights_label="random")
    if opts.weights is not None:
        path = Path(opts.weights)
    elif opts.weights_dir is not None:
        path = Path(opts.weights_dir) / CHECKPOINT_NAME
    else:
        path = Path(CHECKPOINT_NAME)  # no demo weights exist for PromptIR: the error says where to get them
    if not path.is_file():
        raise MissingWeightsError("promptir", path, PUBLISHED_AT)
    model = load_promptir(path, device=opts.device)
    return PromptIRRestorer(model, [path])


__all__ = [
    "PromptIR",
    "PromptIRRestorer",
    "PromptGenBlock",
    "TransformerBlock",
    "create",
    "load_promptir",
    "pad_to_multiple",
    "promptir_state_dict",
]
