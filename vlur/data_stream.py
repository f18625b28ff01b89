"""Training samples for `vlur.train`, streamed from the image files (DataLoader workers, one or many processes).

Every random draw is a function of counters, never of a worker's or a rank's RNG, so the samples do not depend
on the number of DataLoader workers or of processes:

* the order: epoch e visits the training pairs in the order of the permutation of numpy
  ``default_rng([seed, 1, e])`` (repeated cyclically when an epoch has more than n // B steps); step k of the epoch
  takes the B global positions k·B … k·B + B − 1 of that sequence — global step s = e·spe + k;
* the sample at global position ``pos`` (0 … B − 1) of step s draws its crop window, flip, negatives (and, with
  `permute_rgb`, the channel order) from ``default_rng([seed, 2, s, pos])``.

`GlobalOrderSampler` is a `DistributedSampler` (``set_epoch`` seeds the shuffle) that yields, for its rank r of W,
the keys ``(index, step, pos)`` of the positions pos ≡ r (mod W) of every global batch — the interleaving
``indices[r::W]`` of `DistributedSampler` applied to that global sequence — so that with a local batch of B / W
the W local batches of a step are exactly the global batch of a one-process run.  `TrainSet` is the map-style
dataset those keys index: it decodes the images of one sample from the files when asked (through
`vlur.train.PairData.image`, whose cache is bounded), so nothing is preloaded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler


class Key(NamedTuple):
    index: int  # training pair
    step: int  # global optimisation step (0-based)
    pos: int  # position in the global batch of that step


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffle of epoch `epoch` (`vlur.train.batch_indices` uses the same)."""
    return np.random.default_rng([seed, 1, epoch]).permutation(n)


def _pad_to(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    ph, pw = max(0, h - x.shape[-2]), max(0, w - x.shape[-1])
    if not (ph or pw):
        return x
    mode = "reflect" if ph < x.shape[-2] and pw < x.shape[-1] else "replicate"
    return F.pad(x.unsqueeze(0).float(), (0, pw, 0, ph), mode=mode).squeeze(0)


def sample_crops(data, idx: int, seed: int, step: int, pos: int, patch: int, negatives: int,
                 permute_rgb: bool = False):
    """(degraded 3×P×P, clear, negatives N×3×P×P or None, type) of training pair `idx` at global position `pos`
    of step `step`: a random P² crop (the same window on every image of the sample; smaller images are
    reflect-padded), a random horizontal flip (p = 0.5), N negatives = the same scene under N other degradation
    types (without replacement among those present; with replacement when fewer; the input itself when none),
    and with `permute_rgb` one random order of the colour channels, all drawn from default_rng([seed, 2, step,
    pos]).  `data` has `.samples`, `.by_scene` and `.image(path)` (`vlur.train.PairData`)."""
    s = data.samples[idx]
    rng = np.random.default_rng([seed, 2, step, pos])
    others = [t for t in data.by_scene[s.name] if t != s.type]
    if negatives:
        if len(others) >= negatives:
            picked = [others[j] for j in rng.choice(len(others), negatives, replace=False)]
        elif others:
            picked = [others[j] for j in rng.choice(len(others), negatives, replace=True)]
        else:
            picked = [s.type] * negatives
    else:
        picked = []
    imgs = [data.image(s.degraded), data.image(s.clear)] + [data.image(data.by_scene[s.name][t]) for t in picked]
    h, w = imgs[0].shape[-2:]
    for im in imgs:
        if im.shape[-2:] != (h, w):
            raise ValueError(f"scene {s.name}: images differ in size ({tuple(im.shape[-2:])} vs {(h, w)})")
    imgs = [_pad_to(im, patch, patch) for im in imgs]
    hh, ww = imgs[0].shape[-2:]
    top = int(rng.integers(0, hh - patch + 1))
    left = int(rng.integers(0, ww - patch + 1))
    flip = bool(rng.random() < 0.5)
    order = torch.from_numpy(rng.permutation(3)) if permute_rgb else None
    crops = []
    for im in imgs:
        c = im[:, top:top + patch, left:left + patch].float() / 255.0
        c = c.flip(-1) if flip else c
        crops.append(c[order] if order is not None else c)
    return crops[0], crops[1], (torch.stack(crops[2:]) if negatives else None), s.type


def collate(items: Sequence[tuple]):
    """(degraded B×3×P×P, clear, negatives B×N×3×P×P or None, types) from `sample_crops` results (or from
    `TrainSet` items, whose extra last element, the step, is returned as a list after the types)."""
    deg = torch.stack([it[0] for it in items])
    clr = torch.stack([it[1] for it in items])
    neg = torch.stack([it[2] for it in items]) if items[0][2] is not None else None
    types = [it[3] for it in items]
    if len(items[0]) > 4:
        return deg, clr, neg, types, [it[4] for it in items]
    return deg, clr, neg, types


class TrainSet(Dataset):
    """Map-style dataset indexed by `Key`s; decodes the sample's images from the files on demand."""

    def __init__(self, data, seed: int, patch: int, negatives: int, permute_rgb: bool = False):
        self.data, self.seed, self.patch, self.negatives, self.permute_rgb = data, seed, patch, negatives, permute_rgb

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: Key):
        idx, step, pos = key
        return (*sample_crops(self.data, idx, self.seed, step, pos, self.patch, self.negatives, self.permute_rgb),
                step)


class GlobalOrderSampler(DistributedSampler):
    """This rank's share of every global batch, as `Key`s, for the steps of one epoch (see the module docstring).

    `set_epoch(e)` selects the epoch (its shuffle is seeded by (seed, e)); `set_start(step)` skips the steps before
    `step` (resuming in the middle of an epoch).  `total_steps` ends the last epoch early.  Within an epoch the
    ranks' samples are disjoint as long as the epoch visits each pair at most once (steps · B ≤ n)."""

    def __init__(self, dataset: Dataset, n: int, batch: int, steps_per_epoch: int, seed: int, total_steps: int,
                 num_replicas: int = 1, rank: int = 0):
        if batch % num_replicas:
            raise ValueError(f"the global batch {batch} is not a multiple of the number of processes {num_replicas}")
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.n, self.batch, self.spe, self.total = n, batch, steps_per_epoch, total_steps
        self.start = 0

    def set_start(self, step: int) -> None:
        self.start = step

    def steps(self) -> range:
        first = max(self.start, self.epoch * self.spe)
        return range(first, max(first, min((self.epoch + 1) * self.spe, self.total)))

    def __iter__(self) -> Iterator[Key]:
        perm = epoch_order(self.n, self.seed, self.epoch)
        for step in self.steps():
            k = step - self.epoch * self.spe
            for pos in range(self.rank, self.batch, self.num_replicas):
                yield Key(int(perm[(k * self.batch + pos) % self.n]), step, pos)

    def __len__(self) -> int:
        return len(self.steps()) * (self.batch // self.num_replicas)
