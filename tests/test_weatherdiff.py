"""WeatherDiffusion re-implementation: UNet state_dict vs the official manifest, UNet and patch-sampler outputs vs
the official test vectors, sampler / adapter mechanics, checkpoint formats (EMA shadow) and the registered method.

The UNet has 83 M parameters and costs 60 GFLOPs per 64×64 patch, so the filled model and the random-weight
restorer are each built once per module, the sampler vector is run once (6 patches × 2 steps), and the sampler's
bookkeeping (patch averaging, batching, padding) is checked with a tiny stand-in denoiser.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest
import torch
from baseline_checks import (
    assert_matches_manifest,
    assert_needs_weights,
    assert_refuses_garbage,
    assert_unknown_method_arg,
    fill,
    filled,
    missing_file_message,
    module_prefixed,
    one_thread,  # noqa: F401 - autouse: one intra-op thread for the module
    rel_err,
    wrong_file_message,
)
from torch import nn

import baselines.weatherdiff as wd
from baselines.weatherdiff import (
    PUBLISHED_AT,
    DiffusionUNet,
    WeatherDiffRestorer,
    grid_corners,
    grid_size,
    load_weatherdiff,
    pad_to_grid,
    sample,
    sample_raw,
    timestep_pairs,
    weatherdiff_state_dict,
)
from harness.protocol import Restorer
from harness.registry import MethodArgError, MethodOptions, create_restorer, get_spec
from harness.weights import WeightsError

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def model() -> DiffusionUNet:
    """The WeatherDiff64 UNet with the deterministic test weights (salt 0), built once for the module."""
    return filled(DiffusionUNet().eval(), salt=0)


@pytest.fixture(scope="module")
def random_restorer() -> WeatherDiffRestorer:
    """The registered method with seeded random weights and 2 sampling steps, built once for the module."""
    return create_restorer("weatherdiff", MethodOptions(random_weights=True, method_args={"steps": "2"}))


class _ToyDenoiser(nn.Module):
    """Stand-in for the UNet: a pointwise ε̂ = 0.5·x_t + 0.1·cond (+ t/1000), any patch size.

    Being pointwise, the overlap-averaged ε̂ equals the same map on the full image, which gives the sampler a
    closed-form expected result."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.shape[0])
        cond, xt = x[:, :3], x[:, 3:]
        return self.scale * (0.5 * xt + 0.1 * cond + t.view(-1, 1, 1, 1) / 1000)


def _toy_expected(x_cond: torch.Tensor, noise: torch.Tensor, steps: int) -> torch.Tensor:
    abar = wd.alphas_cumprod()
    x = noise
    for t, t_next in timestep_pairs(steps):
        a, an = abar[t + 1], abar[t_next + 1]
        eps = 0.5 * x + 0.1 * (2 * x_cond - 1) + t / 1000
        x0 = (x - eps * (1 - a).sqrt()) / a.sqrt()
        x = an.sqrt() * x0 + (1 - an).sqrt() * eps
    return x


# ------------------------------------------------------------------------------------------ architecture


def test_state_dict_matches_official_manifest(model):
    assert_matches_manifest(model, "weatherdiff.manifest.json", n_keys=332, n_params=82_962_435)
    assert list(model.buffers()) == []


def test_matches_official_unet_vector(model):
    case = torch.load(DATA / "weatherdiff_case0.pt", weights_only=True)
    torch.testing.assert_close(case["x"], torch.cat([2 * case["x_cond01"] - 1, case["x_t"]], dim=1))
    with torch.inference_mode():
        out = model(case["x"], case["t"])
    assert out.shape == case["out"].shape and out.dtype == torch.float32
    assert rel_err(out, case["out"]) <= 1e-4


def test_matches_official_sampler_vector(model):
    case = torch.load(DATA / "weatherdiff_sampler_case0.pt", weights_only=True)
    r, steps, p = int(case["r"]), int(case["sampling_timesteps"]), int(case["patch_size"])
    assert p == wd.PATCH_SIZE and case["eta"] == 0.0
    h, w = case["x_cond"].shape[-2:]
    assert [list(c) for c in grid_corners(h, w, r)] == [list(c) for c in case["corners"]]
    assert [t for t, _ in timestep_pairs(steps)] == list(case["timesteps"])

    raw = sample_raw(model, case["x_cond"], case["noise"], grid_r=r, steps=steps)
    assert raw.shape == case["out"].shape
    assert rel_err(raw, case["out"]) <= 1e-4
    image = ((raw + 1) / 2).clamp(0, 1)  # what `sample` returns (checked against sample_raw below)
    assert rel_err(image, case["out_image"]) <= 1e-4


def test_unet_refuses_other_sizes(model):
    with pytest.raises(ValueError, match="64×64"):
        model(torch.zeros(1, 6, 32, 32), torch.zeros(1))


def test_flops_per_patch():
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        net = DiffusionUNet()
        with FlopCounterMode(display=False) as counter:
            net(torch.zeros(1, 6, 64, 64), torch.zeros(1))
    assert counter.get_total_flops() / 1e9 == pytest.approx(59.91, abs=0.01)


# ------------------------------------------------------------------------------------------------ sampler


def test_schedule_and_grid():
    assert len(timestep_pairs(25)) == 25
    assert timestep_pairs(25)[:2] == [(960, 920), (920, 880)] and timestep_pairs(25)[-1] == (0, -1)
    assert timestep_pairs(3) == [(999, 666), (666, 333), (333, 0), (0, -1)]  # ceil(1000 / 333) = 4 steps
    assert timestep_pairs(1) == [(0, -1)]
    with pytest.raises(ValueError):
        timestep_pairs(0)
    abar = wd.alphas_cumprod()
    assert abar.dtype == torch.float32 and abar.shape == (1001,) and abar[0] == 1
    assert abar[1].item() == pytest.approx(1 - 1e-4) and abar[-1].item() == pytest.approx(4.036e-5, rel=1e-3)
    assert len(grid_corners(256, 256, 16)) == 169 and len(grid_corners(256, 256, 4)) == 2401
    assert [grid_size(n, 16) for n in (1, 64, 65, 80, 81)] == [64, 64, 80, 80, 96]
    assert grid_size(70, 4) == 72


def test_sampler_averages_overlapping_patches():
    toy = _ToyDenoiser()
    x_cond = fill.make_input((2, 3, 80, 72), seed=11)
    noise = torch.randn(2, 3, 80, 72, generator=torch.Generator().manual_seed(12))
    # r = 8: 3 × 2 patches per image, 12 in all, in calls of 5 (patches of different images share a call).
    raw = sample_raw(toy, x_cond, noise, grid_r=8, steps=3, patch_size=64, patches_per_call=5)
    assert toy.calls == [5, 5, 2] * 4
    assert rel_err(raw, _toy_expected(x_cond, noise, 3)) <= 1e-5  # values reach ~100 (1/√ᾱ at t = 999)
    image = sample(toy, x_cond, noise, grid_r=8, steps=3, patches_per_call=5)
    torch.testing.assert_close(image, ((raw + 1) / 2).clamp(0, 1), rtol=0, atol=0)


def test_sampler_flops_on_the_meta_device_equal_the_real_count():
    """The meta fast path (one UNet call per step, no per-patch bookkeeping) counts the FLOPs of a real run
    (exactly for a denoiser without per-call work; the UNet's timestep MLP is the documented exception)."""
    from harness.timing import count_flops

    class ConvDenoiser(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(6, 3, 3, padding=1)

        def forward(self, x, t):
            return self.conv(x)

    net = ConvDenoiser()
    x, noise = torch.rand(2, 3, 96, 80), torch.randn(2, 3, 96, 80)
    real, _ = count_flops(sample_raw, net, x, noise, grid_r=16, steps=3, patches_per_call=5)
    net.to("meta")
    counted, out = count_flops(sample_raw, net, x.to("meta"), noise.to("meta"), grid_r=16, steps=3,
                               patches_per_call=5)
    assert counted == real > 0 and out.shape == x.shape and out.device.type == "meta"


def test_sampler_refuses_uncovered_grid():
    toy = _ToyDenoiser()
    x = torch.zeros(1, 3, 70, 64)
    with pytest.raises(ValueError, match="pad it to 80×64"):
        sample_raw(toy, x, x, grid_r=16, steps=1)
    with pytest.raises(ValueError, match="not covered"):
        sample_raw(toy, torch.zeros(1, 3, 32, 64), torch.zeros(1, 3, 32, 64), grid_r=16, steps=1)


def test_pad_to_grid_small_sides():
    x = torch.arange(2 * 3 * 20 * 50, dtype=torch.float32).reshape(2, 3, 20, 50)
    y = pad_to_grid(x, 16)
    assert y.shape == (2, 3, 64, 64)
    torch.testing.assert_close(y[..., :20, :50], x)
    torch.testing.assert_close(y[..., 20:, :50], x[..., 19:, :].expand(-1, -1, 44, -1))  # replicated rows
    torch.testing.assert_close(y[..., :20, 50], x[..., :, 48])  # reflected column
    assert pad_to_grid(torch.zeros(1, 3, 70, 130), 16).shape == (1, 3, 80, 144)
    assert pad_to_grid(torch.zeros(1, 3, 70, 130), 4).shape == (1, 3, 72, 132)


def test_adapter_pads_and_crops_with_toy_denoiser():
    restorer = WeatherDiffRestorer(_ToyDenoiser(), weights_label="random", grid_r=16, steps=2, seed=5)
    x = fill.make_input((1, 3, 70, 130), seed=13)
    out = restorer.restore(x)
    assert out.shape == x.shape
    padded = pad_to_grid(x, 16)  # 80 × 144
    noise = torch.randn(padded.shape, generator=torch.Generator().manual_seed(5))
    expected = ((_toy_expected(padded, noise, 2) + 1) / 2).clamp(0, 1)[..., :70, :130]
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------------ adapter


def test_adapter_on_tiny_images(random_restorer):
    assert random_restorer.steps == 2 and random_restorer.grid_r == 16 and random_restorer.seed == 61
    x = fill.make_input((2, 3, 37, 53), seed=3)
    out = random_restorer.restore(x)  # each image padded to one 64×64 patch, 2 steps
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    # Per-image seeded noise: image 1 alone (a type given, which is ignored) equals its result in the batch.
    single = random_restorer.restore(x[1:], ["haze"])
    torch.testing.assert_close(single, out[1:], rtol=0, atol=1e-5)
    assert not torch.equal(out[0], out[1])


# ------------------------------------------------------------------------------------------------ loader


def _official_checkpoint(sd: dict[str, torch.Tensor], raw_overrides: dict[str, torch.Tensor]) -> dict:
    """A dict shaped like WeatherDiff64.pth.tar: DataParallel `state_dict`, EMA shadow, optimizer, Namespaces."""
    config = argparse.Namespace(
        data=argparse.Namespace(dataset="AllWeather", image_size=64, conditional=True),
        model=argparse.Namespace(ch=128, ch_mult=[1, 2, 3, 4], ema_rate=0.999),
        device=torch.device("cpu"),
    )
    raw = {**sd, **raw_overrides}
    return {
        "epoch": 1775,
        "step": 2_000_000,
        "state_dict": module_prefixed(raw),
        "optimizer": {"state": {}, "param_groups": [{"lr": 2e-5, "betas": (0.9, 0.999), "params": [0, 1]}]},
        "ema_helper": dict(sd),
        "params": argparse.Namespace(config="allweather.yml", resume="", seed=61),
        "config": config,
    }


def test_loads_official_checkpoint_ema(model, tmp_path):
    sd = model.state_dict()
    # The raw training weights differ from the EMA shadow in one tensor; the rest shares storage (small file).
    path = tmp_path / wd.CHECKPOINT_NAME
    torch.save(_official_checkpoint(sd, {"conv_out.bias": torch.zeros(3)}), path)
    try:
        with pytest.raises(Exception):  # noqa: B017 - the Namespaces are why the loader needs its stubs
            torch.load(path, weights_only=True)
        loaded = load_weatherdiff(path)
        assert not loaded.training
        got = loaded.state_dict()
        assert list(got) == list(sd)
        assert all(torch.equal(got[k], v) for k, v in sd.items())  # the EMA shadow, as the official test uses
    finally:
        path.unlink()


def _small() -> dict[str, torch.Tensor]:
    return {"conv_in.weight": torch.randn(128, 6, 3, 3), "conv_out.bias": torch.randn(3)}


@pytest.mark.parametrize(
    ("wrap", "ema", "pick"),
    [
        (lambda sd: sd, True, "ema"),
        (module_prefixed, True, "ema"),
        (lambda sd: _official_checkpoint(sd, {"conv_out.bias": torch.zeros(3)}), True, "ema"),
        (lambda sd: _official_checkpoint(sd, {"conv_out.bias": torch.zeros(3)}), False, "raw"),
        (lambda sd: {"state_dict": module_prefixed(sd)}, True, "ema"),
    ],
    ids=["plain", "module", "official-ema", "official-raw", "state-dict-wrapper"],
)
def test_state_dict_formats(tmp_path, wrap, ema, pick):
    sd = _small()
    torch.save(wrap(sd), tmp_path / "w.pth")
    got = weatherdiff_state_dict(tmp_path / "w.pth", ema=ema)
    assert list(got) == list(sd)
    expected = sd if pick == "ema" else {**sd, "conv_out.bias": torch.zeros(3)}
    assert all(torch.equal(got[k], v) for k, v in expected.items())


def test_training_checkpoint_without_ema_is_refused(tmp_path):
    ckpt = _official_checkpoint(_small(), {})
    del ckpt["ema_helper"]
    torch.save(ckpt, tmp_path / "no_ema.pth.tar")
    with pytest.raises(WeightsError, match="ema_helper"):
        weatherdiff_state_dict(tmp_path / "no_ema.pth.tar")
    assert list(weatherdiff_state_dict(tmp_path / "no_ema.pth.tar", ema=False)) == list(_small())


def test_wrong_file_lists_differences(tmp_path):
    wrong = {
        "conv_in.weight": torch.zeros(128, 3, 3, 3),
        "not_weatherdiff.weight": torch.zeros(2),
    }
    msg = wrong_file_message(load_weatherdiff, tmp_path / "other.pth", wrong)
    assert "331 missing key(s)" in msg and "temb.dense.0.weight" in msg
    assert "unexpected key(s), first: not_weatherdiff.weight" in msg
    assert "conv_in.weight expected (128, 6, 3, 3) got (128, 3, 3, 3)" in msg
    assert_refuses_garbage(load_weatherdiff, tmp_path / "garbage.pth.tar")


def test_missing_file(tmp_path):
    msg = missing_file_message(load_weatherdiff, tmp_path / wd.CHECKPOINT_NAME)
    assert "WeatherDiff64.pth.tar" in msg and "igi-web.tugraz.at" in msg
    assert "IGITUGraz/WeatherDiffusion" in PUBLISHED_AT


# ---------------------------------------------------------------------------------------- registered method


def test_registered_method(random_restorer, tmp_path):
    spec = get_spec("weatherdiff")
    assert spec.modes == ("auto", "text")
    assert "seed 61" in spec.description and "25 steps" in spec.description and "r=16" in spec.description

    assert isinstance(random_restorer, Restorer) and isinstance(random_restorer, WeatherDiffRestorer)
    assert random_restorer.name == "weatherdiff" and random_restorer.weights_label == "random"
    assert random_restorer.weights_files == []
    assert sum(p.numel() for p in random_restorer.model.parameters()) == 82_962_435
    assert random_restorer.to("cpu") is random_restorer and random_restorer.device == torch.device("cpu")
    assert random_restorer.sampler_steps == 2  # UNet passes per image (harness.timing's per-step figures)

    assert_unknown_method_arg("weatherdiff", {"flag": "1"}, match="unknown --method-arg flag")
    for bad in ({"steps": "0"}, {"grid_r": "x"}, {"steps": "1001"}):
        with pytest.raises(MethodArgError):
            create_restorer("weatherdiff", MethodOptions(random_weights=True, method_args=bad))

    assert_needs_weights("weatherdiff", "igi-web.tugraz.at", tmp_path, tmp_path / "x.pth", name="WeatherDiff64.pth.tar")


def test_cost_per_256_image():
    # UNet evaluations per 256×256 image at the official settings (r = 16 / 4, 25 steps) and their FLOPs.
    per_patch = 59.91e9
    evals = {r: len(grid_corners(256, 256, r)) * len(timestep_pairs(25)) for r in (16, 4)}
    assert evals == {16: 4225, 4: 60025}
    assert math.isclose(evals[16] * per_patch / 1e12, 253.1, rel_tol=1e-3)
