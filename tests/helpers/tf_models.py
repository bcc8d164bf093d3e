"""A small SavedModel with one signature per case the TF Serving rules cover (built in fixtures)."""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

W = [[1.0, 0.0, -1.0], [0.5, 1.0, 0.0], [0.0, -0.5, 1.0], [2.0, 0.0, 0.25]]


class Cases(tf.Module):
    def __init__(self):
        super().__init__()
        self.w = tf.Variable(W, dtype=tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def scores(self, x):
        return {"scores": tf.matmul(x, self.w)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="ids")])
    def doubled(self, ids):
        return {"doubled": ids * 2}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def upper(self, text):
        return {"upper": tf.strings.upper(text)}

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="a"),
                                  tf.TensorSpec([None], tf.int32, name="b")])
    def multi(self, a, b):
        return {"sum": tf.reduce_sum(a, axis=1) + tf.cast(b, tf.float32), "label": b * 10}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def image(self, image_bytes):
        return {"length": tf.strings.length(image_bytes), "reversed_bytes": tf.strings.reduce_join(
            tf.reverse(tf.strings.bytes_split(image_bytes).to_tensor(), axis=[1]), axis=1)}


def save_cases(path: Path, batching: str | None = None) -> Path:
    module = Cases()
    tf.saved_model.save(module, str(path), signatures={
        "serving_default": module.scores, "doubled": module.doubled, "upper": module.upper,
        "multi": module.multi, "image": module.image})
    if batching is not None:
        (path / "batching_parameters_config").write_text(batching)
    return path
