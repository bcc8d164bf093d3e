"""A user's scoring script: found and imported as Microsoft's server does, its ``run`` analysed
once (how it is decorated decides what it receives), then called per request."""

from __future__ import annotations

import enum
import importlib.util
import inspect
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from hyperserve.server.errors import ServingError

from . import api

log = logging.getLogger("hyperserve.handlers.azureml")

DEFAULT_APP_ROOT = "/var/azureml-app"
REQUEST_HEADERS = "request_headers"


class RunInput(enum.Enum):
    """What run() receives, from how it is decorated."""

    TEXT = "text"  # undecorated: the body as str
    REQUEST = "request"  # @rawhttp: an AMLRequest
    OBJECT = "object"  # @input_schema: keyword arguments from a JSON object


def app_root(environ=os.environ) -> Path:
    """$AML_APP_ROOT; else Azure's /var/azureml-app when it exists; else the working directory."""
    if environ.get("AML_APP_ROOT"):
        return Path(environ["AML_APP_ROOT"])
    if os.path.isdir(DEFAULT_APP_ROOT):
        return Path(DEFAULT_APP_ROOT)
    return Path.cwd()


def script_path(entry_script: str, root: Path) -> Path:
    """Azure joins the entry script to the app root (an absolute path stays as it is)."""
    return root / entry_script.replace("/", os.sep)


class ScriptError(ServingError):
    """The script cannot be served (it failed to import, has no init or run, or run's parameters are
    ones Azure's server refuses)."""


@dataclass
class ScoringScript:
    path: Path
    init: Callable[[], Any]
    run: Callable[..., Any]
    run_input: RunInput
    input_name: str  # run()'s input parameter (TEXT, REQUEST)
    parameters: tuple[inspect.Parameter, ...]  # run()'s parameters other than request_headers (OBJECT)
    takes_headers: bool
    module: ModuleType

    def call(self, inputs: dict[str, Any], headers: dict[str, str]) -> Any:
        if self.takes_headers:
            return self.run(**inputs, request_headers=headers)
        return self.run(**inputs)


def _is_schema_decorated(func: Callable) -> bool:
    try:
        from inference_schema.schema_util import is_schema_decorated
    except ImportError:  # a script that does not use inference-schema cannot be decorated with it
        return False
    return is_schema_decorated(func)


def load(entry_script: str, root: Path) -> ScoringScript:
    """Import the script (as module ``entry_module``, with the app root and
    $AZUREML_SOURCE_DIRECTORY on sys.path, as under Azure's server) and analyse its run()."""
    api.install()
    api.reset()
    for extra in (root, root / os.environ["AZUREML_SOURCE_DIRECTORY"] if os.environ.get("AZUREML_SOURCE_DIRECTORY")
                  else None):
        if extra is not None and str(extra) not in sys.path:
            sys.path.append(str(extra))
    path = script_path(entry_script, root)
    if not path.is_file():
        raise ScriptError(f"the scoring script {path} does not exist (AZUREML_ENTRY_SCRIPT={entry_script!r}, "
                          f"app root {root})")
    try:
        spec = importlib.util.spec_from_file_location("entry_module", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except BaseException as err:  # noqa: BLE001 - a script may raise anything at import, SystemExit included
        raise ScriptError(f"importing the scoring script {path} failed: {type(err).__name__}: {err}") from err
    for name in ("init", "run"):
        if not hasattr(module, name):
            raise ScriptError(f"User script at {path} does not have a {name}() function defined.")
    run = module.run
    driver = getattr(module, "driver_module", None)  # Azure's generated scripts delegate to another module
    if isinstance(driver, ModuleType) and hasattr(driver, "run"):
        run = driver.run
    return _analysed(path, module, run)


def _analysed(path: Path, module: ModuleType, run: Callable) -> ScoringScript:
    parameters = list(inspect.signature(run).parameters.values())
    if any(p.kind not in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters):
        raise ScriptError("run() cannot accept positional-only arguments, *args, or **kwargs.")
    takes_headers = any(p.name == REQUEST_HEADERS for p in parameters)
    parameters = [p for p in parameters if p.name != REQUEST_HEADERS]
    if not parameters:
        raise ScriptError('run() needs to accept an argument other than "request_headers".' if takes_headers
                          else "run() needs to accept an argument for input data.")
    schema = _is_schema_decorated(run)
    if api._rawHttpRequested and schema:
        raise ScriptError("run() cannot be decorated with both @rawhttp and @input_schema")
    run_input = RunInput.REQUEST if api._rawHttpRequested else RunInput.OBJECT if schema else RunInput.TEXT
    log.info("scoring script %s: run() takes %s", path, {RunInput.REQUEST: "the request (@rawhttp)",
             RunInput.OBJECT: "keyword arguments (@input_schema)", RunInput.TEXT: "the body as text"}[run_input])
    return ScoringScript(path, module.init, run, run_input, parameters[0].name, tuple(parameters), takes_headers,
                         module)
