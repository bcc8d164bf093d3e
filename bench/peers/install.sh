#!/usr/bin/env bash
# Installs each named peer server into its own virtualenv under bench/.venvs/NAME.
#   bash bench/peers/install.sh cpr kserve mlserver bentoml torchserve nginx
# Pins are the versions the published comparison was measured with; change them to compare others.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-python3}"

venv() {  # venv NAME PACKAGES...
  local name="$1"; shift
  local dir="bench/.venvs/$name"
  if [ ! -x "$dir/bin/python" ]; then "$PYTHON" -m venv "$dir"; fi
  "$dir/bin/python" -m pip install -q --upgrade pip
  "$dir/bin/python" -m pip install -q "$@"
  echo "installed $name into $dir"
}

for peer in "$@"; do
  case "$peer" in
    cpr)        venv cpr "google-cloud-aiplatform[prediction]==2.7.0" scikit-learn joblib uvicorn ;;
    kserve)     venv kserve "kserve==0.21.0" scikit-learn joblib ;;
    mlserver)   venv mlserver "mlserver==1.7.1" "mlserver-sklearn==1.7.1" "uvloop<0.22" ;;  # 1.7.1 fails on uvloop 0.22+
    bentoml)    venv bentoml "bentoml==1.4.30" scikit-learn joblib ;;
    torchserve) venv torchserve "torchserve==0.12.0" "torch-model-archiver==0.12.0" "torch==2.13.0" pyyaml ;;
    # Microsoft's Azure ML inference server (azmlinfsrv), also what tests/e2e/test_azureml.py compares with.
    azureml)    venv azureml "azureml-inference-server-http==1.5.0" "inference-schema[numpy-support,pandas-support]~=1.8.0" \
                  numpy pandas scikit-learn joblib ;;
    # MLflow's scoring server (mlflow models serve), also what tests/e2e/test_mlflow.py compares with.
    mlflow)     venv mlflow "mlflow==3.17.2" "scikit-learn==1.9.1" joblib "torch==2.13.0" ;;
    uvicorn)    venv uvicorn uvicorn uvloop httptools ;;
    nginx)
      if ! command -v nginx >/dev/null; then
        SUDO=""; if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
        $SUDO apt-get install -y -qq nginx-light >/dev/null
      fi
      echo "nginx: $(command -v nginx)" ;;
    *) echo "unknown peer '$peer' (cpr kserve mlserver bentoml torchserve azureml mlflow uvicorn nginx)" >&2; exit 2 ;;
  esac
done
