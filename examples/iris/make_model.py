"""Train the bundled example: a scikit-learn LogisticRegression on iris, saved as model.joblib.

The iris data ships inside scikit-learn, so this needs no download. Run it once; `hyperserve
serve examples/iris` then serves the model.
"""

from pathlib import Path

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

here = Path(__file__).resolve().parent
x, y = load_iris(return_X_y=True)
model = LogisticRegression(max_iter=1000).fit(x, y)
joblib.dump(model, here / "model.joblib")
print(f"wrote {here / 'model.joblib'} (training accuracy {model.score(x, y):.3f})")
