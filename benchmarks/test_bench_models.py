"""Forward pass of each registered model at 256×256 on the CPU, built from its class with random weights.

Run with `nox -s bench` (= `pytest benchmarks --benchmark-only`). A model whose module is not importable is
skipped. `extra_info` holds the parameter count, the FLOPs at 256×256 (harness.timing's counter, on the meta
device) and the achieved GFLOP/s. VLUR_BENCH_ROUNDS sets the timed rounds (default 3, plus one warm-up).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import torch
from torch import nn

SIZE = 256
ROUNDS = int(os.environ.get("VLUR_BENCH_ROUNDS", "3"))


def _airnet():
    from baselines.airnet import AirNet

    return AirNet(), lambda m, x: m(x)


def _promptir():
    from baselines.promptir import PromptIR

    return PromptIR(), lambda m, x: m(x)


def _onerestore():
    from baselines.onerestore import EMBED_DIM, OneRestore

    emb = torch.rand(1, EMBED_DIM, generator=torch.Generator().manual_seed(0))
    return OneRestore(), lambda m, x: m(x, emb.to(x.device))


def _onerestore_embedder():
    from baselines.onerestore import Embedder

    return Embedder(), lambda m, x: m.logits(m.prepare(x))


def _vlur():
    from vlur.restorer import VLURRestorer

    return VLURRestorer(), lambda m, x: m.forward_types(x, ["low_haze_snow"])


def _vlur_sc():
    from vlur.classifier import create_classifier

    return create_classifier("ViT-B-32", pretrained=None), lambda m, x: m.scores(x)


#: name -> builder returning (module with random weights, forward(module, x)).
MODELS: dict[str, Callable[[], tuple[nn.Module, Callable]]] = {
    "airnet": _airnet,
    "promptir": _promptir,
    "onerestore": _onerestore,
    "onerestore-embedder": _onerestore_embedder,
    "vlur": _vlur,
    "vlur-sc-vitb32": _vlur_sc,
}


def _build(name: str):
    try:
        model, fwd = MODELS[name]()
    except ImportError as e:
        pytest.skip(f"{name}: not importable yet ({e})")
    return model.eval(), fwd


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_256(benchmark, name):
    from harness.timing import count_flops, count_parameters

    model, fwd = _build(name)
    x = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    meta = model.to("meta")  # FLOPs without running anything, then fresh random weights for the timing
    flops, _ = count_flops(fwd, meta, torch.empty_like(x, device="meta"))
    model, fwd = _build(name)

    def run():
        with torch.inference_mode():
            return fwd(model, x)

    benchmark.group = f"forward {SIZE}x{SIZE} cpu"
    benchmark.extra_info.update(params=count_parameters(model), gflops=flops / 1e9,
                                threads=torch.get_num_threads())
    out = benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    benchmark.extra_info["achieved_gflops_per_s"] = flops / 1e9 / benchmark.stats.stats.median
    assert torch.isfinite(out).all()
