"""The router: exact and templated matching, 404, 405 with Allow, HEAD, and conflicts between
profiles; and the profile set --protocols chooses."""

from __future__ import annotations

import orjson
import pytest

from hyperserve.server.errors import ServingError
from hyperserve.server.http import Request, Response
from hyperserve.server.protocols import ALL, PROFILES, Context, Settings, build_router, parse_protocols
from hyperserve.server.dataplane import DataPlane
from hyperserve.server.router import Route, RouteConflict, Router


def ask(router, method: str, path: str) -> Response:
    return router(Request(method, path, "", {}, b"", "1.1", True))


def echo(name):
    return lambda request, params: Response.json({"route": name, **params})


def body(response: Response):
    return orjson.loads(response.body)


def test_exact_and_templated_routes_match_with_their_parameters():
    router = Router()
    router.add("a", [Route("/predict", ("POST",), echo("predict")),
                     Route("/v1/models/{model}:predict", ("POST",), echo("v1")),
                     Route("/v1/models/{model}", ("GET",), echo("status")),
                     Route("/v1/models/{model}/versions/{version}", ("GET",), echo("status-v"))])
    assert body(ask(router, "POST", "/predict")) == {"route": "predict"}
    assert body(ask(router, "POST", "/v1/models/iris:predict")) == {"route": "v1", "model": "iris"}
    assert body(ask(router, "GET", "/v1/models/iris")) == {"route": "status", "model": "iris"}
    assert body(ask(router, "GET", "/v1/models/iris/versions/2")) == {"route": "status-v", "model": "iris",
                                                                        "version": "2"}
    # A parameter is one segment, never a ':' suffix: GET on :predict is a 405, not model "iris:predict".
    response = ask(router, "GET", "/v1/models/iris:predict")
    assert response.status == 405 and response.headers == {"allow": "POST"}
    assert ask(router, "GET", "/v1/models/iris/more").status == 404
    assert body(ask(router, "GET", "/nothing")) == {"error": "no route for /nothing"}


def test_405_names_the_allowed_methods_and_head_answers_as_get():
    router = Router()
    router.add("a", [Route("/health", ("GET",), echo("health")), Route("/predict", ("POST", "PUT"), echo("p"))])
    assert body(ask(router, "HEAD", "/health")) == {"route": "health"}
    response = ask(router, "DELETE", "/health")
    assert response.status == 405 and response.headers == {"allow": "GET, HEAD"}
    assert "allowed: GET, HEAD" in body(response)["error"]
    assert ask(router, "GET", "/predict").headers == {"allow": "POST, PUT"}


def test_a_profile_error_body_answers_its_own_405():
    router = Router()
    custom = lambda status, message, headers: Response.json({"code": status, "message": message}, status, headers)  # noqa: E731
    router.add("ts", [Route("/predictions/{model}", ("POST",), echo("ts"), custom)])
    response = ask(router, "GET", "/predictions/m")
    assert response.status == 405 and body(response)["code"] == 405


def test_two_profiles_may_not_claim_one_route_unless_they_share_its_endpoint():
    router = Router()
    shared = echo("ping")
    router.add("a", [Route("/ping", ("GET",), shared), Route("/v1/models/{model}", ("GET",), echo("a"))])
    router.add("b", [Route("/ping", ("GET",), shared)])  # the same endpoint: not a conflict
    with pytest.raises(RouteConflict, match="GET /v1/models/{name} is already served by the a profile"):
        router.add("c", [Route("/v1/models/{name}", ("GET",), echo("c"))])
    router.add("d", [Route("/v1/models/{name}", ("POST",), echo("d"))])  # another method is free
    assert body(ask(router, "POST", "/v1/models/x")) == {"route": "d", "name": "x"}
    assert body(ask(router, "GET", "/v1/models/x")) == {"route": "a", "model": "x"}


class _Repository:
    """No models: the routes are built, none is asked for."""

    default_model = None

    def __iter__(self):
        return iter(())

    def get(self, name, version=None):
        from hyperserve.server.errors import NotFound

        raise NotFound(f"model '{name}' is not served here")


def plane():
    return DataPlane(_Repository())


def test_every_profile_is_served_by_default_and_a_conflicting_one_is_left_out():
    names, explicit = parse_protocols("all")
    assert names == list(ALL) and not explicit
    router = build_router(Context(plane()), names, explicit)
    assert router.profiles == list(PROFILES)
    # Vertex's health route moved onto another profile's path: that profile is left out by default...
    clash = Context(plane(), Settings(health_route="/ping"))
    assert "sagemaker" not in build_router(clash, names, False).profiles
    # ...and refused when asked for by name.
    with pytest.raises(ServingError, match="sagemaker profile conflicts"):
        build_router(clash, ["vertex", "sagemaker"], True)


def test_protocols_switch_profiles_off():
    names, explicit = parse_protocols("vertex,v2")
    router = build_router(Context(plane()), names, explicit)
    assert router.profiles == ["vertex", "v2"]
    assert ask(router, "GET", "/ping").status == 404
    assert ask(router, "GET", "/v2/health/live").status == 200
    with pytest.raises(ServingError, match="unknown profile"):
        parse_protocols("vertex,soap")
