"""Probe of SmoothL1's beta (2026-11-26): the numbers quoted in reports/training/README.md.

    PYTHONPATH=. python reports/training/experiments/smooth_l1_beta_probe.py BETA STEPS LR [scratch]

Trains a C = 16 VL-UR restorer (from the first demo restorer, or from its seeded init with `scratch`) for
STEPS steps on the cdd11-mini train split (batch 4, 128 px patches, 1 negative, CDRL on one step in 4,
loss 0.6·SmoothL1(beta) + 0.3·(1 − MS-SSIM) + 0.1·CDRL, Adam at a constant LR, one thread), and prints
the text-mode PSNR of the outputs and inputs on the first 3 test scenes of every type before and after.
The logs: smooth_l1_beta_{1,0.01}_{finetune,scratch}.log (run two at a time, one per core).
The first demo restorer is `git show 4647fa4:vlur/weights/vlur_demo.pt`; pass its path as $VLUR_PROBE_INIT.
"""
import os
import sys
import time

import torch
import torch.nn.functional as F

from harness.data.mini import ensure
from vlur import train as T
from vlur.losses import VLURLoss, msssim_loss

beta, steps, lr = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
scratch = len(sys.argv) > 4 and sys.argv[4] == "scratch"
torch.manual_seed(0)
torch.set_num_threads(1)
sc, _ = T.load_sc("vlur/weights/vlur_sc_demo.pt", 0, lambda *a, **k: None)
model = T.build_model("vlur", 16, 8, "pgca", sc.text_features.detach(), 0)
if not scratch:
    init = os.environ.get("VLUR_PROBE_INIT") or sys.exit("set VLUR_PROBE_INIT to the first demo restorer")
    model.load_state_dict(torch.load(init, map_location="cpu", weights_only=True)["state_dict"])
runner = T.ModelRunner("vlur", model, None)
data = T.PairData(ensure("train"))
test = T.PairData(ensure("test"))
val = T.pick_val(test, 33)
crit = VLURLoss(warn=False)
print("before", T.validate(runner, test, val, 0), flush=True)
opt = torch.optim.Adam(model.parameters(), lr=lr)
t0 = time.time()
for step in range(steps):
    idx = T.batch_indices(len(data), 4, 1, step, 100)
    x, y, neg, types = T.make_batch(data, idx, 1, step, 128, 1)
    pred = runner(x, types)
    loss = 0.6 * F.smooth_l1_loss(pred, y, beta=beta) + 0.3 * msssim_loss(pred, y)
    if step % 4 == 0:
        loss = loss + 0.1 * crit.cdrl(pred, y, x, neg)
    opt.zero_grad()
    loss.backward()
    opt.step()
print("steps", steps, "time", round(time.time() - t0), flush=True)
print("after", T.validate(runner, test, val, 0), flush=True)
