"""MoCE-IR re-implementation: state_dict vs the official manifest, output vs the official test vector (with the
stored routing noise, and without noise), per-image expert routing in batches, the noise hooks, checkpoint
formats, the adapter and the registered method. CPU, offline, one model build."""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
from pathlib import Path

import pytest
import torch

import baselines.moce_ir  # noqa: F401 - registers "moce-ir" (registry entries for new modules come later)
from baselines.moce_ir import (
    CHECKPOINT_NAME,
    OFFICIAL_NOISE_STD,
    PUBLISHED_AT,
    FFTAttention,
    MoCEIR,
    MoCEIRRestorer,
    ReplayNoise,
    load_moce_ir,
    moce_ir_state_dict,
    pad_to_multiple,
)
from harness.protocol import Restorer
from harness.registry import MethodArgError, MethodOptions, create_restorer, get_spec
from harness.weights import MissingWeightsError, WeightsError

DATA = Path(__file__).parent / "data"
CASE = "moce_ir_case0"


def _load_fill():
    spec = importlib.util.spec_from_file_location("_vlur_fill", DATA / "fill.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fill = _load_fill()


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # The test machine's cores are shared: one intra-op thread is several times faster than oversubscribing.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def case() -> dict:
    return torch.load(DATA / f"{CASE}.pt", weights_only=True)


@pytest.fixture(scope="module")
def model(_one_thread, case) -> MoCEIR:
    """MoCE-IR-S with the deterministic test weights of the case, built once for the module."""
    meta = json.loads((DATA / "cases.json").read_text())[CASE]
    net = MoCEIR().eval()
    sd = net.state_dict()
    fill.fill_state_dict(sd, salt=meta["salt"], scale=meta.get("fill_scale"))
    net.load_state_dict(sd)
    return net


@pytest.fixture()
def noise_settings(model):
    """Restore the shared model's routing-noise settings after a test that changes them."""
    yield model
    model.noise_std = OFFICIAL_NOISE_STD
    model.noise_source = None


def _rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return (out - ref).abs().max().item() / max(1.0, ref.abs().max().item())


def _forcing_noise(choices: list[list[int]]):
    """A noise source making router call j send image b to expert choices[j][b] (huge one-hot draws)."""
    slabs = [torch.nn.functional.one_hot(torch.tensor(c), 4).float() * 400.0 for c in choices]
    return ReplayNoise(slabs)


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# ------------------------------------------------------------------------------------------ architecture


def test_state_dict_matches_official_manifest(model):
    manifest = json.loads((DATA / "moce_ir.manifest.json").read_text())
    ours = {
        k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")} for k, v in model.state_dict().items()
    }
    assert len(manifest) == 1262
    assert list(ours) == list(manifest)  # same keys, same order
    assert ours == manifest
    assert sum(p.numel() for p in model.parameters()) == 11_477_752
    assert sum(b.numel() for b in model.buffers()) == 40  # routers' `complexity`, training loss only


def _tiny(**kwargs) -> MoCEIR:
    return MoCEIR(dim=8, num_blocks=(1, 1, 1, 1), num_dec_blocks=(1, 1, 1), num_refinement_blocks=1, **kwargs)


def test_fresh_model_defaults():
    net = _tiny()
    assert net.noise_std == OFFICIAL_NOISE_STD and net.noise_source is None
    assert len(net.routers()) == 3
    r = net.routers()[0]
    torch.testing.assert_close(r.complexity.max(), torch.tensor(1.0))  # parameter counts relative to the largest
    kernel = net.freq_embed.high_conv[0].conv.weight
    assert kernel.shape == (64, 1, 3, 3) and kernel[0, 0, 1, 1] == 8 and kernel[0, 0, 0, 0] == -1
    assert _tiny(noise_std=0.0).noise_std == 0.0
    with pytest.raises(ValueError):
        _tiny(noise_std=-1.0)


# ------------------------------------------------------------------------------------------ reference case


def test_matches_official_test_vector(noise_settings, case):
    model = noise_settings
    replay = ReplayNoise(case["routing_noise"])
    model.noise_source = replay
    with torch.inference_mode():
        out = model(case["x"])
    assert replay.remaining == 0  # one draw per router call, 10 in all
    assert out.shape == case["out"].shape and out.dtype == torch.float32
    assert _rel_err(out, case["out"]) <= 1e-4
    index, gate = model.routing_choices()
    assert torch.equal(index, case["expert_index"].to(index.dtype))
    torch.testing.assert_close(gate, case["gate_value"], rtol=0, atol=1e-5)


def test_matches_official_test_vector_without_noise(noise_settings, case):
    model = noise_settings
    model.noise_std = 0.0
    model.noise_source = ReplayNoise([])  # noise_std 0 draws nothing
    with torch.inference_mode():
        out = model(case["x"])
    assert _rel_err(out, case["out_zero_noise"]) <= 1e-4


# ------------------------------------------------------------------------------------------ routing / batches


def test_batch_routes_each_image_to_its_own_expert(noise_settings):
    """The official eval path mixes the experts of a batch; here a batch equals its images run one by one."""
    model = noise_settings
    x = fill.make_input((2, 3, 16, 24), seed=5)
    choices = [[0, 3], [1, 2], [2, 2], [3, 0], [0, 1], [1, 0], [2, 3], [3, 3], [0, 2], [1, 1]]
    with torch.inference_mode():
        model.noise_source = _forcing_noise(choices)
        both = model(x)
        index, _ = model.routing_choices()
        assert index.tolist() == choices
        singles = []
        for b in range(2):
            model.noise_source = _forcing_noise([[c[b]] for c in choices])
            singles.append(model(x[b : b + 1]))
    one = torch.cat(singles)
    assert (both - one).abs().max().item() <= 1e-4 * max(1.0, one.abs().max().item())
    # And the routing matters: another expert changes the output.
    with torch.inference_mode():
        model.noise_source = _forcing_noise([[1 - c[0] % 2] for c in choices])
        other = model(x[:1])
    assert (other - singles[0]).abs().max().item() > 1e-3


def test_noise_sources(noise_settings):
    model = noise_settings
    x = fill.make_input((1, 3, 16, 16), seed=9)
    with torch.inference_mode():
        model.noise_source = torch.Generator().manual_seed(4)
        a = model(x)
        ia = model.routing_choices()[0]
        model.noise_source = torch.Generator().manual_seed(4)
        torch.manual_seed(123)  # a generator source ignores the global RNG
        b = model(x)
        assert torch.equal(a, b) and torch.equal(ia, model.routing_choices()[0])

        model.noise_source = None  # the official behaviour: torch.randn_like, global generator
        torch.manual_seed(0)
        c = model(x)
        torch.manual_seed(0)
        d = model(x)
        assert torch.equal(c, d)

        model.noise_source = lambda logits: torch.zeros(3)
        with pytest.raises(ValueError, match="shape"):
            model(x)
        model.noise_source = ReplayNoise(torch.zeros(2, 1, 4))
        with pytest.raises(RuntimeError, match="used up"):
            model(x)
    with pytest.raises(TypeError):
        model.noise_source = 5


def test_sizes_must_be_multiples_of_8(model):
    with pytest.raises(ValueError, match="divisible by 8"):
        model(torch.zeros(1, 3, 20, 16))


def test_fft_attention_is_a_circular_convolution_per_patch():
    torch.manual_seed(0)
    att = FFTAttention(2, patch_size=4).eval()
    x = torch.randn(1, 2, 6, 5)
    with torch.no_grad():
        q = att.q_dwconv(att.q(x))
        k, v = att.kv_dwconv(att.kv(x)).chunk(2, dim=1)
        qp = torch.nn.functional.pad(q, (0, 3, 0, 2))  # zero-padded to 8×8: four 4×4 patches
        kp = torch.nn.functional.pad(k, (0, 3, 0, 2))
        conv = torch.zeros_like(qp)
        for pi in range(2):
            for pj in range(2):
                qs = qp[..., 4 * pi : 4 * pi + 4, 4 * pj : 4 * pj + 4]
                ks = kp[..., 4 * pi : 4 * pi + 4, 4 * pj : 4 * pj + 4]
                acc = torch.zeros_like(qs)
                for a in range(4):
                    for b in range(4):
                        acc += qs[..., a : a + 1, b : b + 1] * ks.roll((a, b), dims=(-2, -1))
                conv[..., 4 * pi : 4 * pi + 4, 4 * pj : 4 * pj + 4] = acc
        expected = att.proj_out(att.norm(conv[..., :6, :5]) * v)
        torch.testing.assert_close(att(x), expected, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------ adapter


@pytest.fixture(scope="module")
def restorer(model) -> MoCEIRRestorer:
    return MoCEIRRestorer(model, [])


def test_adapter_odd_size(restorer, model):
    x = fill.make_input((1, 3, 37, 53), seed=3)
    out = restorer.restore(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1  # clamped, as the official test does
    assert model.noise_source is None  # the adapter leaves the module's settings as they were
    with torch.inference_mode():
        model.noise_source = torch.Generator().manual_seed(restorer.routing_seed)
        padded = torch.nn.functional.pad(x, (0, 3, 0, 3), mode="reflect")  # up to 40×56, bottom / right
        expected = model(padded)[..., :37, :53].clamp(0, 1)
        model.noise_source = None
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_adapter_batch_equals_single_calls_and_is_deterministic(restorer):
    x = fill.make_input((2, 3, 16, 16), seed=11)
    both = restorer.restore(x)
    again = restorer.restore(x)
    assert torch.equal(both, again)  # same seed for every image and call
    one = torch.cat([restorer.restore(x[:1]), restorer.restore(x[1:])])
    torch.testing.assert_close(both, one, rtol=0, atol=1e-6)
    swapped = restorer.restore(x.flip(0))  # independent of the position in the batch
    torch.testing.assert_close(swapped.flip(0), both, rtol=0, atol=1e-6)
    typed = restorer.restore(x, ["haze", "low_rain"])  # the type is ignored
    assert torch.equal(typed, both)
    assert restorer.to("cpu") is restorer


def test_pad_to_multiple_small_sides():
    x = torch.arange(2 * 3 * 5 * 3, dtype=torch.float32).reshape(2, 3, 5, 3)
    y = pad_to_multiple(x, 8)
    assert y.shape == (2, 3, 8, 8)
    torch.testing.assert_close(y[..., :5, :3], x)
    torch.testing.assert_close(y[..., 5, :3], x[..., 3, :])  # reflected row
    torch.testing.assert_close(y[..., :5, 7], x[..., :, 2])  # replicated column (too narrow to reflect)
    assert pad_to_multiple(torch.zeros(1, 3, 16, 8)).shape == (1, 3, 16, 8)


# ------------------------------------------------------------------------------------------------ loader


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory, model):
    """The test weights in the released layout: MoCE_IR_S_CDD11/last.ckpt, Lightning, network under `net.`."""
    d = tmp_path_factory.mktemp("moce_ir_weights")
    path = d / CHECKPOINT_NAME
    path.parent.mkdir(parents=True)
    torch.save(
        {
            "epoch": 199,
            "global_step": 4321,
            "pytorch-lightning_version": "2.2.1",
            "state_dict": {f"net.{k}": v for k, v in model.state_dict().items()},
            "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 200}}}},
            "callbacks": {"ModelCheckpoint{'monitor': None}": {"best_model_path": "", "dirpath": "ckpt"}},
            "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 2e-4}]}],
            "lr_schedulers": [{"last_epoch": 200, "base_lrs": [2e-4]}],
        },
        path,
    )
    yield d
    path.unlink()  # ~46 MB: do not leave it in pytest's kept temp folders


def test_loads_lightning_checkpoint(model, ckpt_dir):
    loaded = load_moce_ir(ckpt_dir / CHECKPOINT_NAME)
    assert not loaded.training
    _assert_same_weights(loaded, model)
    x = fill.make_input((1, 3, 16, 16), seed=2)
    with torch.inference_mode():
        loaded.noise_std = model.noise_std = 0.0
        try:
            torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
        finally:
            model.noise_std = OFFICIAL_NOISE_STD


def _small_state_dict() -> dict[str, torch.Tensor]:
    return {"patch_embed.proj.weight": torch.randn(32, 3, 3, 3), "output.weight": torch.randn(3, 32, 3, 3)}


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
        lambda sd: {"state_dict": {f"net.{k}": v for k, v in sd.items()}, "epoch": 3, "optimizer_states": []},
        lambda sd: {"state_dict": {f"module.net.{k}": v for k, v in sd.items()}, "global_step": 10},
        lambda sd: {"state_dict": {f"net.module.{k}": v for k, v in sd.items()}, "global_step": 10},
    ],
    ids=["plain", "module", "lightning", "lightning-module", "lightning-net-module"],
)
def test_state_dict_formats(tmp_path, wrap):
    sd = _small_state_dict()
    torch.save(wrap(sd), tmp_path / "w.ckpt")
    got = moce_ir_state_dict(tmp_path / "w.ckpt")
    assert list(got) == list(sd)
    assert all(torch.equal(got[k], v) for k, v in sd.items())


class _TrainingOnlyObject:
    """Stands for the non-tensor objects a Lightning checkpoint may carry (not importable at load time)."""

    def __init__(self):
        self.value = 3


def test_checkpoint_with_non_tensor_objects(tmp_path):
    sd = _small_state_dict()
    torch.save(
        {
            "state_dict": {f"net.{k}": v for k, v in sd.items()},
            "hyper_parameters": argparse.Namespace(lr=2e-4, epochs=200),
            "callbacks": {"cb": _TrainingOnlyObject(), "dir": pathlib.PurePosixPath("/ckpt")},
        },
        tmp_path / "last.ckpt",
    )
    with pytest.raises(Exception):  # noqa: B017 - what the stand-ins work around
        torch.load(tmp_path / "last.ckpt", weights_only=True)
    got = moce_ir_state_dict(tmp_path / "last.ckpt")
    assert list(got) == list(sd)
    assert all(torch.equal(got[k], v) for k, v in sd.items())


def test_wrong_file_lists_differences(tmp_path):
    wrong = {
        "patch_embed.proj.weight": torch.zeros(48, 3, 3, 3),  # MoCE-IR (dim 48), not MoCE-IR-S
        "freq_embed.mlp.0.weight": torch.zeros(512, 256),
        "not_moce.weight": torch.zeros(2),
    }
    torch.save({"state_dict": {f"net.{k}": v for k, v in wrong.items()}}, tmp_path / "other.ckpt")
    with pytest.raises(WeightsError) as info:
        load_moce_ir(tmp_path / "other.ckpt")
    msg = str(info.value)
    assert not isinstance(info.value, MissingWeightsError)
    assert "other.ckpt" in msg
    assert "1260 missing key(s)" in msg and "freq_embed.high_conv.0.conv.weight" in msg
    assert "unexpected key(s), first: not_moce.weight" in msg
    assert "patch_embed.proj.weight expected (32, 3, 3, 3) got (48, 3, 3, 3)" in msg

    (tmp_path / "garbage.ckpt").write_bytes(b"this is not a checkpoint")
    with pytest.raises(WeightsError, match="garbage.ckpt"):
        load_moce_ir(tmp_path / "garbage.ckpt")


def test_missing_file(tmp_path):
    with pytest.raises(MissingWeightsError) as info:
        load_moce_ir(tmp_path / "last.ckpt")
    msg = str(info.value)
    assert "last.ckpt" in msg and "https://github.com/eduardzamfir/MoCE-IR" in msg
    assert "eduardzamfir/MoCE-IR" in PUBLISHED_AT


# ---------------------------------------------------------------------------------------- registered method


def test_registered_method(model, ckpt_dir):
    spec = get_spec("moce-ir")
    assert spec.modes == ("auto", "text")
    assert "routing_seed=0" in spec.description

    restorer = create_restorer("moce-ir", MethodOptions(weights_dir=ckpt_dir))
    assert isinstance(restorer, Restorer) and isinstance(restorer, MoCEIRRestorer)
    assert restorer.name == "moce-ir" and restorer.weights_label == "official"
    assert restorer.weights_files == [ckpt_dir / CHECKPOINT_NAME]
    assert restorer.routing_seed == 0 and restorer.model.noise_std == OFFICIAL_NOISE_STD
    _assert_same_weights(restorer.model, model)

    # The release folder itself as --weights-dir, with method args.
    inner = create_restorer(
        "moce-ir",
        MethodOptions(weights_dir=ckpt_dir / "MoCE_IR_S_CDD11", method_args={"routing_seed": "7", "noise_std": "0"}),
    )
    assert inner.weights_files == [ckpt_dir / CHECKPOINT_NAME]
    assert inner.routing_seed == 7 and inner.model.noise_std == 0.0


def test_registered_method_random_weights_and_args():
    restorer = create_restorer("moce-ir", MethodOptions(random_weights=True))
    assert restorer.weights_label == "random" and restorer.weights_files == []
    out = restorer.restore(fill.make_input((1, 3, 12, 10), seed=1))
    assert out.shape == (1, 3, 12, 10) and torch.isfinite(out).all()
    with pytest.raises(MethodArgError, match="unknown --method-arg flag"):
        create_restorer("moce-ir", MethodOptions(random_weights=True, method_args={"flag": "1"}))
    with pytest.raises(MethodArgError, match="noise_std"):
        create_restorer("moce-ir", MethodOptions(random_weights=True, method_args={"noise_std": "-1"}))
    with pytest.raises(MethodArgError):
        create_restorer("moce-ir", MethodOptions(random_weights=True, method_args={"routing_seed": "x"}))


def test_registered_method_without_weights(tmp_path):
    for opts in (MethodOptions(), MethodOptions(weights_dir=tmp_path), MethodOptions(weights=tmp_path / "x.ckpt")):
        with pytest.raises(MissingWeightsError) as info:
            create_restorer("moce-ir", opts)
        assert "https://github.com/eduardzamfir/MoCE-IR" in str(info.value)
    with pytest.raises(MissingWeightsError, match="x.ckpt"):
        create_restorer("moce-ir", MethodOptions(weights=tmp_path / "x.ckpt", weights_dir=tmp_path))
    with pytest.raises(MissingWeightsError, match="MoCE_IR_S_CDD11"):
        create_restorer("moce-ir", MethodOptions(weights_dir=tmp_path))
