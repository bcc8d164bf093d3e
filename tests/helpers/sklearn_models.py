"""scikit-learn models for tests that need to see where a model was loaded and where it ran."""

from __future__ import annotations

import os

from sklearn.linear_model import LogisticRegression


def _note(event: str) -> None:
    with open(os.environ["HYPERSERVE_TEST_PROCESS_LOG"], "a") as f:
        f.write(f"{event} {os.getpid()}\n")


class ProcessNotingClassifier(LogisticRegression):
    """A LogisticRegression that notes, in the file $HYPERSERVE_TEST_PROCESS_LOG, the process of
    each unpickling ("load PID") and of each predict call ("predict PID")."""

    def __setstate__(self, state):
        super().__setstate__(state)
        _note("load")

    def predict(self, X):
        _note("predict")
        return super().predict(X)
