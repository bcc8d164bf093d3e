"""Azure ML scoring scripts run unmodified: Microsoft's own server (azmlinfsrv, from
azureml-inference-server-http 1.5 in bench/.venvs/azureml) and hyperserve serve the same scripts
side by side, and every request gets the same status, media type, body and id headers from both."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import ROOT, ServerProcess
from tests.helpers.peer_server import PeerServer

pytestmark = pytest.mark.e2e

SCRIPTS = ROOT / "tests" / "helpers" / "azureml_scripts"
AZMLINFSRV = ROOT / "bench" / ".venvs" / "azureml" / "bin" / "azmlinfsrv"
needs_azmlinfsrv = pytest.mark.skipif(
    not AZMLINFSRV.exists(),
    reason="needs Microsoft's server in bench/.venvs/azureml: bash bench/peers/install.sh azureml")
# Compared on every reply; x-ms-run-fn-exec-ms only for being there (it is a duration).
ID_HEADERS = ("x-request-id", "x-ms-request-id", "x-ms-client-request-id", "traceid", "x-ms-run-function-failed")


def script_env(script: str) -> dict[str, str]:
    return {"AML_APP_ROOT": str(SCRIPTS), "AZUREML_MODEL_DIR": str(SCRIPTS), "AZUREML_ENTRY_SCRIPT": script}


def azmlinfsrv(script: str) -> PeerServer:
    """Microsoft's server on ``script``, as its images start it (1 worker)."""
    return PeerServer([str(AZMLINFSRV), "--entry_script", script, "--port", "{port}"], AZMLINFSRV.parent, "/",
                      cwd=SCRIPTS, env=script_env(script))


@contextlib.contextmanager
def script_server(app_root, script: str, env: dict[str, str] | None = None):
    """hyperserve on a script in ``app_root``, ready (GET / answers 200), stopped afterwards."""
    server = ServerProcess(["--entry-script", script], {"AML_APP_ROOT": str(app_root), **(env or {})}, cwd=app_root)
    try:
        yield server.wait_ready("/")
    finally:
        server.stop()


def hyperserve(script: str) -> ServerProcess:
    return ServerProcess(["--entry-script", script, "--load-failure-exit-delay", "1"], script_env(script),
                         cwd=SCRIPTS)


@pytest.fixture(scope="module")
def pair(request):
    """Both servers for one script, started once per script."""
    started: dict[str, tuple[PeerServer, ServerProcess]] = {}

    def get(script: str):
        if script not in started:
            theirs, ours = azmlinfsrv(script), hyperserve(script)
            assert theirs.wait_ready(), theirs.output()
            ours.wait_ready("/")
            started[script] = theirs, ours
        return started[script]

    yield get
    for theirs, ours in started.values():
        theirs.stop()
        ours.stop()


def answer(base: str, method: str, path: str, headers: dict, body) -> httpx.Response:
    return httpx.request(method, base + path, headers=headers, content=body, timeout=30)


def ids(response: httpx.Response) -> dict[str, str | None]:
    """The id headers, with an id the server made up (a uuid4) as "uuid", and where it was copied to."""
    found = {name: response.headers.get(name) for name in ID_HEADERS}
    made = found["x-request-id"]
    if made is not None and len(made) == 36 and made.count("-") == 4:
        found = {name: "uuid" if value == made else value for name, value in found.items()}
    return found


def compare(theirs: httpx.Response, ours: httpx.Response, what: str) -> None:
    assert ours.status_code == theirs.status_code, (what, theirs.text, ours.text)
    assert ours.headers.get("content-type") == theirs.headers.get("content-type"), what
    assert ours.content == theirs.content, (what, theirs.content, ours.content)
    assert ids(ours) == ids(theirs), (what, dict(theirs.headers), dict(ours.headers))
    assert ("x-ms-run-fn-exec-ms" in ours.headers) == ("x-ms-run-fn-exec-ms" in theirs.headers), what
    # Each names itself (deliberate: the README lists it).
    assert ("x-ms-server-version" in ours.headers) == ("x-ms-server-version" in theirs.headers), what
    if "x-ms-server-version" in theirs.headers:
        assert theirs.headers["x-ms-server-version"].startswith("azmlinfsrv/"), what
        assert ours.headers["x-ms-server-version"].startswith("hyperserve/"), what
    for name, value in theirs.headers.items():
        if name.startswith("x-") and name not in ("x-ms-run-fn-exec-ms", "x-ms-server-version", *ID_HEADERS):
            assert ours.headers.get(name) == value, (what, name)


JSON = {"content-type": "application/json"}
IDS = {"x-request-id": "req-1", "x-ms-client-request-id": "client-1", "TraceId": "trace-9"}
LONG_ID = "r" * 101

CASES = {
    "plain.py": [
        ("POST", "/score", JSON, json.dumps({"data": [[1, 2, 3, 4], [0, 0, 1, 0]]})),
        ("POST", "/score", {"content-type": "text/plain", **IDS}, json.dumps({"data": [[1, 1, 1, 1]]})),
        ("POST", "/score", {"content-type": "application/x-www-form-urlencoded"}, "a=1"),  # Flask: data is b""
        ("POST", "/score", {"content-type": "text/plain"}, "text:{\"a\": 1}"),  # a str, encoded again
        ("POST", "/score", JSON, json.dumps({"mode": "none"})),
        ("POST", "/score", JSON, json.dumps({"mode": "nan"})),
        ("POST", "/score", JSON, json.dumps({"mode": "echo", "deep": {"é": [1, None, True]}})),
        ("POST", "/score", JSON, json.dumps({"mode": "raise"})),
        ("POST", "/score", JSON, json.dumps({"mode": "unencodable"})),
        ("POST", "/score", JSON, b"\xff\xfe not utf-8"),
        ("POST", "/score", JSON, "{not json"),
        ("GET", "/score?mode=echo&x=1&x=2&y=[1,2]&z=text", {}, None),
        ("OPTIONS", "/score", {}, None),
        ("GET", "/", {"x-ms-request-id": "legacy-1"}, None),
        ("GET", "/", {"x-request-id": LONG_ID}, None),
        ("POST", "/score", {"x-ms-request-id": LONG_ID, **JSON}, json.dumps({"data": [[1, 1, 1, 1]]})),
        ("GET", "/swagger.json", {}, None),
        ("GET", "/swagger.json?version=3", {}, None),
        ("GET", "/swagger.json?version=3.1", {}, None),
        ("GET", "/swagger.json?version=4", {}, None),
        ("PUT", "/score", {}, "x"),
        ("DELETE", "/", {}, None),
    ],
    "raw.py": [
        ("GET", "/score?x=1&x=2&y=a%20b", {}, None),
        ("POST", "/score", {"x-mode": "json", **JSON}, json.dumps({"a": [1, 2]})),
        ("POST", "/score", {"x-mode": "json", "content-type": "text/plain"}, "{}"),  # get_json refuses: run() fails
        ("POST", "/score", {"x-mode": "bytes", "content-type": "application/octet-stream"}, b"\x00\x01\x02abc"),
        ("POST", "/score", {"x-mode": "stream"}, "go"),
        ("POST", "/score", {"x-mode": "status"}, "go"),
        ("POST", "/score", {"x-mode": "server-error"}, "go"),
        ("POST", "/score", {"x-mode": "json-str"}, "go"),
        ("POST", "/score", {"x-mode": "none"}, "go"),
        ("POST", "/score", {"x-mode": "text", "content-type": "text/plain"}, "hello"),
        ("POST", "/score", {"content-type": "application/x-www-form-urlencoded"}, "a=1&b=2"),
        ("POST", "/score", {"content-type": "application/vnd.api+json"}, "{}"),
        ("OPTIONS", "/score", {}, None),
    ],
    "schema.py": [
        ("POST", "/score", JSON, json.dumps({"data": [[1, 2, 3, 4], [1, 1, 1, 1]], "frame": [{"a": 1.0, "b": "q"}]})),
        ("POST", "/score", JSON, json.dumps({"data": [[1, 2, 3, 4]], "frame": [{"a": 1.0, "b": "q"}], "scale": 3})),
        ("POST", "/score", JSON, json.dumps({"data": [[1, 2, 3, 4]]})),  # frame is missing: 400
        ("POST", "/score", JSON, json.dumps({"data": "not an array", "frame": []})),  # conversion fails: 500
        ("POST", "/score", JSON, json.dumps([1, 2])),  # not an object: 400
        ("POST", "/score", JSON, ""),  # empty: 400
        ("POST", "/score", JSON, "{bad"),  # bad JSON: 400
        ("POST", "/score", {"content-type": "text/plain"}, "{}"),  # not JSON: 415
        ("GET", "/score?data=[[1,2,3,4]]&frame=[{\"a\":1,\"b\":\"z\"}]", {}, None),
        ("OPTIONS", "/score", {}, None),
        ("GET", "/swagger.json", {}, None),
        ("GET", "/swagger.json?version=3", {}, None),
        ("GET", "/swagger.json?version=2.0", {}, None),
    ],
    "inputs.py": [
        ("POST", "/score", {"X-Trace": "t-1", **JSON},
         json.dumps({"Inputs": {"input1": [{"x": 1.0}, {"x": 4.0}]}, "GlobalParameters": {"factor": 2.0}})),
        ("POST", "/score", JSON, json.dumps({"Inputs": {"input1": [{"x": 1.0}]}})),  # no GlobalParameters: 400
        ("GET", "/swagger.json?version=3", {}, None),
    ],
}


@needs_azmlinfsrv
@pytest.mark.parametrize("script", sorted(CASES))
def test_the_same_answers_as_microsofts_server(pair, script):
    theirs, ours = pair(script)
    for method, path, headers, body in CASES[script]:
        what = f"{script}: {method} {path} {headers} {body!r}"[:300]
        compare(answer(theirs.url, method, path, headers, body), answer(ours.url, method, path, headers, body), what)


def _gated_stream(base: str, gate) -> tuple[bytes, bytes, httpx.Headers]:
    """The first chunk the client receives, then (after it makes the gate file) the rest."""
    with httpx.stream("POST", base + "/score", headers={"x-mode": "gated", "x-gate": str(gate)}, content="go",
                      timeout=30) as reply:
        chunks = reply.iter_raw()
        first = next(chunks)
        gate.touch()
        return first, b"".join(chunks), reply.headers


@needs_azmlinfsrv
def test_a_generator_body_streams_as_the_script_makes_it(pair, tmp_path):
    """An AMLResponse's generator is sent chunk by chunk, by both servers: the client has the first
    chunk while the generator still waits for the client's signal to make the second."""
    theirs, ours = pair("raw.py")
    for name, server in (("azmlinfsrv", theirs), ("hyperserve", ours)):
        first, rest, headers = _gated_stream(server.url, tmp_path / f"gate-{name}")
        assert (first, rest) == (b"first;", b"second;"), name
        assert headers["transfer-encoding"] == "chunked" and "content-length" not in headers, name
        assert headers["content-type"] == "text/plain", name
    # Then the same connection goes on, and what was pipelined behind a stream is answered after it.
    with httpx.Client(base_url=ours.url, timeout=30) as client:
        for _ in range(3):
            streamed = client.post("/score", headers={"x-mode": "stream"}, content="go")
            assert streamed.content == b"chunk0;chunk1;chunk2;"
            assert client.post("/score", headers={"x-mode": "text", "content-type": "text/plain"},
                               content="after").json() == "after"


def test_a_stream_that_fails_or_is_left_is_cut_and_the_server_goes_on(tmp_path):
    """A generator that raises after its head is out ends the connection without the last chunk, so
    the client cannot take the part for the whole; a client that leaves mid-stream closes the
    generator (its finally runs, on the model thread). The server answers on afterwards."""
    with script_server(SCRIPTS, "raw.py", env={"AZUREML_MODEL_DIR": str(SCRIPTS)}) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.post(server.url + "/score", headers={"x-mode": "broken-stream"}, content="go", timeout=30)
        marker = tmp_path / "closed"
        with httpx.stream("POST", server.url + "/score", headers={"x-mode": "endless", "x-gate": str(marker)},
                          content="go", timeout=30) as reply:
            assert next(reply.iter_raw()).startswith(b"tick;")
        for _ in range(200):
            if marker.exists():
                break
            time.sleep(0.05)
        assert marker.read_text() == "closed"
        assert httpx.post(server.url + "/score", headers={"x-mode": "text", "content-type": "text/plain"},
                          content="still", timeout=30).json() == "still"
    assert "the stream broke" in server.output()


@needs_azmlinfsrv
def test_a_script_whose_init_fails_never_turns_ready():
    theirs, ours = azmlinfsrv("init_fails.py"), hyperserve("init_fails.py")
    try:
        assert theirs.wait_ready() is False  # Microsoft's server exits (3)
        ours.wait_listening()
        assert httpx.get(ours.url + "/", timeout=5).status_code == 503
        assert ours.proc.wait(30) != 0
        assert "the model file is missing" in ours.output()
        assert theirs.proc.returncode != 0
    finally:
        theirs.stop()
        ours.stop()


def test_concurrent_calls_to_a_script_run_one_at_a_time(tmp_path):
    """An undecorated script is not thread-safe unless it says so: two slow calls take twice as long,
    and both are answered (one call each, none lost or shared)."""
    (tmp_path / "slow.py").write_text(
        "import json, threading, time\n"
        "active = 0\nmost = 0\nlock = threading.Lock()\n"
        "def init():\n    pass\n"
        "def run(raw):\n"
        "    global active, most\n"
        "    with lock:\n        active += 1\n        most = max(most, active)\n"
        "    time.sleep(0.3)\n"
        "    with lock:\n        active -= 1\n"
        "    return {'got': json.loads(raw), 'most_at_once': most}\n")
    with script_server(tmp_path, "slow.py") as server:
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda i: httpx.post(server.url + "/score", content=json.dumps(i), timeout=30),
                                    range(4)))
        assert sorted(r.json()["got"] for r in replies) == [0, 1, 2, 3]
        assert max(r.json()["most_at_once"] for r in replies) == 1
        # The Vertex predict route runs the same script as /score would.
        vertex = httpx.post(server.url + "/predict", content="7", timeout=30)
        assert vertex.status_code == 200 and vertex.json()["got"] == 7


def test_the_azure_port_and_worker_count(tmp_path):
    (tmp_path / "score.py").write_text(
        "import os\ndef init():\n    pass\n"
        "def run(raw):\n    return {'pid': os.getpid(), 'dir': os.environ['AZUREML_MODEL_DIR']}\n")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("AIP_HTTP_PORT", "HYPERSERVE_PORT")}
    env.update(AML_APP_ROOT=str(tmp_path), AZUREML_ENTRY_SCRIPT="score.py", WORKER_COUNT="2",
               PYTHONPATH=str(ROOT), HYPERSERVE_GRPC_PORT="0")
    env.pop("HYPERSERVE_WORKERS", None)
    proc = subprocess.Popen([sys.executable, "-m", "hyperserve.server", "serve", str(model_dir), "--host", "127.0.0.1"],
                            env=env, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get("http://127.0.0.1:5001/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        pids = {httpx.post("http://127.0.0.1:5001/score", content="{}", timeout=10).json()["pid"] for _ in range(40)}
        assert len(pids) == 2  # WORKER_COUNT processes share the port
        assert httpx.post("http://127.0.0.1:5001/score", content="{}", timeout=10).json()["dir"] == str(model_dir)
    finally:
        proc.terminate()
        proc.wait(30)


def test_both_import_paths_resolve_to_one_module(tmp_path):
    """Scripts written for azureml-defaults import azureml.contrib.services; newer ones the server's own path."""
    (tmp_path / "score.py").write_text(
        "from azureml.contrib.services.aml_request import rawhttp, AMLRequest\n"
        "from azureml.contrib.services.aml_response import AMLResponse\n"
        "import azureml_inference_server_http.api.aml_response as other\n"
        "def init():\n    pass\n"
        "@rawhttp\n"
        "def run(request):\n"
        "    return AMLResponse(request.get_data()[::-1], 200, {'Content-Type': 'text/plain'}) "
        "if other.AMLResponse is AMLResponse else 'two modules'\n")
    with script_server(tmp_path, "score.py") as server:
        reply = httpx.post(server.url + "/score", content=b"abc", timeout=30)
        assert reply.status_code == 200 and reply.content == b"cba" and reply.headers["content-type"] == "text/plain"


def test_a_missing_script_is_a_load_failure(tmp_path):
    server = ServerProcess(["--entry-script", "nothing.py", "--load-failure-exit-delay", "0.5"],
                           {"AML_APP_ROOT": str(tmp_path)}, cwd=tmp_path)
    assert server.proc.wait(60) != 0
    assert "nothing.py does not exist" in server.output()



def test_scoring_timeout_is_azures_500(tmp_path):
    (tmp_path / "score.py").write_text("import time\ndef init():\n    pass\n"
                                       "def run(raw):\n    time.sleep(float(raw))\n    return 'done'\n")
    with script_server(tmp_path, "score.py", {"SCORING_TIMEOUT_MS": "400"}) as server:
        slow = httpx.post(server.url + "/score", content="1.5", timeout=30)
        assert slow.status_code == 500 and slow.json() == {"message": "Scoring timeout after 400 ms"}
        assert slow.headers["x-ms-run-function-failed"] == "True"
        time.sleep(1.2)  # the call finishes in the background; the script then serves again
        quick = httpx.post(server.url + "/score", content="0", timeout=30)
        assert quick.status_code == 200 and quick.json() == "done"


def test_the_app_roots_own_swagger_file_is_served(tmp_path):
    (tmp_path / "score.py").write_text("def init():\n    pass\ndef run(raw):\n    return raw\n")
    (tmp_path / "swagger3.json").write_text(json.dumps({"openapi": "3.0.3", "info": {"title": "mine"}}))
    with script_server(tmp_path, "score.py") as server:
        assert httpx.get(server.url + "/swagger.json?version=3").json()["info"] == {"title": "mine"}
        generated = httpx.get(server.url + "/swagger.json").json()  # no swagger.json: generated from run()
        assert generated["swagger"] == "2.0" and generated["definitions"]["ServiceInput"] == {"type": "object",
                                                                                               "example": {}}
        missing = httpx.get(server.url + "/swagger.json?version=9")
        assert missing.status_code == 404 and "is not valid" in missing.json()["message"]
