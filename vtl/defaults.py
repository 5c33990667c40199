"""The reference work's defaults, declared once (DIViTA on Trailers12k; docs/DESIGN.md).

Every configuration, command-line default, study axis and the shot detector read these names:
changing a default is one edit here. Sources: the paper (arXiv 2210.07983) and its code
(richardtml/DIViTA: `train.py`, `experiment.py transfer`).
"""

from __future__ import annotations

# --- extraction: shots and clips
SEGMENTATION = "transnetv2"  # shots from TransNetV2 (or "fixed": fixed-length segments)
SHOT_THRESHOLD = 0.5  # TransNetV2 transition probability above which a frame is a transition
SHOT_FRAMES = 48  # segment length of --segmentation fixed
FRAMES_PER_CLIP = 24  # frames per clip (the reference's stores are `fps24_fpc24`)
CLIP_FPS = 24.0  # the rate frames are sampled at inside a clip

# --- probing: DIViTA's training (experiment.py transfer; train.py)
PROBE_MODEL = "divita"
WINDOW = 30  # clips per training sample and per evaluation window (--num_clips)
LR = 1e-4
WEIGHT_DECAY = 0.01  # AdamW (amsgrad): torch's default, which the reference's train.py keeps
EPOCHS = 100
BATCH_SIZE = 32  # videos per training batch
PATIENCE = 20  # early stopping on validation loss (--stop_patience)
SCHEDULER_PATIENCE = 10  # ReduceLROnPlateau on validation loss
