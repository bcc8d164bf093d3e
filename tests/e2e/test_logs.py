"""Logs as Cloud Logging reads them: one JSON object a line (severity, message, time, trace and
span of the request, httpRequest for the access log), a traceback inside ``message``, and never a
request body or an auth header."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import ServerProcess

pytestmark = pytest.mark.e2e

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SECRET_BODY = 123456.789012
TOKEN = "log-test-token-42424242"


def json_lines(output: str) -> list[dict]:
    lines = [line for line in output.splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line is one JSON object
    assert parsed and all(isinstance(entry, dict) for entry in parsed)
    return parsed


def test_json_lines_with_trace_and_access_log(start_server, sklearn_dir, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n")
    server = start_server([sklearn_dir, "--log-format", "json", "--access-log", "1", "--auth-tokens-file", tokens],
                          env={"GOOGLE_CLOUD_PROJECT": "my-project"})
    headers = {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01", "authorization": f"Bearer {TOKEN}",
               "user-agent": "log-test/1.0"}
    r = httpx.post(server.url + "/predict?key=query-secret", json={"instances": [[SECRET_BODY, 3.0, 5.2, 2.3]]},
                   headers=headers)
    assert r.status_code == 200
    r = httpx.post(server.url + "/predict", json={"instances": [[1, 2]]},
                   headers={"x-cloud-trace-context": f"{TRACE_ID}/12345;o=1", "authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 400
    server.stop()
    output = server.output()
    entries = json_lines(output)
    for entry in entries:
        assert {"severity", "message", "time"} <= set(entry)
        assert entry["time"].endswith("Z")
    assert any(e["severity"] == "INFO" and "listening on" in e["message"] for e in entries)
    access = [e for e in entries if "httpRequest" in e]
    assert len(access) >= 2
    first = next(e for e in access
                 if e["httpRequest"]["status"] == 200 and e["httpRequest"]["requestUrl"] == "/predict")
    assert first["httpRequest"]["requestMethod"] == "POST" and first["httpRequest"]["userAgent"] == "log-test/1.0"
    assert first["httpRequest"]["latency"].endswith("s") and first["httpRequest"]["protocol"] == "HTTP/1.1"
    assert first["logging.googleapis.com/trace"] == f"projects/my-project/traces/{TRACE_ID}"
    assert first["logging.googleapis.com/spanId"] == "00f067aa0ba902b7"
    assert first["logging.googleapis.com/trace_sampled"] is True
    second = next(e for e in access if e["httpRequest"]["status"] == 400)
    assert second["logging.googleapis.com/spanId"] == f"{12345:016x}"
    # Never the body, the query, or the token.
    assert str(SECRET_BODY) not in output and "query-secret" not in output and TOKEN not in output


def test_a_traceback_goes_in_the_message(tmp_path):
    server = ServerProcess([str(tmp_path / "no-model-here"), "--log-format", "json",
                            "--load-failure-exit-delay", "0"])
    assert server.proc.wait(60) == 1
    entries = json_lines(server.output())
    failed = next(e for e in entries if e["severity"] == "ERROR" and "failed to load" in e["message"])
    assert "Traceback (most recent call last)" in failed["message"]
    assert failed["@type"].endswith("ReportedErrorEvent")


def test_text_on_request_and_json_off_a_terminal(tmp_path):
    text = ServerProcess([str(tmp_path / "absent"), "--log-format", "text", "--load-failure-exit-delay", "0"])
    assert text.proc.wait(60) == 1
    assert " ERROR hyperserve: " in text.output() and not text.output().lstrip().startswith("{")
    auto = ServerProcess([str(tmp_path / "absent"), "--load-failure-exit-delay", "0"],
                         env={"HYPERSERVE_LOG_FORMAT": "auto"})  # stdout is a pipe here, not a terminal
    assert auto.proc.wait(60) == 1
    json_lines(auto.output())
