"""Probe of SmoothL1's beta (2026-11-26): the numbers quoted in reports/training/README.md.

Trains a C = 16 VL-UR restorer (from the first demo restorer, or from its seeded init with `scratch`) for
STEPS steps on the cdd11-mini train split (batch 4, 128 px patches, 1 negative, CDRL on one step in 4,
loss 0.6·SmoothL1(beta) + 0.3·(1 − MS-SSIM) + 0.1·CDRL, Adam at a constant LR, one thread), and prints
the text-mode PSNR of the outputs and inputs on the first 3 test scenes of every type before and after.

The logs: reports/training/experiments/smooth_l1_beta_{1,0.01}_{finetune,scratch}.log (run two at a time, one
per core). The first demo restorer is `git show 4647fa4:vlur/weights/vlur_demo.pt`; pass its path with
--init or as $VLUR_PROBE_INIT. From the repository root:

    python -m experiments.smooth_l1_beta_probe BETA STEPS LR [scratch]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from harness import cli

DEMO_SC = Path(__file__).resolve().parents[1] / "vlur" / "weights" / "vlur_sc_demo.pt"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.smooth_l1_beta_probe",
                                 description=cli.description(__doc__), formatter_class=cli.Formatter)
    ap.add_argument("beta", type=float, help="SmoothL1 beta")
    ap.add_argument("steps", type=int, help="training steps")
    ap.add_argument("lr", type=float, help="Adam learning rate (constant)")
    ap.add_argument("start", nargs="?", default="finetune", choices=("finetune", "scratch"),
                    help="finetune the first demo restorer (--init) or train from the seeded init")
    ap.add_argument("--init", default=os.environ.get("VLUR_PROBE_INIT"),
                    help="the first demo restorer (default: $VLUR_PROBE_INIT); needed unless `scratch`")
    ap.add_argument("--sc", type=Path, default=DEMO_SC, help="scene classifier giving the text features")
    ap.add_argument("--train", type=Path, default=None, help="training data (default: the cdd11-mini train split)")
    ap.add_argument("--test", type=Path, default=None, help="validation data (default: the cdd11-mini test split)")
    ap.add_argument("--val-images", type=cli.positive_int, default=33,
                    help="validation images (round-robin over types)")
    ap.add_argument("--batch", type=cli.positive_int, default=4)
    ap.add_argument("--patch", type=cli.positive_int, default=128)
    ap.add_argument("--threads", type=cli.positive_int, default=1)
    a = ap.parse_args(argv)
    if a.start == "finetune" and not a.init:
        ap.error("set --init or $VLUR_PROBE_INIT to the first demo restorer (or pass `scratch`)")

    from harness.data.mini import ensure
    from vlur import train as T
    from vlur.losses import VLURLoss, msssim_loss

    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    sc, _ = T.load_sc(str(a.sc), 0, lambda *_a, **_k: None)
    model = T.build_model("vlur", 16, 8, "pgca", sc.text_features.detach(), 0)
    if a.start == "finetune":
        model.load_state_dict(torch.load(a.init, map_location="cpu", weights_only=True)["state_dict"])
    runner = T.ModelRunner("vlur", model, None)
    data = T.PairData(a.train or ensure("train"))
    test = T.PairData(a.test or ensure("test"))
    val = T.pick_val(test, a.val_images)
    crit = VLURLoss(warn=False)
    print("before", T.validate(runner, test, val, 0), flush=True)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    t0 = time.time()
    for step in range(a.steps):
        idx = T.batch_indices(len(data), a.batch, 1, step, 100)
        x, y, neg, types = T.make_batch(data, idx, 1, step, a.patch, 1)
        pred = runner(x, types)
        loss = 0.6 * F.smooth_l1_loss(pred, y, beta=a.beta) + 0.3 * msssim_loss(pred, y)
        if step % 4 == 0:
            loss = loss + 0.1 * crit.cdrl(pred, y, x, neg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    print("steps", a.steps, "time", round(time.time() - t0), flush=True)
    print("after", T.validate(runner, test, val, 0), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
