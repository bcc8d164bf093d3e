"""Each platform's manifest (containers/deploy/), carried out on the sklearn-cpu image the way the
platform would: its arguments, environment, model directory, and then the routes it probes and
calls. The port moves to a free one through the platform's own variable where it has one, since
the container shares the test machine's network."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import free_port
from tests.helpers.gcs import upload
from tests.images.build import CI_IMAGE, MATRIX, build_images, readable_copy, selected
from tests.images.manifests import all_deployments
from tests.images.runner import ImageRun

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800),
              pytest.mark.skipif(CI_IMAGE not in selected(), reason=f"HYPERSERVE_IMAGE_TESTS leaves out {CI_IMAGE}")]

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


@pytest.mark.parametrize("deployment", [d for d in all_deployments() if d.image_name_and_tag[0] == CI_IMAGE],
                         ids=lambda d: d.platform)
def test_platform_runs_the_image_as_its_manifest_says(deployment, build_image, sklearn_dir, gcs_emulator):
    import joblib

    image = build_image(CI_IMAGE)
    assert image == MATRIX[CI_IMAGE].reference(build_images.hyperserve_version())
    port = free_port()
    env = {**deployment.env, deployment.port_variable: str(port)}
    volumes = {}
    if deployment.model_dir:
        volumes[str(readable_copy(sklearn_dir))] = deployment.model_dir
    if deployment.code is not None:
        volumes[str(readable_copy(Path(deployment.code[0])))] = deployment.code[1]
    if env.get("AIP_STORAGE_URI", "").startswith("gs://"):
        bucket = "deploy-tests"
        uri = env["AIP_STORAGE_URI"].replace("gs://BUCKET/", f"gs://{bucket}/")
        upload(gcs_emulator, bucket, uri.split("/", 3)[3].rstrip("/"), sklearn_dir)
        env.update(AIP_STORAGE_URI=uri, STORAGE_EMULATOR_HOST=gcs_emulator)
    run = ImageRun(image, port, env, args=deployment.args, volumes=volumes)
    try:
        run.wait_status(deployment.routes["health"], 200)
        for role, path in deployment.routes.items():
            if role != "predict":
                assert httpx.get(run.url + path, timeout=10).status_code == 200, f"{role} route {path}"
        answer = httpx.post(run.url + deployment.routes["predict"], json={"instances": ROWS}, timeout=30)
        assert answer.status_code == 200, answer.text
        want = joblib.load(sklearn_dir / "model.joblib").predict(np.array(ROWS)).tolist()
        assert answer.json()["predictions"] == want
        code, _ = run.terminate()
        assert code == 0, run.output()
    finally:
        run.remove()
