"""AirNet (Li et al., CVPR 2022, "All-in-one image restoration for unknown corruption"), re-implemented.

Two parts, named as in the released checkpoint (`All.pth`):

* `E` — CBDE, the contrastive degradation encoder: a MoCo pair of ResEncoders (`E.E.encoder_q`,
  `E.E.encoder_k`) plus the MoCo `queue` (256×K) and `queue_ptr`. At test time only the query encoder runs;
  its full-resolution 64-channel stem feature (`inter`) is the degradation representation that drives the
  restorer. The key encoder and the queue exist only so the released state_dict loads unchanged.
* `R` — DGRN, the degradation-guided restoration network: 3×3 head → 5 groups × 5 blocks → 3×3 → + head
  skip → 3×3 tail (no image-level residual). Each block has two DGMs, each adding a modulated deformable
  convolution (offsets and mask predicted from [feature, inter]) and an SFT modulation (x·γ(inter) + β(inter)).

The network takes [0, 1] RGB directly and returns the restored image unclamped; any H, W works (the official
test script crops to multiples of 16, which this module does not need). The MoCo queue length is
K = 256 × the training batch size, so checkpoints differ in it; `load_state_dict` (and `load_airnet`)
resize the queue buffer to the checkpoint's length before loading. Training (the MoCo contrastive loss,
queue updates) is not implemented: this is an evaluation re-implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import deform_conv2d

from harness.registry import MethodInfo, MethodOptions, Paper, register
from harness.weights import (
    MissingWeightsError,
    WeightsError,
    extract_state_dict,
    load_strict,
    read_checkpoint,
    sha256_file,
    strip_prefix,
)

INFO = MethodInfo(
    display="AirNet",
    paper=Paper("All-In-One Image Restoration for Unknown Corruption", "CVPR", 2022),
    code="https://github.com/XLearning-SCU/2022-CVPR-AirNet",
    licence="not stated",
    files=("All.pth",),
    checkpoint_format="plain state_dict (CBDE `E.` + DGRN `R.`; MoCo queue 256×K, resized on load)",
    published_at="https://github.com/XLearning-SCU/2022-CVPR-AirNet (checkpoint link in the README)",
    modes=("auto", "text"),
    blind=True,
    adapter="[0,1] input at any size (the official test crops to multiples of 16; not needed here); type ignored",
)
WEIGHTS_FILE = INFO.files[0]
PUBLISHED_AT = INFO.published_at

_SLOPE = 0.1  # every LeakyReLU in AirNet uses a negative slope of 0.1
_QUEUE_KEY = "E.E.queue"


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, _SLOPE)


def _conv(cin: int, cout: int, k: int = 3, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias)


# ---------------------------------------------------------------------------------------------------------
# CBDE: contrastive-based degradation encoder
# ---------------------------------------------------------------------------------------------------------
class ResBlock(nn.Module):
    """conv3×3-BN-LReLU-conv3×3-BN plus a conv1×1-BN shortcut, summed then LReLU; bias-free convs."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.LeakyReLU(_SLOPE),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _lrelu(self.backbone(x) + self.shortcut(x))


class ResEncoder(nn.Module):
    """Stem ResBlock 3→64 (full resolution), two stride-2 ResBlocks 64→128→256, global pool, 2-layer MLP.

    `forward` returns (pooled 256-d feature, MLP projection, 64-channel stem feature `inter`).
    """

    def __init__(self, dim: int = 256):
        super().__init__()
        self.E_pre = ResBlock(3, 64)
        self.E = nn.Sequential(ResBlock(64, 128, stride=2), ResBlock(128, dim, stride=2), nn.AdaptiveAvgPool2d(1))
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.LeakyReLU(_SLOPE), nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        inter = self.E_pre(x)
        fea = self.E(inter).flatten(1)
        return fea, self.mlp(fea), inter


class MoCo(nn.Module):
    """Momentum-contrast pair of ResEncoders with its negative queue (dim × K, L2-normalised columns).

    Only `encoder_q` is used here. The queue's length K varies between checkpoints (256 × training batch);
    loading a state_dict first resizes the `queue` buffer to the incoming one's shape (same `dim` rows).
    """

    def __init__(self, dim: int = 256, K: int = 256 * 5):
        super().__init__()
        self.dim = dim
        self.encoder_q = ResEncoder(dim)
        self.encoder_k = ResEncoder(dim)
        for p in self.encoder_k.parameters():
            p.requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(dim, K), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    def resize_queue(self, length: int) -> None:
        """Replace the queue buffer by a zero dim × `length` one (its values only matter for training)."""
        q = self.queue
        self.queue = torch.zeros(self.dim, int(length), dtype=q.dtype, device=q.device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        incoming = state_dict.get(prefix + "queue")
        if (
            isinstance(incoming, torch.Tensor)
            and incoming.dim() == 2
            and incoming.shape[0] == self.dim
            and incoming.shape != self.queue.shape
        ):
            self.resize_queue(incoming.shape[1])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fea, _, inter = self.encoder_q(x)
        return fea, inter


class CBDE(nn.Module):
    def __init__(self, dim: int = 256, K: int = 256 * 5):
        super().__init__()
        self.E = MoCo(dim, K)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.E(x)


# ---------------------------------------------------------------------------------------------------------
# DGRN: degradation-guided restoration network
# ---------------------------------------------------------------------------------------------------------
class ModulatedDeformConv(nn.Module):
    """DCNv2 whose offsets and mask come from a 3×3 conv over [x, inter] (2·C channels in).

    `conv_offset_mask` yields 3·k·k channels: the first 2·k·k are the offsets (per kernel tap a (dy, dx)
    pair, the layout `torchvision.ops.deform_conv2d` expects), the last k·k go through a sigmoid as the mask.
    """

    def __init__(self, cin: int, cout: int, k: int = 3, bias: bool = False):
        super().__init__()
        self.padding = k // 2
        self.weight = nn.Parameter(torch.empty(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.conv_offset_mask = nn.Conv2d(2 * cin, 3 * k * k, k, padding=k // 2, bias=True)
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        nn.init.zeros_(self.conv_offset_mask.weight)  # start as a plain conv with mask 0.5
        nn.init.zeros_(self.conv_offset_mask.bias)

    def forward(self, x: torch.Tensor, inter: torch.Tensor) -> torch.Tensor:
        om = self.conv_offset_mask(torch.cat([x, inter], dim=1))
        n = om.shape[1] // 3
        offset, mask = om[:, : 2 * n], torch.sigmoid(om[:, 2 * n :])
        return deform_conv2d(x, offset, self.weight, self.bias, padding=self.padding, mask=mask)


class SFT(nn.Module):
    """Spatial feature transform: x·γ(inter) + β(inter), γ and β two bias-free 1×1 convs with LReLU between."""

    def __init__(self, cin: int, cout: int):
        super().__init__()

        def branch() -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 1, bias=False), nn.LeakyReLU(_SLOPE), nn.Conv2d(cout, cout, 1, bias=False)
            )

        self.conv_gamma = branch()
        self.conv_beta = branch()

    def forward(self, x: torch.Tensor, inter: torch.Tensor) -> torch.Tensor:
        return x * self.conv_gamma(inter) + self.conv_beta(inter)


class DGM(nn.Module):
    """Degradation-guided module: x + DCN(x | inter) + SFT(x | inter)."""

    def __init__(self, channels: int, k: int = 3):
        super().__init__()
        self.dcn = ModulatedDeformConv(channels, channels, k, bias=False)
        self.sft = SFT(channels, channels)

    def forward(self, x: torch.Tensor, inter: torch.Tensor) -> torch.Tensor:
        # summed in this order (dcn + sft first), as the official code does; with random test weights the
        # network is chaotic enough that float rounding order shows in the output
        return x + (self.dcn(x, inter) + self.sft(x, inter))


class DGB(nn.Module):
    """Degradation-guided block: LReLU(DGM) → LReLU(conv) → LReLU(DGM) → conv, plus the input."""

    def __init__(self, channels: int, k: int = 3):
        super().__init__()
        self.dgm1 = DGM(channels, k)
        self.dgm2 = DGM(channels, k)
        self.conv1 = _conv(channels, channels, k)
        self.conv2 = _conv(channels, channels, k)

    def forward(self, x: torch.Tensor, inter: torch.Tensor) -> torch.Tensor:
        out = _lrelu(self.dgm1(x, inter))
        out = _lrelu(self.conv1(out))
        out = _lrelu(self.dgm2(out, inter))
        return self.conv2(out) + x


class DGG(nn.Module):
    """Degradation-guided group: `blocks` DGBs then a 3×3 conv (`body[blocks]`), plus the input."""

    def __init__(self, channels: int, k: int = 3, blocks: int = 5):
        super().__init__()
        self.body = nn.Sequential(*[DGB(channels, k) for _ in range(blocks)], _conv(channels, channels, k))

    def forward(self, x: torch.Tensor, inter: torch.Tensor) -> torch.Tensor:
        res = x
        for block in self.body[:-1]:
            res = block(res, inter)
        return self.body[-1](res) + x


class DGRN(nn.Module):
    def __init__(self, channels: int = 64, k: int = 3, groups: int = 5, blocks: int = 5):
        super().__init__()
        self.head = nn.Sequential(_conv(3, channels, k))
        self.body = nn.Sequential(*[DGG(channels, k, blocks) for _ in range(groups)], _conv(channels, channels, k))
        self.tail = nn.Sequential(_conv(channels, 3, k))

    def forward(self, x: torch.Tensor, inter: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        res = x
        for group in self.body[:-1]:
            res = group(res, inter)
        return self.tail(self.body[-1](res) + x)


class AirNet(nn.Module):
    """AirNet = DGRN `R` guided by the CBDE `E`; `forward(x)` restores a B×3×H×W batch in [0, 1].

    `queue_length` is the MoCo queue's K (256 × training batch; 1280 by default). It has no effect on the
    output, and loading a state_dict adopts the checkpoint's K.
    """

    def __init__(self, queue_length: int = 256 * 5):
        super().__init__()
        self.R = DGRN()
        self.E = CBDE(K=queue_length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, inter = self.E(x)
        return self.R(x, inter)


# ---------------------------------------------------------------------------------------------------------
# Loading the released checkpoint
# ---------------------------------------------------------------------------------------------------------
def load_airnet(path: str | Path, model: AirNet | None = None) -> AirNet:
    """Load the released `All.pth` (plain state_dict, optionally `module.`-prefixed or nested under
    'state_dict' / 'model' / 'net') into `model` (a new `AirNet` by default), strictly; returns it in eval mode.

    The MoCo queue buffer is first resized to the checkpoint's length, so any training batch size loads.
    Raises `WeightsError` naming the file and the first differing keys / shapes when it does not match.
    """
    path = Path(path)
    sd = extract_state_dict(read_checkpoint(path), path)
    sd = strip_prefix(sd, "module.")
    model = model if model is not None else AirNet()
    queue = sd.get(_QUEUE_KEY)
    moco = model.E.E
    if isinstance(queue, torch.Tensor) and queue.dim() == 2 and queue.shape[0] == moco.dim:
        moco.resize_queue(queue.shape[1])
    load_strict(model, sd, path)
    return model.eval()


# ---------------------------------------------------------------------------------------------------------
# Harness adapter
# ---------------------------------------------------------------------------------------------------------
class AirNetRestorer:
    """Blind restorer: the degradation type, if given, is ignored (AirNet infers it itself)."""

    name = "airnet"
    weights_label = "official"

    def __init__(self, model: AirNet, weights_files: Sequence[Path] = (), device: str | torch.device = "cpu",
                 *, weights_label: str = "official"):
        self.model = model.eval()
        self.weights_files: tuple[Path, ...] = tuple(Path(p) for p in weights_files)
        self.weights_label = weights_label
        self.device = torch.device(device)
        self.model.to(self.device)

    def weights_sha256(self) -> dict[str, str]:
        return {p.name: sha256_file(p) for p in self.weights_files}

    @torch.no_grad()
    def restore(self, images: torch.Tensor, degradation: Sequence[str] | None = None) -> torch.Tensor:
        return self.model(images.to(self.device, torch.float32))

    def to(self, device: torch.device | str) -> AirNetRestorer:
        self.device = torch.device(device)
        self.model.to(self.device)
        return self


def _weights_path(opts: MethodOptions) -> Path:
    if opts.weights is not None:
        path = Path(opts.weights)
        if not path.is_file():
            raise MissingWeightsError("airnet", path, PUBLISHED_AT)
        return path
    if opts.weights_dir is not None:
        path = Path(opts.weights_dir) / WEIGHTS_FILE
        if not path.is_file():
            raise MissingWeightsError("airnet", path, PUBLISHED_AT)
        return path
    raise MissingWeightsError("airnet", Path(WEIGHTS_FILE), PUBLISHED_AT)


@register(
    "airnet",
    description="AirNet (CVPR 2022): blind all-in-one restoration, CBDE + DGRN, official All.pth",
    info=INFO,
)
def create(opts: MethodOptions) -> AirNetRestorer:
    """AirNet with the authors' `All.pth` (from `opts.weights`, else `opts.weights_dir`); no demo weights.
    `opts.random_weights`: the seeded (seed 0) default initialisation instead, no file (label "random")."""
    if opts.random_weights:
        with torch.random.fork_rng(devices=[]):  # seeded, leaving the caller's RNG as it was
            torch.manual_seed(0)
            model = AirNet()
        return AirNetRestorer(model, (), opts.device, weights_label="random")
    path = _weights_path(opts)
    model = load_airnet(path)
    return AirNetRestorer(model, (path,), opts.device)


__all__ = [
    "AirNet",
    "AirNetRestorer",
    "CBDE",
    "DGRN",
    "MoCo",
    "ResEncoder",
    "WeightsError",
    "MissingWeightsError",
    "load_airnet",
    "create",
]
