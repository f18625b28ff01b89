"""Registers VL-UR with the harness: `python -m harness.run --methods vlur [--mode auto|text] [--weights FILE]`.

Weights: by default the demo pair shipped in `vlur/weights/` — `vlur_demo.pt` (restorer) and
`vlur_sc_demo.pt` (scene classifier), weights_label "demo" (trained by this project on its embedded mini
train split; the paper released no weights).  `--weights FILE` picks any restorer checkpoint written by
`vlur.train` (weights_label "custom"; the shipped `vlur_demo.pt` given this way is the default, label "demo", and
pairs with `vlur_sc_demo.pt` exactly as the default does); its scene classifier is found, in this order,
embedded under the key "sc", as a file named in its metadata next to FILE (by base name: `meta.sc.file`, then
`meta.sc.source`, the classifier it was trained with), as `sc.pt` next to FILE, or at `meta.sc.source` itself
(absolute, or relative to the project root).  The classifier is required in "auto" mode only.
`--weights-dir` is not used (VL-UR has no released files).  `random_weights` (`MethodOptions`, for timing and
FLOP counting): VL-UR at its default published width with a randomly initialised CLIP ViT-B/32 scene classifier
(seed 0), weights_label "random".

Modes: "auto" — the SC predicts each image's type and the restorer is driven by that type's cached text
feature (`restore_auto` returns the predictions too); "text" — the true type is given.  Inference runs
under `torch.inference_mode()` in float32.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from harness.registry import MethodInfo, MethodOptions, Paper, register
from harness.weights import WeightsError, read_checkpoint

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
PROJECT_ROOT = WEIGHTS_DIR.parent.parent
DEMO_RESTORER = "vlur_demo.pt"
DEMO_SC = "vlur_sc_demo.pt"

PAPER = Paper("VL-UR: Vision-Language-guided Universal Restoration of Images Degraded by Adverse Weather Conditions",
              "arXiv", 2025, "https://arxiv.org/abs/2504.08219")
INFO = MethodInfo(
    display="VL-UR",
    paper=PAPER,
    code="none published (this package's implementation is the first)",
    licence="n/a (no official code)",
    files=(),
    checkpoint_format="`vlur-harness-checkpoint` written by `vlur.train` (restorer; its scene classifier embedded "
    "under `sc`, named in `meta.sc`, or `sc.pt` beside it)",
    published_at="no weights are published (the paper released none); train your own with `python -m vlur.train`",
    modes=("auto", "text"),
    blind=False,
    adapter="[0,1] input, float32; auto: the CLIP scene classifier picks the type, whose cached text feature drives "
    "the restorer; text: the given type's feature",
    demo_weights=("vlur/weights/vlur_demo.pt", "vlur/weights/vlur_sc_demo.pt"),
    without_weights="shipped demo weights (†)",
    weights_note="`--weights-dir` is not used: any VL-UR checkpoint via `--weights FILE`",
)
ZEROSHOT_INFO = MethodInfo(
    display="VL-UR scene classifier, zero-shot CLIP",
    paper=PAPER,
    code="https://github.com/openai/CLIP (the CLIP ViT-B/32 weights, loaded through open_clip)",
    licence="MIT (openai/CLIP)",
    files=(),
    checkpoint_format="a local open_clip / OpenAI CLIP ViT-B/32 checkpoint via `--weights FILE`",
    published_at="OpenAI's CLIP ViT-B/32 (open_clip pretrained tag 'openai')",
    modes=(),
    blind=False,
    adapter="classifier only (`python -m harness.classify`): prompts \"The image has {type} degradation\", "
    "arg-max over the 11 types",
    without_weights="open_clip's 'openai' download (offline: an error saying where to put the file)",
)
#: The CLIP of the published scene classifier (what `random_weights` builds, randomly initialised).
CLIP_ARCH = "ViT-B-32"


class VLURMethod:
    """Adapter implementing `harness.protocol.Restorer` and `AutoRestorer`."""

    name = "vlur"

    def __init__(self, restorer, classifier=None, *, weights_label: str = "custom",
                 weights_files: Sequence[Path] = (), device: str | torch.device = "cpu"):
        self.restorer = restorer.eval()
        self.classifier = classifier.eval() if classifier is not None else None
        self.weights_label = weights_label
        self.weights_files = [Path(p) for p in weights_files]
        if self.classifier is not None:
            if tuple(self.classifier.labels) != tuple(self.restorer.types):
                raise WeightsError(f"scene classifier labels {self.classifier.labels} differ from the restorer's "
                                   f"types {self.restorer.types}")
            a, b = self.classifier.text_features, self.restorer.text_features
            if a.shape != b.shape or not torch.allclose(a.cpu(), b.cpu(), atol=1e-5):
                warnings.warn("the scene classifier's cached text features differ from those the restorer was "
                              "trained with; the restorer's own table is used", stacklevel=2)
        self.to(device)

    def to(self, device: torch.device | str) -> VLURMethod:
        self.device = torch.device(device)
        self.restorer.to(self.device)
        if self.classifier is not None:
            self.classifier.to(self.device)
        return self

    def _prep(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(self.device, torch.float32)

    def restore(self, images: torch.Tensor, degradation: Sequence[str] | None = None) -> torch.Tensor:
        if degradation is None:
            return self.restore_auto(images)[0]
        if len(degradation) != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {len(degradation)} degradation types")
        with torch.inference_mode():
            return self.restorer.forward_types(self._prep(images), list(degradation))

    def restore_auto(self, images: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
        if self.classifier is None:
            raise WeightsError("VL-UR auto mode needs the scene classifier, but none was loaded "
                               f"(weights: {', '.join(map(str, self.weights_files))})")
        with torch.inference_mode():
            x = self._prep(images)
            types = self.classifier.classify(x)
            return self.restorer.forward_types(x, types), types


def _is_demo(restorer_file: Path) -> bool:
    return Path(restorer_file).resolve() == (WEIGHTS_DIR / DEMO_RESTORER).resolve()


def _sc_candidates(restorer_file: Path, ck: dict) -> list[Path]:
    """Where the scene classifier of a restorer checkpoint may be, in the order they are tried."""
    if _is_demo(restorer_file):
        return [WEIGHTS_DIR / DEMO_SC]  # the shipped pair, exactly as the default run loads it
    meta = ck.get("meta") if isinstance(ck.get("meta"), dict) else {}
    sc = meta.get("sc") if isinstance(meta.get("sc"), dict) else {}
    named = [Path(str(sc[k])) for k in ("file", "source") if sc.get(k)]
    out = [restorer_file.parent / p.name for p in named] + [restorer_file.parent / "sc.pt"]
    if sc.get("source"):  # the classifier it was trained with, where training found it
        source = Path(str(sc["source"]))
        out.append(source if source.is_absolute() else PROJECT_ROOT / source)
    return list(dict.fromkeys(out))


def _find_sc(restorer_file: Path, ck: dict) -> tuple[object, Path | None]:
    """(SC object or checkpoint dict, file) for a restorer checkpoint; (None, None) when there is none."""
    if isinstance(ck.get("sc"), dict):
        return ck["sc"], restorer_file
    for c in _sc_candidates(restorer_file, ck):
        if c.is_file():
            return read_checkpoint(c), c
    return None, None


def load_vlur(restorer_file: Path, sc_file: Path | None = None, *, mode: str = "auto",
              weights_label: str = "custom", device: str = "cpu") -> VLURMethod:
    """Build the adapter from a restorer checkpoint (+ SC checkpoint, found as described in the module doc)."""
    from vlur.classifier import SceneClassifier
    from vlur.restorer import restorer_from_checkpoint

    restorer_file = Path(restorer_file)
    if not restorer_file.is_file():
        hint = (" (the demo weights ship with the package; train your own with `python -m vlur.train_classifier` "
                "and `python -m vlur.train`)") if restorer_file.parent == WEIGHTS_DIR else ""
        raise WeightsError(f"vlur: restorer weights file not found: {restorer_file}{hint}")
    ck = read_checkpoint(restorer_file)
    restorer = restorer_from_checkpoint(ck, str(restorer_file))
    files = [restorer_file]
    if sc_file is not None:
        if not Path(sc_file).is_file():
            if mode == "auto":
                raise WeightsError(f"vlur: scene-classifier weights file not found: {sc_file}")
            sc_obj, found = None, None
        else:
            sc_obj, found = read_checkpoint(Path(sc_file)), Path(sc_file)
    else:
        sc_obj, found = _find_sc(restorer_file, ck)
        if sc_obj is None and mode == "auto":
            looked = ", ".join(map(str, _sc_candidates(restorer_file, ck)))
            raise WeightsError(
                f"vlur: no scene classifier for {restorer_file} (looked for an embedded 'sc', then {looked}); "
                "auto mode needs one — or use --mode text"
            )
    classifier = None
    if sc_obj is not None:
        classifier = SceneClassifier.from_checkpoint(sc_obj, str(found))
        # the files its predictions come from (hashed with the method's); none in text mode, where the
        # classifier does not change the outputs
        classifier.weights_files = [found] if found is not None and mode != "text" else []
        if found is not None and found != restorer_file and mode != "text":
            files.append(found)
    return VLURMethod(restorer, classifier, weights_label=weights_label, weights_files=files, device=device)


@register("vlur", description="VL-UR: CLIP scene classifier + PGCA restorer (this project's implementation)",
          info=INFO)
def create(opts: MethodOptions) -> VLURMethod:
    """VL-UR (demo weights unless --weights; `opts.random_weights`: see `random_vlur`)."""
    if opts.random_weights:
        return random_vlur(device=opts.device)
    if opts.weights is not None:
        label = "demo" if _is_demo(Path(opts.weights)) else "custom"
        return load_vlur(Path(opts.weights), mode=opts.mode, weights_label=label, device=opts.device)
    return load_vlur(WEIGHTS_DIR / DEMO_RESTORER, WEIGHTS_DIR / DEMO_SC, mode=opts.mode, weights_label="demo",
                     device=opts.device)


def random_vlur(device: str | torch.device = "cpu", clip: str | None = None) -> VLURMethod:
    """VL-UR at its default (published) width with a randomly initialised CLIP scene classifier (`clip`,
    default `CLIP_ARCH`), seed 0, the caller's RNG untouched; the restorer's text table is the classifier's.
    The speed and FLOPs do not depend on the values (the classifier's choice does not change the work)."""
    from vlur.classifier import create_classifier
    from vlur.restorer import VLURRestorer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        sc = create_classifier(clip or CLIP_ARCH, pretrained=None)
        restorer = VLURRestorer(text_dim=int(sc.text_features.shape[1]), text_features=sc.text_features.clone())
    return VLURMethod(restorer, sc, weights_label="random", device=device)


class ZeroShotSC:
    """Classifier-only method: VL-UR's Scene Classifier as zero-shot CLIP (no restorer).

    For `python -m harness.classify --methods vlur-zeroshot --weights CLIP_FILE`: CLIP ViT-B/32 with the
    weights of CLIP_FILE (a local open_clip / OpenAI checkpoint), or "openai" through open_clip's download,
    which fails offline with a message saying where to put the file. `harness.run` skips it (no mode).
    """

    name = "vlur-zeroshot"
    weights_label = "zero-shot"

    def __init__(self, classifier, weights_files: Sequence[Path] = (), *, weights_label: str = "zero-shot"):
        self.classifier = classifier.eval()
        self.weights_files = [Path(p) for p in weights_files]
        self.weights_label = weights_label

    def restore(self, images: torch.Tensor, degradation=None) -> torch.Tensor:
        raise NotImplementedError("vlur-zeroshot is a classifier only: use python -m harness.classify")

    def to(self, device: torch.device | str) -> ZeroShotSC:
        self.classifier.to(device)
        return self


@register("vlur-zeroshot", description="VL-UR scene classifier as zero-shot CLIP ViT-B/32 (classifier only; "
          "--weights CLIP_FILE)", info=ZEROSHOT_INFO)
def create_zero_shot(opts: MethodOptions) -> ZeroShotSC:
    """Zero-shot CLIP from --weights or "openai"; `opts.random_weights`: a randomly initialised `CLIP_ARCH`
    (seed 0, label "random"), the prompts' text features computed by its random text tower."""
    from vlur.classifier import create_classifier

    if opts.random_weights:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            sc = create_classifier(CLIP_ARCH, pretrained=None)
        return ZeroShotSC(sc, weights_label="random").to(opts.device)
    pretrained = str(opts.weights) if opts.weights is not None else "openai"
    return ZeroShotSC(create_classifier("ViT-B-32", pretrained),
                      [opts.weights] if opts.weights is not None else []).to(opts.device)
