"""The API documents ``GET /swagger.json?version=`` answers for a scoring script, as Microsoft's
server makes them: the user's own file in the app root when there is one (``swagger.json`` or
``swagger2.json``, ``swagger3.json``, ``swagger3.1.json``), else one generated with the
inference-schema decorators' input and output schemas (an open object for an undecorated run)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from hyperserve.server.errors import NotFound

# Each document version and the names a query may give it.
VERSIONS = {"2": ("2", "2.0"), "3": ("3", "3.0"), "3.1": ("3.1",)}
USER_FILES = {"2": ("swagger.json", "swagger2.json"), "3": ("swagger3.json",), "3.1": ("swagger3.1.json",)}
OPEN_SCHEMA = {"type": "object", "example": {}}
_ERROR = {"type": "object", "properties": {"message": {"type": "string"}}}
_HEALTH = "Simple health check endpoint to ensure the service is up at any given point."
_HEALTHY = "If service is up and running, this response will be returned with the content 'Healthy'"
_FAILED = "The service failed to execute due to an error."
_RUN = "Run web service's model and get the prediction output"
_PAYLOAD = "The input payload for executing the real-time machine learning service."
_PROCESSED = "The service processed the input correctly and provided a result prediction, if applicable."
_BEARER = {"type": "apiKey", "name": "Authorization", "in": "header", "description": "For example: Bearer abc123"}


def _info(environ) -> dict[str, str]:
    name = environ.get("SERVICE_NAME", "ML service")
    return {"title": name, "description": f"API specification for the Azure Machine Learning service {name}",
            "version": environ.get("SERVICE_VERSION", "1.0")}


def _prefix(environ) -> str:
    prefix = environ.get("SERVICE_PATH_PREFIX", "")
    return f"/{prefix.strip('/')}" if prefix else ""


def swagger2(input_schema: Any, output_schema: Any, environ=os.environ) -> dict[str, Any]:
    p = _prefix(environ)
    failed = {"description": _FAILED, "schema": {"$ref": "#/definitions/ErrorResponse"}}
    return {
        "swagger": "2.0", "info": _info(environ), "schemes": ["https"], "consumes": ["application/json"],
        "produces": ["application/json"], "securityDefinitions": {"Bearer": _BEARER},
        "paths": {
            f"{p}/": {"get": {"operationId": "ServiceHealthCheck", "description": _HEALTH, "responses": {
                "200": {"description": _HEALTHY, "schema": {"type": "string"},
                        "examples": {"application/json": "Healthy"}}, "default": failed}}},
            f"{p}/score": {"post": {
                "operationId": "RunMLService", "description": _RUN, "security": [{"Bearer": []}],
                "parameters": [{"name": "serviceInputPayload", "in": "body", "description": _PAYLOAD,
                                "schema": {"$ref": "#/definitions/ServiceInput"}}],
                "responses": {"200": {"description": _PROCESSED, "schema": {"$ref": "#/definitions/ServiceOutput"}},
                              "default": failed}}},
            f"{p}/swagger.json": {"get": {
                "operationId": "GetSwaggerSpec", "description": "Get the Swagger specification.",
                "parameters": [{"name": "version", "in": "query", "required": False, "type": "integer",
                                "enum": [2, 3]}],
                "responses": {"200": {"description": "The Swagger specification.", "schema": {"type": "string"}},
                              "default": failed}}}},
        "definitions": {"ServiceInput": input_schema, "ServiceOutput": output_schema, "ErrorResponse": _ERROR},
    }


def openapi3(input_schema: Any, output_schema: Any, version: str = "3.0.3", environ=os.environ) -> dict[str, Any]:
    p = _prefix(environ)
    error = {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
    failed = {"description": _FAILED, "content": {"application/json": error}}
    return {
        "openapi": version, "info": _info(environ), "security": [{"Bearer": []}],
        "paths": {
            f"{p}/": {"get": {"operationId": "ServiceHealthCheck", "description": _HEALTH, "responses": {
                "200": {"description": _HEALTHY,
                        "content": {"text/plain": {"schema": {"type": "string", "example": "Healthy"}}}},
                "default": failed}}},
            f"{p}/score": {"post": {
                "operationId": "RunMLService", "description": _RUN, "security": [{"Bearer": []}],
                "requestBody": {"description": _PAYLOAD, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ServiceInput"}}}},
                "responses": {"200": {"description": _PROCESSED, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ServiceOutput"}}}},
                    "default": failed}}},
            f"{p}/swagger.json": {"get": {
                "operationId": "GetSwaggerSpec", "description": "Get the Swagger specification.",
                "parameters": [{"name": "version", "in": "query", "required": False,
                                "schema": {"type": "integer", "enum": [2, 3]}}],
                "responses": {"200": {"description": "The Swagger specification.",
                                      "content": {"text/plain": {"schema": {"type": "string"}}}},
                              "default": failed}}}},
        "components": {"schemas": {"ServiceInput": input_schema, "ServiceOutput": output_schema,
                                   "ErrorResponse": _ERROR}, "securitySchemes": {"Bearer": _BEARER}},
    }


def _schemas(run: Callable) -> tuple[list[str], Any, Any]:
    """(document versions the decorators support, input schema, output schema)."""
    try:
        from inference_schema.schema_util import (get_input_schema, get_output_schema, get_supported_versions,
                                                  is_schema_decorated)
    except ImportError:
        return ["2.0", "3.0", "3.1"], OPEN_SCHEMA, OPEN_SCHEMA
    versions = get_supported_versions(run)
    if is_schema_decorated(run):
        return versions, get_input_schema(run), get_output_schema(run)
    return versions, OPEN_SCHEMA, OPEN_SCHEMA


def documents(app_root: Path, run: Callable, environ=os.environ) -> dict[str, dict]:
    """Every document this script has, by version ("2", "3", "3.1")."""
    found: dict[str, dict] = {}
    supported, input_schema, output_schema = _schemas(run)
    for version, aliases in VERSIONS.items():
        user = next((app_root / name for name in USER_FILES[version] if (app_root / name).is_file()), None)
        if user is not None:
            found[version] = json.loads(user.read_text(encoding="utf-8"))
        elif any(alias in supported for alias in aliases):
            if version == "2":
                found[version] = swagger2(input_schema, output_schema, environ)
            else:
                found[version] = openapi3(input_schema, output_schema, "3.1.0" if version == "3.1" else "3.0.3",
                                          environ)
    return found


def document(found: dict[str, dict], asked: str) -> dict:
    """The document a ``version`` query names; NotFound with Azure's message otherwise."""
    supported = ", ".join(sorted(found))
    version = next((v for v, aliases in VERSIONS.items() if asked in aliases), None)
    if version is None:
        raise NotFound(f"Swagger version [{asked}] is not valid. Supported versions: [{supported}].")
    if not found.get(version):
        raise NotFound(f"Swagger version [{asked}] is not supported for the scoring script. "
                       f"Supported swagger versions: [{supported}].")
    return found[version]
