"""VL-UR's Scene Classifier (SC): CLIP (through open_clip) matching an image against 11 text prompts.

Eqs. 1–3 of the paper: prompts T_k = "The image has {name} degradation" for the 11 CDD-11 types (names from
`harness.degradations.DISPLAY_NAMES`, order `harness.degradations.TYPES`); F_text = E_text(T) (11 × D), F_image =
E_image(I_d) (1 × D); prediction = argmax softmax(logit_scale · cos(F_image, F_text)).

Choices the paper leaves open (made explicitly):

* Features are L2-normalised and multiplied by CLIP's own exp(logit_scale) (CLIP's zero-shot recipe);
  `scores` returns the softmax probabilities of eq. 3.
* Image preprocessing = CLIP's own: resize so the shorter side equals the tower's input size (bicubic,
  antialias, values clamped to [0, 1]), centre crop to a square, normalise with the tower's mean / std
  (OpenAI's for every config used here).  Keeping the scale (rather than squashing the whole frame) keeps
  the fine rain / snow texture the SC must see.
* After fine-tuning (`vlur.train_classifier`) CLIP is frozen and F_text is cached: an SC checkpoint holds
  only the image tower, the 11 × D normalised text features and logit_scale (plus the open_clip config to
  rebuild the tower), so inference never runs the text tower.
* `pretrained`: "openai" (or any other open_clip tag) is looked up in the local Hugging Face cache first;
  when it is not there and the Hub cannot be reached, a `ClipWeightsError` says where to put a local
  file; a local .pt/.bin/.safetensors path is loaded by open_clip; "none" = random initialisation.
* Small configs registered with open_clip for CPU training and tests (D = 128; text: a 3-layer
  transformer of width 128 over 32 tokens):
  `vlur-tiny-clip` — image tower = open_clip's ModifiedResNet (the tower of CLIP's RN50 family) with one
  bottleneck per stage, width 16, attention pooling, 224 px, ~1.4 M parameters (5.6 MB in float32);
  `vlur-tiny-clip-vit` — a ViT with 32-px patches at 224 px (7 × 7 tokens, like ViT-B-32), width 128,
  4 layers.  The ResNet tower is the default: trained from scratch on the CPU budget, the ViT stayed at
  ~44 % training accuracy after 400 steps (it never learned to see rain / snow streaks), the ResNet reached
  88 % train / 78 % held-out accuracy in 300 steps (cdd11-mini train split, batch 32).
* Prompts are tokenised by open_clip's default `SimpleTokenizer`, whose BPE vocabulary ships inside the
  open_clip package (no download).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import warnings
from collections.abc import Sequence
from copy import deepcopy
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from harness.checkpoints import make_checkpoint
from harness.degradations import DISPLAY_NAMES, TYPES
from harness.fileio import write_text_atomic
from harness.protocol import classify_from_scores
from harness.weights import WeightsError

PROMPT_TEMPLATE = "The image has {} degradation"
TINY_CLIP = "vlur-tiny-clip"
_TINY_TEXT = {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 3}
#: Small CLIP configs registered with open_clip (CPU training / tests); both with D = 128.
TINY_CLIP_CONFIGS: dict[str, dict] = {
    TINY_CLIP: {"embed_dim": 128, "text_cfg": dict(_TINY_TEXT),
                "vision_cfg": {"image_size": 224, "layers": [1, 1, 1, 1], "width": 16, "head_width": 64}},
    "vlur-tiny-clip-vit": {"embed_dim": 128, "text_cfg": dict(_TINY_TEXT),
                           "vision_cfg": {"image_size": 224, "layers": 4, "width": 128, "head_width": 32,
                                          "patch_size": 32}},
}
TINY_CLIP_CONFIG: dict = TINY_CLIP_CONFIGS[TINY_CLIP]
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
SC_ARCH = "vlur-sc"


class ClipWeightsError(WeightsError):
    """CLIP weights cannot be found or loaded; the message says where to put a local file."""


def prompts(types: Sequence[str] = TYPES) -> list[str]:
    """The SC prompts, one per type, in `types` order."""
    return [PROMPT_TEMPLATE.format(DISPLAY_NAMES[t]) for t in types]


def register_tiny_clip() -> str:
    """Make the `TINY_CLIP_CONFIGS` known to open_clip (JSON files written to a temp folder); returns TINY_CLIP."""
    import open_clip

    if all(name in open_clip.list_models() for name in TINY_CLIP_CONFIGS):
        return TINY_CLIP
    folder = Path(tempfile.gettempdir()) / f"vlur-open-clip-configs-{os.getuid() if hasattr(os, 'getuid') else 0}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, cfg in TINY_CLIP_CONFIGS.items():
        path = folder / f"{name}.json"
        text = json.dumps(cfg, indent=1)
        if not path.is_file() or path.read_text() != text:
            write_text_atomic(path, text)  # other processes may read the folder meanwhile
    open_clip.add_model_config(folder)
    return TINY_CLIP


def tokenize(texts: Sequence[str], clip: str = TINY_CLIP) -> torch.Tensor:
    """Tokenise prompts with the model's open_clip tokenizer (offline for CLIP-style models)."""
    import open_clip

    if clip in TINY_CLIP_CONFIGS:
        register_tiny_clip()
    return open_clip.get_tokenizer(clip)(list(texts))


def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or os.environ.get("VLUR_OFFLINE"):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _cached_tag_file(clip: str, tag: str) -> str | None:
    """Path of an open_clip pretrained tag's file in the local Hugging Face cache, or None."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(clip, tag)
    hub = cfg.get("hf_hub", "")
    if not hub:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    repo, filename = os.path.split(hub)
    for name in ([filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]):
        found = try_to_load_from_cache(repo, name)
        if isinstance(found, str) and os.path.isfile(found):
            return found
    return None


def _where_to_put(clip: str, tag: str) -> str:
    return (
        f"  Put a local CLIP checkpoint for {clip} (open_clip or OpenAI state_dict: .pt, .bin or .safetensors)\n"
        f"  somewhere on disk and pass its path instead of '{tag}' (e.g. --pretrained /path/to/{clip}.safetensors),\n"
        f"  or place the open_clip file in the Hugging Face cache ($HF_HOME/hub), or use --pretrained none\n"
        f"  (random init, e.g. with --clip {TINY_CLIP} for training from scratch)."
    )


def build_clip(clip: str = "ViT-B-32", pretrained: str | os.PathLike | None = "openai",
               image_size: int | None = None) -> tuple[nn.Module, dict]:
    """Create a full open_clip model; returns (model, info) with info = {"clip", "model_cfg", "pretrained"}.

    `pretrained`: an open_clip tag ("openai", ...), a local file path, or "none"/None (random init).
    `image_size`: override the image tower's input size (open_clip's `force_image_size`; position
    embeddings of loaded weights are interpolated by open_clip).
    """
    import open_clip

    if clip in TINY_CLIP_CONFIGS:
        register_tiny_clip()
    model_cfg = open_clip.get_model_config(clip)
    if model_cfg is None:
        known = ", ".join(open_clip.list_models()[:8])
        raise ValueError(f"unknown CLIP config {clip!r}; known: {TINY_CLIP}, {known}, ...")
    source = "none" if pretrained in (None, "", "none") else str(pretrained)
    quick_gelu = bool(model_cfg.get("quick_gelu", False))
    arg: str | None = None
    if source != "none":
        path = Path(source).expanduser()
        if path.is_file():
            arg = str(path)
        elif open_clip.get_pretrained_cfg(clip, source):
            quick_gelu = quick_gelu or bool(open_clip.get_pretrained_cfg(clip, source).get("quick_gelu", False))
            arg = _cached_tag_file(clip, source)
            if arg is None and not _hub_reachable():
                raise ClipWeightsError(
                    f"CLIP weights '{source}' for {clip} are not in the local cache and the Hugging Face Hub cannot "
                    f"be reached (offline).\n" + _where_to_put(clip, source)
                )
            arg = arg or source
        else:
            raise ClipWeightsError(
                f"CLIP weights not found: {source!r} is neither an existing file nor an open_clip tag of {clip} "
                f"(tags: {', '.join(open_clip.list_pretrained_tags_by_model(clip)) or 'none'}).\n"
                + _where_to_put(clip, source)
            )
    root_logger = logging.getLogger()
    level = root_logger.level
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="QuickGELU mismatch")
            if arg is None:  # open_clip logs a warning for a deliberate random init
                root_logger.setLevel(logging.ERROR)
            model = open_clip.create_model(clip, pretrained=arg, force_quick_gelu=quick_gelu,
                                           force_image_size=image_size)
    except ClipWeightsError:
        raise
    except Exception as e:  # noqa: BLE001 - hub/network/format problems become one clear message
        raise ClipWeightsError(
            f"cannot load CLIP weights '{source}' for {clip}: {type(e).__name__}: {str(e).splitlines()[0][:300]}\n"
            + _where_to_put(clip, source)
        ) from None
    finally:
        root_logger.setLevel(level)
    model_cfg = deepcopy(model_cfg)
    model_cfg["quick_gelu"] = quick_gelu
    if image_size is not None:
        model_cfg["vision_cfg"]["image_size"] = int(image_size)
    model_cfg.pop("custom_text", None)
    return model, {"clip": clip, "model_cfg": model_cfg, "pretrained": source}


def build_visual(model_cfg: dict) -> nn.Module:
    """Rebuild only the image tower from an open_clip model config."""
    from open_clip import model as oc_model

    cfg = deepcopy(model_cfg)
    try:
        return oc_model._build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"], bool(cfg.get("quick_gelu", False)))
    except (AttributeError, TypeError):  # open_clip moved its private helper: build the whole model instead
        import open_clip

        return open_clip.CLIP(**cfg).visual


def _preprocess_cfg(model: nn.Module) -> tuple[int, tuple, tuple]:
    import open_clip

    try:
        pc = open_clip.get_model_preprocess_cfg(model)
    except Exception:  # noqa: BLE001
        pc = {}
    size = pc.get("size", getattr(model.visual, "image_size", 224))
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    return size, tuple(pc.get("mean", OPENAI_MEAN)), tuple(pc.get("std", OPENAI_STD))


class SceneClassifier(nn.Module):
    """CLIP image tower + cached text features of the 11 prompts. Implements `DegradationClassifier`."""

    name = "vlur-sc"
    #: the files the weights come from, hashed into run provenance (set by the loaders; none when built in memory)
    weights_files: tuple[Path, ...] | list[Path] = ()

    def __init__(self, visual: nn.Module, text_features: torch.Tensor, logit_scale: float | torch.Tensor,
                 config: dict):
        super().__init__()
        self.visual = visual
        self.labels: tuple[str, ...] = tuple(config.get("labels", TYPES))
        self.config = dict(config)
        self.image_size = int(config["image_size"])
        self.register_buffer("text_features", F.normalize(text_features.detach().float(), dim=-1))
        self.register_buffer("logit_scale", torch.as_tensor(logit_scale, dtype=torch.float32).detach().reshape(()))
        self.register_buffer("mean", torch.tensor(config["mean"], dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(config["std"], dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)

    # -- construction -------------------------------------------------------------------------------
    @classmethod
    def from_clip(cls, model: nn.Module, info: dict, types: Sequence[str] = TYPES) -> SceneClassifier:
        """Zero-shot SC from a full CLIP: encodes the prompts once and keeps only the image tower."""
        size, mean, std = _preprocess_cfg(model)
        tokens = tokenize(prompts(types), info["clip"])
        was = model.training
        model.eval()
        with torch.no_grad():
            text = model.encode_text(tokens, normalize=True)
        model.train(was)
        config = {**info, "image_size": size, "mean": list(mean), "std": list(std), "labels": list(types),
                  "prompts": prompts(types)}
        return cls(model.visual, text, model.logit_scale.detach().reshape(()), config)

    @classmethod
    def zero_shot(cls, clip: str = "ViT-B-32", pretrained: str | os.PathLike | None = "openai") -> SceneClassifier:
        model, info = build_clip(clip, pretrained)
        return cls.from_clip(model, info)

    @classmethod
    def from_checkpoint(cls, obj: dict, source: str | Path = "<checkpoint>") -> SceneClassifier:
        """Rebuild from a loaded SC checkpoint dict (see `to_checkpoint`)."""
        from harness.weights import load_strict

        if not isinstance(obj, dict) or obj.get("arch") != SC_ARCH:
            arch = obj.get("arch") if isinstance(obj, dict) else type(obj).__name__
            raise WeightsError(f"{source}: not a VL-UR scene-classifier checkpoint (arch {arch!r})")
        config = dict(obj["config"])
        sd = dict(obj["state_dict"])
        visual = build_visual(config["model_cfg"])
        sc = cls(visual, sd["text_features"], sd["logit_scale"], config)
        load_strict(sc, sd, source)
        sc.meta = dict(obj.get("meta", {}))
        return sc.eval()

    def to_checkpoint(self, meta: dict | None = None) -> dict:
        """Self-describing checkpoint: image tower + cached F_text + logit_scale + config (torch.load-safe)."""
        return make_checkpoint(SC_ARCH, self.config, self.state_dict(), meta or getattr(self, "meta", {}))

    # -- inference ----------------------------------------------------------------------------------
    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """B×3×H×W in [0, 1] → CLIP preprocessing (shorter side resized, centre crop, normalised)."""
        return (resize_center_crop(images.to(self.mean.dtype), self.image_size) - self.mean) / self.std

    def encode_image(self, images: torch.Tensor, preprocessed: bool = False) -> torch.Tensor:
        x = images if preprocessed else self.preprocess(images)
        return F.normalize(self.visual(x), dim=-1)

    def logits(self, images: torch.Tensor, preprocessed: bool = False) -> torch.Tensor:
        """logit_scale · cos(F_image, F_text): B × 11."""
        return self.logit_scale.exp() * self.encode_image(images, preprocessed) @ self.text_features.t()

    @torch.no_grad()
    def scores(self, images: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities over `labels` (eq. 3)."""
        return self.logits(images).softmax(dim=-1)

    def classify(self, images: torch.Tensor) -> list[str]:
        return classify_from_scores(self.scores(images), self.labels)


def resize_shorter(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize B×3×H×W so that min(H, W) == size (bicubic, antialias, clamped to [0, 1])."""
    h, w = images.shape[-2:]
    if min(h, w) == size:
        return images
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    out = F.interpolate(images, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
    return out.clamp(0.0, 1.0)


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    h, w = images.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return images[..., top:top + size, left:left + size]


def resize_center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    return center_crop(resize_shorter(images, size), size)


def load_classifier(path: str | os.PathLike) -> SceneClassifier:
    """Load an SC checkpoint file (weights_only); WeightsError naming the file on any problem."""
    from harness.weights import read_checkpoint

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"VL-UR scene-classifier checkpoint not found: {path}")
    sc = SceneClassifier.from_checkpoint(read_checkpoint(path), path)
    sc.weights_files = [path]
    return sc


def create_classifier(clip: str = "ViT-B-32", pretrained: str | os.PathLike | None = "openai") -> SceneClassifier:
    """An SC: `pretrained` may also be a saved SC checkpoint (then `clip` is ignored)."""
    if pretrained not in (None, "", "none") and Path(str(pretrained)).is_file():
        try:
            obj = torch.load(Path(str(pretrained)), map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - not a torch pickle (e.g. safetensors): treat as CLIP weights
            obj = None
        if isinstance(obj, dict) and obj.get("arch") == SC_ARCH:
            return SceneClassifier.from_checkpoint(obj, str(pretrained))
    return SceneClassifier.zero_shot(clip, pretrained)
