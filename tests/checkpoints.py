"""Checkpoints the tests write, each in its library's own format and where that library finds it:

- a timm model as timm pushes it to the hub (`save_for_hf`: model.safetensors + config.json),
- a tiny `transformers` video model as `save_pretrained` writes it (config.json +
  model.safetensors) with its processor's configuration,

both in huggingface_hub's cache layout under a test's HF_HOME (`hub_home` in conftest.py), where
timm's and our offline loading read them; and

- a 3D ShuffleNet checkpoint as Efficient-3DCNNs' main.py saves it (a file to pass as
  `--weights NAME=PATH`, loaded strictly).

The weights are random (seeded); the architectures are the published ones (timm's
resnet10t.c3_in1k, the registry's 3D ShuffleNets) or tiny ones (one transformer layer of width 32
on 4 frames of 32x32).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import timm
import torch
from huggingface_hub.file_download import repo_folder_name
from timm.models import save_for_hf
from torch import nn

from extract.archs.shufflenet3d import ACTIVITYNET_MEAN
from extract.backbones.efficient3d import FRAMES, SIZE

COMMIT = "0123456789abcdef0123456789abcdef01234567"  # the made-up commit the snapshots are of


def hub_snapshot(home: Path, repo_id: str, save: Callable[[Path], None]) -> Path:
    """Write a hub repository into huggingface_hub's cache under HF_HOME `home`: `save(folder)`
    fills hub/models--<org>--<name>/snapshots/<COMMIT>/, and refs/main names that commit."""
    repo = home / "hub" / repo_folder_name(repo_id=repo_id, repo_type="model")
    snapshot = repo / "snapshots" / COMMIT
    save(snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


# --- timm -------------------------------------------------------------------------------------

TIMM_TINY = "resnet10t.c3_in1k"  # 5 M parameters, 176 px, bicubic, crop_pct 0.875, 1000 classes


def tiny_timm_model(seed: int = 0) -> nn.Module:
    """timm's resnet10t.c3_in1k with random weights (seeded), in eval mode."""
    torch.manual_seed(seed)
    return timm.create_model(TIMM_TINY, pretrained=False).eval()


def publish_timm(model: nn.Module, repo_id: str, home: Path) -> Path:
    """`model` as timm pushes it (`save_for_hf`), in the hub cache of `home`: its snapshot."""
    return hub_snapshot(
        home, repo_id, lambda folder: save_for_hf(model, str(folder), safe_serialization=True)
    )


# --- transformers video models ----------------------------------------------------------------

HF_FRAMES, HF_SIZE = 4, 32
# One layer of width 32 with a 5-class head: every tiny model below has these.
_TINY_TRANSFORMER = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_labels": 5,
}
# VideoMAE, TimeSformer and ViViT name their input and MLP sizes alike.
_TINY_VIT = {
    **_TINY_TRANSFORMER,
    "image_size": HF_SIZE,
    "num_frames": HF_FRAMES,
    "intermediate_size": 64,
}
_SMALL_RESIZE = {"size": {"shortest_edge": 40}, "crop_size": {"height": HF_SIZE, "width": HF_SIZE}}


def _videomae(pretraining: bool):
    import transformers

    config = transformers.VideoMAEConfig(use_mean_pooling=not pretraining, **_TINY_VIT)
    if pretraining:  # a pretraining checkpoint (encoder + decoder), loaded as VideoMAEModel
        config.architectures = ["VideoMAEForPreTraining"]
        model = transformers.VideoMAEForPreTraining(config)
    else:
        model = transformers.VideoMAEForVideoClassification(config)
    processor = transformers.VideoMAEImageProcessor(
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], **_SMALL_RESIZE
    )
    return model, processor


def _timesformer():
    import transformers

    config = transformers.TimesformerConfig(**_TINY_VIT)
    processor = transformers.TimesformerVideoProcessor(
        image_mean=[0.45] * 3, image_std=[0.225] * 3, **_SMALL_RESIZE
    )
    return transformers.TimesformerForVideoClassification(config), processor


def _vivit():
    import transformers

    config = transformers.VivitConfig(tubelet_size=[2, 16, 16], **_TINY_VIT)
    processor = transformers.VivitImageProcessor(**_SMALL_RESIZE)  # offset rescale to [-1, 1]
    return transformers.VivitForVideoClassification(config), processor


def _vjepa2(classifier: bool):
    import transformers

    config = transformers.VJEPA2Config(
        crop_size=HF_SIZE,
        frames_per_clip=HF_FRAMES,
        mlp_ratio=2.0,
        pred_hidden_size=32,
        pred_num_hidden_layers=1,
        pred_num_attention_heads=2,
        num_pooler_layers=1,
        **_TINY_TRANSFORMER,
    )
    model_class = (
        transformers.VJEPA2ForVideoClassification if classifier else transformers.VJEPA2Model
    )
    return model_class(config), transformers.VJEPA2VideoProcessor(crop_size=HF_SIZE)


# kind -> a tiny model of that kind (random weights) and its processor, as the hub serves them
TINY_HF_VIDEO_MODELS: dict[str, Callable[[], tuple[nn.Module, object]]] = {
    "videomae": lambda: _videomae(pretraining=False),
    "videomae-pretraining": lambda: _videomae(pretraining=True),
    "timesformer": _timesformer,
    "vivit": _vivit,
    "vjepa2": lambda: _vjepa2(classifier=False),
    "vjepa2-classifier": lambda: _vjepa2(classifier=True),
}


def publish_hf(model: nn.Module, processor, repo_id: str, home: Path) -> Path:
    """`model` and `processor` as `save_pretrained` writes them, in the hub cache of `home`."""

    def save(folder: Path) -> None:
        model.save_pretrained(folder)
        processor.save_pretrained(folder)

    return hub_snapshot(home, repo_id, save)


# --- Efficient-3DCNNs (3D ShuffleNet) --------------------------------------------------------


def write_efficient3d_checkpoint(
    model: nn.Module, path: Path, seed: int
) -> dict[str, torch.Tensor]:
    """Random weights for `model` (seeded, loaded into it), saved at `path` as Efficient-3DCNNs'
    main.py saves a checkpoint: the state_dict of an nn.DataParallel model ("module." prefixes)
    under "state_dict", beside the epoch, architecture, optimizer state and best accuracy.
    Returns the state_dict (without the prefixes).

    The weights have a trained network's scales, so that different clips embed differently
    (with small weights throughout, the 3D ShuffleNetV2's signal dies out over its 50 layers):
    He-scaled convolutions, batch-norm scales near 1, and batch-norm statistics those of a random
    clip as the authors feed it (pixels in [0, 255] minus the ActivityNet mean)."""
    generator = torch.Generator().manual_seed(seed)

    def normal(shape, mean: float, std: float) -> torch.Tensor:
        return mean + std * torch.randn(shape, generator=generator)

    weights = {}
    for key, value in model.named_parameters():
        if value.dim() > 1:  # convolutions and the classifier; fan-in: one output's inputs
            weights[key] = normal(value.shape, 0.0, (2 / value[0].numel()) ** 0.5)
        elif key.endswith("weight"):  # batch-norm scales
            weights[key] = normal(value.shape, 1.0, 0.1)
        else:
            weights[key] = normal(value.shape, 0.0, 0.1)
    model.load_state_dict(weights, strict=False)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm3d):
            module.reset_running_stats()
            module.momentum = None  # the running statistics become those of the one batch
    pixels = 255 * torch.rand(1, 3, FRAMES, SIZE, SIZE, generator=generator)
    with torch.no_grad():
        model.train()(pixels - torch.tensor(ACTIVITYNET_MEAN).view(1, 3, 1, 1, 1))
    state = {key: value.clone() for key, value in model.eval().state_dict().items()}
    torch.save(
        {
            "epoch": 40,
            "arch": "shufflenet",
            "state_dict": {f"module.{key}": value for key, value in state.items()},
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]},
            "best_prec1": 57.5,
        },
        path,
    )
    return state
