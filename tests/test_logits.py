"""Class logits on request (`extract run --logits`): each clip's source-head logits stored beside
its embedding with the class names, the features unchanged, and real ImageNet weights that see
the cat in a video of a cat.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.data import chelsea

from extract.backbones import create_backbone, get_spec
from extract.backbones.registry import class_names
from extract.encode import write_video
from extract.pipeline import ExtractConfig, run_extraction
from vtl.errors import UserError
from vtl.features import FeatureFile, verify_features

EGYPTIAN_CAT = 285  # ImageNet-1k; 281..285 are the domestic cats
CAT_NAMES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


@pytest.mark.slow  # a second extraction of the demo collection: minutes on 2 busy cores
def test_demo_logits_are_the_classifier_on_each_clip_and_leave_features_alone(
    demo_manifest: Path, lite0_features: Path, tmp_path: Path
):
    # The lite0_features fixture's configuration, with --logits.
    config = ExtractConfig(image_frames=2, batch_size=8, logits=True)
    result = run_extraction(demo_manifest, "efficientnet_lite0", tmp_path, config, progress=False)
    path = result.files["efficientnet_lite0"]
    assert verify_features(path)["logits"] == 1000
    with FeatureFile(path) as f, FeatureFile(lite0_features) as plain:
        assert not plain.has_logits and "logits" not in plain.meta.config
        assert f.meta.config["logits"] is True  # another output than the file without logits
        assert f.logit_names == list(class_names("efficientnet_lite0"))
        assert len(f.logit_names) == 1000 and f.logit_names[EGYPTIAN_CAT] == "Egyptian cat"
        logits = f.read_logits()
        assert logits.shape == (f.n_clips, 1000) and np.isfinite(logits).all()
        assert float(logits.std()) > 0
        np.testing.assert_array_equal(f.read_features(), plain.read_features())
        # Each row is the source classifier on that clip's embedding (stored here in float16).
        backbone = create_backbone("efficientnet_lite0")
        expected = backbone.classify(torch.from_numpy(f.video_features(0))).numpy()
        np.testing.assert_allclose(f.video_logits(0), expected, atol=0.05, rtol=0.01)


@pytest.mark.filterwarnings("ignore:.*rows name the same video file")  # on purpose
def test_a_still_video_of_a_cat_scores_a_cat(tmp_path: Path):
    image = chelsea()[:, :450]  # 300 x 450: even sides for 4:2:0
    write_video(tmp_path / "cat.mp4", [image] * 30, 24)
    rows = ["video_id,path,cat,split0"]
    rows += [f"cat{i},cat.mp4,1,{split}" for i, split in enumerate(("train", "val", "test"))]
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    files = {}
    for logits in (True, False):
        config = ExtractConfig(segmentation="fixed", image_frames=1, logits=logits)
        out = tmp_path / f"logits_{logits}"
        result = run_extraction(
            tmp_path / "manifest.csv", "efficientnet_lite0", out, config, progress=False
        )
        files[logits] = result.files["efficientnet_lite0"]
    assert verify_features(files[True])["logits"] == 1000
    with FeatureFile(files[True]) as f, FeatureFile(files[False]) as plain:
        assert not plain.has_logits
        top = f.read_logits().argmax(axis=1)
        assert len(top) == 3  # one clip per video
        assert all(f.logit_names[k] in CAT_NAMES for k in top)
        np.testing.assert_array_equal(f.read_features(), plain.read_features())


def test_logits_option_is_checked_and_class_names_come_from_the_pretraining_set():
    with pytest.raises(UserError, match="--logits"):
        ExtractConfig(logits="yes").validate()
    assert class_names("r2plus1d_18")[0] == "abseiling" and len(class_names("x3d_xs")) == 400
    unknown = dataclasses.replace(get_spec("resnet18"), name="resnet18_places", pretrain="places")
    with pytest.raises(UserError, match="resnet18_places.*class names"):
        class_names(unknown)
