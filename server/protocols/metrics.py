"""GET /metrics: every worker's metrics in Prometheus's text format, on the main port and on
--metrics-port. Not a selectable profile: it is served whenever metrics are on."""

from __future__ import annotations

from ..http import Request, Response
from ..metrics.exposition import CONTENT_TYPE
from ..router import METRICS, NO_PARAMS, Params, Route

NAME = "metrics"
PATH = "/metrics"


def routes(metrics) -> list[Route]:
    async def scrape(request: Request, params: Params = NO_PARAMS) -> Response:
        return Response(200, await metrics.scrape(), CONTENT_TYPE)

    return [Route(PATH, ("GET",), scrape, kind=METRICS)]
