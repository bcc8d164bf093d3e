"""Every selected image (HYPERSERVE_IMAGE_TESTS) serves its framework's example models with its own
entrypoint. GPU images start their CPU fallback here: running one on a GPU takes a container
runtime that passes the GPU and its driver in, which buildah's chroot isolation does not.

Each run's time to health 200 and idle RSS go to build/images/smoke.json, from which
`scripts/build-images.sh --report` writes the images table."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import httpx
import numpy as np
import pytest

from tests.conftest import ROOT, free_port, mlp_reference
from tests.images.build import MATRIX, readable_copy, selected

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
SMOKE = ROOT / "build" / "images" / "smoke.json"


@dataclass
class Example:
    """A model for an image to serve: where it is, what the server is asked, what it must say."""
    path: Path
    body: dict
    expected: Callable[[list], None]
    env: dict | None = None
    code: Path | None = None  # a directory of user code, mounted in the working directory


def equal(want):
    def check(got):
        assert got == want

    return check


def close(want):
    return lambda got: np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, rtol=1e-4, atol=1e-5)


def sklearn_example(request) -> Example:
    import joblib

    path = request.getfixturevalue("sklearn_dir")
    want = joblib.load(path / "model.joblib").predict(np.array(ROWS)).tolist()
    return Example(path, {"instances": ROWS}, equal(want))


def cpr_example(request) -> Example:
    """A plain CPR predictor (no Google import), from the variables Google's CPR image reads."""
    example = sklearn_example(request)
    code = Path(request.getfixturevalue("tmp_path")) / "predictors"
    code.mkdir()
    shutil.copy(ROOT / "tests" / "helpers" / "cpr_predictors.py", code / "cpr_predictors.py")
    example.env = {"PREDICTOR_MODULE": "predictors.cpr_predictors", "PREDICTOR_CLASS": "PlainPredictor"}
    example.code = code
    return example


def xgboost_example(request) -> Example:
    import xgboost

    path = request.getfixturevalue("xgboost_dir")
    booster = xgboost.Booster()
    booster.load_model(str(path / "model.bst"))
    return Example(path, {"instances": ROWS}, close(booster.inplace_predict(np.array(ROWS))))


def onnx_example(request) -> Example:
    path, weights = request.getfixturevalue("onnx_model")
    want = mlp_reference(weights, np.array(ROWS, dtype=np.float32))
    return Example(path, {"instances": ROWS}, lambda got: close(want)([p["scores"] for p in got]))


def torchscript_example(request) -> Example:
    import torch

    from tests.helpers.torch_models import mlp, save_torchscript

    path = Path(request.getfixturevalue("tmp_path")) / "torchscript"
    path.mkdir()
    save_torchscript(path / "model.pt")
    with torch.inference_mode():
        want = mlp()(torch.tensor(ROWS)).numpy()
    return Example(path, {"instances": ROWS}, close(want))


def mar_example(request) -> Example:
    import torch

    from tests.helpers.torch_models import mlp

    archive = request.getfixturevalue("torchserve_archives")["base_handler"]
    with torch.inference_mode():
        want = mlp()(torch.tensor(ROWS)).numpy()
    return Example(archive, {"instances": [{"data": row} for row in ROWS]},
                   lambda got: close(want)([p["scores"] if isinstance(p, dict) else p for p in got]))


def savedmodel_example(request) -> Example:
    from tests.helpers.tf_models import W

    path = request.getfixturevalue("tf_saved_model")
    return Example(path, {"instances": [[1.0, 2.0, 3.0, 4.0]]}, close(np.array([[1.0, 2.0, 3.0, 4.0]]) @ np.array(W)))


EXAMPLES = {"sklearn": sklearn_example, "cpr": cpr_example, "xgboost": xgboost_example, "onnx": onnx_example,
            "torchscript": torchscript_example, "mar": mar_example, "savedmodel": savedmodel_example}


def pytest_generate_tests(metafunc):
    if "image_example" in metafunc.fixturenames:
        pairs = [pytest.param((name, example), id=f"{name}-{example}")
                 for name in selected() for example in MATRIX[name].examples]
        metafunc.parametrize("image_example", pairs or [pytest.param(None, marks=pytest.mark.skip(
            reason="HYPERSERVE_IMAGE_TESTS=none: no image is built"))])


def record(image: str, example: str, **values) -> None:
    known = json.loads(SMOKE.read_text()) if SMOKE.exists() else {}
    known.setdefault(image, {})[example] = values
    SMOKE.parent.mkdir(parents=True, exist_ok=True)
    SMOKE.write_text(json.dumps(known, indent=2, sort_keys=True))


def test_image_serves_its_example(build_image, image_example, request):
    from tests.images.runner import ImageRun

    name, example_name = image_example
    assert example_name in EXAMPLES, f"containers/images.toml names an unknown example {example_name!r}"
    ref = build_image(name)
    example = EXAMPLES[example_name](request)
    model = readable_copy(example.path)
    served = "/mnt/models" if example.path.is_dir() else f"/mnt/models/{example.path.name}"
    volumes = {str(model): "/mnt/models"}
    if example.code is not None:
        volumes[str(readable_copy(example.code))] = "/home/hyperserve/predictors"
    port = free_port()
    run = ImageRun(ref, port, {"AIP_HTTP_PORT": str(port), **(example.env or {})}, args=["serve", served],
                   volumes=volumes)
    try:
        ready = run.wait_status("/health", 200, timeout=600)
        # The runtime's own set-up (buildah's mounts) comes off: the process's start is what counts.
        runtime_setup = (time.monotonic() - run.started) - run.process_age()
        time.sleep(1.0)  # idle: whatever loading left behind has settled
        rss = run.rss_bytes()
        answer = httpx.post(run.url + "/predict", json=example.body, timeout=120)
        assert answer.status_code == 200, answer.text
        example.expected(answer.json()["predictions"])
        processes = len(run.server_pids())
        code, _ = run.terminate()
        assert code == 0, run.output()
        record(name, example_name, ready_seconds=round(ready - runtime_setup, 2), idle_rss_bytes=rss,
               processes=processes, runtime_setup_seconds=round(runtime_setup, 2))
    finally:
        run.remove()
