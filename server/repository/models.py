"""The set of deployed models: parsing what to serve, and finding a model by name and version.

What to serve comes from the positional MODEL_URI (named by --model-name), repeated
``--model NAME[:VERSION]=URI`` flags, and a JSON ``--model-config`` file:

    {"default_model": "iris",
     "models": [{"name": "iris", "uri": "gs://b/iris", "version": "2", "framework": "sklearn",
                 "max_batch_size": 32, "max_queue_delay_us": 500, "model_threads": 1,
                 "max_queue": 256, "method": "predict_proba"}]}

Keys a model leaves out take the command line's values. The Vertex, SageMaker and
unversioned KServe routes go to the default model (its highest version).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import NotFound, ServingError

PER_MODEL_KEYS = {"framework", "method", "device", "model_threads", "max_queue", "max_batch_size",
                  "max_queue_delay_us", "intra_op_threads", "inter_op_threads", "warmup_requests", "warmup_file",
                  "preferred_batch_sizes", "trust_model_code", "install_requirements", "isolation"}


@dataclass
class ModelSpec:
    name: str
    uri: str
    version: str = "1"
    overrides: dict[str, Any] | None = None  # per-model values of serve's options

    def option(self, args, key: str) -> Any:
        if self.overrides and key in self.overrides:
            return self.overrides[key]
        return getattr(args, key)


def default_version(uri: str) -> str:
    """A local directory in TF Serving's layout (numeric version directories) serves its highest."""
    from .model import latest_version_dir

    if "://" not in uri and Path(uri).is_dir():
        _, version = latest_version_dir(Path(uri))
        if version is not None:
            return version
    return "1"


def parse_model_flag(text: str) -> ModelSpec:
    name, sep, uri = text.partition("=")
    if not sep or not name or not uri:
        raise ServingError(f"--model takes NAME[:VERSION]=URI, got {text!r}", status=400)
    name, _, version = name.partition(":")
    return ModelSpec(name, uri, version or default_version(uri))


def load_config(path: Path) -> tuple[list[ModelSpec], str | None]:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ServingError(f"cannot read --model-config {path}: {err}") from err
    specs = []
    for i, entry in enumerate(doc.get("models", [])):
        if not isinstance(entry, dict) or "name" not in entry or "uri" not in entry:
            raise ServingError(f"--model-config {path}: models[{i}] needs 'name' and 'uri'")
        unknown = set(entry) - PER_MODEL_KEYS - {"name", "uri", "version"}
        if unknown:
            raise ServingError(f"--model-config {path}: models[{i}] has unknown keys {sorted(unknown)}; "
                               f"allowed: name, uri, version, {', '.join(sorted(PER_MODEL_KEYS))}")
        overrides = {k: v for k, v in entry.items() if k in PER_MODEL_KEYS}
        version = str(entry["version"]) if "version" in entry else default_version(entry["uri"])
        specs.append(ModelSpec(entry["name"], entry["uri"], version, overrides))
    return specs, doc.get("default_model")


def model_specs(args) -> tuple[list[ModelSpec], str]:
    """Everything to serve, and the default model's name."""
    specs: list[ModelSpec] = []
    default = None
    if args.model_uri:
        specs.append(ModelSpec(args.model_name, args.model_uri, default_version(args.model_uri)))
    for flag in args.model or []:
        specs.append(parse_model_flag(flag))
    if args.model_config:
        from_file, default = load_config(Path(args.model_config))
        specs.extend(from_file)
    if not specs:
        raise ServingError("no model given: pass MODEL_URI, --model NAME=URI or --model-config, "
                           "or set AIP_STORAGE_URI (Vertex AI) or AZUREML_MODEL_DIR (Azure ML), "
                           "or put the model in /opt/ml/model (SageMaker)")
    seen = set()
    for spec in specs:
        if (spec.name, spec.version) in seen:
            raise ServingError(f"model '{spec.name}' version {spec.version} is given twice")
        seen.add((spec.name, spec.version))
    default = args.default_model or default or specs[0].name
    if default not in {s.name for s in specs}:
        raise ServingError(f"default model '{default}' is not among the models served")
    return specs, default


def _version_order(version: str) -> tuple:
    return (0, int(version)) if version.isdigit() else (1, version)


class ModelRepository:
    def __init__(self, models: list, default: str):
        self._by_name: dict[str, dict[str, Any]] = {}
        for model in models:
            self._by_name.setdefault(model.name, {})[model.version] = model
        self.default = default
        # The models never change while serving: each name's latest version is found once.
        self._latest = {name: versions[max(versions, key=_version_order)] for name, versions in self._by_name.items()}
        self.default_model = self._latest[default]  # the model Vertex, SageMaker and TorchServe-less routes use

    def get(self, name: str, version: str | None = None):
        versions = self._by_name.get(name)
        if versions is None:
            raise NotFound(f"model '{name}' is not served here (models: {sorted(self._by_name)})")
        if version is None:
            return self._latest[name]
        if version not in versions:
            raise NotFound(f"model '{name}' has no version {version} (versions: {sorted(versions, key=_version_order)})")
        return versions[version]

    def __iter__(self) -> Iterator:
        for versions in self._by_name.values():
            yield from versions.values()

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_name.values())
