"""A @rawhttp scoring script: run() gets the request object and may answer with an AMLResponse."""

import json
import os
import time

from azureml_inference_server_http.api.aml_request import rawhttp
from azureml_inference_server_http.api.aml_response import AMLResponse


def init():
    pass


@rawhttp
def run(request):
    if request.method == "GET":
        return {"method": "GET", "args": request.args.to_dict(), "all": request.args.getlist("x")}
    if request.method == "OPTIONS":
        return AMLResponse("", 204, {"Allow": "GET, POST"})
    mode = request.headers.get("x-mode", "")
    if mode == "json":
        return {"json": request.get_json(), "type": request.content_type}
    if mode == "bytes":
        return AMLResponse(request.get_data()[::-1], 200, {"Content-Type": "application/octet-stream"})
    if mode == "stream":
        return AMLResponse((f"chunk{i};" for i in range(3)), 200, {"Content-Type": "text/plain"})
    if mode == "gated":  # its second chunk waits for a file the client makes after reading the first
        return AMLResponse(_gated(request.headers["x-gate"]), 200, {"Content-Type": "text/plain"})
    if mode == "broken-stream":
        return AMLResponse(_broken(), 200, {"Content-Type": "text/plain"})
    if mode == "endless":  # until the client goes away; then its finally marks that it was closed
        return AMLResponse(_endless(request.headers["x-gate"]), 200, {"Content-Type": "text/plain"})
    if mode == "status":
        return AMLResponse(json.dumps({"why": "teapot"}), 418, {"x-extra": "a, b"}, json_str=False)
    if mode == "server-error":
        return AMLResponse("broken", 503)
    if mode == "json-str":
        return AMLResponse({"ok": True}, 201, json_str=True)
    if mode == "none":
        return AMLResponse(None, 202)
    if mode == "text":
        return request.get_data(as_text=True)
    return {"length": len(request.data), "method": request.method, "is_json": request.is_json}


def _gated(gate):
    yield "first;"
    for _ in range(1000):
        if os.path.exists(gate):
            yield "second;"
            return
        time.sleep(0.01)
    yield "timed out;"


def _broken():
    yield "part;"
    raise RuntimeError("the stream broke")


def _endless(marker):
    try:
        while True:
            yield "tick;" * 1000
            time.sleep(0.01)
    finally:
        with open(marker, "w") as f:
            f.write("closed")
