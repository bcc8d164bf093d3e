"""The floor of grpc.aio itself: a server whose ModelInfer answers a fixed reply without reading
the request or running anything, on uvloop as hyperserve's workers run, driven by the same load
generator as the G1 workload. What it reaches is the most any grpc.aio-based server (hyperserve,
KServe, MLServer) can, on this machine, with this pinning.

  python -m hyperserve.bench.grpc_floor --concurrency 1,32 --duration 10
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from . import grpc_loadgen, oip_requests, report
from .peers.run import free_port

_SERVER = """
import sys, grpc, uvloop
from hyperserve.server.grpc import grpc_service_pb2 as pb

REPLY = pb.ModelInferResponse(model_name="model", model_version="1").SerializeToString()

async def main(port):
    server = grpc.aio.server()
    async def infer(request, context):
        return REPLY
    handler = grpc.method_handlers_generic_handler("inference.GRPCInferenceService", {
        "ModelInfer": grpc.unary_unary_rpc_method_handler(infer)})  # bytes in, bytes out
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()

uvloop.run(main(int(sys.argv[1])))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--client-cpu", default="1")
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {int(c) for c in args.client_cpu.split(",")})
    port = free_port()
    server = subprocess.Popen(["taskset", "-c", args.server_cpu, sys.executable, "-c", _SERVER, str(port)])
    try:
        time.sleep(2)
        import numpy as np

        request = oip_requests.grpc_request("model", [oip_requests.Tensor("x", "FP64", np.zeros((1, 4)))])
        target = grpc_loadgen.GrpcTarget("127.0.0.1", port, "model")
        rows = []
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            stats = grpc_loadgen.run(grpc_loadgen.GrpcLoadGenerator(
                target, request, concurrency=concurrency, duration=args.duration, warmup=args.warmup))
            rows.append(report.summarize(stats, {"label": f"grpc.aio floor, {concurrency} in flight",
                                                 "concurrency": concurrency}))
        print(report.table(rows, label="label"))
    finally:
        server.terminate()
        server.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
