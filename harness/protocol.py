"""The small protocol every method implements; the harness knows methods only through it.

Images are float32 tensors B×3×H×W with values in [0, 1], on the method's device. Degradation types are
CDD-11 folder names (`harness.degradations.TYPES`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Restorer(Protocol):
    """An all-in-one restorer.

    `restore(images, degradation)`: `degradation` is None in blind / automatic mode, or one CDD-11 type name
    per image when the type is given ("text" mode). Returns B×3×H×W float (unclamped is fine: the
    harness clamps and quantises before scoring).
    """

    name: str

    def restore(self, images: torch.Tensor, degradation: Sequence[str] | None = None) -> torch.Tensor: ...

    def to(self, device: torch.device | str) -> Restorer: ...


@runtime_checkable
class DegradationClassifier(Protocol):
    """Predicts the degradation type of each image.

    `labels` are the type names the classifier can output, in the order of the columns of `scores`.
    """

    name: str
    labels: tuple[str, ...]

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        """B×len(labels) scores (higher = more likely; softmax-able logits or probabilities)."""
        ...

    def classify(self, images: torch.Tensor) -> list[str]:
        """One predicted type name per image."""
        ...


@runtime_checkable
class AutoRestorer(Protocol):
    """A restorer whose blind mode is driven by its own classifier.

    `restore_auto` returns the restored images and the type predicted for each image, so the harness can
    record predictions without running the classifier twice.
    """

    classifier: DegradationClassifier

    def restore_auto(self, images: torch.Tensor) -> tuple[torch.Tensor, list[str]]: ...


def classify_from_scores(scores: torch.Tensor, labels: Sequence[str]) -> list[str]:
    """Arg-max of each row of `scores`, as label names."""
    return [labels[i] for i in scores.argmax(dim=1).tolist()]
