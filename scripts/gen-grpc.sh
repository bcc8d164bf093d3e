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
# A pool of their own, not protobuf's default one: tritonclient registers the same file name and
# the same `inference.*` names there, and a process that imports both (a client beside a server,
# the tests) would be refused the second definition. The wire format does not depend on the pool.
sed -i 's/^DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile(/DESCRIPTOR = _descriptor_pool.DescriptorPool().AddSerializedFile(/' \
  server/grpc/grpc_service_pb2.py
