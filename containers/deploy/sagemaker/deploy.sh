#!/usr/bin/env bash
# Creates the SageMaker model (model.json) and endpoint (endpoint-config.json). SageMaker starts
# the container as `docker run IMAGE serve` with model.tar.gz unpacked in /opt/ml/model and sends
# GET /ping and POST /invocations to port 8080. Push the image to ECR first.
set -euo pipefail
cd "$(dirname "$0")"
aws sagemaker create-model --cli-input-json file://model.json
aws sagemaker create-endpoint-config --cli-input-json file://endpoint-config.json
aws sagemaker create-endpoint --endpoint-name iris-sklearn --endpoint-config-name iris-sklearn
