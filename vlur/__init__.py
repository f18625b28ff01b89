"""VL-UR (Vision-Language guided Universal Restoration), implemented from the paper (no public code exists).

Modules: `classifier` (CLIP Scene Classifier, eqs. 1–3), `restorer` (Scene Restorer with PGCA + FFN blocks,
eqs. 5–7), `losses` (SmoothL1 + MS-SSIM + CDRL), `train` / `train_classifier` (command-line training),
`method` (registration as the harness method "vlur").  Importing the package imports nothing heavy.
"""
