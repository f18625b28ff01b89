"""Gradient norm of each loss term with respect to the restorer's output (2026-11-26), quoted in
reports/training/README.md: 3 training batches, the first demo restorer, weighted terms.

Output: reports/training/experiments/smooth_l1_grad_norms.log. The first demo restorer is
`git show 4647fa4:vlur/weights/vlur_demo.pt > /tmp/v1.pt`; pass it with --init or as $VLUR_PROBE_INIT. From the
repository root:

    VLUR_PROBE_INIT=/tmp/v1.pt python -m experiments.smooth_l1_grad_norms
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from harness import cli

DEMO_SC = Path(__file__).resolve().parents[1] / "vlur" / "weights" / "vlur_sc_demo.pt"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.smooth_l1_grad_norms",
                                 description=cli.description(__doc__), formatter_class=cli.Formatter)
    ap.add_argument("--init", default=os.environ.get("VLUR_PROBE_INIT"),
                    help="the first demo restorer (default: $VLUR_PROBE_INIT); without it, the seeded init")
    ap.add_argument("--sc", type=Path, default=DEMO_SC, help="scene classifier giving the text features")
    ap.add_argument("--train", type=Path, default=None, help="training data (default: the cdd11-mini train split)")
    ap.add_argument("--batches", type=cli.positive_int, default=3)
    ap.add_argument("--batch", type=cli.positive_int, default=4)
    ap.add_argument("--patch", type=cli.positive_int, default=128)
    ap.add_argument("--threads", type=cli.positive_int, default=2)
    a = ap.parse_args(argv)

    from harness.data.mini import ensure
    from vlur import train as T
    from vlur.losses import VLURLoss, msssim_loss

    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    sc, _ = T.load_sc(str(a.sc), 0, print)
    model = T.build_model("vlur", 16, 8, "pgca", sc.text_features.detach(), 0)
    if a.init:
        model.load_state_dict(torch.load(a.init, map_location="cpu", weights_only=True)["state_dict"])
    else:
        print("note: no --init / $VLUR_PROBE_INIT: the seeded init, not the first demo restorer", file=sys.stderr)
    runner = T.ModelRunner("vlur", model, None)
    data = T.PairData(a.train or ensure("train"))
    crit = VLURLoss(warn=False)
    for step in range(a.batches):
        idx = T.batch_indices(len(data), a.batch, 0, step, 100)
        x, y, neg, types = T.make_batch(data, idx, 0, step, a.patch, 1)
        pred = runner(x, types)
        terms = {"sl1_b1": 0.6 * F.smooth_l1_loss(pred, y), "l1": 0.6 * F.l1_loss(pred, y),
                 "sl1_b0.01": 0.6 * F.smooth_l1_loss(pred, y, beta=0.01),
                 "msssim": 0.3 * msssim_loss(pred, y), "cdrl": 0.1 * crit.cdrl(pred, y, x, neg)}
        out = {}
        for k, v in terms.items():
            g = torch.autograd.grad(v, pred, retain_graph=True)[0]
            out[k] = (float(v.detach()), float(g.norm()))
        print({k: f"val {v:.4f} gnorm {g:.2e}" for k, (v, g) in out.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
