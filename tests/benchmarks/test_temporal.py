"""Flicker counts label changes only where the ground truth stayed; mIoU over a clip is one confusion matrix."""

from __future__ import annotations

import numpy as np
import pytest

from segbench.scoring.temporal import flicker_counts, score_clip
from segrt.scoring import confusion_matrix, score

CLASSES = ("background", "square", "bar")


def moving_square(frames: int = 4, size: int = 20) -> np.ndarray:
    """N x 20 x 20 ground truth: a 6x6 square (class 1) moving one pixel right per frame, a fixed bar (class 2)."""
    truth = np.zeros((frames, size, size), np.uint8)
    for t in range(frames):
        truth[t, 5:11, 3 + t : 9 + t] = 1
        truth[t, 15:18, :] = 2
    return truth


def test_a_pipeline_that_tracks_the_motion_exactly_does_not_flicker() -> None:
    truth = moving_square()
    result = score_clip(truth.copy(), truth, CLASSES)
    assert result.flicker == 0.0 and result.flicker_changed == 0
    assert result.miou == 1.0 and result.miou_per_frame == [1.0] * 4
    # the square's leading and trailing columns change truth every frame: 2 x 6 pixels left out of 400
    assert result.flicker_stable == 3 * (400 - 12)
    assert len(result.flicker_per_frame) == 3


def test_only_changes_where_the_truth_stayed_are_counted() -> None:
    truth = moving_square()
    labels = truth.copy()
    labels[1, 0, 0] = 2  # a background pixel that flips in frame 1 and back in frame 2: two changes
    labels[2, 5:11, 3 + 2] = 0  # the square's trailing edge lags in frame 2: part of it is where truth changed
    changed, stable = flicker_counts(labels[0], labels[1], truth[0], truth[1])
    assert (changed, stable) == (1, 400 - 12)
    changed, stable = flicker_counts(labels[1], labels[2], truth[1], truth[2])
    # frame 1 -> 2: the flipped pixel returns (1); column 5 of the square is truth 1 in both frames and changes
    # to 0 (6 pixels); column 4 (truth left the square) changed truth and is not counted
    assert changed == 1 + 6
    result = score_clip(labels, truth, CLASSES)
    # frame 2 -> 3: column 5 leaves the square in the truth too, so the lagging edge is right there: nothing counted
    assert result.flicker_changed == 1 + 7 + 0
    assert result.flicker == pytest.approx(8 / (3 * 388))
    assert result.flicker_per_frame == pytest.approx([1 / 388, 7 / 388, 0.0])


def test_void_pixels_are_left_out_of_flicker() -> None:
    truth = np.zeros((2, 4, 4), np.uint8)
    truth[:, 0, :] = 255
    labels = np.zeros_like(truth)
    labels[1, 0, :] = 1  # changes on void pixels only
    assert flicker_counts(labels[0], labels[1], truth[0], truth[1]) == (0, 12)
    labels[1, 1, 0] = 1
    assert flicker_counts(labels[0], labels[1], truth[0], truth[1]) == (1, 12)


def test_clip_miou_is_one_confusion_matrix_over_every_frame_not_a_mean_of_frames() -> None:
    truth = moving_square(frames=2)
    labels = truth.copy()
    labels[0] = 0  # frame 0 predicts only background
    result = score_clip(labels, truth, CLASSES)
    whole = confusion_matrix(labels[0], truth[0], 3) + confusion_matrix(labels[1], truth[1], 3)
    assert result.miou == pytest.approx(score(whole, CLASSES, 2).miou)
    assert result.miou != pytest.approx(np.mean(result.miou_per_frame))
    assert result.miou_per_frame[1] == 1.0 and result.miou_per_frame[0] < 0.5
    assert result.as_dict()["flicker_definition"].startswith("share of pixels whose predicted label changes")


def test_frames_of_different_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="N x H x W"):
        score_clip(np.zeros((2, 4, 4), np.uint8), np.zeros((2, 4, 5), np.uint8), CLASSES)
    with pytest.raises(ValueError, match="differ in shape"):
        flicker_counts(np.zeros((4, 4)), np.zeros((4, 5)), np.zeros((4, 4)), np.zeros((4, 4)))
