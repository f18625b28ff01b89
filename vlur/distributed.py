"""Multi-process training support for `vlur.train` (``torchrun --nproc_per_node N -m vlur.train ...``).

* `setup`: when ``WORLD_SIZE`` > 1 (torchrun sets it) joins the process group — NCCL on CUDA (device
  ``cuda:LOCAL_RANK``), gloo on the CPU; otherwise a one-process `DistEnv` and no process group.
* `loss_terms`: the training loss of one step with the global batch split over the processes.  DDP averages the
  gradients over the ranks, so every term must be a mean over the local batch of per-sample quantities for the
  result to equal the one-process loss over the global batch: SmoothL1 (mean over all values) and 1 − MS-SSIM
  (mean of per-image values) are; CDRL is not — each of its three layer terms is a ratio of two batch means,
  L1(φ(out), φ(gt)) / (λ·L1(φ(out), φ(in)) + λ·Σ_j L1(φ(out), φ(neg_j)) + ε).  `cdrl_global` all-reduces the
  numerators P and denominators D (detached) and differentiates the local surrogate p/D − P·d/D², whose
  gradient averaged over the ranks is the gradient of P/D (the quotient rule); its value is set to P/D.  So the
  loss and its gradient are those of the one-process run over the global batch (up to floating-point order).
  Under ``--amp`` the model output and the VGG-16 features are computed in the autocast dtype and every loss
  term in float32.
* RNG state: every random draw of the training loop is a function of (seed, step) (see `vlur.data_stream`);
  the torch CPU (and CUDA) generator states of every rank are still saved with each checkpoint and restored on
  ``--resume`` with the same number of processes.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F

from vlur.losses import CDRL_EPS, VGG_SLICES, msssim_loss


@dataclass(frozen=True)
class DistEnv:
    world: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: str = "cpu") -> DistEnv:
    """Joins the process group when WORLD_SIZE > 1; the device is `device`, ``cuda:LOCAL_RANK`` for CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = torch.device(device)
    if world <= 1:
        return DistEnv(device=dev)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistEnv(world, rank, local_rank, dev, backend)


def teardown(env: DistEnv) -> None:
    if env.enabled and dist.is_initialized():
        dist.destroy_process_group()


def _reduce(t: torch.Tensor, env: DistEnv, op=dist.ReduceOp.SUM) -> torch.Tensor:
    if env.enabled:
        t = t.to(env.device) if env.backend == "nccl" else t.cpu()
        dist.all_reduce(t, op=op)
    return t


def all_mean(values: list[float], env: DistEnv) -> list[float]:
    """The mean over the ranks of each value (NaN stays NaN)."""
    if not env.enabled:
        return list(values)
    t = _reduce(torch.tensor(values, dtype=torch.float64), env) / env.world
    return [float(v) for v in t.cpu()]


def any_rank(flag: bool, env: DistEnv) -> bool:
    if not env.enabled:
        return flag
    return bool(_reduce(torch.tensor([1.0 if flag else 0.0]), env, dist.ReduceOp.MAX).item() > 0)


def barrier(env: DistEnv) -> None:
    if env.enabled:
        dist.barrier()


def rng_state(env: DistEnv) -> dict:
    """This rank's generator states (call on every rank; `gather_rng_states` collects them)."""
    state = {"torch": torch.get_rng_state()}
    if env.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(env.device)
    return state


def gather_rng_states(env: DistEnv) -> list[dict]:
    """Every rank's `rng_state`, in rank order (a collective: every rank calls it)."""
    mine = rng_state(env)
    if not env.enabled:
        return [mine]
    out: list = [None] * env.world
    dist.all_gather_object(out, mine)
    return [{k: v.cpu() for k, v in s.items()} for s in out]


def set_rng_state(states: list[dict] | None, env: DistEnv) -> bool:
    """Restores this rank's saved generator states; False when none was saved for this number of processes."""
    if not states or len(states) != env.world:
        return False
    s = states[env.rank]
    torch.set_rng_state(s["torch"])
    if "cuda" in s and env.device.type == "cuda":
        torch.cuda.set_rng_state(s["cuda"], env.device)
    return True


def cdrl_parts(cdrl, out: torch.Tensor, gt: torch.Tensor, inp: torch.Tensor,
               negatives: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per VGG layer, the numerator and denominator of `vlur.losses.CDRL` (3-vectors, float32) over this batch."""
    n = 0 if negatives is None else negatives.shape[1]
    lam = 1.0 / (n + 1)
    b = out.shape[0]
    f_out = cdrl.features(out)
    with torch.no_grad():
        stack = [gt, inp] + [negatives[:, j] for j in range(n)]
        f_all = [f.split(b) for f in cdrl.features(torch.cat(stack).to(out.dtype))]
    pos, den = [], []
    for i in range(len(VGG_SLICES)):
        fo = f_out[i].float()
        pos.append(F.l1_loss(fo, f_all[i][0].float()))
        d = lam * F.l1_loss(fo, f_all[i][1].float())
        for j in range(n):
            d = d + lam * F.l1_loss(fo, f_all[i][2 + j].float())
        den.append(d)
    return torch.stack(pos), torch.stack(den)


def cdrl_global(cdrl, out: torch.Tensor, gt: torch.Tensor, inp: torch.Tensor, negatives: torch.Tensor | None,
                env: DistEnv, autocast=contextlib.nullcontext) -> torch.Tensor:
    """CDRL over the global batch (see the module docstring); the value is the global CDRL on every rank."""
    with autocast():
        pos, den = cdrl_parts(cdrl, out, gt, inp, negatives)
    stats = _reduce(torch.cat([pos, den]).detach().double().clone(), env) / env.world
    stats = stats.to(pos.device)
    p_all, d_all = stats[:3].float(), stats[3:].float() + CDRL_EPS
    value = (p_all / d_all).mean()
    surrogate = (pos / d_all - p_all * den / d_all ** 2).mean()
    return surrogate + (value - surrogate).detach()


def loss_terms(criterion, pred: torch.Tensor, gt: torch.Tensor, inp: torch.Tensor,
               negatives: torch.Tensor | None, with_cdrl: bool, env: DistEnv,
               autocast=contextlib.nullcontext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """`vlur.losses.VLURLoss` of this rank's share of the global batch (float32 terms; see the module docstring).
    Returns (this rank's total to back-propagate, {term: local value tensor}); the CDRL entry is already global."""
    pred32 = pred.float()
    terms = {
        "smooth_l1": F.smooth_l1_loss(pred32, gt, beta=criterion.smooth_l1_beta),
        "ms_ssim": msssim_loss(pred32, gt),
    }
    if with_cdrl:
        terms["cdrl"] = cdrl_global(criterion.cdrl, pred, gt, inp, negatives, env, autocast)
    total = sum(criterion.weights[k] * v for k, v in terms.items())
    return total, terms
