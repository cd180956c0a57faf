"""The CNN and its servable: the `serving_default` signature that docs/trainer.md documents, on a real export."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from trainer import model


def test_build_is_seeded_and_outputs_logits():
    a, b, c = model.build(1), model.build(1), model.build(2)
    assert a.output_shape == (None, model.NUM_CLASSES) and a.input_shape == (None, 28, 28, 1)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(a.get_weights(), c.get_weights(), strict=True))


def test_export_signature(tmp_path):
    net = model.build(0)
    model.export(net, tmp_path / "1")
    assert (tmp_path / "1" / "saved_model.pb").is_file()
    serve = tf.saved_model.load(str(tmp_path / "1")).signatures["serving_default"]
    inputs = serve.structured_input_signature[1]
    assert list(inputs) == [model.INPUT_NAME] == ["images"]
    assert inputs["images"].shape.as_list() == [None, 28, 28] and inputs["images"].dtype == tf.float32
    assert list(serve.structured_outputs) == [model.OUTPUT_NAME] == ["probabilities"]

    images = np.random.default_rng(0).random((5, 28, 28), dtype=np.float32)
    probs = serve(images=tf.constant(images))["probabilities"].numpy()
    assert probs.shape == (5, 10)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    expected = tf.nn.softmax(net(images[..., None], training=False)).numpy()
    np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-6)


def test_export_of_a_model_built_under_a_strategy(tmp_path):
    # Training builds the model inside a distribution strategy's scope; the export copies its weights into a
    # plain model, so the chief can export alone.
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        net = model.build(3)
    model.export(net, tmp_path / "m")
    serve = tf.saved_model.load(str(tmp_path / "m")).signatures["serving_default"]
    images = np.zeros((2, 28, 28), np.float32)
    expected = tf.nn.softmax(net(images[..., None], training=False)).numpy()
    probs = serve(images=tf.constant(images))["probabilities"].numpy()
    np.testing.assert_allclose(probs, expected, rtol=1e-4)
