"""W1's iris model saved as an MLflow model (tensor signature), for mlflow models serve and hyperserve
alike; run in the mlflow venv: python make_mlflow_model.py MODEL_DIR OUT_DIR"""

import sys
from pathlib import Path

import joblib
import mlflow.sklearn
import numpy as np
from mlflow.models import infer_signature

source, out = Path(sys.argv[1]), Path(sys.argv[2])
model = joblib.load(source / "model.joblib")
x = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
mlflow.sklearn.save_model(model, out, signature=infer_signature(x, model.predict(x)), serialization_format="skops")
