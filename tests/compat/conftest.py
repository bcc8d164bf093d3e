"""A hyperserve server with real models for the real clients: an ONNX MLP (FP32 in, FP32 and
INT64 out), a scikit-learn iris classifier and a TensorFlow model on strings (BYTES both ways),
served with the HTTP and gRPC front-ends at once, by one worker and by two."""

from __future__ import annotations

import pytest

from tests.conftest import ServerProcess, build_onnx_mlp, free_port


@pytest.fixture(scope="session")
def compat_models(tmp_path_factory, sklearn_dir):
    pytest.importorskip("tensorflow", reason="needs tensorflow (pip install 'hyperserve[tensorflow]')")
    from tests.helpers.tf_models import save_upper

    root = tmp_path_factory.mktemp("compat")
    (root / "mlp").mkdir()
    weights = build_onnx_mlp(root / "mlp" / "model.onnx", two_outputs=True)
    save_upper(root / "upper")
    return {"mlp": root / "mlp", "iris": sklearn_dir, "upper": root / "upper"}, weights


@pytest.fixture(scope="module", params=[1, 2], ids=["1-worker", "2-workers"])
def triton_server(request, compat_models):
    paths, weights = compat_models
    grpc_port = free_port()
    args = ["--grpc-port", str(grpc_port)]
    for name, path in paths.items():
        args += ["--model", f"{name}={path}"]
    server = ServerProcess(args, env={"HYPERSERVE_WORKERS": str(request.param)})
    try:
        server.wait_ready(timeout=120)
    except Exception:
        server.stop()
        raise
    server.grpc_url = f"127.0.0.1:{grpc_port}"
    server.http_url = f"127.0.0.1:{server.port}"
    server.weights = weights
    server.workers = request.param
    yield server
    assert server.stop() == 0, server.output()
