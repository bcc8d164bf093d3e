"""hyperserve's own routes: GET /live (200 while the process runs: the liveness probe),
GET /stats (this worker's answers by error status) and GET /v1/models/{m}[/versions/{v}]/stats
(the scheduler's queue and batch sizes)."""

from __future__ import annotations

import os

from ..errors import ServingError
from ..http import Request, Response
from ..router import HEALTH, NO_PARAMS, Params, Route
from .common import Context, failure

NAME = "admin"
_ALIVE = b'{"status":"alive"}'


def routes(context: Context) -> list[Route]:
    plane = context.plane

    def live(request: Request, params: Params = NO_PARAMS) -> Response:
        return Response(200, _ALIVE)

    def stats(request: Request, params: Params) -> Response:
        try:
            model = plane.model(params["model"], params.get("version"))
        except ServingError as err:
            return failure(err)
        stats = plane.statistics(model)
        stats["batch_sizes"] = {str(k): v for k, v in stats.get("batch_sizes", {}).items()}
        return Response.json(stats)

    def server_stats(request: Request, params: Params = NO_PARAMS) -> Response:
        return Response.json({"worker_pid": os.getpid(),
                              "error_answers": {str(k): v for k, v in sorted(plane.error_answers.items())}})

    return [Route("/live", ("GET",), live, kind=HEALTH), Route("/stats", ("GET",), server_stats),
            Route("/v1/models/{model}/stats", ("GET",), stats),
            Route("/v1/models/{model}/versions/{version}/stats", ("GET",), stats)]
