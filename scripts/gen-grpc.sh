#!/usr/bin/env bash
# Regenerates server/grpc/grpc_service_pb2{,_grpc}.py from server/grpc/grpc_service.proto.
# The generated modules are checked in, so installing hyperserve needs no protoc; run this after
# changing the .proto (needs grpcio-tools, which the test extra installs).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
"$PYTHON" -m grpc_tools.protoc -I server/grpc --python_out=server/grpc --grpc_python_out=server/grpc \
  server/grpc/grpc_service.proto
# protoc writes a top-level import; the modules live in the hyperserve.server.grpc package.
sed -i 's/^import grpc_service_pb2 as grpc__service__pb2$/from . import grpc_service_pb2 as grpc__service__pb2/' \
  server/grpc/grpc_service_pb2_grpc.py
