"""containers/deploy/ read the way each platform reads it: which image it starts, with which
arguments, environment, model directory and port, and which routes it then calls."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import yaml

from tests.conftest import ROOT

DEPLOY = ROOT / "containers" / "deploy"
IMAGE_REF = re.compile(r"(?:^|/)hyperserve/(?P<name>[a-z0-9-]+):(?P<tag>[\w.-]+)$")


@dataclass
class Deployment:
    platform: str
    image: str                      # the reference as the manifest writes it
    port: int
    routes: dict[str, str]          # role (health, predict, liveness) → path
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] | None = None   # None: the image's CMD
    model_dir: str = ""             # where the platform puts the model files in the container
    port_variable: str = ""         # how a test moves the port (the platform's own where it has one)
    code: tuple[str, str] | None = None  # (the manifest's code folder, where the platform mounts it)

    @property
    def image_name_and_tag(self) -> tuple[str, str]:
        match = IMAGE_REF.search(self.image)
        assert match, f"{self.platform}: {self.image} is not a hyperserve image"
        return match["name"], match["tag"]


def vertex() -> Deployment:
    model = json.loads((DEPLOY / "vertex" / "model.json").read_text())
    spec = model["containerSpec"]
    port = spec["ports"][0]["containerPort"]
    env = {e["name"]: e["value"] for e in spec.get("env", [])}
    # What Vertex AI sets from the Model (CONTRACTS.md §1).
    env.update(AIP_HTTP_PORT=str(port), AIP_HEALTH_ROUTE=spec["healthRoute"], AIP_PREDICT_ROUTE=spec["predictRoute"],
               AIP_STORAGE_URI=model["artifactUri"], AIP_DEPLOYED_MODEL_ID="5678", AIP_MODE="PREDICTION")
    routes = {"health": spec["healthRoute"], "predict": spec["predictRoute"]}
    return Deployment("vertex", spec["imageUri"], port, routes, env, spec.get("args"), port_variable="AIP_HTTP_PORT")


def kserve(runtime: str = "hyperserve-sklearn") -> Deployment:
    service = yaml.safe_load((DEPLOY / "kserve" / "inferenceservice.yaml").read_text())
    runtimes = {doc["metadata"]["name"]: doc for doc in
                yaml.safe_load_all((DEPLOY / "kserve" / "cluster-serving-runtimes.yaml").read_text())}
    container = runtimes[runtime]["spec"]["containers"][0]
    name = service["metadata"]["name"]
    args = [a.replace("{{.Name}}", name) for a in container["args"]]
    return Deployment("kserve", container["image"], container["ports"][0]["containerPort"],
                      {"health": container["readinessProbe"]["httpGet"]["path"],
                       "predict": f"/v1/models/{name}:predict", "model": f"/v1/models/{name}"},
                      {e["name"]: e["value"] for e in container.get("env", [])}, args, model_dir="/mnt/models",
                      port_variable="HYPERSERVE_PORT")


def kserve_runtimes() -> list[dict]:
    return list(yaml.safe_load_all((DEPLOY / "kserve" / "cluster-serving-runtimes.yaml").read_text()))


def sagemaker() -> Deployment:
    container = json.loads((DEPLOY / "sagemaker" / "model.json").read_text())["PrimaryContainer"]
    # SageMaker runs `docker run IMAGE serve`, unpacks ModelDataUrl into /opt/ml/model, uses port 8080.
    return Deployment("sagemaker", container["Image"], 8080, {"health": "/ping", "predict": "/invocations"},
                      dict(container.get("Environment", {})), ["serve"], model_dir="/opt/ml/model",
                      port_variable="SAGEMAKER_BIND_TO_PORT")


def azureml(manifest: str = "deployment.yml") -> Deployment:
    deployment = yaml.safe_load((DEPLOY / "azureml" / manifest).read_text())
    config = deployment["environment"]["inference_config"]
    ports = {config[r]["port"] for r in ("liveness_route", "readiness_route", "scoring_route")}
    assert len(ports) == 1, f"azureml: the routes use several ports {ports}"
    model = deployment["model"]
    mount = f"/var/azureml-app/azureml-models/{model['name']}/{model['version']}"
    env = {**{k: str(v) for k, v in deployment.get("environment_variables", {}).items()}, "AZUREML_MODEL_DIR": mount}
    code = None
    if "code_configuration" in deployment:  # mounted under /var/azureml-app by its folder's name
        folder = deployment["code_configuration"]["code"]
        code = (str(DEPLOY / "azureml" / folder), f"/var/azureml-app/{PurePosixPath(folder).name}")
        assert env["AZUREML_ENTRY_SCRIPT"] == deployment["code_configuration"]["scoring_script"]
        assert env["AML_APP_ROOT"] == code[1]
    platform = "azureml" if code is None else "azureml-score"
    return Deployment(platform, deployment["environment"]["image"], ports.pop(),
                      {"liveness": config["liveness_route"]["path"], "health": config["readiness_route"]["path"],
                       "predict": config["scoring_route"]["path"]}, env,
                      # A folder registered as model.path is mounted under its own name.
                      model_dir=str(PurePosixPath(mount) / PurePosixPath(model["path"]).name),
                      port_variable="HYPERSERVE_PORT", code=code)


def all_deployments() -> list[Deployment]:
    return [vertex(), kserve(), sagemaker(), azureml(), azureml("deployment-score.yml")]
