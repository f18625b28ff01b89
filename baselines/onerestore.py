"""OneRestore (ECCV 2024): a prompt-driven restorer plus a ResNet-18 "embedder" that picks the prompt.

Re-implemented from the published description (see `/work/shared/reference/README.md`); module and
attribute names reproduce the released state_dicts key for key (`tests/data/onerestore*.manifest.json`), and
`tests/test_onerestore.py` checks the outputs against test vectors produced by the official code.

Two modules:

* `OneRestore(channel=32)` — the restorer. `forward(x, embedding)` takes images B×3×H×W in [0, 1] (any H, W)
  and one 324-d scene embedding per image, and returns the restored images (not clamped).
* `Embedder()` — the type table (12 learned 300-d word vectors → Linear → ReLU → 324-d, one row per type in
  `harness.degradations.ALL_TYPES` order), the text embedding of a type name (its table row) and the visual path
  (ResNet-18 → 1×1 conv 512→1024 + BN + ReLU + Dropout2d → global average pool → Linear → 324-d, compared
  with the table by cosine similarity / 0.05). It is also this method's `DegradationClassifier`.

Choices fixed against the official test vectors (all checked in the tests):

* The restorer's skip at the bottom: the middle blocks' output plus the last encoder level's output is the
  input of the first decoder block (`decoder.dss`); the other decoder levels add their skip before the block.
* The output is `(out_conv(features) + x + 1) / 2` with `x` the *raw* [0, 1] input (not the normalised one).
* In the cross-attention, k is resized to 18×18 with bilinear, `align_corners=False`, no antialias (the
  released weights; `antialias=True` is available as an option).
* In visual mode the restorer is driven by the type-table row of the arg-max type, not by the raw visual
  embedding: `Embedder.forward` returns that row (the raw one is `Embedder.visual_embedding`).
* The embedder's input is an RGB image in [0, 1]; the ImageNet normalisation happens inside the embedder.

The one choice the test vectors cannot check is how an arbitrary image becomes the 224×224 embedder input
(the vectors start from `x224`): `Embedder.prepare` resizes the whole image (no crop, aspect ratio not kept)
with bilinear interpolation and antialiasing, which approximates a PIL-style bilinear downscale.

Weights:

* Official: `onerestore_cdd-11.tar` and `embedder_model.tar` (plain state_dicts, possibly nested under
  'state_dict'/'model' and with DataParallel's `module.` prefix) from https://github.com/gy65896/OneRestore.
* Demo: `baselines/weights/onerestore_demo.pt`, a self-describing checkpoint written by
  `save_checkpoint` (see there for its layout), trained by this project and labelled "demo" in tables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from baselines.layers import ChannelLayerNorm, ChannelSelfAttention, GatedFFN, merge_heads, split_heads
from harness import checkpoints
from harness.degradations import ALL_TYPES, type_index
from harness.protocol import classify_from_scores
from harness.registry import MethodInfo, MethodOptions, Paper, register
from harness.weights import (
    MissingWeightsError,
    WeightsError,
    extract_state_dict,
    load_strict,
    read_checkpoint,
    strip_prefix,
)

INFO = MethodInfo(
    display="OneRestore",
    paper=Paper("OneRestore: A Universal Restoration Framework for Composite Degradation", "ECCV", 2024),
    code="https://github.com/gy65896/OneRestore",
    licence="not stated",
    files=("onerestore_cdd-11.tar", "embedder_model.tar"),
    checkpoint_format="plain state_dicts (restorer; embedder with the type table)",
    published_at="https://github.com/gy65896/OneRestore (see its release / README links to the weights)",
    modes=("auto", "text"),
    blind=False,
    adapter="[0,1] input at any size; text: the type's row of the embedder's table; auto: the embedder's "
    "arg-max type (whole image resized to 224×224)",
    demo_weights=("baselines/weights/onerestore_demo.pt",),
    without_weights="shipped demo weights (†), with no embedder of their own: auto mode uses VL-UR's demo "
    "scene classifier (shared)",
)
PUBLISHED_AT = INFO.published_at
RESTORER_FILE, EMBEDDER_FILE = INFO.files
DEMO_WEIGHTS = Path(__file__).resolve().parent / "weights" / "onerestore_demo.pt"
#: the project's demo scene classifier, which drives the demo weights' auto mode (see `TableEmbedder`)
DEMO_SC = Path(__file__).resolve().parent.parent / "vlur" / "weights" / "vlur_sc_demo.pt"
CHECKPOINT_FORMAT = "onerestore-selfdescribing-v1"

EMBED_DIM = 324  # scene-embedding width (the cross-attention query length)
WORD_DIM = 300  # width of the learned word vectors of the type table
KEY_SIZE = 18  # k is resized to KEY_SIZE × KEY_SIZE = EMBED_DIM positions
HEADS = 8
FFN_EXPANSION = 2.66
EMBEDDER_SIZE = 224
COSINE_SCALE = 1.0 / 0.05
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------------------------- restorer


class PromptCrossAttention(nn.Module):
    """Channel cross-attention between the image features and a scene embedding.

    Per head: q = Linear(324→324)(embedding), the same vector for every channel of the head; k, v come from
    a 1×1 conv + 3×3 depthwise conv of the features, k resized to 18×18 so its 324 positions line up with
    q's; q and k are L2-normalised along those 324 entries; softmax(q kᵀ · temperature) is (C/h × C/h) and
    mixes the channels of the full-resolution v; a 1×1 conv projects the result.
    """

    def __init__(self, dim: int, heads: int = HEADS, antialias: bool = False):
        super().__init__()
        self.heads = heads
        self.antialias = antialias
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.q = nn.Linear(EMBED_DIM, EMBED_DIM, bias=False)
        self.kv = nn.Conv2d(dim, dim * 2, 1, bias=False)
        self.kv_dwconv = nn.Conv2d(dim * 2, dim * 2, 3, padding=1, groups=dim * 2, bias=False)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        k, v = self.kv_dwconv(self.kv(x)).chunk(2, dim=1)
        k = F.interpolate(k, size=(KEY_SIZE, KEY_SIZE), mode="bilinear", align_corners=False,
                          antialias=self.antialias)
        q = self.q(embedding)  # B×324
        q = q[:, None, None, :].expand(b, self.heads, c // self.heads, EMBED_DIM)
        q = F.normalize(q, dim=-1)
        k = F.normalize(split_heads(k, self.heads), dim=-1)
        attn = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)
        return self.project_out(merge_heads(attn @ split_heads(v, self.heads), h, w))


class OneRestoreBlock(nn.Module):
    """x + CrossAttn(LN(x), emb), then + SelfAttn(LN(x)), then + FFN(LN(x)) (each on the updated x)."""

    def __init__(self, dim: int, heads: int = HEADS, antialias: bool = False):
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim, bias=True)
        self.cross_attn = PromptCrossAttention(dim, heads, antialias)
        self.norm2 = ChannelLayerNorm(dim, bias=True)
        self.self_attn = ChannelSelfAttention(dim, heads, bias=False)
        self.norm3 = ChannelLayerNorm(dim, bias=True)
        self.ffn = GatedFFN(dim, FFN_EXPANSION, bias=False)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        x = x + self.cross_attn(self.norm1(x), embedding)
        x = x + self.self_attn(self.norm2(x))
        return x + self.ffn(self.norm3(x))


class _Level(nn.Module):
    """One block per level, held as `.el` (the released key layout is `<level>.el.<block params>`)."""

    def __init__(self, dim: int, antialias: bool):
        super().__init__()
        self.el = OneRestoreBlock(dim, HEADS, antialias)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return self.el(x, embedding)


def _conv1x1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, bias=False)


def _down(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


def _up_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class _Encoder(nn.Module):
    def __init__(self, c: int, antialias: bool):
        super().__init__()
        self.el = _Level(c, antialias)
        self.em = _Level(2 * c, antialias)
        self.es = _Level(4 * c, antialias)
        self.ess = _Level(8 * c, antialias)
        self.conv_eltem = _conv1x1(c, 2 * c)
        self.conv_emtes = _conv1x1(2 * c, 4 * c)
        self.conv_estess = _conv1x1(4 * c, 8 * c)
        # Present in the released state_dict but not used by the forward pass (kept so the keys match).
        self.conv_esstesss = _conv1x1(8 * c, 16 * c)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        l1 = self.el(x, emb)
        l2 = self.em(self.conv_eltem(_down(l1)), emb)
        l3 = self.es(self.conv_emtes(_down(l2)), emb)
        l4 = self.ess(self.conv_estess(_down(l3)), emb)
        return l1, l2, l3, l4


class _Middle(nn.Module):
    def __init__(self, c: int, antialias: bool):
        super().__init__()
        self.s1 = _Level(8 * c, antialias)
        self.s2 = _Level(8 * c, antialias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.s2(self.s1(x, emb), emb)


class _Decoder(nn.Module):
    def __init__(self, c: int, antialias: bool):
        super().__init__()
        self.dss = _Level(8 * c, antialias)
        self.ds = _Level(4 * c, antialias)
        self.dm = _Level(2 * c, antialias)
        self.dl = _Level(c, antialias)
        self.conv_dsstds = _conv1x1(8 * c, 4 * c)
        self.conv_dstdm = _conv1x1(4 * c, 2 * c)
        self.conv_dmtdl = _conv1x1(2 * c, c)

    def forward(self, x: torch.Tensor, skips: Sequence[torch.Tensor], emb: torch.Tensor) -> torch.Tensor:
        l1, l2, l3, l4 = skips
        y = self.dss(x + l4, emb)
        y = self.ds(self.conv_dsstds(_up_to(y, l3)) + l3, emb)
        y = self.dm(self.conv_dstdm(_up_to(y, l2)) + l2, emb)
        return self.dl(self.conv_dmtdl(_up_to(y, l1)) + l1, emb)


class OneRestore(nn.Module):
    """The OneRestore restorer: a 4-level encoder-decoder of prompt-conditioned transformer blocks.

    `channel` is C (32 in the release; any multiple of the 8 heads works, e.g. for small demo models);
    `antialias` applies to the 18×18 key resize (the released weights were trained without it).
    """

    def __init__(self, channel: int = 32, antialias: bool = False):
        super().__init__()
        if channel <= 0 or channel % HEADS:
            raise ValueError(f"OneRestore channel must be a positive multiple of {HEADS}, got {channel}")
        self.channel = channel
        self.antialias = antialias
        self.in_conv = _conv1x1(3, channel)
        self.encoder = _Encoder(channel, antialias)
        self.middle = _Middle(channel, antialias)
        self.decoder = _Decoder(channel, antialias)
        self.out_conv = _conv1x1(channel, 3)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """x: B×3×H×W in [0, 1]; embedding: B×324 (or 1×324 / 324, shared by the batch)."""
        if embedding.dim() == 1:
            embedding = embedding.unsqueeze(0)
        if embedding.shape[-1] != EMBED_DIM or embedding.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"embedding must be B×{EMBED_DIM} for a batch of {x.shape[0]}, "
                             f"got {tuple(embedding.shape)}")
        embedding = embedding.to(x.dtype).expand(x.shape[0], EMBED_DIM)
        skips = self.encoder(self.in_conv((x - 0.5) / 0.5), embedding)
        y = self.decoder(self.middle(skips[-1], embedding), skips, embedding)
        return (self.out_conv(y) + x + 1) / 2


# ---------------------------------------------------------------------------------------------- embedder


class _ResNet18Trunk(nn.Module):
    """torchvision's ResNet-18 without its head; `block0` = conv1, bn1, relu, maxpool; `block1..4` = layer1..4."""

    def __init__(self):
        super().__init__()
        r = torchvision.models.resnet18(weights=None)
        self.block0 = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool)
        self.block1, self.block2, self.block3, self.block4 = r.layer1, r.layer2, r.layer3, r.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block4(self.block3(self.block2(self.block1(self.block0(x)))))


class Embedder(nn.Module):
    """OneRestore's scene embedder and degradation classifier (labels = `harness.degradations.ALL_TYPES`).

    * `type_table()` — 12×324, ReLU(Linear(300→324)(word vectors)), one row per type.
    * `text_embedding(names)` — B×324, the table rows of the given type names.
    * `forward(x224)` — visual mode on a prepared 224×224 batch: (the table row of the arg-max type, that type
      index). `visual_embedding` / `logits` expose the raw image embedding and the cosine scores.
    * `prepare(images)`, `scores(images)`, `classify(images)` — take images of any size (see `prepare`).
    """

    name = "onerestore-embedder"
    labels: tuple[str, ...] = ALL_TYPES
    #: the files the weights come from (set by the loaders; hashed into run provenance)
    weights_files: tuple[Path, ...] | list[Path] = ()

    def __init__(self):
        super().__init__()
        self.embedder = nn.Embedding(len(ALL_TYPES), WORD_DIM)
        self.mlp = nn.Sequential(nn.Linear(WORD_DIM, EMBED_DIM), nn.ReLU(inplace=True))
        self.feat_extractor = _ResNet18Trunk()
        self.img_embedder = nn.Sequential(
            nn.Conv2d(512, 1024, 1, bias=False), nn.BatchNorm2d(1024), nn.ReLU(inplace=True), nn.Dropout2d(0.35)
        )
        self.img_final = nn.Linear(1024, EMBED_DIM)
        self.register_buffer("_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    # -- text side
    def type_table(self) -> torch.Tensor:
        """12×324 type embeddings, rows in `ALL_TYPES` order."""
        return self.mlp(self.embedder.weight)

    def text_embedding(self, names: Sequence[str]) -> torch.Tensor:
        """B×324: the type-table row of each type name (ValueError on an unknown name)."""
        if isinstance(names, str):
            names = [names]
        idx = torch.tensor([type_index(n) for n in names], device=self.embedder.weight.device)
        return self.type_table()[idx]

    # -- visual side
    @staticmethod
    def prepare(images: torch.Tensor) -> torch.Tensor:
        """Resize a B×3×H×W batch in [0, 1] to the 224×224 embedder input.

        The whole image is resized (no crop, the aspect ratio is not kept) with bilinear interpolation,
        `align_corners=False` and antialiasing (so large images are low-pass filtered before subsampling, as
        a PIL bilinear resize does). The result stays in [0, 1]: the ImageNet normalisation is done later,
        inside the embedder. A batch already 224×224 is returned unchanged.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images B×3×H×W, got {tuple(images.shape)}")
        if tuple(images.shape[-2:]) == (EMBEDDER_SIZE, EMBEDDER_SIZE):
            return images
        return F.interpolate(images, size=(EMBEDDER_SIZE, EMBEDDER_SIZE), mode="bilinear",
                             align_corners=False, antialias=True)

    def visual_embedding(self, x224: torch.Tensor) -> torch.Tensor:
        """B×324 image embedding of a prepared batch (RGB in [0, 1]; ImageNet-normalised here)."""
        f = self.feat_extractor((x224 - self._mean) / self._std)
        return self.img_final(self.img_embedder(f).mean(dim=(2, 3)))

    def logits(self, x224: torch.Tensor) -> torch.Tensor:
        """B×12 cosine similarities between image and type embeddings, divided by 0.05."""
        img = F.normalize(self.visual_embedding(x224), dim=-1)
        table = F.normalize(self.type_table(), dim=-1)
        return img @ table.T * COSINE_SCALE

    def forward(self, x224: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Visual mode: (B×324 type-table rows of the predicted types, B predicted type indices)."""
        idx = self.logits(x224).argmax(dim=1)
        return self.type_table()[idx], idx

    # -- DegradationClassifier protocol (images of any size)
    def scores(self, images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.logits(self.prepare(images.to(self._mean.device, torch.float32)))

    def classify(self, images: torch.Tensor) -> list[str]:
        return classify_from_scores(self.scores(images), self.labels)


# ---------------------------------------------------------------------------------------------- weights


def _plain_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensor dict of a released file: plain, or under 'state_dict'/'model'/'net'; `module.` removed."""
    sd = extract_state_dict(read_checkpoint(path), path)
    return strip_prefix(sd, "module.")


def _check_exists(path: Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError("onerestore", path, PUBLISHED_AT)
    return path


def load_onerestore(path: str | os.PathLike, *, antialias: bool = False,
                    device: str | torch.device = "cpu") -> OneRestore:
    """The restorer from a released `onerestore_cdd-11.tar` (or any plain restorer state_dict).

    C is read from `in_conv.weight`, so smaller models load too. Raises `MissingWeightsError` when the file
    is absent and `WeightsError` (listing the first differing keys/shapes) when it is another model's file.
    """
    path = _check_exists(Path(path))
    sd = _plain_state_dict(path)
    w = sd.get("in_conv.weight")
    channel = int(w.shape[0]) if isinstance(w, torch.Tensor) and w.dim() == 4 and w.shape[0] % HEADS == 0 else 32
    model = OneRestore(channel, antialias=antialias)
    load_strict(model, sd, path)
    return model.eval().to(device)


def load_embedder(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> Embedder:
    """The embedder from a released `embedder_model.tar` (or any plain embedder state_dict)."""
    path = _check_exists(Path(path))
    model = Embedder()
    load_strict(model, _plain_state_dict(path), path)
    model.weights_files = [path]
    return model.eval().to(device)


@dataclass
class OneRestoreCheckpoint:
    """A self-describing checkpoint (the project's demo weights).

    File layout (a dict readable with `torch.load(..., weights_only=True)`):
    `{"format": CHECKPOINT_FORMAT, "config": {"channel": int, "antialias": bool}, "state_dict": {...},
    "embedder_state_dict": {...} (optional), "meta": {...} (free-form: data, epochs, metrics, ...)}`.
    """

    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    embedder_state_dict: dict[str, torch.Tensor] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def restorer(self, source: str | os.PathLike = "checkpoint") -> OneRestore:
        model = OneRestore(int(self.config.get("channel", 32)), bool(self.config.get("antialias", False)))
        load_strict(model, strip_prefix(self.state_dict, "module."), source)
        return model.eval()

    def embedder(self, source: str | os.PathLike = "checkpoint") -> Embedder | None:
        if self.embedder_state_dict is None:
            return None
        model = Embedder()
        load_strict(model, strip_prefix(self.embedder_state_dict, "module."), f"{source} (embedder_state_dict)")
        return model.eval()


def is_self_describing(obj: object) -> bool:
    return isinstance(obj, Mapping) and isinstance(obj.get("config"), Mapping) and "state_dict" in obj


def read_self_describing(obj: object, path: str | os.PathLike) -> OneRestoreCheckpoint:
    """Validate a loaded self-describing checkpoint dict (see `OneRestoreCheckpoint`)."""
    if not is_self_describing(obj):
        raise WeightsError(f"{path}: not a self-describing OneRestore checkpoint (needs 'config' and 'state_dict')")
    fmt = obj.get("format", CHECKPOINT_FORMAT)
    if fmt != CHECKPOINT_FORMAT:
        raise WeightsError(f"{path}: unknown checkpoint format {fmt!r} (expected {CHECKPOINT_FORMAT!r})")
    sd, esd = obj["state_dict"], obj.get("embedder_state_dict")
    if not isinstance(sd, Mapping) or (esd is not None and not isinstance(esd, Mapping)):
        raise WeightsError(f"{path}: 'state_dict' / 'embedder_state_dict' must be dicts of tensors")
    return OneRestoreCheckpoint(dict(obj["config"]), dict(sd), None if esd is None else dict(esd),
                                dict(obj.get("meta") or {}))


def save_checkpoint(path: str | os.PathLike, model: OneRestore, embedder: Embedder | None = None,
                    meta: Mapping[str, Any] | None = None) -> Path:
    """Write a self-describing checkpoint (plain Python types and tensors only, so weights_only loads it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    obj: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "config": {"channel": int(model.channel), "antialias": bool(model.antialias)},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": dict(meta or {}),
    }
    if embedder is not None:
        obj["embedder_state_dict"] = {k: v.detach().cpu() for k, v in embedder.state_dict().items()}
    torch.save(obj, path)
    return path


# ---------------------------------------------------------------------------------------------- adapter


class OneRestoreRestorer:
    """`Restorer` + `AutoRestorer` adapter: text mode uses the given type's embedding, auto mode the embedder's.

    `weights_label` is "official" (the authors' files) or "demo" (a self-describing checkpoint of this
    project); `weights_files` lists the files the weights came from (hashed by the harness).
    """

    name = "onerestore"

    def __init__(self, model: OneRestore, embedder: Embedder, *, weights_label: str = "official",
                 weights_files: Sequence[str | os.PathLike] = (), meta: Mapping[str, Any] | None = None):
        self.model = model.eval()
        self.embedder = embedder.eval()
        self.weights_label = weights_label
        self.weights_files = [Path(p) for p in weights_files]
        self.meta = dict(meta or {})

    @property
    def classifier(self) -> Embedder:
        return self.embedder

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def restore(self, images: torch.Tensor, degradation: Sequence[str] | None = None) -> torch.Tensor:
        if degradation is None:
            return self.restore_auto(images)[0]
        images = images.to(self.device, torch.float32)
        if len(degradation) != images.shape[0]:
            raise ValueError(f"got {len(degradation)} degradation names for a batch of {images.shape[0]}")
        with torch.inference_mode():
            return self.model(images, self.embedder.text_embedding(list(degradation)))

    def restore_auto(self, images: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
        images = images.to(self.device, torch.float32)
        with torch.inference_mode():
            emb, idx = self.embedder(self.embedder.prepare(images))
            out = self.model(images, emb)
        return out, [ALL_TYPES[i] for i in idx.tolist()]

    def to(self, device: torch.device | str) -> OneRestoreRestorer:
        self.model.to(device)
        self.embedder.to(device)
        return self


class TableEmbedder(nn.Module):
    """Stand-in for the `Embedder` in checkpoints trained by this project (`vlur.train --arch onerestore`).

    Such a checkpoint carries its own 12×324 `type_table` (what the restorer was trained with) instead of
    the ResNet-18 embedder, whose 48.6 MB exceed the 10 MB budget for shipped weights. Text mode reads the
    table; auto mode asks `classifier` (any `DegradationClassifier`; for the demo weights VL-UR's demo CLIP
    scene classifier, shared: OneRestore has no trained embedder of its own here) for the type and uses that
    type's row — which is exactly what the official embedder's visual mode does with its own arg-max.
    `name` is what confusion outputs call the classifier; `weights_files` the files its predictions come from.
    """

    def __init__(self, type_table: torch.Tensor, classifier, *, name: str | None = None,
                 weights_files: Sequence[str | os.PathLike] = ()):
        super().__init__()
        if tuple(type_table.shape) != (len(ALL_TYPES), 324):
            raise ValueError(f"type_table must be {len(ALL_TYPES)}×324, got {tuple(type_table.shape)}")
        self.register_buffer("table", type_table.detach().float().clone())
        self.classifier = classifier
        self.name = name or f"type-table + {getattr(classifier, 'name', type(classifier).__name__)}"
        self.labels = tuple(classifier.labels)
        self.weights_files = [Path(p) for p in weights_files]

    def type_table(self) -> torch.Tensor:
        return self.table

    def text_embedding(self, names: Sequence[str]) -> torch.Tensor:
        return self.table[[type_index(n) for n in names]]

    @staticmethod
    def prepare(images: torch.Tensor) -> torch.Tensor:
        return images  # the classifier does its own resizing

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        names = self.classifier.classify(images)
        idx = torch.tensor([type_index(n) for n in names], device=self.table.device)
        return self.table[idx], idx

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier.scores(images)

    def classify(self, images: torch.Tensor) -> list[str]:
        return self.classifier.classify(images)

    def to(self, *args, **kwargs):
        super().to(*args, **kwargs)
        if hasattr(self.classifier, "to"):
            self.classifier.to(*args, **kwargs)
        return self


def _from_single_file(path: Path, mode: str = "auto") -> OneRestoreRestorer:
    """One checkpoint: a self-describing one (label "demo"), or a plain restorer state_dict ("official")
    whose embedder is `embedder_model.tar` in the same folder."""
    path = _check_exists(path)
    obj = read_checkpoint(path)
    if checkpoints.is_checkpoint(obj):  # `vlur.train --arch onerestore` (loader: harness.checkpoints.LOADERS)
        return checkpoints.restorer_from_checkpoint(obj, path, "onerestore", mode)
    if is_self_describing(obj):
        ckpt = read_self_describing(obj, path)
        model, embedder, files = ckpt.restorer(path), ckpt.embedder(path), [path]
        if embedder is None:
            sibling = path.parent / EMBEDDER_FILE
            embedder, files = load_embedder(sibling), [path, sibling]
        else:
            embedder.weights_files = [path]
        label = str(ckpt.meta.get("weights_label", "demo"))
        return OneRestoreRestorer(model, embedder, weights_label=label, weights_files=files, meta=ckpt.meta)
    model = load_onerestore(path)  # first: a file of another architecture is named as such, not as a missing embedder
    sibling = _check_exists(path.parent / EMBEDDER_FILE)  # needed in both modes: it holds the type table
    return OneRestoreRestorer(model, load_embedder(sibling), weights_files=[path, sibling])


class MissingDemoWeightsError(MissingWeightsError):
    """The demo checkpoint has not been trained / shipped yet."""

    def __init__(self, expected: Path):
        WeightsError.__init__(
            self,
            f"onerestore: no weights given and the demo checkpoint is missing: {expected}\n"
            f"  The demo weights are trained by this project and may not exist yet.\n"
            f"  Either train them, or use the authors' files '{RESTORER_FILE}' and '{EMBEDDER_FILE}'\n"
            f"  (published at {PUBLISHED_AT}) with --weights-dir, or pass one checkpoint with --weights.",
        )
        self.expected = expected


@register("onerestore", description="OneRestore (ECCV 2024): type from its embedder (auto) or as text; the "
          "demo weights have no embedder of their own: their auto mode uses VL-UR's demo scene classifier (shared)",
          info=INFO)
def create(opts: MethodOptions) -> OneRestoreRestorer:
    """OneRestore from --weights-dir (the two released files), --weights (one file) or the demo weights; with
    `opts.random_weights` the published architecture (C=32 + the ResNet-18 embedder) with its seeded (seed 0)
    default initialisation instead, no file (label "random")."""
    if opts.random_weights:
        with torch.random.fork_rng(devices=[]):  # seeded, leaving the caller's RNG as it was
            torch.manual_seed(0)
            model, embedder = OneRestore(), Embedder()
        return OneRestoreRestorer(model.eval(), embedder.eval(), weights_label="random").to(opts.device)
    if opts.weights_dir is not None:
        folder = Path(opts.weights_dir)
        rpath, epath = _check_exists(folder / RESTORER_FILE), _check_exists(folder / EMBEDDER_FILE)
        restorer = OneRestoreRestorer(load_onerestore(rpath), load_embedder(epath), weights_label="official",
                                      weights_files=[rpath, epath])
    elif opts.weights is not None:
        restorer = _from_single_file(Path(opts.weights), opts.mode)
    else:
        if not DEMO_WEIGHTS.is_file():
            raise MissingDemoWeightsError(DEMO_WEIGHTS)
        restorer = _from_single_file(DEMO_WEIGHTS, opts.mode)
    return restorer.to(opts.device)
