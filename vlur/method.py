"""Registers VL-UR with the harness: `python -m harness.run --methods vlur [--mode auto|text] [--weights FILE]`.

Weights: by default the demo pair shipped in `vlur/weights/` — `vlur_demo.pt` (restorer) and
`vlur_sc_demo.pt` (scene classifier), weights_label "demo" (trained by this project on its embedded mini
train split; the paper released no weights).  `--weights FILE` picks any restorer checkpoint written by
`vlur.train` (weights_label "custom"); its scene classifier is found, in this order, embedded under the
key "sc", as the file named in its metadata (`meta.sc.file`, looked up next to FILE by base name), or as
`sc.pt` next to FILE.  The classifier is required in "auto" mode only.  `--weights-dir` is not used (VL-UR
has no released files).  `random_weights` (`MethodOptions`, for timing and FLOP counting): VL-UR at its default
published width with a randomly initialised CLIP ViT-B/32 scene classifier (seed 0), weights_label "random".

Modes: "auto" — the SC predicts each image's type and the restorer is driven by that type's cached text
feature (`restore_auto` returns the predictions too); "text" — the true type is given.  Inference runs
under `torch.inference_mode()` in float32.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from harness.registry import MethodOptions, register
from harness.weights import WeightsError, read_checkpoint

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEMO_RESTORER = "vlur_demo.pt"
DEMO_SC = "vlur_sc_demo.pt"
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


def _find_sc(restorer_file: Path, ck: dict) -> tuple[object, Path | None]:
    """(SC object or checkpoint dict, file) for a restorer checkpoint; (None, None) when there is none."""
    if isinstance(ck.get("sc"), dict):
        return ck["sc"], restorer_file
    candidates = []
    named = (ck.get("meta", {}).get("sc") or {}).get("file") if isinstance(ck.get("meta"), dict) else None
    if named:
        candidates.append(restorer_file.parent / Path(str(named)).name)
    candidates.append(restorer_file.parent / "sc.pt")
    for c in candidates:
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
            raise WeightsError(
                f"vlur: no scene classifier for {restorer_file} (looked for an embedded 'sc', the file named in its "
                f"metadata and {restorer_file.parent / 'sc.pt'}); auto mode needs one — or use --mode text"
            )
    classifier = None
    if sc_obj is not None:
        classifier = SceneClassifier.from_checkpoint(sc_obj, str(found))
        if found is not None and found != restorer_file and mode != "text":
            files.append(found)  # text mode: the classifier does not change the outputs
    return VLURMethod(restorer, classifier, weights_label=weights_label, weights_files=files, device=device)


@register("vlur", description="VL-UR: CLIP scene classifier + PGCA restorer (this project's implementation)",
          modes=("auto", "text"))
def create(opts: MethodOptions) -> VLURMethod:
    """VL-UR (demo weights unless --weights; `opts.random_weights`: see `random_vlur`)."""
    if opts.random_weights:
        return random_vlur(device=opts.device)
    if opts.weights is not None:
        return load_vlur(Path(opts.weights), mode=opts.mode, weights_label="custom", device=opts.device)
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
          "--weights CLIP_FILE)", modes=())
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
