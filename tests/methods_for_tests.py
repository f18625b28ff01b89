"""Methods registered only for tests (imported with `--import methods_for_tests` or directly)."""

from __future__ import annotations

import os
import time

import torch

from harness.registry import register


class _Base:
    weights_label = "none"

    def __init__(self, name):
        self.name = name

    def to(self, device):
        return self


class Faulty(_Base):
    """Misbehaves per type (text mode): raises on haze, NaN on rain, wrong shape on snow, fine elsewhere."""

    def restore(self, images, degradation=None):
        t = degradation[0]
        if t == "haze":
            raise RuntimeError("deliberate failure")
        if t == "rain":
            return torch.full_like(images, float("nan"))
        if t == "snow":
            return images[..., :-1]
        return (images * 0.9).clamp(0, 1)


@register("test-faulty", modes=("text",), description="test method misbehaving per type")
def _faulty(opts):
    return Faulty("test-faulty")


class Slow(_Base):
    """Sleeps per image (so a test can kill the run mid-way), then darkens deterministically."""

    def restore(self, images, degradation=None):
        time.sleep(float(os.environ.get("TEST_SLOW_SECONDS", "0.2")))
        return images * 0.95


@register("test-slow", modes=("auto", "text"), description="slow deterministic test method")
def _slow(opts):
    return Slow("test-slow")


class OOMOnLarge(_Base):
    """Raises an out-of-memory error above 256×256 pixels, like a GPU would on a large image."""

    def restore(self, images, degradation=None):
        if images.shape[-1] * images.shape[-2] > 256 * 256:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return images * 0.5 + 0.25


@register("test-oom", modes=("auto",), description="raises OOM on large inputs")
def _oom(opts):
    return OOMOnLarge("test-oom")


class Weighted(_Base):
    """Scales its input by the number stored in the weights file $TEST_WEIGHTS_FILE."""

    def __init__(self, name, path):
        super().__init__(name)
        self.weights_files = [path]
        self.scale = float(open(path).read())

    def restore(self, images, degradation=None):
        return (images * self.scale).clamp(0, 1)


@register("test-weighted", modes=("text",), description="test method with a weights file")
def _weighted(opts):
    return Weighted("test-weighted", os.environ["TEST_WEIGHTS_FILE"])
