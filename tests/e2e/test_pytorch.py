"""The native PyTorch handler over sockets: TorchScript, torch.export, eager (opt-in), errors."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from tests.conftest import ServerProcess
from tests.helpers.torch_models import mlp, save_export, save_torchscript

pytestmark = pytest.mark.e2e
torch = pytest.importorskip("torch", reason="needs torch (pip install torch==2.13.0)")
# On a GPU, handlers that use it compute in TF32 while the reference runs in float32 on the CPU.
RTOL = 1e-3 if torch.cuda.is_available() else 1e-5

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def expected(rows=ROWS) -> np.ndarray:
    with torch.inference_mode():
        return mlp()(torch.tensor(rows, dtype=torch.float32)).numpy()


def predict(server, body) -> httpx.Response:
    return httpx.post(server.url + "/predict", json=body, timeout=30)


@pytest.mark.parametrize("kind", ["torchscript", "export"])
def test_compiled_models_serve_with_their_signature(start_server, tmp_path, kind):
    if kind == "torchscript":
        save_torchscript(tmp_path / "model.pt")
    else:
        save_export(tmp_path / "model.pt2")
    server = start_server([tmp_path])
    answer = predict(server, {"instances": ROWS})
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(answer.json()["predictions"], expected(), rtol=RTOL)
    metadata = httpx.get(server.url + "/v1/models/model/metadata").json()
    assert metadata["framework"] == "torch"
    spec = metadata["signature"]["inputs"][0]
    assert spec["dtype"] == "float32"
    if kind == "export":  # torch.export knows the shapes: the codec checks them before the model runs
        assert spec["shape"] == [-1, 4] and metadata["signature"]["inputs"][0]["name"] == "x"
        wrong = predict(server, {"instances": [[1.0, 2.0, 3.0]]})
        assert wrong.status_code == 400
        assert wrong.json()["error"] == "instances: input 'x' expects each instance to have shape [4], got [3]"
    else:  # TorchScript does not: torch's own complaint comes back as a 400
        wrong = predict(server, {"instances": [[1.0, 2.0, 3.0]]})
        assert wrong.status_code == 400 and "the model rejected the input" in wrong.json()["error"]
    assert predict(server, {"instances": [["a", "b", "c", "d"]]}).status_code == 400
    assert predict(server, {"instances": ROWS}).status_code == 200


@pytest.mark.skipif(not hasattr(getattr(torch, "_inductor", None), "aoti_load_package"),
                    reason="needs torch >= 2.6 for AOTInductor packages")
@pytest.mark.timeout(600)  # compiling the package takes about a minute on a small CI machine
def test_an_aotinductor_package_serves(start_server, tmp_path):
    from tests.helpers.torch_models import save_aoti_package

    save_aoti_package(tmp_path / "model.pt2")
    server = start_server([tmp_path])
    answer = predict(server, {"instances": ROWS})
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(answer.json()["predictions"], expected(), rtol=RTOL)
    assert httpx.get(server.url + "/v1/models/model/metadata").json()["framework"] == "torch"
    from hyperserve.handlers.base import HandlerConfig
    from hyperserve.handlers.pytorch import TorchHandler

    handler = TorchHandler()
    handler.load(tmp_path / "model.pt2", HandlerConfig())
    assert handler.describe()["kind"] == "aoti" and handler.describe()["device"] == "cpu"  # compiled for the CPU


def test_concurrent_requests_are_batched_and_split_exactly(start_server, tmp_path):
    import concurrent.futures

    save_torchscript(tmp_path / "model.pt")
    server = start_server([tmp_path])
    rng = np.random.default_rng(0)
    bodies = [rng.standard_normal((int(rng.integers(1, 4)), 4)).round(3).tolist() for _ in range(120)]
    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(lambda rows: predict(server, {"instances": rows}), bodies))
    for rows, answer in zip(bodies, answers):
        np.testing.assert_allclose(answer.json()["predictions"], expected(rows), rtol=RTOL, atol=1e-7)


def test_an_eager_model_needs_trust(tmp_path):
    import shutil

    from tests.helpers.torch_models import SRC

    shutil.copy(SRC / "eager_model.py", tmp_path / "model.py")
    torch.save(mlp().state_dict(), tmp_path / "model.pth")
    refused = ServerProcess([str(tmp_path)], env={"HYPERSERVE_LOAD_FAILURE_EXIT_DELAY": "0"})
    assert refused.proc.wait(60) == 1
    assert "eager model: serving it imports and runs model.py; pass --trust-model-code" in refused.output()
    trusted = ServerProcess([str(tmp_path), "--trust-model-code"]).wait_ready()
    try:
        answer = predict(trusted, {"instances": ROWS})
        np.testing.assert_allclose(answer.json()["predictions"], expected(), rtol=RTOL)
    finally:
        trusted.stop()


def test_a_pickled_module_needs_trust(tmp_path):
    import shutil

    from tests.helpers.torch_models import SRC

    torch.save(mlp(), tmp_path / "model.pt")
    shutil.copy(SRC / "eager_model.py", tmp_path)  # the pickle names its class's module
    refused = ServerProcess([str(tmp_path)], env={"HYPERSERVE_LOAD_FAILURE_EXIT_DELAY": "0"})
    assert refused.proc.wait(60) == 1
    assert "is not TorchScript" in refused.output() and "--trust-model-code" in refused.output()
    trusted = ServerProcess([str(tmp_path), "--trust-model-code"]).wait_ready()
    try:
        np.testing.assert_allclose(predict(trusted, {"instances": ROWS}).json()["predictions"], expected(), rtol=RTOL)
    finally:
        trusted.stop()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU visible to torch")
def test_serves_on_the_gpu_when_one_is_usable(start_server, tmp_path):
    save_torchscript(tmp_path / "model.pt")
    server = start_server([tmp_path])
    answer = predict(server, {"instances": ROWS})
    np.testing.assert_allclose(answer.json()["predictions"], expected(), rtol=RTOL)
    from hyperserve.handlers.pytorch import TorchHandler
    from hyperserve.handlers.base import HandlerConfig

    handler = TorchHandler()
    handler.load(tmp_path / "model.pt", HandlerConfig())
    assert handler.describe()["device"].startswith("cuda")
