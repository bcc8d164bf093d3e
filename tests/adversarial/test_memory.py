"""Memory: a body the limits admit never costs the server more than 4 times its size before it is
answered (the peak of RSS, VmHWM, over a fresh server's). The native decoder builds arrays without
Python objects; a body that would decode into far more objects than its size is refused with 413
before it is parsed."""

from __future__ import annotations

import httpx
import pytest

from .conftest import Probe, serve

MB = 1024 * 1024
SIZE = 50 * MB


def bodies():
    yield "flat array, wrong shape: 400", "/predict", b'{"instances":[' + b",".join([b"1.5"] * (SIZE // 4)) + b"]}", 400
    yield "dense v2 JSON data: 413", "/v2/models/model/infer", (
        b'{"inputs":[{"name":"x","shape":[%d,4],"datatype":"FP64","data":[' % (SIZE // 16)
        + b",".join([b"1.5"] * (SIZE // 16 * 4)) + b"]}]}"), 413
    yield "short strings: 413", "/predict", b'{"instances":[' + b",".join([b'"ab"'] * (SIZE // 5)) + b"]}", 413
    yield "nested small objects: 413", "/predict", (
        b'{"instances":[' + b",".join([b'{"a":[1,2]}'] * (SIZE // 12)) + b"]}"), 413


@pytest.mark.parametrize("name, route, body, status", list(bodies()), ids=[b[0] for b in bodies()])
def test_a_50_mb_body_peaks_under_4_times_its_size(sklearn_dir, name, route, body, status):
    server = serve([sklearn_dir, "--grpc-port", "0", "--max-body-size", str(64 * MB)])
    try:
        probe = Probe(server)
        probe.still_serves()
        before = probe.rss_kb("VmHWM")
        r = httpx.post(probe.url + route, content=body, headers={"content-type": "application/json"}, timeout=120)
        assert r.status_code == status, r.text[:300]
        peak = probe.rss_kb("VmHWM") - before
        assert peak * 1024 < 4 * len(body), f"{name}: peak {peak >> 10} MiB over {len(body) >> 20} MiB"
        probe.still_serves()
    finally:
        server.stop()
