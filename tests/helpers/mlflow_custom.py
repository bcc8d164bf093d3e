"""A custom MLflow PythonModel (shipped with the model through code_paths)."""

import mlflow.pyfunc
import numpy as np
import pandas as pd


class Scaler(mlflow.pyfunc.PythonModel):
    """Scales each row's values and names the largest column; ``params`` may change the factor."""

    def predict(self, context, model_input: pd.DataFrame, params=None):
        factor = (params or {}).get("factor", 1.0)
        values = model_input.to_numpy(dtype=float) * factor
        return pd.DataFrame({"total": values.sum(axis=1), "largest": model_input.columns[np.argmax(values, axis=1)]})
