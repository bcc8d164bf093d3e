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

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x"),
                                  tf.TensorSpec([], tf.float32, name="factor")])
    def scaled(self, x, factor):
        scaled = tf.matmul(x, self.w) * factor
        return {"scaled": scaled, "total": tf.reduce_sum(scaled)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def image(self, image_bytes):
        return {"length": tf.strings.length(image_bytes), "reversed_bytes": tf.strings.reduce_join(
            tf.reverse(tf.strings.bytes_split(image_bytes).to_tensor(), axis=[1]), axis=1)}


    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        parsed = tf.io.parse_example(inputs, {"x": tf.io.FixedLenFeature([2], tf.float32)})
        classes = tf.tile(tf.constant([["neg", "pos"]]), [tf.shape(inputs)[0], 1])
        return {"classes": classes, "scores": tf.nn.softmax(parsed["x"])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs):
        parsed = tf.io.parse_example(inputs, {"x": tf.io.FixedLenFeature([2], tf.float32),
                                              "k": tf.io.FixedLenFeature([1], tf.int64),
                                              "tag": tf.io.FixedLenFeature([1], tf.string)})
        scale = tf.cast(parsed["k"][:, 0], tf.float32) + tf.cast(tf.strings.length(parsed["tag"][:, 0]), tf.float32)
        return {"outputs": tf.reduce_sum(parsed["x"], axis=1) * scale}


def _set_methods(path: Path, methods: dict[str, str]) -> None:
    """TF2's saver writes every signature as predict; TF Serving's classify/regress need their
    method_name (what tf.compat.v1's classification_signature_def would have set)."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((path / "saved_model.pb").read_bytes())
    for name, method in methods.items():
        saved.meta_graphs[0].signature_def[name].method_name = method
    (path / "saved_model.pb").write_bytes(saved.SerializeToString())


def save_cases(path: Path, batching: str | None = None) -> Path:
    module = Cases()
    tf.saved_model.save(module, str(path), signatures={
        "serving_default": module.scores, "doubled": module.doubled, "upper": module.upper,
        "multi": module.multi, "scaled": module.scaled, "image": module.image, "classify": module.classify,
        "regress": module.regress})
    _set_methods(path, {"classify": "tensorflow/serving/classify", "regress": "tensorflow/serving/regress"})
    if batching is not None:
        (path / "batching_parameters_config").write_text(batching)
    return path


def save_upper(path: Path) -> Path:
    """A SavedModel whose default signature upper-cases strings (text → upper): BYTES both ways."""
    module = Cases()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.upper})
    return path
