"""Clip sampling against hand-computed source frame indices."""

from __future__ import annotations

import numpy as np
import pytest

from extract.clips import ClipPlan, sample_clips, sample_shot_clips


def test_same_rate_shot_of_two_clips() -> None:
    clips = sample_shot_clips(0, 47, fps=24.0)
    assert clips.dtype == np.int64
    np.testing.assert_array_equal(clips, np.arange(48).reshape(2, 24))
    np.testing.assert_array_equal(sample_shot_clips(100, 147, fps=24), clips + 100)


@pytest.mark.parametrize("fps", [24.0, 25.0, 29.97, 30000 / 1001, 24000 / 1001, 59.94])
def test_same_rate_is_exact(fps: float) -> None:
    clips = sample_shot_clips(7, 7 + 24 * 40 - 1, fps=fps, clip_fps=fps)
    np.testing.assert_array_equal(clips.reshape(-1), np.arange(7, 7 + 24 * 40))


def test_25_fps_source_skips_one_frame_in_25() -> None:
    # k * 25 / 24 = 12.5 at k = 12: ties go to the later frame, so source frame 12 is skipped.
    one_second = list(range(12)) + list(range(13, 25))
    clips = sample_shot_clips(0, 49, fps=25.0)
    np.testing.assert_array_equal(clips, [one_second, [25 + i for i in one_second]])


def test_30_and_60_fps_sources() -> None:
    # 30 -> 24: k * 1.25 = 0, 1.25, 2.5, 3.75, 5, 6.25, 7.5, 8.75, 10
    np.testing.assert_array_equal(
        sample_shot_clips(0, 29, fps=30)[0, :9], [0, 1, 3, 4, 5, 6, 8, 9, 10]
    )
    # 60 -> 24: k * 2.5 = 0, 2.5, 5, 7.5, 10; the last clip frame is 23 * 2.5 = 57.5 -> 58
    clips = sample_shot_clips(0, 59, fps=60)
    assert clips.shape == (1, 24)
    np.testing.assert_array_equal(clips[0, :5], [0, 3, 5, 8, 10])
    assert clips[0, -1] == 58


def test_slower_source_repeats_frames() -> None:
    # 12 -> 24: k / 2 = 0, 0.5, 1, 1.5, 2 -> 0, 1, 1, 2, 2 (each frame held, ties forward)
    clips = sample_shot_clips(0, 11, fps=12)
    np.testing.assert_array_equal(clips[0, :5], [0, 1, 1, 2, 2])
    assert clips.shape == (1, 24) and clips[0, -1] == 11


def test_short_shot_is_one_padded_clip() -> None:
    clips = sample_shot_clips(10, 19, fps=24)
    np.testing.assert_array_equal(clips, [list(range(10, 20)) + [19] * 14])
    np.testing.assert_array_equal(sample_shot_clips(5, 5, fps=24), [[5] * 24])
    # The only clip is kept however short, whatever min_tail says.
    np.testing.assert_array_equal(sample_shot_clips(5, 6, fps=24, min_tail=24), [[5] + [6] * 23])


def test_min_tail_keeps_or_drops_the_last_clip() -> None:
    # 60 frames: two full clips and a tail of 12 sampled frames.
    kept = sample_shot_clips(0, 59, fps=24)  # default min_tail = 24 // 2 = 12
    assert kept.shape == (3, 24)
    np.testing.assert_array_equal(kept[2], list(range(48, 60)) + [59] * 12)
    assert sample_shot_clips(0, 59, fps=24, min_tail=13).shape == (2, 24)
    assert sample_shot_clips(0, 34, fps=24).shape == (1, 24)  # tail of 11 < 12
    assert sample_shot_clips(0, 24, fps=24, min_tail=0).shape == (2, 24)  # tail of 1
    assert sample_shot_clips(0, 24, fps=24, frames_per_clip=5).shape == (5, 5)


def test_sample_clips_over_shots() -> None:
    shots = np.array([[0, 47], [48, 57], [58, 130]])
    plan = sample_clips(shots, fps=24)
    assert isinstance(plan, ClipPlan) and len(plan) == 6
    assert plan.indices.dtype == np.int64 and plan.indices.shape == (6, 24)
    assert plan.shot.dtype == np.int32
    np.testing.assert_array_equal(plan.shot, [0, 0, 1, 2, 2, 2])  # shot 2's tail of 1 dropped
    np.testing.assert_array_equal(
        plan.frames, [[0, 23], [24, 47], [48, 57], [58, 81], [82, 105], [106, 129]]
    )
    assert plan.frames.dtype == np.int64
    np.testing.assert_array_equal(plan.indices[2], list(range(48, 58)) + [57] * 14)
    for i, (first, last) in enumerate(shots):
        np.testing.assert_array_equal(
            plan.indices[plan.shot == i], sample_shot_clips(first, last, fps=24)
        )


def test_frames_follow_the_sampled_indices() -> None:
    plan = sample_clips(np.array([[0, 49]]), fps=25)
    np.testing.assert_array_equal(plan.frames, [[0, 24], [25, 49]])
    empty = sample_clips(np.zeros((0, 2), dtype=np.int64), fps=24)
    assert empty.indices.shape == (0, 24) and empty.shot.shape == (0,)
    assert empty.frames.shape == (0, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fps": 0}, "fps must be > 0, got 0"),
        ({"fps": -25.0}, "fps must be > 0, got -25.0"),
        ({"fps": float("nan")}, "fps must be a finite number"),
        ({"fps": 24, "clip_fps": 0}, "clip_fps must be > 0"),
        ({"fps": 24, "frames_per_clip": 0}, "frames_per_clip must be an integer >= 1, got 0"),
        ({"fps": 24, "frames_per_clip": 2.5}, "frames_per_clip must be an integer"),
        ({"fps": 24, "min_tail": -1}, "min_tail must be an integer >= 0, got -1"),
        ({"fps": 24, "min_tail": 25}, r"min_tail must be <= frames_per_clip \(24\), got 25"),
    ],
)
def test_invalid_sampling_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sample_shot_clips(0, 47, **kwargs)
    with pytest.raises(ValueError, match=message):
        sample_clips(np.array([[0, 47]]), **kwargs)


def test_invalid_shots() -> None:
    with pytest.raises(ValueError, match="last frame 9 is before its first frame 10"):
        sample_shot_clips(10, 9, fps=24)
    with pytest.raises(ValueError, match="first must be an integer >= 0, got -1"):
        sample_shot_clips(-1, 9, fps=24)
    with pytest.raises(ValueError, match=r"shot 1 is \[20, 19\]"):
        sample_clips(np.array([[0, 9], [20, 19]]), fps=24)
    with pytest.raises(ValueError, match=r"shape \(S, 2\)"):
        sample_clips(np.array([0, 9]), fps=24)
    with pytest.raises(ValueError, match="integer frame indices"):
        sample_clips(np.array([[0.0, 9.5]]), fps=24)
