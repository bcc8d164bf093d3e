"""The least a Python client can do for ``hyperserve batch --endpoint``, to bound what a leaner job
client could give: JSON lines read by the job's reader, requests of 64 as the job builds them, the
job's own HTTP client with as many in flight, the predictions split as the job splits them, and the
output lines written natively in input order. No shards, no instanceConfig, no retries and no error
lines: it is a measurement, not a job (it stops at the first answer that is not a 200).

    python bench/peers/least_client.py URL INPUT.jsonl OUTPUT.jsonl [IN_FLIGHT]

Prints {"instances", "rows_per_s", "client_cpu_ns_per_row"} on stdout, CPU counted after start-up
(counting the input's records, as the job does before its first shard, is part of it).
"""

import asyncio
import itertools
import sys
import time
from collections import deque

import orjson
import uvloop

from hyperserve.bench.peers.lean_input import cpu_s, instance_batches
from hyperserve.server.batch.cli import ENDPOINT_CONCURRENCY
from hyperserve.server.batch.http_client import HttpClient
from hyperserve.server.batch.instances import request_body, result_lines
from hyperserve.server.batch.predictors import RequestFailed, predictions_of


async def run(url: str, input_path: str, output_path: str, in_flight: int) -> dict:
    loop = asyncio.get_running_loop()
    client = HttpClient(url, size=in_flight, timeout_s=600, headers={})
    window: deque = deque()  # (instances, future of their predictions), in input order

    def send(instances: list[bytes]) -> None:
        answer = loop.create_future()

        def reply(outcome):
            if type(outcome) is tuple and outcome[0] == 200:
                try:
                    answer.set_result(predictions_of(outcome[1], len(instances)))
                    return
                except RequestFailed as err:  # raised here, it would leave the answer unsettled
                    outcome = err.message
            answer.set_exception(RuntimeError(f"{url} answered {outcome!r:.300}"))

        client.send(request_body(instances, None), reply)
        window.append((instances, answer))

    batches = instance_batches(input_path)  # counts the records: part of start-up
    started, cpu_before, rows = time.perf_counter(), cpu_s(), 0
    with open(output_path, "wb") as sink:
        while True:
            for instances in itertools.islice(batches, in_flight - len(window)):
                send(instances)
            if not window:
                break
            try:
                await window[0][1]
            except RuntimeError:
                for _, pending in window:  # retrieved: the first failure is the one to tell
                    if pending.done():
                        pending.exception()
                raise
            while window and window[0][1].done():
                instances, answer = window.popleft()
                sink.write(result_lines(instances, answer.result(), False))
                rows += len(instances)
    elapsed, cpu = time.perf_counter() - started, cpu_s() - cpu_before
    client.close()
    return {"instances": rows, "rows_per_s": round(rows / elapsed, 1),
            "client_cpu_ns_per_row": round(cpu * 1e9 / rows)}


def main() -> None:
    url, input_path, output_path = sys.argv[1:4]
    in_flight = int(sys.argv[4]) if len(sys.argv) > 4 else ENDPOINT_CONCURRENCY
    try:
        print(orjson.dumps(uvloop.run(run(url, input_path, output_path, in_flight))).decode())
    except RuntimeError as err:
        sys.exit(f"least_client: {err}")


if __name__ == "__main__":
    main()
