"""VL-UR training at scale: the global-order sampler, streamed samples, the all-reduced loss, AMP, the paper recipe,
and `torchrun` with 2 gloo processes (same trajectory as one process; exact resume after a kill)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from conftest import make_layout
from torch.utils.data import DataLoader

from vlur import data_stream as DS
from vlur import distributed as D
from vlur import train
from vlur.classifier import TINY_CLIP, SceneClassifier

ROOT = Path(__file__).resolve().parents[1]
# a 3-step run, one step per epoch (so the history holds every step's loss), global batch 4
COMMON = ["--channel", "8", "--heads", "2", "--patch", "36", "--batch", "4", "--negatives", "2", "--seed", "3",
          "--epoch-steps", "1", "--steps", "3", "--val-crop", "0", "--val-max", "2", "--no-progress",
          "--lr-decay-every", "1"]
#: 2 processes × batch 2 against 1 process × batch 4: relative difference of every logged loss term (measured
#: 2e-7), and |w₂ − w₁| / |w₁ − w₀| over all weights, w₀ the initial ones (measured 1.7e-3: Adam divides each
#: gradient entry by its own magnitude, so the float-order noise of near-zero entries reaches the weights at ~lr)
LOSS_RTOL = 1e-4
WEIGHT_RTOL = 1e-2
TORCHRUN_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_layout(tmp_path_factory.mktemp("vlur_ddp") / "data", n=3, size=(40, 46))


@pytest.fixture(scope="module")
def sc_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    sc = SceneClassifier.zero_shot(TINY_CLIP, "none")
    path = tmp_path_factory.mktemp("sc") / "sc.pt"
    torch.save(sc.to_checkpoint({"steps": 0}), path)
    return path


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


# ----------------------------------------------------------------------------------------------------------
# sampler and streamed data


def _keys(n, batch, spe, total, world, rank, epoch, start=0):
    s = DS.GlobalOrderSampler(range(n), n, batch, spe, seed=7, total_steps=total, num_replicas=world, rank=rank)
    s.set_epoch(epoch)
    s.set_start(start)
    keys = list(s)
    assert len(keys) == len(s)
    return keys


def test_sampler_gives_each_rank_a_disjoint_interleaved_share_of_the_global_batch():
    n, batch, spe, total = 10, 4, 2, 5  # 3 epochs, the last one cut to 1 step
    assert isinstance(DS.GlobalOrderSampler(range(n), n, batch, spe, 7, total), torch.utils.data.DistributedSampler)
    for epoch in range(3):
        ranks = [_keys(n, batch, spe, total, 2, r, epoch) for r in (0, 1)]
        steps = range(epoch * spe, min((epoch + 1) * spe, total))
        assert len(ranks[0]) == len(ranks[1]) == 2 * len(steps)
        # disjoint samples (an epoch of 2 steps × 4 visits 8 of the 10 pairs once) ...
        assert not {k.index for k in ranks[0]} & {k.index for k in ranks[1]}
        for r, keys in enumerate(ranks):
            assert all(k.pos % 2 == r for k in keys)  # rank r: positions r, r + 2 of every global batch
        # ... whose union, step by step, is the one-process global batch (the same order as `batch_indices`)
        for s in steps:
            glob = sorted((k for keys in ranks for k in keys if k.step == s), key=lambda k: k.pos)
            assert [k.index for k in glob] == train.batch_indices(n, batch, 7, s, spe)
            assert [k for k in _keys(n, batch, spe, total, 1, 0, epoch) if k.step == s] == glob
    # the epoch seeds the shuffle; set_start resumes in the middle of an epoch
    assert [k.index for k in _keys(n, batch, spe, total, 2, 0, 0)] != [k.index for k in _keys(n, batch, spe, total,
                                                                                                 2, 0, 1)]
    assert _keys(n, batch, spe, total, 2, 1, 1, start=3) == _keys(n, batch, spe, total, 2, 1, 1)[2:]
    with pytest.raises(ValueError, match="not a multiple"):
        DS.GlobalOrderSampler(range(n), n, 3, spe, 7, total, num_replicas=2, rank=0)


def test_streamed_samples_in_a_worker_equal_make_batch_and_the_cache_is_bounded(data):
    pairs = train.PairData(data, cache_bytes=0)  # no cache: every image decoded from its file when needed
    n, batch, spe = len(pairs), 3, 2
    sampler = DS.GlobalOrderSampler(range(n), n, batch, spe, seed=5, total_steps=4)
    ds = DS.TrainSet(pairs, seed=5, patch=36, negatives=2, permute_rgb=True)
    loader = DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=1, collate_fn=DS.collate)
    sampler.set_epoch(1)  # steps 2 and 3
    got = list(loader)
    assert [b[4] for b in got] == [[2] * 3, [3] * 3]
    for step, (deg, clr, neg, types, _) in zip((2, 3), got):
        want = train.make_batch(pairs, train.batch_indices(n, batch, 5, step, spe), 5, step, 36, 2, permute_rgb=True)
        assert types == want[3] and neg.shape == (3, 2, 3, 36, 36)
        assert torch.equal(deg, want[0]) and torch.equal(clr, want[1]) and torch.equal(neg, want[2])
    assert not pairs._cache and pairs._cached_bytes == 0
    one = 3 * 40 * 46  # bytes of one decoded image
    small = train.PairData(data, cache_bytes=2 * one)
    for s in small.samples[:5]:
        small.image(s.degraded)
    assert len(small._cache) == 2 and small._cached_bytes == 2 * one  # least recently used images left
    assert list(small._cache) == [s.degraded for s in small.samples[3:5]]


def test_cdrl_global_equals_the_cdrl_loss_over_the_global_batch(monkeypatch):
    from vlur.losses import CDRL, vgg16_relu3_3

    torch.manual_seed(0)
    cdrl = CDRL(features=vgg16_relu3_3().eval().requires_grad_(False), source="test")
    out = torch.rand(2, 3, 20, 20, requires_grad=True)
    gt, inp, neg = torch.rand(2, 3, 20, 20), torch.rand(2, 3, 20, 20), torch.rand(2, 2, 3, 20, 20)
    want = cdrl(out, gt, inp, neg)
    (g_want,) = torch.autograd.grad(want, out)
    got = D.cdrl_global(cdrl, out, gt, inp, neg, D.DistEnv())
    (g_got,) = torch.autograd.grad(got, out)
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-6)
    torch.testing.assert_close(g_got, g_want, rtol=1e-4, atol=1e-9)
    # two ranks with one sample each (the all-reduce simulated): each rank's value is the global CDRL, and the
    # mean of the ranks' gradients (what DDP applies) is the gradient of the global CDRL
    halves = (slice(0, 1), slice(1, 2))
    parts = [D.cdrl_parts(cdrl, out[h], gt[h], inp[h], neg[h]) for h in halves]
    summed = sum(torch.cat(p).detach().double() for p in parts)
    monkeypatch.setattr(D, "_reduce", lambda t, env, op=None: summed.clone())
    env = D.DistEnv(world=2, rank=0)
    vals = [D.cdrl_global(cdrl, out[h], gt[h], inp[h], neg[h], env) for h in halves]
    for v in vals:
        assert float(v.detach()) == pytest.approx(float(want.detach()), rel=1e-6)
    (g_ddp,) = torch.autograd.grad((vals[0] + vals[1]) / 2, out)
    torch.testing.assert_close(g_ddp, g_want, rtol=1e-4, atol=1e-9)


# ----------------------------------------------------------------------------------------------------------
# options


def test_paper_recipe_presets_defaults_that_explicit_options_override(tmp_path, monkeypatch):
    a = train.parse_args(["--recipe", "paper", "--out", str(tmp_path)])
    assert (a.arch, a.channel, a.heads, a.attention) == ("vlur", 32, 8, "pgca")
    assert (a.lr, a.schedule, a.lr_gamma, a.lr_decay_epochs, a.epochs, a.steps) == (1e-3, "step", 0.5, 30, 200, None)
    assert (a.patch, a.batch, a.negatives, a.cdrl_every, a.smooth_l1_beta, a.val_fraction) == (256, 4, 10, 1, 1.0, 0)
    b = train.parse_args(["--recipe", "paper", "--out", str(tmp_path), "--batch", "8", "--steps", "10"])
    assert (b.batch, b.steps, b.negatives) == (8, 10, 10)
    assert train.parse_args(["--out", str(tmp_path)]).channel == 32 and train.parse_args(
        ["--out", str(tmp_path)]).negatives == 3  # no recipe: the usual defaults
    from vlur.losses import LOSS_WEIGHTS, MSSSIM_WEIGHTS

    assert LOSS_WEIGHTS == {"smooth_l1": 0.6, "ms_ssim": 0.3, "cdrl": 0.1}
    assert MSSSIM_WEIGHTS == (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
    monkeypatch.delenv("VLUR_VGG16", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(SystemExit, match="--vgg FILE"):
        train._main(train.parse_args(["--recipe", "paper", "--out", str(tmp_path / "p")]))


def _run(data: Path, sc: Path, out: Path, *extra: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert train.main(["--data", str(data), "--out", str(out), "--sc", str(sc), "--threads", "1", *COMMON,
                           *extra]) == 0


def test_amp_fp16_checkpoints_the_grad_scaler_and_resumes_exactly_mid_epoch(data, sc_file, tmp_path):
    # one epoch of 2 steps, CDRL on step 0 only (fp16 is slow on the CPU); the part run stops after step 1
    amp = ["--amp", "fp16", "--batch", "2", "--epoch-steps", "2", "--cdrl-every", "2", "--steps", "2"]
    _run(data, sc_file, tmp_path / "full", *amp)
    _run(data, sc_file, tmp_path / "part", *amp[:-1], "1")
    part1 = _load(tmp_path / "part" / "last.pt")["train_state"]
    assert part1["sampler"] == {"epoch": 0, "step_in_epoch": 1, "seed": 3, "global_batch": 2, "world_size": 1}
    assert part1["scaler"]["scale"] > 0 and part1["scheduler"]["next_step"] == 1 and len(part1["rng"]) == 1
    _run(data, sc_file, tmp_path / "part", *amp, "--resume")
    full, part = _load(tmp_path / "full" / "last.pt"), _load(tmp_path / "part" / "last.pt")
    assert full["meta"]["settings"]["amp"] == "fp16" and full["train_state"]["scaler"]["_growth_tracker"] == 2
    assert part["train_state"]["scaler"] == full["train_state"]["scaler"]
    assert all(torch.equal(v, part["state_dict"][k]) for k, v in full["state_dict"].items())
    assert "at step 1 (epoch 0, step 1 of it" in (tmp_path / "part" / "train.log").read_text()
    with pytest.raises(SystemExit, match="amp saved 'fp16' now 'bf16'"):
        train._main(train.parse_args(["--data", str(data), "--out", str(tmp_path / "part"), "--sc", str(sc_file),
                                      "--threads", "1", *COMMON, "--amp", "bf16", "--batch", "2", "--steps", "3",
                                      "--resume"]))


# ----------------------------------------------------------------------------------------------------------
# torchrun, 2 gloo processes


def _torchrun(data: Path, sc: Path, out: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "vlur.train", "--data", str(data), "--out", str(out), "--sc", str(sc), "--workers", "1", *COMMON, *extra]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=TORCHRUN_TIMEOUT_S)


needs_gloo = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="no gloo backend")


@pytest.fixture(scope="module")
def ddp_runs(data, sc_file, tmp_path_factory) -> dict[str, Path]:
    """One process × batch 4, torchrun 2 × 2, and a torchrun 2 × 2 run killed after step 2 then resumed."""
    base = tmp_path_factory.mktemp("ddp_runs")
    _run(data, sc_file, base / "one")
    r = _torchrun(data, sc_file, base / "two")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    killed = _torchrun(data, sc_file, base / "killed", env={train.KILL_ENV: "2"})
    assert killed.returncode != 0 and not (base / "killed" / "model.pt").exists()
    assert _load(base / "killed" / "last.pt")["train_state"]["step"] == 1  # step 2 was done, then lost
    r = _torchrun(data, sc_file, base / "killed", "--resume")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return {"one": base / "one", "two": base / "two", "resumed": base / "killed"}


@needs_gloo
def test_two_gloo_processes_follow_the_one_process_trajectory(ddp_runs, sc_file):
    one, two = _load(ddp_runs["one"] / "model.pt"), _load(ddp_runs["two"] / "model.pt")
    assert one["meta"]["world_size"] == 1 and two["meta"]["world_size"] == 2 and two["meta"]["steps"] == 3
    h1, h2 = one["meta"]["history"], two["meta"]["history"]
    assert len(h1) == len(h2) == 3
    for a, b in zip(h1, h2):
        assert a["lr"] == b["lr"]
        for k in ("loss", "smooth_l1", "ms_ssim", "cdrl"):
            assert b[k] == pytest.approx(a[k], rel=LOSS_RTOL), (a["step"], k)
    assert h1[0]["loss"] != h1[2]["loss"]  # the trajectory moves
    from vlur.classifier import load_classifier

    init = train.build_model("vlur", 8, 2, "pgca", load_classifier(sc_file).text_features.detach(), 3).state_dict()
    w1, w2 = one["state_dict"], two["state_dict"]
    assert set(w1) == set(w2) == set(init)
    apart = sum(float((w2[k] - w1[k]).double().pow(2).sum()) for k in w1) ** 0.5
    moved = sum(float((w1[k] - init[k]).double().pow(2).sum()) for k in w1) ** 0.5
    assert moved > 0.1 and apart < WEIGHT_RTOL * moved, (apart, moved)
    log = (ddp_runs["two"] / "train.log").read_text()
    assert log.count(" start: ") == 1 and "2 process(es) (gloo, cpu), global batch 4" in log  # rank 0 logs
    assert "steps/s (2 processes)" in log
    ts = _load(ddp_runs["two"] / "last.pt")["train_state"]
    assert ts["sampler"]["world_size"] == 2 and len(ts["rng"]) == 2


@needs_gloo
def test_two_gloo_processes_resume_after_a_kill_on_the_same_trajectory(ddp_runs):
    two, resumed = _load(ddp_runs["two"] / "model.pt"), _load(ddp_runs["resumed"] / "model.pt")
    assert [h["loss"] for h in resumed["meta"]["history"]] == [h["loss"] for h in two["meta"]["history"]]
    for k, v in two["state_dict"].items():
        assert torch.equal(resumed["state_dict"][k], v), k
    assert "resumed from" in (log := (ddp_runs["resumed"] / "train.log").read_text()) and "RNG state restored" in log
