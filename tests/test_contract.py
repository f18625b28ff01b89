"""Every registered method honours the same contract (pyiqa-style, parametrised over the registry): it builds
with random weights, moves to a device, restores an odd-sized batch to the input's size with finite values
in each of its modes, and gives each image of a batch the result it gets alone."""

from __future__ import annotations

import pytest
import torch

from harness import registry
from harness.degradations import TYPES
from harness.protocol import Restorer

#: method-specific settings that keep the check small (WeatherDiffusion: one sampling step)
SMALL = {"weatherdiff": {"steps": "1"}}
METHODS = [m for m in sorted(registry.BUILTIN_MODULES) if registry.get_spec(m).modes]  # test doubles excluded


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 37, 53, generator=g)


@pytest.mark.parametrize("name", METHODS)
def test_contract(name, images):
    spec = registry.get_spec(name)
    for mode in spec.modes:
        opts = registry.MethodOptions(mode=mode, random_weights=True, method_args=SMALL.get(name, {}))
        r = registry.create_restorer(name, opts)
        assert isinstance(r, Restorer)
        assert getattr(r, "weights_label", "random") in ("random", "none")
        r = r.to("cpu") or r
        types = [TYPES[0], TYPES[5]] if mode == "text" else None
        with torch.inference_mode():
            out = r.restore(images, types)
            single = r.restore(images[1:], types[1:] if types else None)
        assert out.shape == images.shape and out.dtype == torch.float32
        assert torch.isfinite(out).all()
        # batch independence: the second image's result does not depend on the first
        torch.testing.assert_close(out[1:], single, rtol=1e-4, atol=1e-4)


def test_only_the_classifier_only_method_is_left_out():
    # a restorer that registered no modes would silently escape the contract: only vlur-zeroshot may
    assert set(registry.BUILTIN_MODULES) - set(METHODS) == {"vlur-zeroshot"}


def test_unknown_method_argument_is_refused():
    for name in ("mirnetv2", "moce-ir", "wgws-net"):
        with pytest.raises(registry.MethodArgError, match="unknown --method-arg"):
            registry.create_restorer(name, registry.MethodOptions(random_weights=True, method_args={"nope": "1"}))
