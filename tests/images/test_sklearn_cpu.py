"""The sklearn-cpu image, built from this checkout and run with its own entrypoint and only the
platform's environment (CI builds it for real; CONTRACTS.md §1 and §5)."""

from __future__ import annotations

import io
import os
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest

from tests.conftest import free_port
from tests.helpers.gcs import upload
from tests.images.build import CI_IMAGE, readable_copy, selected
from tests.images.conftest import GatedProxy
from tests.images.runner import ImageRun

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800),
              pytest.mark.skipif(CI_IMAGE not in selected(), reason=f"HYPERSERVE_IMAGE_TESTS leaves out {CI_IMAGE}")]

HEALTH = "/v1/endpoints/1234/deployedModels/5678"
PREDICT = HEALTH + ":predict"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
GRACE = 30.0  # hyperserve's default --grace-period


def vertex_env(port: int, storage_uri: str) -> dict[str, str]:
    """What Vertex AI sets on a deployed model's container, and nothing else."""
    return {"AIP_HTTP_PORT": str(port), "AIP_HEALTH_ROUTE": HEALTH, "AIP_PREDICT_ROUTE": PREDICT,
            "AIP_STORAGE_URI": storage_uri, "AIP_DEPLOYED_MODEL_ID": "5678", "AIP_ENDPOINT_ID": "1234",
            "AIP_MODEL_NAME": "1234", "AIP_VERSION_NAME": "5678", "AIP_PROJECT_NUMBER": "42",
            "AIP_MACHINE_TYPE": "n1-standard-2", "AIP_MODE": "PREDICTION", "AIP_MODE_VERSION": "1.0.0",
            "AIP_FRAMEWORK": "CUSTOM_CONTAINER"}


@pytest.fixture(scope="module")
def image(build_image):
    return build_image(CI_IMAGE)


def expected(sklearn_dir) -> list:
    import joblib

    return joblib.load(sklearn_dir / "model.joblib").predict(np.array(ROWS)).tolist()


def test_image_is_labelled_and_configured_for_every_platform(image):
    from tests.images.build import build_images
    from tests.images.runner import image_config, run_in_image

    config = image_config(image)
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == CI_IMAGE
    assert labels["org.opencontainers.image.version"] == build_images.hyperserve_version()
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert len(labels["org.opencontainers.image.revision"].removesuffix("-dirty")) == 40, "the git commit"
    assert config["User"] == "1000:1000"
    assert {"8080/tcp", "8081/tcp"} <= set(config["ExposedPorts"])
    assert not [e for e in config["Env"] if e.startswith("AIP_")], "Vertex sets AIP_*, the image never does"
    installed = run_in_image(image, ["/opt/hyperserve/bin/python", "-c", "import sklearn; print(sklearn.__version__)"])
    assert image.endswith(f"-{'.'.join(installed.split('.')[:2])}"), f"the tag names scikit-learn {installed}"


def test_vertex_ai_from_gs_health_predict_raw_predict_and_drain(image, gcs_emulator, sklearn_dir):
    upload(gcs_emulator, "image-tests", "sklearn/model", sklearn_dir)
    # The artifacts are served through a gate: the container is seen while its download waits.
    proxy = GatedProxy(urlparse(gcs_emulator).port)
    port = free_port()
    env = {**vertex_env(port, "gs://image-tests/sklearn/model"),
           # How the test's storage server is reached (on Vertex: the default credentials).
           "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{proxy.port}"}
    run = ImageRun(image, port, env)
    try:
        run.wait_status(HEALTH, 503)
        loading = httpx.post(run.url + PREDICT, json={"instances": ROWS}, timeout=10)
        assert loading.status_code == 503, loading.text
        assert run.uids() == {"1000"}, "every process in the image runs as the non-root user"
        proxy.open()
        run.wait_status(HEALTH, 200)

        answer = httpx.post(run.url + PREDICT, json={"instances": ROWS}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": expected(sklearn_dir), "deployedModelId": "5678"}

        npy = io.BytesIO()
        np.save(npy, np.array(ROWS))
        raw = httpx.post(run.url + PREDICT, content=npy.getvalue(), headers={"content-type": "application/x-npy"},
                         timeout=30)
        assert raw.status_code == 200, raw.text
        assert raw.json()["predictions"] == expected(sklearn_dir)

        # The image carries the gRPC front-end: tritonclient's gRPC client gets the same labels.
        import tritonclient.grpc as grpcclient

        triton = grpcclient.InferenceServerClient(f"127.0.0.1:{run.grpc_port}")
        assert triton.is_server_ready()
        tensor = grpcclient.InferInput("instances", [len(ROWS), 4], "FP64")
        tensor.set_data_from_numpy(np.array(ROWS, dtype=np.float64))
        assert triton.infer("model", [tensor]).as_numpy("predictions").tolist() == expected(sklearn_dir)

        bad = httpx.post(run.url + PREDICT, json={"instances": [[1, 2, "x", 4]]}, timeout=30)
        assert bad.status_code == 400
        assert bad.json() == {"error": "instances[0][2]: expected a number, got string"}
        assert httpx.post(run.url + PREDICT, json={"instances": ROWS}, timeout=30).status_code == 200

        code, seconds = run.terminate(GRACE + 30)
        assert code == 0, run.output()
        assert seconds < GRACE, f"took {seconds:.1f}s to stop"
        assert "shutting down" in run.output()
    finally:
        run.remove()
        proxy.close()


def test_sagemaker_serve_argument_opt_ml_model_ping_and_invocations(image, sklearn_dir):
    port = free_port()
    # `docker run IMAGE serve`, the model in /opt/ml/model; SAGEMAKER_BIND_TO_PORT is the port
    # SageMaker gives a container of an inference pipeline (alone it uses 8080, the default).
    run = ImageRun(image, port, {"SAGEMAKER_BIND_TO_PORT": str(port)}, args=["serve"],
                   volumes={str(readable_copy(sklearn_dir)): "/opt/ml/model"})
    try:
        run.wait_status("/ping", 200)
        answer = httpx.post(run.url + "/invocations", json={"instances": ROWS}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": expected(sklearn_dir)}
        processes = run.server_pids()
        assert len(processes) >= 2, "tini and hyperserve"
        code, seconds = run.terminate(GRACE + 30)
        assert code == 0, run.output()
        assert seconds < GRACE, f"took {seconds:.1f}s to stop"
        alive = [pid for pid in processes if os.path.exists(f"/proc/{pid}")]
        assert not alive, f"processes outlived the container's init: {alive}"
    finally:
        run.remove()
