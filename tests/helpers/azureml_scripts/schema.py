"""An inference-schema scoring script: numpy and pandas inputs, a standard parameter with a default."""

import numpy as np
import pandas as pd
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
from inference_schema.parameter_types.pandas_parameter_type import PandasParameterType
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType
from inference_schema.schema_decorators import input_schema, output_schema


def init():
    pass


@input_schema("data", NumpyParameterType(np.array([[1.0, 2.0, 3.0, 4.0]])))
@input_schema("frame", PandasParameterType(pd.DataFrame({"a": [1.0], "b": ["x"]})))
@input_schema("scale", StandardPythonParameterType(1.0))
@output_schema(StandardPythonParameterType({"sums": [10.0], "rows": 1, "labels": ["x"]}))
def run(data, frame, scale=2.0):
    return {"sums": (data.sum(axis=1) * scale).tolist(), "rows": int(len(frame)),
            "labels": frame["b"].tolist(), "types": [type(data).__name__, type(frame).__name__]}
