"""MoCE-IR (Zamfir et al., CVPR 2025, "Complexity Experts are Task-Discriminative Learners for Any Image
Restoration"), re-implemented: a Restormer-style U-Net whose decoder blocks route each image to one of four
"complexity experts" of growing width.

Written from the paper and the published facts about the release (official repository eduardzamfir/MoCE-IR,
snapshot a1a6e74, src/net/moce_ir.py). The released configuration used here is MoCE-IR-S, the CDD-11 variant
quoted by later papers: dim 32, encoder blocks [4, 6, 6, 8] (the last is the latent), decoder blocks [2, 4, 4]
(finest level first), 4 refinement blocks, heads [1, 2, 4, 8], FFN expansion 2, WithBias LayerNorm, 4 experts,
top-1 routing, "spread" expert ranks, constant expert depth 1, FFT-attention experts. `MoCEIR(dim=48)` is the
larger MoCE-IR. Module names follow the official state_dict (1262 keys, 11,477,752 parameters plus the 40
elements of the routers' `complexity` buffers, which only the training loss reads), so the authors' Lightning
checkpoints load unchanged.

Data flow (channels at full / half / quarter / eighth resolution: 32 / 64 / 128 / 256)::

    3×3 conv 3→32 → enc 0 (4 blocks) → down → enc 1 (6) → down → enc 2 (6) → down → latent (8 blocks, 256)
    freq = MLP(mean over pixels of GELU(3×3 depthwise conv(latent)))          (256-d "frequency embedding")
    up → ⊕ enc 2 → 1×1 → dec 0 (4 MoE blocks, 128)
    up → ⊕ enc 1 → 1×1 → dec 1 (4 MoE blocks,  64)
    up → ⊕ enc 0 → 1×1 → dec 2 (2 MoE blocks,  32) → refinement (4 blocks, 32) → 3×3 conv 32→3 → + input

(⊕ = channel concatenation, down/up = 3×3 conv + pixel-(un)shuffle.) Encoder, latent and refinement blocks are
Restormer blocks with biased convolutions. A decoder ("MoE") block computes, from n = LN(x), a shared branch
s = SelfAttn(1×1 conv(n)) and an adapter branch a = Adapter(1×1 conv(n), freq, s), then
x + CrossAttn(query a, key/value s) and a gated FFN; its attention and FFN convolutions have no bias.

The adapter's router computes logits = Linear(avg-pool(input)) + Linear(freq), adds Gaussian noise of standard
deviation 1/num_experts = 0.25 (the official code does this in eval mode too), takes the softmax and keeps the
top-1 expert with its probability g. Expert e (rank r_e = C/8, C/4, C/2, C; FFT patch 4, 8, 16, 32) maps
u = input to rank r_e (1×1), multiplies FFTAttention(u) by SiLU(1×1(s)), maps back (1×1) and adds the input;
the adapter returns 1×1 conv(g · expert output). FFTAttention: q (1×1 + 3×3 dw), k, v (1×1 + 7×7 dw);
q and k are zero-padded (bottom / right) to multiples of the patch size, cut into patches, multiplied in the 2-D
real FFT domain (float32 FFTs, whatever the model's dtype) and transformed back — a circular convolution per
patch — cropped, layer-normalised, multiplied by v and projected (1×1). Because the adapter output only feeds
the cross-attention query (bias-free convs, then L2 normalisation over pixels), g cancels: only the index of
the chosen expert matters.

Routing noise, batches and the module's hooks:

- `MoCEIR(noise_std=0.25)` is the official behaviour; `noise_std=0.0` routes on the noiseless logits. The
  `noise_std` attribute can be changed later (it is passed on to every router).
- `model.noise_source` decides where the N(0, 1) draws come from (they are scaled by `noise_std` afterwards):
  `None` (default) → `torch.randn_like(logits)`, the global generator of the logits' device, as the official
  code; a `torch.Generator` → `torch.randn` from that generator (on its own device, then moved), so the draws
  do not depend on the global seed or the device; any callable `source(logits) -> tensor` of the logits' shape
  (B × num_experts) → that tensor, e.g. `ReplayNoise(slabs)` to replay stored noise in call order. Routers
  are called in module order: dec.0.2.layers.0–3, dec.1.2.layers.0–3, dec.2.2.layers.0–1 (10 calls per
  forward, one B × 4 draw each; none when `noise_std` is 0).
- On the meta device (FLOP counting without data) the routing cannot be evaluated: every image goes to expert
  `META_EXPERT` (the widest, so `harness.timing --flops-only` gives an upper bound; a layer's `meta_expert`
  attribute overrides it).
- After a forward, `model.routing_choices()` returns the chosen expert index and gate value of every router
  call (10 × B each).
- The official eval path is wrong for batches: it runs every expert that any image picked on the whole batch
  and sums them. Here each image goes through its own expert (as in the official training path), so a batch
  equals separate batch-1 runs given the same per-image noise.

`MoCEIR.forward(x, labels=None)` takes B×3×H×W in [0, 1] (no normalisation; `labels` is ignored, as in the
original) with H, W multiples of 8 and returns input + residual, unclamped. Other sizes are refused (the
original fails at the skip concatenation).

Adapter (`MoCEIRRestorer`): the official CDD-11 test runs whole 1080×720 images at batch 1 with no padding,
cropping or ensembling, then clamps to [0, 1]. The adapter does the same, and for sizes that are not multiples
of 8 reflect-pads the bottom / right (replicate along a side too short to reflect) and crops back — the
official test never needs this (its other benchmarks crop to multiples of 16, dropping pixels). Routing
noise: the official test seeds torch once (0) for the whole test set, so an image's noise depends on its
position in the set and on the device's generator, which a harness cannot reproduce. The adapter instead runs
the images of a batch one by one and draws each image's noise from a fresh CPU generator seeded with
`routing_seed` (default 0): deterministic, independent of batch size, order and device. Method args:
`routing_seed=<int>` and `noise_std=<float>` (0 for noiseless routing). MoCE-IR is blind: a degradation type,
if given, is ignored.

Checkpoints: `checkpoints/MoCE_IR_S_CDD11/last.ckpt` from the Google Drive folder linked in the README, a
Lightning checkpoint with the network under `net.` in its `state_dict`. Plain state_dicts and `module.`
prefixes are accepted too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from baselines import layers
from baselines.layers import ChannelLayerNorm, ChannelSelfAttention, GatedFFN, merge_heads, split_heads
from harness.registry import MethodArgError, MethodInfo, MethodOptions, Paper, check_method_args, register
from harness.weights import (
    MissingWeightsError,
    extract_state_dict,
    load_strict,
    read_checkpoint_stubbing_objects,
    select_prefix,
    strip_prefix,
)

INFO = MethodInfo(
    display="MoCE-IR",
    paper=Paper("Complexity Experts are Task-Discriminative Learners for Any Image Restoration", "CVPR", 2025),
    code="https://github.com/eduardzamfir/MoCE-IR",
    licence="Apache-2.0",
    files=("MoCE_IR_S_CDD11/last.ckpt",),
    checkpoint_format="Lightning checkpoint, network under `net.` (MoCE-IR-S, the CDD-11 variant)",
    published_at=(
        "https://github.com/eduardzamfir/MoCE-IR (README, Usage: Google Drive folder with the pre-trained "
        "checkpoints; CDD-11 MoCE-IR-S: MoCE_IR_S_CDD11/last.ckpt)"
    ),
    modes=("auto", "text"),
    blind=True,
    adapter="images run one at a time (each image its own experts); reflect-pad to a multiple of 8; clamp; "
    "router noise std 0.25 from a generator seeded per image (`--method-arg routing_seed=N noise_std=S`)",
)
#: Where the authors publish the pretrained checkpoints.
PUBLISHED_AT = INFO.published_at
#: The released file, relative to --weights-dir (the release's own folder layout, `checkpoints/` stripped).
CHECKPOINT_NAME = INFO.files[0]

#: H and W must be divisible by this (three 2× down-samplings); the adapter pads other sizes.
SIZE_MULTIPLE = 8
#: The router's noise standard deviation in the official code: 1 / num_experts.
OFFICIAL_NOISE_STD = 0.25
#: Seed of the adapter's per-image routing-noise generator.
DEFAULT_ROUTING_SEED = 0
#: Expert every image is sent to when the routing cannot be evaluated (tensors on the meta device, i.e. FLOP
#: counting by `harness.timing --flops-only`): the last, widest one (rank C), so the count is an upper bound.
#: An `AdapterLayer`'s `meta_expert` attribute overrides it (e.g. 0 for the lower bound).
META_EXPERT = -1

NoiseSource = torch.Generator | Callable[[torch.Tensor], torch.Tensor] | None


# ------------------------------------------------------------------------------------------------- blocks


class CrossAttention(nn.Module):
    """Transposed (channel) attention with the query from `x` (1×1 + 3×3 dw) and key / value from `y`
    (1×1 + 7×7 dw); q, k L2-normalised over pixels, softmax(q kᵀ · temperature) v, 1×1 projection."""

    def __init__(self, dim: int, heads: int, bias: bool = False):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.q = nn.Conv2d(dim, dim, 1, bias=bias)
        self.q_dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=bias)
        self.kv = nn.Conv2d(dim, dim * 2, 1, bias=bias)
        self.kv_dwconv = nn.Conv2d(dim * 2, dim * 2, 7, padding=3, groups=dim * 2, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        q = F.normalize(split_heads(self.q_dwconv(self.q(x)), self.heads), dim=-1)
        k, v = (split_heads(t, self.heads) for t in self.kv_dwconv(self.kv(y)).chunk(2, dim=1))
        k = F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)
        return self.project_out(merge_heads(attn @ v, h, w))


def _to_patches(x: torch.Tensor, p: int) -> torch.Tensor:
    """B×C×H×W → B×C×(H'/p)×(W'/p)×p×p after zero-padding bottom / right to multiples of p."""
    b, c, h, w = x.shape
    x = F.pad(x, (0, (-w) % p, 0, (-h) % p))
    nh, nw = x.shape[-2] // p, x.shape[-1] // p
    return x.reshape(b, c, nh, p, nw, p).permute(0, 1, 2, 4, 3, 5)


def _from_patches(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of `_to_patches`, cropped to H×W."""
    b, c, nh, nw, p, _ = x.shape
    return x.permute(0, 1, 2, 4, 3, 5).reshape(b, c, nh * p, nw * p)[..., :h, :w]


class FFTAttention(nn.Module):
    """Per-patch product of q and k in the Fourier domain (p×p patches), layer-normalised, gating v."""

    def __init__(self, dim: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.q = nn.Conv2d(dim, dim, 1, bias=False)
        self.q_dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.kv = nn.Conv2d(dim, dim * 2, 1, bias=False)
        self.kv_dwconv = nn.Conv2d(dim * 2, dim * 2, 7, padding=3, groups=dim * 2)
        self.norm = ChannelLayerNorm(dim, bias=True)
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        p = self.patch_size
        q = self.q_dwconv(self.q(x))
        k, v = self.kv_dwconv(self.kv(x)).chunk(2, dim=1)
        # The original transforms in float32 whatever the model's dtype.
        spec = torch.fft.rfft2(_to_patches(q, p).float()) * torch.fft.rfft2(_to_patches(k, p).float())
        corr = _from_patches(torch.fft.irfft2(spec, s=(p, p)), h, w)
        return self.proj_out(self.norm(corr) * v)


class ComplexityExpert(nn.Module):
    """One expert: input + up(FFTAttention(down_a(x)) · SiLU(down_b(shared))), at rank `rank`.

    (The original repeats this on the same input `depth` times, keeping the last result; depth is 1 in every
    released configuration, and repeating would not change the result.)
    """

    def __init__(self, dim: int, rank: int, patch_size: int):
        super().__init__()
        self.proj = nn.ModuleList(
            [
                nn.Conv2d(dim, rank, 1, bias=False),
                nn.Conv2d(dim, rank, 1, bias=False),
                nn.Conv2d(rank, dim, 1, bias=False),
            ]
        )
        self.body = FFTAttention(rank, patch_size)

    def forward(self, x: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
        y = self.body(self.proj[0](x)) * F.silu(self.proj[1](shared))
        return x + self.proj[2](y)


class Router(nn.Module):
    """Noisy top-k gate: logits = Linear(avg-pool(x)) + Linear(freq) + noise_std · N(0, 1).

    Returns (expert indices, gate values), both B×k; the gate values are the softmax of the noisy logits.
    """

    def __init__(self, dim: int, freq_dim: int, num_experts: int, k: int, complexity: torch.Tensor):
        super().__init__()
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(dim, num_experts, bias=False))
        self.freq_gate = nn.Linear(freq_dim, num_experts, bias=False)
        # Relative parameter count of each expert (largest = 1); read by the training loss only.
        self.register_buffer("complexity", complexity / complexity.max())
        self.k = k
        self.noise_std = 1.0 / num_experts
        self.noise_source: NoiseSource = None
        self.last_indices: torch.Tensor | None = None
        self.last_gates: torch.Tensor | None = None

    def standard_normal(self, logits: torch.Tensor) -> torch.Tensor:
        src = self.noise_source
        if src is None:
            return torch.randn_like(logits)
        if isinstance(src, torch.Generator):
            return torch.randn(logits.shape, generator=src, device=src.device).to(logits)
        noise = torch.as_tensor(src(logits)).to(logits)
        if noise.shape != logits.shape:
            raise ValueError(f"routing noise source gave shape {tuple(noise.shape)}, expected {tuple(logits.shape)}")
        return noise

    def forward(self, x: torch.Tensor, freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.gate(x) + self.freq_gate(freq)
        if self.noise_std:
            logits = logits + self.standard_normal(logits) * self.noise_std
        gates, indices = logits.softmax(dim=-1).topk(self.k, dim=-1)
        self.last_indices, self.last_gates = indices.detach(), gates.detach()
        return indices, gates


class AdapterLayer(nn.Module):
    """Mixture of complexity experts: route, run each image through its chosen expert(s), weight by the gate,
    sum, 1×1 projection."""

    def __init__(self, dim: int, freq_dim: int, num_experts: int = 4, top_k: int = 1):
        super().__init__()
        ranks = [dim // 2 ** (num_experts - 1 - i) for i in range(num_experts)]  # C/8, C/4, C/2, C
        patches = [2 ** (i + 2) for i in range(num_experts)]  # 4, 8, 16, 32
        # Each expert sits in a one-element container (state_dict keys `experts.<i>.0.*`, as released).
        self.experts = nn.ModuleList(
            nn.ModuleList([ComplexityExpert(dim, r, p)]) for r, p in zip(ranks, patches, strict=True)
        )
        self.proj_out = nn.Conv2d(dim, dim, 1, bias=False)
        sizes = torch.tensor([float(sum(p.numel() for p in e.parameters())) for e in self.experts])
        self.routing = Router(dim, freq_dim, num_experts, top_k, sizes)
        self.meta_expert: int | None = None  # None: META_EXPERT

    def forward(self, x: torch.Tensor, freq: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
        indices, gates = self.routing(x, freq)
        if indices.device.type == "meta":  # no data to route on (FLOP counting): one fixed expert for all
            e = META_EXPERT if self.meta_expert is None else self.meta_expert
            y = self.experts[e][0](x, shared)
            return self.proj_out(y * gates.sum(dim=1).to(x.dtype)[:, None, None, None])
        out = torch.zeros_like(x)
        for e in indices.unique().tolist():
            picked = indices == e  # B×k
            rows = picked.any(dim=1).nonzero().flatten()
            weight = (gates * picked).sum(dim=1)[rows].to(x.dtype)
            y = self.experts[e][0](x[rows], shared[rows])
            out = out.index_add(0, rows, y * weight[:, None, None, None])
        return self.proj_out(out)


class EncoderBlock(nn.Module):
    """Restormer block with biased convolutions: x + Attn(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, dim: int, heads: int, expansion: float, bias: bool = True):
        super().__init__()
        self.norms = nn.ModuleList([ChannelLayerNorm(dim), ChannelLayerNorm(dim)])
        self.mixer = ChannelSelfAttention(dim, heads, bias=bias)
        self.ffn = GatedFFN(dim, expansion, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.norms[0](x))
        return x + self.ffn(self.norms[1](x))


class DecoderBlock(nn.Module):
    """Shared self-attention branch, expert (adapter) branch, cross-attention between them, gated FFN."""

    def __init__(self, dim: int, heads: int, expansion: float, freq_dim: int, num_experts: int, top_k: int):
        super().__init__()
        self.norms = nn.ModuleList([ChannelLayerNorm(dim), ChannelLayerNorm(dim)])
        self.proj = nn.ModuleList([nn.Conv2d(dim, dim, 1), nn.Conv2d(dim, dim, 1)])
        self.shared = ChannelSelfAttention(dim, heads, bias=False)
        self.mixer = CrossAttention(dim, heads, bias=False)
        self.ffn = GatedFFN(dim, expansion, bias=False)
        self.adapter = AdapterLayer(dim, freq_dim, num_experts, top_k)

    def forward(self, x: torch.Tensor, freq: torch.Tensor) -> torch.Tensor:
        n = self.norms[0](x)
        shared = self.shared(self.proj[0](n))
        adapted = self.adapter(self.proj[1](n), freq, shared)
        x = x + self.mixer(adapted, shared)
        return x + self.ffn(self.norms[1](x))


class EncoderGroup(nn.Module):
    def __init__(self, dim: int, heads: int, depth: int, expansion: float):
        super().__init__()
        self.layers = nn.ModuleList(EncoderBlock(dim, heads, expansion) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class DecoderGroup(nn.Module):
    def __init__(self, dim: int, heads: int, depth: int, expansion: float, freq_dim: int, num_experts: int, top_k: int):
        super().__init__()
        self.layers = nn.ModuleList(
            DecoderBlock(dim, heads, expansion, freq_dim, num_experts, top_k) for _ in range(depth)
        )

    def forward(self, x: torch.Tensor, freq: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, freq)
        return x


class PatchEmbed(nn.Module):
    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Downsample(nn.Module):
    """3×3 conv C → C/2, pixel-unshuffle: 2C channels at half resolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """3×3 conv C → 2C, pixel-shuffle: C/2 channels at double resolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class HighPass(nn.Module):
    """3×3 depthwise conv initialised to the Laplacian-like kernel 8·centre − neighbours (trained further)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        kernel = -torch.ones(3, 3)
        kernel[1, 1] = 8.0
        with torch.no_grad():
            self.conv.weight.copy_(kernel.expand(channels, 1, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class FrequencyEmbedding(nn.Module):
    """Latent → GELU(high-pass) → mean over pixels → MLP (C → 2C → C): one vector per image for the routers."""

    def __init__(self, dim: int):
        super().__init__()
        self.high_conv = nn.Sequential(HighPass(dim), nn.GELU())
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.high_conv(x).mean(dim=(-2, -1)))


# -------------------------------------------------------------------------------------------------- model


class MoCEIR(nn.Module):
    """MoCE-IR; the defaults are the released MoCE-IR-S (CDD-11) configuration, `dim=48` gives MoCE-IR.

    `forward(x, labels=None)`: B×3×H×W in [0, 1], H and W multiples of 8 → restored images (input + residual,
    unclamped). `noise_std` is the router noise (official 0.25; 0 for noiseless routing); `noise_source`
    chooses where the noise comes from (see the module docstring and `Router.standard_normal`).
    """

    def __init__(
        self,
        dim: int = 32,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        num_dec_blocks: Sequence[int] = (2, 4, 4),
        heads: Sequence[int] = (1, 2, 4, 8),
        num_refinement_blocks: int = 4,
        ffn_expansion_factor: float = 2.0,
        num_experts: int = 4,
        topk: int = 1,
        noise_std: float = OFFICIAL_NOISE_STD,
    ):
        super().__init__()
        levels = len(num_blocks)
        dims = [dim * 2**i for i in range(levels)]
        freq_dim = dims[-1]
        self.patch_embed = PatchEmbed(3, dim)
        self.freq_embed = FrequencyEmbedding(freq_dim)
        self.enc = nn.ModuleList(
            nn.ModuleList([EncoderGroup(dims[i], heads[i], num_blocks[i], ffn_expansion_factor), Downsample(dims[i])])
            for i in range(levels - 1)
        )
        self.latent = EncoderGroup(dims[-1], heads[-1], num_blocks[-1], ffn_expansion_factor)
        # Decoder level i works at dims[-2 - i] (coarsest first); num_dec_blocks is given finest first.
        self.dec = nn.ModuleList()
        for i in range(levels - 1):
            c_in, c_out = dims[-1 - i], dims[-2 - i]
            self.dec.append(
                nn.ModuleList(
                    [
                        Upsample(c_in),
                        nn.Conv2d(c_in, c_out, 1, bias=False),  # fusion of up-sampled + skip features
                        DecoderGroup(
                            c_out,
                            heads[-2 - i],
                            num_dec_blocks[-1 - i],
                            ffn_expansion_factor,
                            freq_dim,
                            num_experts,
                            topk,
                        ),
                    ]
                )
            )
        self.refinement = EncoderGroup(dim, heads[0], num_refinement_blocks, ffn_expansion_factor)
        self.output = nn.Conv2d(dim, 3, 3, padding=1, bias=False)
        self.noise_std = noise_std

    # Routing-noise settings live on the routers; these properties set / read all of them at once.
    def routers(self) -> list[Router]:
        """The routers in call order (dec.0.2.layers.0 first)."""
        return [m for m in self.modules() if isinstance(m, Router)]

    @property
    def noise_std(self) -> float:
        return self.routers()[0].noise_std

    @noise_std.setter
    def noise_std(self, value: float) -> None:
        if not value >= 0:
            raise ValueError(f"noise_std must be >= 0, got {value}")
        for r in self.routers():
            r.noise_std = float(value)

    @property
    def noise_source(self) -> NoiseSource:
        return self.routers()[0].noise_source

    @noise_source.setter
    def noise_source(self, source: NoiseSource) -> None:
        if source is not None and not isinstance(source, torch.Generator) and not callable(source):
            raise TypeError(f"noise_source must be None, a torch.Generator or a callable, got {type(source)}")
        for r in self.routers():
            r.noise_source = source

    def routing_choices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Expert index and gate value of each router call of the last forward: two (routers × B) tensors
        (top-1 routing; for top-k the last dimension is k)."""
        rs = self.routers()
        if any(r.last_indices is None for r in rs):
            raise RuntimeError("no forward pass has run yet")
        squeeze = (lambda t: t[..., 0]) if rs[0].k == 1 else (lambda t: t)
        return (
            torch.stack([squeeze(r.last_indices) for r in rs]),
            torch.stack([squeeze(r.last_gates) for r in rs]),
        )

    def forward(self, x: torch.Tensor, labels: object = None) -> torch.Tensor:
        del labels  # accepted and ignored, as in the original
        h, w = x.shape[-2:]
        if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
            raise ValueError(f"MoCEIR needs H and W divisible by {SIZE_MULTIPLE}, got {h}×{w} (pad first)")
        feats = self.patch_embed(x)
        skips = []
        for group, down in self.enc:
            feats = group(feats)
            skips.append(feats)
            feats = down(feats)
        feats = self.latent(feats)
        freq = self.freq_embed(feats)
        for up, fuse, group in self.dec:
            feats = fuse(torch.cat([up(feats), skips.pop()], dim=1))
            feats = group(feats, freq)
        return self.output(self.refinement(feats)) + x


class ReplayNoise:
    """A `noise_source` that hands out stored standard-normal draws in call order.

    `slabs`: a tensor whose first dimension runs over router calls (e.g. 10 × B × 4), or a sequence of B × 4
    tensors. Raises when more draws are asked for than stored; `remaining` says how many are left.
    """

    def __init__(self, slabs: torch.Tensor | Iterable[torch.Tensor]):
        self._slabs = list(slabs)
        self._next = 0

    @property
    def remaining(self) -> int:
        return len(self._slabs) - self._next

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        if self._next >= len(self._slabs):
            raise RuntimeError(f"ReplayNoise: all {len(self._slabs)} stored draws are used up")
        slab = self._slabs[self._next]
        self._next += 1
        return slab


def pad_to_multiple(x: torch.Tensor, multiple: int = SIZE_MULTIPLE) -> torch.Tensor:
    """`baselines.layers.pad_to_multiple` with this network's size multiple as the default."""
    return layers.pad_to_multiple(x, multiple)


# ---------------------------------------------------------------------------------------------- weights


_STUB_HINT = (
    f"MoCE-IR's weights are published at {PUBLISHED_AT}; from another file, save its 'state_dict' entry once in"
    " the authors' environment (torch.save(c['state_dict'], 'moce_ir_state_dict.pt')) and pass that with --weights."
)


def moce_ir_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """The MoCE-IR weights in a file: the released Lightning checkpoint (network under `net.` in its
    `state_dict`) or a plain state_dict; `module.` prefixes removed."""
    path = Path(path)
    obj = read_checkpoint_stubbing_objects(path, _STUB_HINT)
    sd = strip_prefix(extract_state_dict(obj, path), "module.")
    if any(k.startswith("net.") for k in sd):
        sd = select_prefix(sd, "net.")
    return strip_prefix(sd, "module.")


def load_moce_ir(path: Path | str, device: torch.device | str = "cpu", **kwargs) -> MoCEIR:
    """Build `MoCEIR(**kwargs)` and load a checkpoint strictly; eval mode.

    Raises `MissingWeightsError` when the file does not exist and `WeightsError` when it is unreadable or does
    not match the network (the message lists the first differing keys and shapes).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError("moce-ir", path, PUBLISHED_AT)
    sd = moce_ir_state_dict(path)
    model = MoCEIR(**kwargs)
    load_strict(model, sd, path)
    return model.eval().to(device)


# ---------------------------------------------------------------------------------------------- adapter


class MoCEIRRestorer:
    """`Restorer` adapter (blind: the degradation type is ignored): images one at a time, each with routing noise
    from a fresh CPU generator seeded with `routing_seed`; pad to 8, crop back, clamp to [0, 1]."""

    name = "moce-ir"
    #: `harness.timing --flops-only` prints this under its table.
    meta_flops_note = ("the routing needs data, so on the meta device every decoder block uses its widest expert "
                       "(baselines.moce_ir.META_EXPERT): an upper bound.")

    def __init__(
        self,
        model: MoCEIR,
        weights_files: Sequence[Path | str] = (),
        weights_label: str = "official",
        routing_seed: int = DEFAULT_ROUTING_SEED,
        noise_std: float = OFFICIAL_NOISE_STD,
    ):
        self.model = model.eval()
        self.model.noise_std = noise_std
        self.weights_files = [Path(p) for p in weights_files]
        self.weights_label = weights_label
        self.routing_seed = int(routing_seed)
        self.noise_std = float(noise_std)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def restore(self, images: torch.Tensor, degradation: Sequence[str] | None = None) -> torch.Tensor:
        del degradation  # MoCE-IR routes on the image itself
        x = images.to(self.device, torch.float32)
        h, w = x.shape[-2:]
        outs = []
        saved = self.model.noise_source
        try:
            with torch.inference_mode():
                for img in x.split(1):
                    self.model.noise_source = torch.Generator().manual_seed(self.routing_seed)
                    outs.append(self.model(pad_to_multiple(img))[..., :h, :w])
        finally:
            self.model.noise_source = saved
        return torch.cat(outs).clamp(0, 1)

    def to(self, device: torch.device | str) -> MoCEIRRestorer:
        self.model.to(device)
        return self


_METHOD_ARGS = {
    "routing_seed": f"integer seed of each image's router-noise generator (default {DEFAULT_ROUTING_SEED})",
    "noise_std": f"router noise standard deviation, official {OFFICIAL_NOISE_STD}; 0 routes without noise",
}


def _parse_args(opts: MethodOptions) -> tuple[int, float]:
    args = check_method_args("moce-ir", opts, _METHOD_ARGS)
    try:
        seed = int(args.get("routing_seed", DEFAULT_ROUTING_SEED))
        std = float(args.get("noise_std", OFFICIAL_NOISE_STD))
    except ValueError as e:
        raise MethodArgError(f"moce-ir: bad --method-arg value: {e}") from None
    if not (std >= 0 and math.isfinite(std)):
        raise MethodArgError(f"moce-ir: noise_std must be a finite number >= 0, got {std}")
    return seed, std


@register(
    "moce-ir",
    description=(
        f"MoCE-IR-S (CVPR 2025), mixture of complexity experts, official CDD-11 weights ({CHECKPOINT_NAME});"
        f" blind, text ignored; router noise std {OFFICIAL_NOISE_STD} seeded per image"
        f" (routing_seed={DEFAULT_ROUTING_SEED}, --method-arg routing_seed=N / noise_std=S)"
    ),
    info=INFO,
)
def create(opts: MethodOptions) -> MoCEIRRestorer:
    """MoCE-IR-S from --weights, or --weights-dir/MoCE_IR_S_CDD11/last.ckpt (or --weights-dir/last.ckpt when
    that folder is MoCE_IR_S_CDD11 itself); `random_weights` builds it with seed 0 instead."""
    seed, std = _parse_args(opts)
    if opts.random_weights:
        with torch.random.fork_rng(devices=[]):  # seeded, leaving the caller's RNG as it was
            torch.manual_seed(0)
            model = MoCEIR()
        model = model.eval().to(opts.device)
        return MoCEIRRestorer(model, (), weights_label="random", routing_seed=seed, noise_std=std)
    if opts.weights is not None:
        path = Path(opts.weights)
    elif opts.weights_dir is not None:
        folder = Path(opts.weights_dir)
        path = folder / CHECKPOINT_NAME
        if not path.is_file() and folder.name == Path(CHECKPOINT_NAME).parent.name:
            path = folder / Path(CHECKPOINT_NAME).name
    else:
        path = Path(CHECKPOINT_NAME)
    model = load_moce_ir(path, device=opts.device)  # MissingWeightsError names the file and PUBLISHED_AT
    return MoCEIRRestorer(model, [path], routing_seed=seed, noise_std=std)


__all__ = [
    "CHECKPOINT_NAME",
    "DEFAULT_ROUTING_SEED",
    "OFFICIAL_NOISE_STD",
    "PUBLISHED_AT",
    "SIZE_MULTIPLE",
    "AdapterLayer",
    "ComplexityExpert",
    "CrossAttention",
    "FFTAttention",
    "MoCEIR",
    "MoCEIRRestorer",
    "ReplayNoise",
    "Router",
    "create",
    "load_moce_ir",
    "moce_ir_state_dict",
    "pad_to_multiple",
]
