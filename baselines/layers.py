"""Building blocks shared by the Restormer family (PromptIR, OneRestore, VL-UR's restorer), and the padding /
`Restorer` adapter shared by the blind baselines that pad to a size multiple (Fourmer, OKNet, MIRNet-v2, ...).

Attribute names follow the released checkpoints (`body.weight`, `qkv_dwconv`, `project_in`, ...), so
every model built from these blocks loads the official state_dicts unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class _LayerNormBody(nn.Module):
    def __init__(self, dim: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: B×N×C
        var = x.var(-1, keepdim=True, unbiased=False)
        if self.bias is None:  # Restormer's "BiasFree" norm scales without centring
            return x / torch.sqrt(var + 1e-5) * self.weight
        mu = x.mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + 1e-5) * self.weight + self.bias


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of a B×C×H×W map (eps 1e-5, population variance)."""

    def __init__(self, dim: int, bias: bool = True):
        super().__init__()
        self.body = _LayerNormBody(dim, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.body(x.flatten(2).transpose(1, 2))
        return y.transpose(1, 2).reshape(b, c, h, w)


class GatedFFN(nn.Module):
    """1×1 to 2·hidden → 3×3 depthwise → GELU(x1)·x2 → 1×1, hidden = int(dim·expansion)."""

    def __init__(self, dim: int, expansion: float = 2.66, bias: bool = False):
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """B×(h·c)×H×W → B×h×c×(H·W)."""
    b, c, hgt, wid = x.shape
    return x.reshape(b, heads, c // heads, hgt * wid)


def merge_heads(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """B×h×c×(H·W) → B×(h·c)×H×W."""
    b, h, c, _ = x.shape
    return x.reshape(b, h * c, height, width)


class ChannelSelfAttention(nn.Module):
    """Transposed (channel) self-attention: per head, softmax(q̂ k̂ᵀ · temperature) over C/h × C/h.

    q, k are L2-normalised along the pixels; q, k, v come from a 1×1 conv followed by a 3×3 depthwise conv.
    """

    def __init__(self, dim: int, heads: int, bias: bool = False):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        q, k, v = (split_heads(t, self.heads) for t in self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1))
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)
        return self.project_out(merge_heads(attn @ v, h, w))


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad the bottom and right of a B×C×H×W batch up to multiples of `multiple` (a side already a multiple is
    left alone, and `x` itself returned when both are): reflect, as the official test scripts do, or replicate
    along a side too short to reflect (padding ≥ its length)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph:
        x = F.pad(x, (0, 0, 0, ph), mode="reflect" if ph < h else "replicate")
    if pw:
        x = F.pad(x, (0, pw, 0, 0), mode="reflect" if pw < w else "replicate")
    return x


class PaddedRestorer:
    """`Restorer` adapter for a blind network that needs sizes divisible by `multiple`: pad bottom / right
    (`pad_to_multiple`), run `forward_model`, crop back to the input size, clamp to [0, 1] where `clamp`.

    Subclasses set `name`, `multiple` and `clamp`, and override `forward_model` when the network's output is not
    the restored image itself. The degradation type, if given, is ignored."""

    name: str
    multiple: int = 4
    clamp: bool = True

    def __init__(self, model: nn.Module, weights_files: Sequence[Path | str] = (), weights_label: str = "official"):
        self.model = model.eval()
        self.weights_files = [Path(p) for p in weights_files]
        self.weights_label = weights_label

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def forward_model(self, x: torch.Tensor) -> torch.Tensor:
        """The restored (padded) image for the padded batch `x`."""
        return self.model(x)

    def restore(self, images: torch.Tensor, degradation: Sequence[str] | None = None) -> torch.Tensor:
        del degradation  # blind method
        x = images.to(self.device, torch.float32)
        h, w = x.shape[-2:]
        with torch.inference_mode():
            out = self.forward_model(pad_to_multiple(x, self.multiple))[..., :h, :w]
        return out.clamp(0, 1) if self.clamp else out

    def to(self, device: torch.device | str) -> PaddedRestorer:
        self.model.to(device)
        return self

    @classmethod
    def create(cls, opts, build, load, checkpoint_name: str) -> PaddedRestorer:
        """The usual factory: `build()` seeded (seed 0, the caller's RNG untouched) with `opts.random_weights`,
        else `load(path, device=...)` of --weights, or --weights-dir/`checkpoint_name` (the loader's
        MissingWeightsError names the file and where its authors publish it)."""
        if opts.random_weights:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = build()
            return cls(model.eval().to(opts.device), (), weights_label="random")
        if opts.weights is not None:
            path = Path(opts.weights)
        elif opts.weights_dir is not None:
            path = Path(opts.weights_dir) / checkpoint_name
        else:
            path = Path(checkpoint_name)
        return cls(load(path, device=opts.device), [path])
