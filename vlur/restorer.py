"""VL-UR's Scene Restorer: OneRestore's encoder-decoder built from Cross-Transformer Aggregation blocks.

The paper (no public code) specifies the block and the attention formula; every detail it leaves open is
taken from OneRestore and listed here.

Architecture (`VLURRestorer`)
    I_d ∈ [0, 1] → normalised to [−1, 1] as OneRestore does → 3×3 conv to C channels (the paper's "C(·)"
    in eq. 5 is 3×3; OneRestore uses 1×1) → encoder of 4 levels (C, 2C, 4C, 8C), one CTransAgg block per
    level; between levels MaxPool2d(3, stride 2, pad 1) then a 1×1 conv doubling the channels (OneRestore)
    → 2 middle blocks at 8C (same resolution as the 4th level, as OneRestore) → decoder: the 8C level adds
    the 4th-level skip to the middle output and runs one block; each further level upsamples bilinearly to
    the skip's exact size (align_corners False), 1×1 conv halving the channels, adds the skip, one block
    → 3×3 conv to 3 → + normalised input → back to [0, 1] with (y + 1)/2.  The last two steps equal eq. 5,
    I_r = C(...) + I_d, with the output conv scaled by 1/2.  (OneRestore's release computes
    (out_conv + x + 1)/2 with the raw [0, 1] x instead; we follow VL-UR's eq. 5.)  All convolutions and
    linears are bias-free (OneRestore / Restormer); LayerNorms carry a bias; no output clamp.  Any H, W:
    MaxPool(3, 2, 1) gives ceil(H/2) and the decoder resizes to each skip's size, so odd sizes need no padding.

CTransAgg block (`CTransAgg`)
    x ← x + PGCA(LN(x), t);  x ← x + FFN(LN(x)).  FFN (eq. 7) is `baselines.layers.GatedFFN` with γ = 2.66
    (1×1 to 2·int(2.66·C) → 3×3 depthwise → GELU(x1)·x2 → 1×1).  Heads: 8 (OneRestore), configurable.

PGCA (eq. 6, `PGCA`), per head h, with c = C/heads channels per head, N = H·W pixels:
    Q_I, K_I, V_I = chunks of DWConv3×3(Conv1×1(x))                      (each c × N per head)
    Q_T = Linear(D_text → 324)(t), the same 324-vector for every channel of every head (OneRestore's
          cross-attention repeats its query this way)                    (c × 324)
    K_T = K_I resized to 18×18 (bilinear, align_corners False, antialias False — the setting OneRestore's
          released weights were trained with), flattened                 (c × 324)
    q̂, k̂ = L2-normalised along the last axis (pixels, or the 324 positions), as OneRestore/Restormer do
    A_I[i, j] = softmax_j(τ_h · q̂_I,i · k̂_I,j),  A_T[i, j] = softmax_j(τ_h · q̂_T,i · k̂_T,j)   (c × c)
    out_i = Σ_j (A_I + A_T)[i, j] · V_I,j, heads merged, then a 1×1 projection.
    Orientation: with V_I written as N × c, the paper's V_I · Softmax(K_I·Q_I/α) is out = V_I · M with
    M[j, i] = A_I[i, j] — the softmax normalises over the key channel j for each output channel i, exactly
    the Restormer/OneRestore channel attention.  α of the paper is 1/τ: the learnable per-head parameter
    is stored as a multiplicative `temperature` τ (initialised to 1) like OneRestore and Restormer; one τ
    per head is shared by both terms, as in the paper's formula.
    Ablation `attention="cross"`: plain OneRestore cross-attention — only the text term A_T, with k, v from
    a `kv` conv pair (no Q_I is computed).

Text input t: one D_text vector per image, the Scene Classifier's cached, L2-normalised text feature of the
image's type.  The 11 × D_text table the model was trained with is kept in the `text_features` buffer, so
a checkpoint is self-contained in "text" mode; `forward_types` looks types up there.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from baselines.layers import ChannelLayerNorm, GatedFFN, merge_heads, split_heads
from harness.degradations import TYPES

ATTENTIONS = ("pgca", "cross")
TEXT_LEN = 324  # length of the text query; OneRestore's embedding length (18 × 18)
KEY_SIZE = 18  # K_I is resized to KEY_SIZE × KEY_SIZE for the text term
FFN_EXPANSION = 2.66


class PGCA(nn.Module):
    """Prompt-Guided Cross Attention (eq. 6), or plain cross-attention when `attention="cross"`."""

    def __init__(self, dim: int, heads: int, text_dim: int, attention: str = "pgca"):
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        if dim % heads:
            raise ValueError(f"channels {dim} not divisible by heads {heads}")
        self.heads = heads
        self.attention = attention
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.q = nn.Linear(text_dim, TEXT_LEN, bias=False)
        if attention == "pgca":
            self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=False)
            self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=False)
        else:
            self.kv = nn.Conv2d(dim, dim * 2, 1, bias=False)
            self.kv_dwconv = nn.Conv2d(dim * 2, dim * 2, 3, padding=1, groups=dim * 2, bias=False)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=False)

    def attention_maps(self, x: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor,
                                                                         torch.Tensor]:
        """(A_I or None, A_T, V_I): the per-head c × c attention matrices and the value maps (B×h×c×N)."""
        b, c, _, _ = x.shape
        if self.attention == "pgca":
            q_i, k_i, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        else:
            q_i = None
            k_i, v = self.kv_dwconv(self.kv(x)).chunk(2, dim=1)
        k_t = F.interpolate(k_i, size=(KEY_SIZE, KEY_SIZE), mode="bilinear", align_corners=False, antialias=False)
        k_t = F.normalize(split_heads(k_t, self.heads), dim=-1)
        q_t = F.normalize(self.q(text), dim=-1)  # B × 324
        q_t = q_t.view(b, 1, 1, TEXT_LEN).expand(b, self.heads, c // self.heads, TEXT_LEN)
        a_t = (q_t @ k_t.transpose(-2, -1) * self.temperature).softmax(dim=-1)
        a_i = None
        if q_i is not None:
            qh = F.normalize(split_heads(q_i, self.heads), dim=-1)
            kh = F.normalize(split_heads(k_i, self.heads), dim=-1)
            a_i = (qh @ kh.transpose(-2, -1) * self.temperature).softmax(dim=-1)
        return a_i, a_t, split_heads(v, self.heads)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        a_i, a_t, v = self.attention_maps(x, text)
        attn = a_t if a_i is None else a_i + a_t
        return self.project_out(merge_heads(attn @ v, h, w))


class CTransAgg(nn.Module):
    """Cross-Transformer Aggregation block: x + PGCA(LN(x), t); x + FFN(LN(x))."""

    def __init__(self, dim: int, heads: int, text_dim: int, attention: str = "pgca"):
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim, bias=True)
        self.attn = PGCA(dim, heads, text_dim, attention)
        self.norm2 = ChannelLayerNorm(dim, bias=True)
        self.ffn = GatedFFN(dim, FFN_EXPANSION, bias=False)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), text)
        return x + self.ffn(self.norm2(x))


class Down(nn.Module):
    """OneRestore's downsampling: MaxPool2d(3, stride 2, pad 1) then a 1×1 conv doubling the channels."""

    def __init__(self, dim: int):
        super().__init__()
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv = nn.Conv2d(dim, dim * 2, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pool(x))


class Up(nn.Module):
    """Bilinear upsampling to the skip's size, 1×1 conv halving the channels, add the skip."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim // 2, 1, bias=False)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(x) + skip


class VLURRestorer(nn.Module):
    """The Scene Restorer. `forward(x, text)`: x B×3×H×W in [0, 1], text B×D_text (see module docstring)."""

    def __init__(self, channel: int = 32, heads: int = 8, text_dim: int = 512, attention: str = "pgca",
                 text_features: torch.Tensor | None = None, types: Sequence[str] = TYPES):
        super().__init__()
        self.config = {"channel": int(channel), "heads": int(heads), "text_dim": int(text_dim),
                       "attention": str(attention), "types": list(types)}
        self.types = tuple(types)
        c = channel
        dims = (c, 2 * c, 4 * c, 8 * c)
        for d in dims:
            if d % heads:
                raise ValueError(f"channel {channel}: every level width {dims} must be divisible by heads {heads}")

        def block(d: int) -> CTransAgg:
            return CTransAgg(d, heads, text_dim, attention)

        self.in_conv = nn.Conv2d(3, c, 3, padding=1, bias=False)
        self.enc = nn.ModuleList(block(d) for d in dims)
        self.down = nn.ModuleList(Down(d) for d in dims[:3])
        self.middle = nn.ModuleList(block(dims[3]) for _ in range(2))
        self.dec = nn.ModuleList(block(d) for d in dims)  # dec[i] runs at width dims[i]
        self.up = nn.ModuleList(Up(d) for d in dims[1:])  # up[i]: dims[i+1] → dims[i]
        self.out_conv = nn.Conv2d(c, 3, 3, padding=1, bias=False)
        if text_features is None:
            text_features = torch.zeros(len(self.types), text_dim)
        if tuple(text_features.shape) != (len(self.types), text_dim):
            raise ValueError(f"text_features must be {len(self.types)}×{text_dim}, got {tuple(text_features.shape)}")
        self.register_buffer("text_features", text_features.detach().clone().float())

    def text_for(self, types: Sequence[str]) -> torch.Tensor:
        """The cached text feature of each type name (rows of `text_features`)."""
        try:
            idx = [self.types.index(t) for t in types]
        except ValueError:
            bad = [t for t in types if t not in self.types]
            raise ValueError(f"unknown degradation type(s) {bad}; valid: {', '.join(self.types)}") from None
        return self.text_features[torch.tensor(idx, device=self.text_features.device)]

    def forward_types(self, x: torch.Tensor, types: Sequence[str]) -> torch.Tensor:
        return self(x, self.text_for(types))

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        if text.shape[0] != x.shape[0]:
            raise ValueError(f"{x.shape[0]} images but {text.shape[0]} text features")
        text = text.to(x.dtype)
        xn = (x - 0.5) / 0.5
        f = self.in_conv(xn)
        skips = []
        for i, blk in enumerate(self.enc):
            f = blk(f, text)
            skips.append(f)
            if i < 3:
                f = self.down[i](f)
        for blk in self.middle:
            f = blk(f, text)
        f = self.dec[3](f + skips[3], text)
        for i in (2, 1, 0):
            f = self.dec[i](self.up[i](f, skips[i]), text)
        y = self.out_conv(f) + xn
        return (y + 1.0) / 2.0


def restorer_from_checkpoint(obj: dict, source: str = "<checkpoint>") -> VLURRestorer:
    """Rebuild a `VLURRestorer` from a loaded checkpoint dict (strict key/shape check)."""
    from harness.checkpoints import check_checkpoint
    from harness.weights import load_strict

    check_checkpoint(obj, source, "vlur")
    cfg = dict(obj["config"])
    sd = obj["state_dict"]
    model = VLURRestorer(channel=cfg["channel"], heads=cfg["heads"], text_dim=cfg["text_dim"],
                         attention=cfg["attention"], text_features=sd.get("text_features"),
                         types=tuple(cfg.get("types", TYPES)))
    load_strict(model, sd, source)
    model.meta = dict(obj.get("meta", {}))
    return model.eval()
