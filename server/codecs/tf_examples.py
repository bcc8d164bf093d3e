"""TF Serving's :classify and :regress bodies: JSON examples → serialized tf.Example protos, and
the model's outputs → ``{"result": ...}``. Used only for TensorFlow models (it imports TensorFlow's
protos on first use).

  {"signature_name": "...", "context": {"f": 1}, "examples": [{"x": [1.5, 2.0], "word": "a"}, ...]}

Each example is merged over ``context``. A feature value is a scalar or a list: integers become an
int64_list, numbers with any float a float_list, strings and ``{"b64": ...}`` a bytes_list.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidInput
from .tensors import decode_b64_value, is_b64, json_type
from .vertex_json import parse_json

CLASSIFY, REGRESS = "tensorflow/serving/classify", "tensorflow/serving/regress"


def _feature(value: Any, path: str):
    from tensorflow.core.example import feature_pb2

    values = value if isinstance(value, list) else [value]
    if not values:
        raise InvalidInput(f"{path}: a feature needs at least one value")
    if all(isinstance(v, str) or is_b64(v) for v in values):
        data = [decode_b64_value(v, path) if is_b64(v) else v.encode() for v in values]
        return feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=data))
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InvalidInput(f"{path}[{i}]: a feature value must be a number or a string, got {json_type(v)}")
    if all(isinstance(v, int) for v in values):
        if any(not -(2**63) <= v < 2**63 for v in values):
            raise InvalidInput(f"{path}: an integer is outside int64")
        return feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=values))
    return feature_pb2.Feature(float_list=feature_pb2.FloatList(value=[float(v) for v in values]))


def decode_examples(body: bytes | memoryview) -> tuple[np.ndarray, str | None]:
    """The body → (serialized tf.Example per example as an object array, signature_name)."""
    from tensorflow.core.example import example_pb2, feature_pb2

    doc = parse_json(body)
    if type(doc) is not dict:
        raise InvalidInput(f"request body must be a JSON object with 'examples', got {json_type(doc)}")
    examples = doc.get("examples")
    if type(examples) is not list or not examples:
        raise InvalidInput("'examples' must be a non-empty list of objects")
    context = doc.get("context", {})
    if type(context) is not dict:
        raise InvalidInput(f"'context' must be an object, got {json_type(context)}")
    name = doc.get("signature_name")
    if name is not None and not isinstance(name, str):
        raise InvalidInput(f"'signature_name' must be a string, got {json_type(name)}")
    base = {key: _feature(value, f"context.{key}") for key, value in context.items()}
    serialized = np.empty(len(examples), dtype=object)
    for i, example in enumerate(examples):
        if type(example) is not dict:
            raise InvalidInput(f"examples[{i}]: must be an object of features, got {json_type(example)}")
        features = dict(base)
        features.update({key: _feature(value, f"examples[{i}].{key}") for key, value in example.items()})
        serialized[i] = example_pb2.Example(features=feature_pb2.Features(feature=features)).SerializeToString()
    return serialized, name


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def classify_result(outputs: dict[str, Any], count: int) -> dict[str, Any]:
    """[[label, score], ...] per example (labels are the class indices when the model has none)."""
    scores = outputs.get("scores")
    classes = outputs.get("classes")
    result = []
    for i in range(count):
        row_scores = None if scores is None else np.asarray(scores[i]).reshape(-1).tolist()
        row_classes = None if classes is None else [_text(c) for c in np.asarray(classes[i]).reshape(-1).tolist()]
        if row_scores is None:
            result.append([[c] for c in row_classes])
        else:
            labels = row_classes or [str(j) for j in range(len(row_scores))]
            result.append([[label, score] for label, score in zip(labels, row_scores)])
    return {"result": result}


def regress_result(outputs: dict[str, Any], count: int) -> dict[str, Any]:
    values = outputs.get("outputs")
    if values is None:
        values = next(iter(outputs.values()))
    return {"result": np.asarray(values).reshape(count).tolist()}
