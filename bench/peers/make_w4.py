"""Build W4's artifacts: a TorchScript 4-8-3 MLP and its TorchServe archive (run in the torchserve venv)."""

import subprocess
import sys
from pathlib import Path

import torch

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
mlp = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
torch.jit.script(mlp).save(str(out / "model.pt"))
here = Path(__file__).resolve().parent
archiver = [str(Path(sys.executable).parent / "torch-model-archiver"), "--version", "1.0", "--serialized-file",
            str(out / "model.pt"), "--handler", str(here / "torchserve_handler.py"), "--export-path", str(out), "--force"]
# model.mar: both servers read batching from the archive, up to 32 requests per handle() call.
(out / "model-config.yaml").write_text("batchSize: 32\nmaxBatchDelay: 2\n")
subprocess.run([*archiver, "--model-name", "model", "--config-file", str(out / "model-config.yaml")], check=True)
# model-nobatch.mar: TorchServe's default, one request per call (the baseline).
subprocess.run([*archiver, "--model-name", "model-nobatch"], check=True)
print(out / "model.mar")
