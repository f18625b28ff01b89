"""WeatherDiffusion (Özdenizci & Legenstein, TPAMI 2023): patch-based conditional denoising diffusion.

Re-implemented from the paper and the published facts about the release (see the shared reference notes):
the all-weather model `WeatherDiff64` (configs/allweather.yml), a DDPM/DDIM-style UNet that predicts the noise
ε of a 64×64 patch given the weather-degraded patch as a condition, and the overlapping-patch DDIM sampler the
authors evaluate with. Module names follow the released checkpoint, so its weights load key for key.

Denoiser `DiffusionUNet` (WeatherDiff64: ch 128, ch_mult [1, 2, 3, 4], 2 ResNet blocks per level, attention at
16×16, dropout 0, learned resampling convolutions; 82,962,435 parameters)::

    x = cat(2·cond − 1, x_t)  (6 ch, 64×64)        t (timestep index, float) → sinusoid (128) → MLP → temb (512)
    conv_in 6→128 → [64²: 2 res(128)] → down → [32²: 2 res(256)] → down → [16²: 2 (res+attn)(384)] → down
      → [8²: 2 res(512)] → mid: res, attn, res (512)
      → 4 decoder levels of 3 res blocks, each on cat(h, skip); attention after each at 16²; up ×2 between levels
    → GroupNorm → swish → conv_out 128→3 = ε̂

Every residual block is GroupNorm(32, eps 1e-6)/swish/3×3 conv, + Linear(swish(temb)), GroupNorm/swish/3×3 conv,
plus a 1×1 shortcut where the channel count changes. The network accepts exactly 64×64 inputs.

Sampler (`sample`, the authors' `generalized_steps_overlapping` with eta 0): a linear β schedule 1e-4 → 0.02
over 1000 steps; S sampling steps use skip = 1000 // S and visit t = …, 2·skip, skip, 0 (ceil(1000/skip)
steps), each paired with the previous timestep (the last with −1, ᾱ = 1). At every step the current full-size
x_t and the condition are cut into 64×64 patches on a grid with stride r (corners 0, r, 2r, … ≤ H − 64), all
patches go through the UNet at the same t (64 per call), and the ε̂ patches are averaged where they overlap;
then x0 = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t and x_next = √ᾱ_next·x0 + √(1−ᾱ_next)·ε̂. The restored image is
clamp((x + 1)/2, 0, 1) of the final x.

Adapter (`WeatherDiffRestorer`, registry name "weatherdiff"), following the authors' `eval_diffusion.py`:
grid stride r = 16 and 25 sampling steps (the script's defaults), initial noise N(0, 1) of the (padded) image
size drawn from a CPU generator seeded with 61 (the script's seed) separately for every image, so the output is
deterministic and independent of batching and device; the output is clamped to [0, 1] as the official
`inverse_data_transform` does. All three can be changed with `--method-arg grid_r=…/steps=…/seed=…`.
Size rule: the sampler needs (H − 64) and (W − 64) to be multiples of r (else border pixels get no patch). The
official loader resizes every test image (Lanczos) to multiples of 16, with the long side capped at 1024, and
keeps the result at that size. Here the image is instead padded at the bottom and right (reflect; replicate
where a side is too short to reflect) up to 64 + k·r ≥ its size, restored, and cropped back, so the output has
the input's size and no pixel is resampled; images are not downscaled to 1024 either, so the cost grows with
the image area (number of patches). WeatherDiffusion is blind: a given degradation type is ignored.

Checkpoint: `WeatherDiff64.pth.tar` is a training dict (epoch, step, `state_dict` with DataParallel `module.`
keys, optimizer, `ema_helper` = EMA shadow of the parameters without prefix, `params`/`config` as
`argparse.Namespace`). The official evaluation uses the EMA shadow, and so does `load_weatherdiff`. The file is
read with `weights_only=True`; the two `Namespace` entries (and any other non-tensor object) are replaced by
inert stubs while reading, since only the tensors are used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from harness.registry import MethodArgError, MethodInfo, MethodOptions, Paper, check_method_args, register
from harness.weights import (
    MissingWeightsError,
    WeightsError,
    extract_state_dict,
    load_strict,
    read_checkpoint_stubbing_objects,
    strip_prefix,
)

INFO = MethodInfo(
    display="WeatherDiffusion",
    paper=Paper("Restoring Vision in Adverse Weather Conditions with Patch-Based Denoising Diffusion Models",
                "TPAMI", 2023),
    code="https://github.com/IGITUGraz/WeatherDiffusion",
    licence="MIT",
    files=("WeatherDiff64.pth.tar",),
    checkpoint_format="training dict; the EMA weights (`ema_helper`) are used",
    published_at=(
        "https://igi-web.tugraz.at/download/OzdenizciLegensteinTPAMI2023/ "
        "(linked from https://github.com/IGITUGraz/WeatherDiffusion), file WeatherDiff64.pth.tar"
    ),
    modes=("auto", "text"),
    blind=True,
    adapter="64×64 patches, grid r=16, 25 DDIM steps (eta 0), noise seeded 61 per image; pad to the patch grid "
    "instead of the official resize; `--method-arg grid_r=… steps=… seed=…`",
)
#: Where the authors publish the checkpoints (WeatherDiff64.pth.tar, WeatherDiff128.pth.tar).
PUBLISHED_AT = INFO.published_at
#: File name of the released 64×64-patch all-weather model.
CHECKPOINT_NAME = INFO.files[0]

#: Diffusion settings of the release (configs/allweather.yml).
NUM_TIMESTEPS = 1000
BETA_START, BETA_END = 1e-4, 0.02
#: Patch size (the UNet's only input size).
PATCH_SIZE = 64
#: Defaults of the official evaluation script: grid stride r, sampling steps S, random seed.
DEFAULT_GRID_R = 16
DEFAULT_STEPS = 25
DEFAULT_SEED = 61
#: Patches per UNet call in the official sampler.
PATCHES_PER_CALL = 64


# ---------------------------------------------------------------------------------------------- denoiser


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding (float32) of a 1-D tensor of timesteps: [sin(t·f_i), cos(t·f_i)], i < dim/2,
    with f_i = exp(−ln(10000)·i/(dim/2 − 1)); a zero column is appended for odd `dim`."""
    if t.dim() != 1:
        raise ValueError(f"timesteps must be a 1-D tensor, got shape {tuple(t.shape)}")
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=t.device) * (-math.log(10000.0) / (half - 1)))
    angles = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([angles.sin(), angles.cos()], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


def _swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """Pre-activation residual block with an additive time-embedding projection after the first conv."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, dropout: float = 0.0):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.temb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = _norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_swish(self.norm1(x)))
        h = h + self.temb_proj(_swish(temb))[:, :, None, None]
        h = self.conv2(self.dropout(_swish(self.norm2(h))))
        skip = self.nin_shortcut(x) if self.in_channels != self.out_channels else x
        return skip + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with 1×1 projections and a residual connection."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (proj(y).reshape(b, c, h * w) for proj in (self.q, self.k, self.v))
        scores = torch.bmm(q.transpose(1, 2), k) * (c ** -0.5)  # b × query × key
        weights = scores.softmax(dim=2)
        out = torch.bmm(v, weights.transpose(1, 2)).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Zero-pad right and bottom by one pixel, then a 3×3 stride-2 conv without padding."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour ×2, then a 3×3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DiffusionUNet(nn.Module):
    """The WeatherDiffusion noise predictor; the no-argument constructor builds the released WeatherDiff64.

    `forward(x, t)`: `x` is B×6×64×64, the condition patch mapped to [−1, 1] (2·p − 1) concatenated with the
    noisy patch x_t; `t` a float tensor of timestep indices (0…999), of length B or 1 (broadcast). Returns the
    predicted noise, B×3×64×64. Any other spatial size is refused, as in the official module.
    """

    def __init__(
        self,
        ch: int = 128,
        out_ch: int = 3,
        ch_mult: Sequence[int] = (1, 2, 3, 4),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (16,),
        in_channels: int = 6,
        resolution: int = PATCH_SIZE,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.ch, self.resolution, self.in_channels = ch, resolution, in_channels
        self.num_resolutions, self.num_res_blocks = len(ch_mult), num_res_blocks
        temb_ch = 4 * ch
        in_mult = (1, *ch_mult)

        self.temb = nn.Module()
        self.temb.dense = nn.ModuleList([nn.Linear(ch, temb_ch), nn.Linear(temb_ch, temb_ch)])
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)

        res = resolution
        self.down = nn.ModuleList()
        for level, mult in enumerate(ch_mult):
            stage = nn.Module()
            stage.block, stage.attn = nn.ModuleList(), nn.ModuleList()
            c_in, c_out = ch * in_mult[level], ch * mult
            for _ in range(num_res_blocks):
                stage.block.append(ResnetBlock(c_in, c_out, temb_ch, dropout))
                c_in = c_out
                if res in attn_resolutions:
                    stage.attn.append(AttnBlock(c_out))
            if level != self.num_resolutions - 1:
                stage.downsample = Downsample(c_out)
                res //= 2
            self.down.append(stage)

        c_mid = ch * ch_mult[-1]
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(c_mid, c_mid, temb_ch, dropout)
        self.mid.attn_1 = AttnBlock(c_mid)
        self.mid.block_2 = ResnetBlock(c_mid, c_mid, temb_ch, dropout)

        c_in = c_mid
        up_stages: list[nn.Module] = []
        for level in reversed(range(self.num_resolutions)):
            stage = nn.Module()
            stage.block, stage.attn = nn.ModuleList(), nn.ModuleList()
            c_out = ch * ch_mult[level]
            for i in range(num_res_blocks + 1):
                c_skip = ch * (ch_mult[level] if i < num_res_blocks else in_mult[level])
                stage.block.append(ResnetBlock(c_in + c_skip, c_out, temb_ch, dropout))
                c_in = c_out
                if res in attn_resolutions:
                    stage.attn.append(AttnBlock(c_out))
            if level != 0:
                stage.upsample = Upsample(c_out)
                res *= 2
            up_stages.append(stage)
        self.up = nn.ModuleList(reversed(up_stages))  # index = level, as in the release

        self.norm_out = _norm(c_in)
        self.conv_out = nn.Conv2d(c_in, out_ch, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.resolution, self.resolution):
            raise ValueError(
                f"DiffusionUNet takes {self.resolution}×{self.resolution} patches only, got {tuple(x.shape)}"
            )
        emb = timestep_embedding(t, self.ch).to(self.temb.dense[0].weight.dtype)
        temb = self.temb.dense[1](_swish(self.temb.dense[0](emb)))

        skips = [self.conv_in(x)]
        for level, stage in enumerate(self.down):
            for i, block in enumerate(stage.block):
                h = block(skips[-1], temb)
                if len(stage.attn):
                    h = stage.attn[i](h)
                skips.append(h)
            if level != self.num_resolutions - 1:
                skips.append(stage.downsample(skips[-1]))

        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(skips[-1], temb)), temb)

        for level in reversed(range(self.num_resolutions)):
            stage = self.up[level]
            for i, block in enumerate(stage.block):
                h = block(torch.cat([h, skips.pop()], dim=1), temb)
                if len(stage.attn):
                    h = stage.attn[i](h)
            if level != 0:
                h = stage.upsample(h)

        return self.conv_out(_swish(self.norm_out(h)))


# ---------------------------------------------------------------------------------------------- sampler


def alphas_cumprod() -> torch.Tensor:
    """ᾱ with a leading 1: entry t + 1 is ∏_{s≤t}(1 − β_s) for the linear β schedule (float32 like the release),
    entry 0 (t = −1) is 1."""
    betas = torch.linspace(BETA_START, BETA_END, NUM_TIMESTEPS, dtype=torch.float64).float()
    return (1 - torch.cat([betas.new_zeros(1), betas])).cumprod(dim=0)


def timestep_pairs(steps: int) -> list[tuple[int, int]]:
    """(t, t_next) in sampling order for S = `steps`: skip = 1000 // S, t over reversed(range(0, 1000, skip)),
    t_next the previous grid point (−1 after 0). Note the count is ceil(1000/skip), e.g. S = 3 gives 4."""
    if not 1 <= steps <= NUM_TIMESTEPS:
        raise ValueError(f"sampling steps must be in 1…{NUM_TIMESTEPS}, got {steps}")
    seq = list(range(0, NUM_TIMESTEPS, NUM_TIMESTEPS // steps))
    return list(zip(reversed(seq), reversed([-1, *seq[:-1]])))


def grid_corners(height: int, width: int, grid_r: int, patch_size: int = PATCH_SIZE) -> list[tuple[int, int]]:
    """Top-left corners (row, col) of the overlapping patch grid: rows 0, r, … ≤ H − p, likewise columns,
    row-major (the official order)."""
    if grid_r < 1:
        raise ValueError(f"grid stride r must be ≥ 1, got {grid_r}")
    rows = range(0, height - patch_size + 1, grid_r)
    cols = range(0, width - patch_size + 1, grid_r)
    return [(i, j) for i in rows for j in cols]


def grid_size(size: int, grid_r: int, patch_size: int = PATCH_SIZE) -> int:
    """Smallest length ≥ `size` that the patch grid covers exactly: p + k·r."""
    return patch_size + grid_r * math.ceil(max(size - patch_size, 0) / grid_r)


@torch.no_grad()
def sample_raw(
    unet: nn.Module,
    x_cond: torch.Tensor,
    noise: torch.Tensor,
    *,
    grid_r: int,
    steps: int,
    patch_size: int = PATCH_SIZE,
    patches_per_call: int = PATCHES_PER_CALL,
) -> torch.Tensor:
    """Overlapping-patch DDIM sampling (eta 0); returns the final x in the model's range (about [−1, 1]).

    `x_cond`: B×3×H×W condition in [0, 1]; `noise`: the initial x_T, same shape. H and W must be covered by the
    patch grid, i.e. H, W ≥ `patch_size` and (H − p), (W − p) multiples of `grid_r` (see `grid_size`).

    On the meta device (FLOP counting: no data, nothing computed) the UNet gets all patches of a step in one call
    and the per-patch cropping and overlap-averaging (slicing and element-wise adds, which count no FLOPs) are
    replaced by tensors of their shapes, so a count takes a minute at 1080p instead of hours. The count is the
    real run's except for the timestep-embedding MLP (8.26 MFLOPs), which a real run evaluates once per call of
    `patches_per_call` patches and this path once per step: 0.97 GFLOPs per step fewer at 1080p (2·10⁻⁶).
    """
    if x_cond.shape != noise.shape or x_cond.dim() != 4:
        raise ValueError(f"x_cond and noise must both be B×C×H×W, got {tuple(x_cond.shape)}, {tuple(noise.shape)}")
    b, _, h, w = x_cond.shape
    corners = grid_corners(h, w, grid_r, patch_size)
    if not corners or (h - patch_size) % grid_r or (w - patch_size) % grid_r:
        raise ValueError(
            f"a {h}×{w} image is not covered by {patch_size}×{patch_size} patches at stride {grid_r}: "
            f"pad it to {grid_size(h, grid_r, patch_size)}×{grid_size(w, grid_r, patch_size)} first"
        )
    device, dtype = noise.device, noise.dtype
    meta = device.type == "meta"  # FLOP counting: shapes only (see above)
    if meta:
        patches_per_call = len(corners) * b
    abar = alphas_cumprod().to(device)
    count = torch.zeros(1, 1, h, w, device=device, dtype=dtype)
    for i, j in [] if meta else corners:
        count[..., i : i + patch_size, j : j + patch_size] += 1

    def crops(img: torch.Tensor) -> torch.Tensor:  # (corner, image) order: index k·B + b
        if meta:
            return img.new_empty(len(corners) * b, img.shape[1], patch_size, patch_size)
        return torch.cat([img[..., i : i + patch_size, j : j + patch_size] for i, j in corners], dim=0)

    cond = crops(2 * x_cond.to(device, dtype) - 1)
    x = noise
    for t, t_next in timestep_pairs(steps):
        at, at_next = abar[t + 1].to(dtype), abar[t_next + 1].to(dtype)
        xt = crops(x)
        t_in = torch.full((1,), float(t), device=device)
        eps = torch.zeros_like(x)
        for start in range(0, len(cond), patches_per_call):
            stop = start + patches_per_call
            out = unet(torch.cat([cond[start:stop], xt[start:stop]], dim=1), t_in)
            for n, patch in enumerate([] if meta else out, start):
                (i, j), img = corners[n // b], n % b
                eps[img, :, i : i + patch_size, j : j + patch_size] += patch
        eps = eps / count
        x0 = (x - eps * (1 - at).sqrt()) / at.sqrt()
        x = at_next.sqrt() * x0 + (1 - at_next).sqrt() * eps
    return x


def sample(
    unet: nn.Module, x_cond: torch.Tensor, noise: torch.Tensor, *, grid_r: int, steps: int, **kwargs
) -> torch.Tensor:
    """The restored image in [0, 1]: clamp((x + 1)/2) of `sample_raw` (same arguments)."""
    return ((sample_raw(unet, x_cond, noise, grid_r=grid_r, steps=steps, **kwargs) + 1) / 2).clamp(0, 1)


# ---------------------------------------------------------------------------------------------- weights


_STUB_HINT = (
    f"WeatherDiffusion's weights are published at {PUBLISHED_AT}; from another file, export its EMA weights once in"
    " the authors' environment (torch.save(c['ema_helper'], 'WeatherDiff64_ema.pth')) and pass that with --weights."
)


def weatherdiff_state_dict(path: Path | str, *, ema: bool = True) -> dict[str, torch.Tensor]:
    """The UNet weights in a file: the EMA shadow (`ema_helper`) of the released training checkpoint, as the
    official evaluation uses (or its raw `state_dict` with `ema=False`), or a plain state_dict; any
    DataParallel `module.` prefix is removed."""
    path = Path(path)
    obj = read_checkpoint_stubbing_objects(path, _STUB_HINT)
    training = isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping) and (
        "ema_helper" in obj or "optimizer" in obj
    )
    if training and ema:
        shadow = obj.get("ema_helper")
        if not isinstance(shadow, Mapping):
            raise WeightsError(
                f"{path}: training checkpoint without an 'ema_helper' entry (the EMA weights the official"
                f" evaluation uses; top level holds: {list(obj)[:8]}). Load it with ema=False to use the raw"
                " 'state_dict' instead."
            )
        sd = extract_state_dict(shadow, path)
    elif training:
        sd = extract_state_dict(obj["state_dict"], path)
    else:
        sd = extract_state_dict(obj, path)
    return strip_prefix(sd, "module.")


def load_weatherdiff(path: Path | str, device: torch.device | str = "cpu", *, ema: bool = True) -> DiffusionUNet:
    """Build the WeatherDiff64 UNet and load a checkpoint strictly (see `weatherdiff_state_dict`); eval mode.

    Raises `MissingWeightsError` when the file does not exist and `WeightsError` when it is unreadable or does
    not match the network (the message lists the first differing keys and shapes).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError("weatherdiff", path, PUBLISHED_AT)
    sd = weatherdiff_state_dict(path, ema=ema)
    with torch.device("meta"):  # no random init of 83 M parameters that are overwritten anyway
        model = DiffusionUNet()
    model = model.to_empty(device="cpu")
    load_strict(model, sd, path)  # strict: every tensor of the model is filled from the file
    return model.eval().to(device)


# ---------------------------------------------------------------------------------------------- adapter


def pad_to_grid(x: torch.Tensor, grid_r: int, patch_size: int = PATCH_SIZE) -> torch.Tensor:
    """Pad the bottom and right of a B×C×H×W batch to `grid_size` (reflect; replicate along a side too short
    to reflect)."""
    h, w = x.shape[-2:]
    ph, pw = grid_size(h, grid_r, patch_size) - h, grid_size(w, grid_r, patch_size) - w
    if ph:
        x = F.pad(x, (0, 0, 0, ph), mode="reflect" if ph < h else "replicate")
    if pw:
        x = F.pad(x, (0, pw, 0, 0), mode="reflect" if pw < w else "replicate")
    return x


class WeatherDiffRestorer:
    """`Restorer` adapter: pad to the patch grid, sample with per-image seeded noise, crop back (blind)."""

    name = "weatherdiff"
    #: `harness.timing --flops-only` prints this under its table (see `sample_raw`).
    meta_flops_note = ("on the meta device a step's patches go through the UNet in one call, so its timestep MLP "
                       "(8.26 MFLOPs) is counted once per step instead of once per 64 patches (about 2e-6 low).")

    def __init__(
        self,
        model: DiffusionUNet,
        weights_files: Sequence[Path | str] = (),
        *,
        weights_label: str = "official",
        grid_r: int = DEFAULT_GRID_R,
        steps: int = DEFAULT_STEPS,
        seed: int = DEFAULT_SEED,
    ):
        timestep_pairs(steps)  # validates
        if grid_r < 1:
            raise ValueError(f"grid stride r must be ≥ 1, got {grid_r}")
        self.model = model.eval()
        self.weights_files = [Path(p) for p in weights_files]
        self.weights_label = weights_label
        self.grid_r, self.steps, self.seed = grid_r, steps, seed

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def sampler_steps(self) -> int:
        """UNet passes over the whole (padded) image per restored image, ceil(1000 / skip) for `steps`;
        `harness.timing` reports the FLOPs per restored image and, divided by this, per step."""
        return len(timestep_pairs(self.steps))

    def noise_for(self, shape: Sequence[int]) -> torch.Tensor:
        """The initial noise of one image: N(0, 1) from a CPU generator seeded with `seed`, on the device."""
        g = torch.Generator().manual_seed(self.seed)
        return torch.randn(tuple(shape), generator=g).to(self.device)

    def restore(self, images: torch.Tensor, degradation: Sequence[str] | None = None) -> torch.Tensor:
        del degradation  # blind: the condition image alone drives the restoration
        images = images.to(self.device, torch.float32)
        h, w = images.shape[-2:]
        outs = []
        with torch.inference_mode():
            for img in images.split(1):
                cond = pad_to_grid(img, self.grid_r)
                out = sample(self.model, cond, self.noise_for(cond.shape), grid_r=self.grid_r, steps=self.steps)
                outs.append(out[..., :h, :w])
        return torch.cat(outs)

    def to(self, device: torch.device | str) -> WeatherDiffRestorer:
        self.model.to(device)
        return self


_METHOD_ARGS = {
    "grid_r": f"patch grid stride r (default {DEFAULT_GRID_R}; the authors also report 4)",
    "steps": f"DDIM sampling steps S, skip = 1000 // S (default {DEFAULT_STEPS})",
    "seed": f"seed of each image's initial noise (default {DEFAULT_SEED})",
}


def _int_arg(args: Mapping[str, str], key: str, default: int, low: int, high: int | None = None) -> int:
    if key not in args:
        return default
    try:
        value = int(args[key])
    except ValueError:
        raise MethodArgError(f"weatherdiff: --method-arg {key}={args[key]!r} is not an integer") from None
    if value < low or (high is not None and value > high):
        bound = f"{low}…{high}" if high is not None else f"≥ {low}"
        raise MethodArgError(f"weatherdiff: --method-arg {key}={value} must be {bound}")
    return value


@register(
    "weatherdiff",
    description=(
        f"WeatherDiffusion (TPAMI 2023), official {CHECKPOINT_NAME} (EMA weights): patch DDIM, 64×64 patches,"
        f" grid r={DEFAULT_GRID_R}, {DEFAULT_STEPS} steps (eta 0), noise seed {DEFAULT_SEED} per image; pads to"
        " the patch grid instead of the official resize; blind (a given type is ignored)"
    ),
    info=INFO,
)
def create(opts: MethodOptions) -> WeatherDiffRestorer:
    """WeatherDiffusion with the authors' WeatherDiff64.pth.tar (from --weights, or
    --weights-dir/WeatherDiff64.pth.tar), or seeded random weights with `random_weights`."""
    args = check_method_args("weatherdiff", opts, _METHOD_ARGS)
    settings = {
        "grid_r": _int_arg(args, "grid_r", DEFAULT_GRID_R, 1),
        "steps": _int_arg(args, "steps", DEFAULT_STEPS, 1, NUM_TIMESTEPS),
        "seed": _int_arg(args, "seed", DEFAULT_SEED, 0),
    }
    if opts.random_weights:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = DiffusionUNet()
        return WeatherDiffRestorer(model, weights_label="random", **settings).to(opts.device)
    if opts.weights is not None:
        path = Path(opts.weights)
    elif opts.weights_dir is not None:
        path = Path(opts.weights_dir) / CHECKPOINT_NAME
    else:
        path = Path(CHECKPOINT_NAME)
    if not path.is_file():
        raise MissingWeightsError("weatherdiff", path, PUBLISHED_AT)
    return WeatherDiffRestorer(load_weatherdiff(path, opts.device), [path], **settings)


__all__ = [
    "AttnBlock",
    "DiffusionUNet",
    "ResnetBlock",
    "WeatherDiffRestorer",
    "alphas_cumprod",
    "create",
    "grid_corners",
    "grid_size",
    "load_weatherdiff",
    "pad_to_grid",
    "sample",
    "sample_raw",
    "timestep_embedding",
    "timestep_pairs",
    "weatherdiff_state_dict",
]
