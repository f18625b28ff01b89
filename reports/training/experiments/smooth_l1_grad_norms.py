"""Gradient norm of each loss term with respect to the restorer's output (2026-11-26), quoted in
reports/training/README.md: 3 training batches, the first demo restorer ($VLUR_PROBE_INIT, e.g.
`git show 4647fa4:vlur/weights/vlur_demo.pt > /tmp/v1.pt`), weighted terms. Output: smooth_l1_grad_norms.log.
From the repository root:

    VLUR_PROBE_INIT=/tmp/v1.pt PYTHONPATH=. python reports/training/experiments/smooth_l1_grad_norms.py
"""
import os
import sys

import torch
import torch.nn.functional as F

from harness.data.mini import ensure
from vlur import train as T
from vlur.losses import VLURLoss, msssim_loss

torch.manual_seed(0)
torch.set_num_threads(2)
sc, _ = T.load_sc("vlur/weights/vlur_sc_demo.pt", 0, print)
model = T.build_model("vlur", 16, 8, "pgca", sc.text_features.detach(), 0)
init = os.environ.get("VLUR_PROBE_INIT") or sys.exit("set VLUR_PROBE_INIT to the first demo restorer")
model.load_state_dict(torch.load(init, map_location="cpu", weights_only=True)["state_dict"])
runner = T.ModelRunner("vlur", model, None)
data = T.PairData(ensure("train"))
crit = VLURLoss(warn=False)
for step in range(3):
    idx = T.batch_indices(len(data), 4, 0, step, 100)
    x, y, neg, types = T.make_batch(data, idx, 0, step, 128, 1)
    pred = runner(x, types)
    terms = {"sl1_b1": 0.6 * F.smooth_l1_loss(pred, y), "l1": 0.6 * F.l1_loss(pred, y),
             "sl1_b0.01": 0.6 * F.smooth_l1_loss(pred, y, beta=0.01),
             "msssim": 0.3 * msssim_loss(pred, y), "cdrl": 0.1 * crit.cdrl(pred, y, x, neg)}
    out = {}
    for k, v in terms.items():
        g = torch.autograd.grad(v, pred, retain_graph=True)[0]
        out[k] = (float(v), float(g.norm()))
    print({k: f"val {a:.4f} gnorm {b:.2e}" for k, (a, b) in out.items()})
