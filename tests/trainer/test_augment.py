"""The training input's augmentation: `train.distort` against known geometry, and the pipeline that `train`
builds (a random shift, rotation and zoom of each image, one op per batch), on real tf.data."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
import tensorflow as tf

from common import rules
from trainer import train


def _distort(images, angle_deg: float, zoom: float, shift=(0, 0)) -> np.ndarray:
    n = images.shape[0]
    return train.distort(tf.constant(images), tf.fill([n], math.radians(angle_deg)), tf.fill([n], float(zoom)),
                         tf.constant([shift] * n, tf.float32)).numpy()


def _asymmetric_images() -> np.ndarray:
    rng = np.random.default_rng(0)
    images = np.zeros((2, 28, 28, 1), np.float32)
    images[:, 6:22, 6:22, 0] = rng.random((2, 16, 16), dtype=np.float32)  # zero border: nothing leaves the frame
    return images


def test_no_rotation_and_no_zoom_is_the_identity():
    images = _asymmetric_images()
    np.testing.assert_allclose(_distort(images, 0.0, 1.0), images, atol=1e-6)


def test_whole_pixel_shifts_move_the_content_exactly():
    images = _asymmetric_images()
    moved = _distort(images, 0.0, 1.0, shift=(2, -1))  # 2 right, 1 up
    expected = np.zeros_like(images)
    expected[:, :-1, 2:] = images[:, 1:, :-2]
    np.testing.assert_array_equal(moved, expected)


def test_a_positive_angle_turns_clockwise():
    images = _asymmetric_images()
    turned = _distort(images, 90.0, 1.0)
    np.testing.assert_allclose(turned, np.rot90(images, k=-1, axes=(1, 2)), atol=1e-4)  # k=-1: clockwise
    assert not np.allclose(turned, np.rot90(images, k=1, axes=(1, 2)), atol=1e-2)


def test_zoom_magnifies_about_the_centre():
    # A ramp along x: bilinear sampling reproduces it exactly, so output x reads input x' = c + (x - c) / zoom.
    ramp = np.tile(np.arange(28, dtype=np.float32), (1, 28, 1))[..., None]
    zoomed = _distort(ramp, 0.0, 2.0)
    c = 13.5
    np.testing.assert_allclose(zoomed[0, :, :, 0], np.tile(c + (np.arange(28) - c) / 2, (28, 1)), atol=1e-4)
    # The zoom is about the image's centre, then the shift moves the result.
    np.testing.assert_allclose(_distort(ramp, 0.0, 2.0, shift=(3, 0))[0, :, 3:, 0], zoomed[0, :, :-3, 0], atol=1e-4)
    # Zooming out leaves a zero border where the source falls outside the image.
    small = _distort(np.ones((1, 28, 28, 1), np.float32), 0.0, 0.5)
    assert small[0, 0, 0, 0] == 0.0 and small[0, 14, 14, 0] == pytest.approx(1.0)


def _pipeline(rotate: float, scale: float, seed: int = 3, shift: int = 2):
    rng = np.random.default_rng(1)
    images = np.zeros((64, 28, 28, 1), np.float32)
    images[:, 4:24, 4:24, 0] = rng.random((64, 20, 20), dtype=np.float32)
    labels = np.arange(64, dtype=np.int64) % 10
    raw = tf.data.Dataset.from_tensor_slices((images, labels)), 64
    trainer = types.SimpleNamespace(args=types.SimpleNamespace(shift=shift, rotate=rotate, scale=scale),
                                    per_replica_batch=16, data_store=None)
    ds = train.Trainer._dataset(trainer, tf.distribute.get_strategy(), raw, seed=seed)
    it = iter(ds)
    return [next(it) for _ in range(4)], images, labels


def test_the_training_input_is_distorted_seeded_and_keeps_its_labels():
    (plain, images, labels), (distorted, _, _) = _pipeline(0, 0), _pipeline(10, 0.1)
    again, _, _ = _pipeline(10, 0.1)
    for (pi, pl), (di, dl), (ai, _) in zip(plain, distorted, again, strict=True):
        assert di.shape == (16, 28, 28, 1) and di.dtype == tf.float32
        np.testing.assert_array_equal(pl.numpy(), dl.numpy())  # the same examples in the same order
        np.testing.assert_array_equal(di.numpy(), ai.numpy())  # same seed, same distortions
        assert not np.allclose(pi.numpy(), di.numpy(), atol=1e-3)  # the rotation and zoom did happen
        # Each distorted image is close to its plain (only shifted) one: small turns and zooms, not noise.
        for p, d in zip(pi.numpy(), di.numpy(), strict=True):
            assert abs(float(d.sum()) - float(p.sum())) / float(p.sum()) < 0.3
    # With shifts off as well, the undistorted pipeline yields the stored images themselves.
    (unshifted, _, _) = _pipeline(0, 0, shift=0)
    for batch_images, batch_labels in unshifted:
        for img, lab in zip(batch_images.numpy(), batch_labels.numpy(), strict=True):
            matches = np.nonzero(labels == lab)[0]
            assert any(np.array_equal(img, images[k]) for k in matches)


@pytest.mark.parametrize(("flags", "message"), [
    ({"rotate": -1.0}, "--rotate must be between 0 and 45 degrees"),
    ({"rotate": 90.0}, "--rotate must be between 0 and 45 degrees"),
    ({"rotate": math.nan}, "--rotate must be between 0 and 45 degrees"),
    ({"scale": 0.6}, "--scale must be between 0 and 0.5"),
    ({"scale": -0.1}, "--scale must be between 0 and 0.5"),
])
def test_out_of_range_augmentation_is_refused(flags, message):
    problems = rules.train_problems(epochs=1, batch_size=64, learning_rate=1e-3, **flags)
    assert [p.message() for p in problems] == [message]
    fixed = {k: p.suggestion for k, p in zip(flags, problems, strict=True)}
    assert rules.train_problems(epochs=1, batch_size=64, learning_rate=1e-3, **fixed) == []


def test_the_stack_trains_with_the_tuned_defaults():
    # The stack passes --epochs and --learning-rate to every TFJob: its defaults are the trainer's.
    from infra.config import KEY_NAMES

    assert KEY_NAMES["training.epochs"].default == train.DEFAULTS["epochs"]
    assert float(KEY_NAMES["training.learningRate"].default) == train.DEFAULTS["learning_rate"]
    assert KEY_NAMES["training.batchSize"].default == train.DEFAULTS["batch_size"]


def test_the_defaults_pass_the_rules():
    d = train.DEFAULTS
    assert rules.train_problems(epochs=d["epochs"], batch_size=d["batch_size"], learning_rate=d["learning_rate"],
                                shift=d["shift"], rotate=d["rotate"], scale=d["scale"]) == []
