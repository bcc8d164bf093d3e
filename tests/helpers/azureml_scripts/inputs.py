"""An inference-schema script in Azure's Inputs/GlobalParameters convention, which also reads its headers."""

import pandas as pd
from inference_schema.parameter_types.pandas_parameter_type import PandasParameterType
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType
from inference_schema.schema_decorators import input_schema, output_schema


def init():
    pass


@input_schema("Inputs", StandardPythonParameterType({"input1": PandasParameterType(pd.DataFrame({"x": [1.0, 2.0]}))}))
@input_schema("GlobalParameters", StandardPythonParameterType({"factor": 1.0}))
@output_schema(StandardPythonParameterType([3.0]))
def run(Inputs, GlobalParameters, request_headers):
    frame = Inputs["input1"]
    return {"result": (frame["x"] * GlobalParameters["factor"]).tolist(),
            "trace": request_headers.get("X-Trace", ""), "has_content_type": "Content-Type" in request_headers}
