"""The CNN and its servable form.

Training sees images float32 [batch, 28, 28, 1] in [0, 1] and the model returns logits. The exported
SavedModel's `serving_default` signature takes `images`: float32 [None, 28, 28] in [0, 1] (what an mnist
client sends as nested lists) and returns `probabilities`: float32 [None, 10], the softmax over the digits.
"""

from __future__ import annotations

import keras

IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"


def build(seed: int = 0, precision: str = "float32") -> keras.Model:
    """The classifier: images [batch, 28, 28, 1] float in [0, 1] -> logits [batch, 10] float32. Three 3x3
    convolutions (32, 64, 128 filters; max-pooling after the first two), global max pooling and the logits:
    93,962 parameters, kept few because every step all-reduces the whole gradient (docs/trainer.md, "Model
    tuning", has the heads tried and why). No BatchNorm or Dropout: the training input's random shifts,
    rotations and zooms and label smoothing (trainer.train) regularise instead. `seed` seeds the initializers.

    `precision` is a Keras dtype policy (float32, mixed_float16, mixed_bfloat16) given to each layer rather
    than set globally, so the export's float32 copy can be built in the same process. The variables are
    float32 under every policy; the logits layer computes in float32 (a softmax cross-entropy in 16 bits
    loses the small differences between confident logits)."""
    layers = keras.layers
    x = inputs = keras.Input(IMAGE_SHAPE, name=INPUT_NAME)
    x = layers.Conv2D(32, 3, activation="relu", kernel_initializer=keras.initializers.HeUniform(seed),
                      name="conv1", dtype=precision)(x)
    x = layers.MaxPooling2D(2, name="pool1", dtype=precision)(x)
    x = layers.Conv2D(64, 3, activation="relu", kernel_initializer=keras.initializers.HeUniform(seed + 1),
                      name="conv2", dtype=precision)(x)
    x = layers.MaxPooling2D(2, name="pool2", dtype=precision)(x)
    x = layers.Conv2D(128, 3, activation="relu", kernel_initializer=keras.initializers.HeUniform(seed + 2),
                      name="conv3", dtype=precision)(x)  # 5x5 -> 3x3 positions, each seeing 18x18 pixels
    x = layers.GlobalMaxPooling2D(name="global_max", dtype=precision)(x)
    logits = layers.Dense(NUM_CLASSES, kernel_initializer=keras.initializers.GlorotUniform(seed + 3),
                          name="logits", dtype="float32")(x)
    return keras.Model(inputs, logits, name="mnist_cnn")


def export(net: keras.Model, path) -> None:
    """Writes `net` as a SavedModel whose `serving_default` maps `images` float32 [None, 28, 28] in [0, 1] to
    `probabilities` float32 [None, 10].

    The weights are copied into a fresh model built outside any distribution strategy, so exporting runs no
    collectives and the chief can do it alone."""
    import tensorflow as tf

    plain = build()
    plain.set_weights(net.get_weights())

    def serve(images):
        logits = plain(tf.expand_dims(images, -1), training=False)
        return {OUTPUT_NAME: tf.nn.softmax(logits)}

    archive = keras.export.ExportArchive()
    archive.track(plain)
    archive.add_endpoint(
        "serving_default", serve, input_signature=[tf.TensorSpec([None, 28, 28], tf.float32, name=INPUT_NAME)]
    )
    archive.write_out(str(path), verbose=False)
