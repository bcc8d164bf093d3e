"""Builds the MLflow models the tests serve; run with an interpreter that has mlflow and scikit-learn:
    python tests/helpers/mlflow_models.py OUT_DIR
OUT_DIR/pipeline: an sklearn Pipeline with a column-based signature (trained on a DataFrame);
OUT_DIR/tensor: a LogisticRegression with a tensor-based signature; OUT_DIR/custom: a PythonModel
with a params schema; OUT_DIR/torch_export and OUT_DIR/torchscript: a 4-3 linear layer saved by
mlflow.pytorch as a torch.export program (MLflow 3's default) and as TorchScript."""

import sys
from pathlib import Path

import mlflow.pyfunc
import mlflow.pytorch
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

HERE = Path(__file__).resolve().parent


def main(out: Path) -> None:
    iris = load_iris(as_frame=True)
    frame = iris.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(frame, iris.target)
    mlflow.sklearn.save_model(pipeline, out / "pipeline", signature=infer_signature(frame, pipeline.predict(frame)),
                              serialization_format="cloudpickle")
    x = iris.data.to_numpy()
    tensor = LogisticRegression(max_iter=500).fit(x, iris.target)
    mlflow.sklearn.save_model(tensor, out / "tensor", signature=infer_signature(x, tensor.predict(x)))
    sys.path.insert(0, str(HERE))
    from mlflow_custom import Scaler

    example = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 0.5]})
    signature = infer_signature(example, Scaler().predict(None, example), params={"factor": 1.0})
    mlflow.pyfunc.save_model(out / "custom", python_model=Scaler(), signature=signature,
                             code_paths=[str(HERE / "mlflow_custom.py")])
    import torch

    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.Linear(4, 3))
    x32 = x[:8].astype(np.float32)
    signature = infer_signature(x32, layer(torch.from_numpy(x32)).detach().numpy())
    mlflow.pytorch.save_model(layer, out / "torch_export", signature=signature, input_example=x32[:2])
    mlflow.pytorch.save_model(torch.jit.script(layer), out / "torchscript", signature=signature,
                              serialization_format="pickle")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
