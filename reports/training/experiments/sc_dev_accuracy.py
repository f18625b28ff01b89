"""Accuracy of scene-classifier checkpoints on a CDD-11-layout folder (the china/flower dev set)."""
import sys
from pathlib import Path
import numpy as np, torch
from PIL import Image
from harness.cdd11 import TYPES
from vlur.classifier import load_classifier
torch.set_num_threads(1)
root = Path(sys.argv[1])
for ck in sys.argv[2:]:
    sc = load_classifier(ck)
    hit = tot = 0
    per = {}
    for t in TYPES:
        files = sorted((root / t).glob("*.png"))
        x = torch.stack([torch.from_numpy(np.asarray(Image.open(f).convert("RGB"))).permute(2, 0, 1) for f in files]).float() / 255
        pred = sc.classify(x)
        h = sum(p == t for p in pred)
        per[t] = h / len(files)
        hit += h; tot += len(files)
    print(f"{ck}: {100 * hit / tot:.1f}% of {tot}; " + " ".join(f"{t}:{100 * v:.0f}" for t, v in per.items()))
