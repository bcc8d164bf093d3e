"""MLflow's scoring request formats → a natively served MLflow model's inputs (../shared/CONTRACTS.md §8).

A JSON body holds exactly one of ``dataframe_split`` (``{"columns", "data"}``), ``dataframe_records``
(a list of objects), ``instances`` or ``inputs`` (rows, records, or a dict of columns), plus an
optional ``params``; a ``text/csv`` body is a DataFrame with a header. A column-based signature
takes one array per column (by name, typed by the signature); a tensor-based one takes one array.
Errors carry MLflow's ``error_code``. Pure functions over bytes.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import orjson

from ..errors import InvalidInput, UnsupportedMediaType
from ..types import InferRequest, TensorSpec

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
CSV = "text/csv"
JSON = "application/json"
BAD_REQUEST = "BAD_REQUEST"
INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"
REQUIRED = ("The input must be a JSON dictionary with exactly one of the input fields {'dataframe_split', "
            "'dataframe_records', 'instances', 'inputs'}")


class MlflowInputError(InvalidInput):
    """A request MLflow's server would refuse, with its error code."""

    def __init__(self, message: str, error_code: str = BAD_REQUEST):
        super().__init__(message)
        self.error_code = error_code

    def __reduce__(self):
        return MlflowInputError, (self.message, self.error_code)


def check_content_type(content_type: str) -> str:
    """The media type, if MLflow's server takes it (415 with its words otherwise)."""
    parts = [p.strip() for p in (content_type or "").split(";")]
    media, parameters = parts[0].lower(), dict(p.partition("=")[::2] for p in parts[1:] if p)
    if parameters.get("charset", "utf-8").lower() != "utf-8":
        raise UnsupportedMediaType("The scoring server only supports UTF-8")
    unexpected = set(parameters) - {"charset"}
    if unexpected:
        raise UnsupportedMediaType(f"Unrecognized content type parameters: {', '.join(sorted(unexpected))}.")
    if media not in (CSV, JSON):
        raise UnsupportedMediaType("This predictor only supports the following content types: "
                                   f"Types: ['{CSV}', '{JSON}']. Got '{content_type}'.")
    return media


def parse_document(body: bytes | memoryview) -> dict[str, Any]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise MlflowInputError(f"Ensure that input is a valid JSON formatted string. Error: '{err}'") from None
    if isinstance(document, list):
        raise MlflowInputError(f"{REQUIRED}. Received a list.")
    if not isinstance(document, dict):
        raise MlflowInputError(f"{REQUIRED}. Received unexpected input type '{type(document).__name__}'.")
    return document


def _columns_from(document: dict[str, Any]) -> tuple[dict[Any, list] | None, Any]:
    """(columns by name, or None when the data are plain rows; the rows)."""
    keys = [k for k in FORMATS if k in document]
    if len(keys) != 1:
        raise MlflowInputError(f"{REQUIRED}. Received dictionary with input fields: {list(document)}.")
    fmt = keys[0]
    data = document[fmt]
    if fmt == "dataframe_split":
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            got = set(data) if isinstance(data, dict) else data
            raise MlflowInputError("Invalid input. Dataframe split format must have 'data' field and optionally "
                                   f"'columns' and 'index' fields. Got {got!r}.")
        names = data.get("columns")
        rows = data["data"]
        if names is None:
            return None, rows
        if any(not isinstance(r, list) or len(r) != len(names) for r in rows):
            raise MlflowInputError(f"dataframe_split: every row must have {len(names)} values, one per column")
        return {name: [r[i] for r in rows] for i, name in enumerate(names)}, rows
    if isinstance(data, dict):  # a dict of columns
        return {name: value if isinstance(value, list) else [value] for name, value in data.items()}, None
    if not isinstance(data, list):
        raise MlflowInputError(f"{fmt} must be a list of rows or records, or an object of columns")
    if data and all(isinstance(r, dict) for r in data):  # records
        names: dict[Any, None] = {}
        for record in data:
            names.update(dict.fromkeys(record))
        return {name: [r.get(name) for r in data] for name in names}, None
    if fmt == "dataframe_records":
        raise MlflowInputError("dataframe_records must be a list of objects")
    return None, data


def _typed(values: Any, spec: TensorSpec, what: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=spec.dtype if spec.dtype is not None else object)
    except (TypeError, ValueError, OverflowError) as err:  # MLflow: a parse error, not a schema one
        raise MlflowInputError(f"Invalid input. Data is not compatible with model signature. Failed to convert "
                               f"{what} to type '{spec.dtype}'. Error: '{err!r}'") from None
    if spec.shape is not None and (array.ndim != len(spec.shape) or any(
            want not in (-1, got) for want, got in zip(spec.shape, array.shape))):
        raise MlflowInputError(f"Failed to enforce schema: Shape of input {array.shape} does not match expected "
                               f"shape {tuple(spec.shape)}.", INVALID_PARAMETER_VALUE)
    return array


def to_inputs(columns: dict | None, rows: Any, inputs: tuple[TensorSpec, ...], column_based: bool) -> InferRequest:
    """Columns or rows → the signature's arrays (one per column, or one tensor)."""
    if column_based:
        if columns is None:
            raise MlflowInputError(f"Model is missing inputs {[s.name for s in inputs]}: send named columns "
                                   "(dataframe_split with columns, dataframe_records, or records)",
                                   INVALID_PARAMETER_VALUE)
        missing = [s.name for s in inputs if s.name not in columns]
        if missing:
            raise MlflowInputError(f"Failed to enforce schema: Model is missing inputs {missing}.",
                                   INVALID_PARAMETER_VALUE)
        arrays = {s.name: _typed(columns[s.name], s, f"column {s.name}") for s in inputs}
        lengths = {len(a) for a in arrays.values()}
        if len(lengths) > 1:
            raise MlflowInputError("all columns must have the same length")
        return InferRequest(inputs=arrays, batch_size=lengths.pop() if lengths else 0)
    if len(inputs) != 1:
        raise MlflowInputError("this model takes several tensors: send inputs as an object of named tensors",
                               INVALID_PARAMETER_VALUE)
    spec = inputs[0]
    if rows is None:  # columns of a tensor model: their values side by side, as pandas' to_numpy
        rows = [list(r) for r in zip(*columns.values())] if columns else []
    array = _typed(rows, spec, "the input")
    return InferRequest(inputs={spec.name: array}, batch_size=len(array) if array.ndim else 1)


def decode(body: bytes | memoryview, content_type: str, inputs: tuple[TensorSpec, ...],
           column_based: bool) -> InferRequest:
    """A scoring request → the InferRequest a natively served MLflow model takes."""
    if check_content_type(content_type) == CSV:
        columns = csv_columns(body)
        return to_inputs(columns, None, inputs, column_based)
    columns, rows = _columns_from(parse_document(body))
    return to_inputs(columns, rows, inputs, column_based)


def csv_columns(body: bytes | memoryview) -> dict[str, list]:
    import pandas as pd

    try:
        frame = pd.read_csv(io.BytesIO(bytes(body)))
    except Exception as err:  # noqa: BLE001 - pandas' parser raises many kinds
        raise MlflowInputError("Failed to parse input as a Pandas DataFrame. Ensure that the input is a valid "
                               f"CSV-formatted Pandas DataFrame produced using the `pandas.DataFrame.to_csv()` "
                               f"method. Error: '{err}'") from None
    return {name: frame[name].tolist() for name in frame.columns}


def azure_document(body: bytes | memoryview) -> dict[str, Any]:
    """Azure's no-code MLflow request (``{"input_data": ..., "params": ...}``) as MLflow's: a
    pandas split dict is a DataFrame, a list an array, another dict named tensors."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise MlflowInputError(f"the body is not JSON: {err}") from None
    if not isinstance(document, dict) or "input_data" not in document:
        raise MlflowInputError('the body must be a JSON object with "input_data" (and optionally "params")')
    data = document["input_data"]
    if isinstance(data, dict) and "data" in data and ("columns" in data or "index" in data):
        out: dict[str, Any] = {"dataframe_split": data}
    else:
        out = {"inputs": data}
    if "params" in document:
        out["params"] = document["params"]
    return out


def encode_predictions(predictions: Any) -> bytes:
    """``{"predictions": ...}`` as MLflow writes it (arrays as lists)."""
    return orjson.dumps({"predictions": predictions}, option=orjson.OPT_SERIALIZE_NUMPY)
