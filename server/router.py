"""One router for every protocol profile: each declares its routes as data; matching, 404, 405 with
``Allow`` and HEAD are decided here, once.

A route's path is exact (``/predict``) or a template whose ``{params}`` each match one path
segment up to a ``:`` (``/v1/models/{model}:predict``, ``/v2/models/{model}/versions/{version}/infer``).
Exact paths are one dict lookup (the hot path); templates are tried in the order they were added,
grouped by their first segment. Two profiles may not claim the same method on the same path with
different endpoints: the second is refused (RouteConflict). A path both claim with one shared
endpoint (TorchServe's and SageMaker's ``/ping``) is not a conflict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from .http import Deferred, Request, Response

Params = dict[str, str]
Endpoint = Callable[[Request, Params], "Response | Deferred | Awaitable[Response]"]
# A profile's error body: (status, message, headers) → Response.
ErrorBody = Callable[[int, str, "dict[str, str] | None"], Response]

NO_PARAMS: Params = {}
_PARAM = re.compile(r"\{(\w+)\}")


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response.error(status, message, headers)


# What a route is for: access control leaves health and metrics routes open unless told otherwise.
API, HEALTH, METRICS = "api", "health", "metrics"


@dataclass(frozen=True)
class Route:
    path: str
    methods: tuple[str, ...]
    endpoint: Endpoint
    error: ErrorBody = json_error  # the owning profile's error body, used for its 405s (and 401s)
    kind: str = API

    @property
    def shape(self) -> str:
        """The path with its parameters' names blanked: two templates that match the same paths."""
        return _PARAM.sub("{}", self.path)


class RouteConflict(ValueError):
    pass


class _Entry:
    """Every method claimed on one path (or template): method → (endpoint, profile, pattern); a
    method's pattern differs from the entry's when its profile named the parameters differently."""

    __slots__ = ("methods", "error", "pattern")

    def __init__(self, error: ErrorBody, pattern: re.Pattern | None):
        self.methods: dict[str, tuple[Endpoint, str, re.Pattern | None]] = {}
        self.error = error
        self.pattern = pattern

    def allow(self) -> str:
        return ", ".join(sorted(set(self.methods) | ({"HEAD"} if "GET" in self.methods else set())))


def _compile(template: str) -> re.Pattern:
    pattern, last = "", 0
    for match in _PARAM.finditer(template):
        pattern += re.escape(template[last:match.start()]) + f"(?P<{match.group(1)}>[^/:]+)"
        last = match.end()
    return re.compile(pattern + re.escape(template[last:]) + r"\Z")


def _first_segment(path: str) -> str:
    return path[1:].split("/", 1)[0]


class Router:
    """``guard``, when given, wraps the endpoints of the route kinds it covers (server/access.py):
    a server without access control pays nothing for it."""

    def __init__(self, guard=None):
        self.guard = guard
        self._guarded: dict[Endpoint, Endpoint] = {}  # one wrapper per endpoint, for shared ones
        self._exact: dict[str, _Entry] = {}
        # path → method → (endpoint, profile): the hot path
        self._exact_methods: dict[str, dict[str, tuple[Endpoint, str]]] = {}
        self._templates: dict[str, list[_Entry]] = {}  # first segment → entries in order
        self._by_shape: dict[str, _Entry] = {}
        self.profiles: list[str] = []

    def _endpoint(self, route: Route) -> Endpoint:
        if self.guard is None or not self.guard.covers(route.kind):
            return route.endpoint
        guarded = self._guarded.get(route.endpoint)
        if guarded is None:
            guarded = self._guarded[route.endpoint] = self.guard.protect(route.endpoint, route.error)
        return guarded

    def check(self, profile: str, routes: list[Route]) -> str | None:
        """Why ``routes`` cannot be added beside the profiles already here, or None."""
        for route in routes:
            entry = self._by_shape.get(route.shape)
            if entry is None:
                continue
            for method in route.methods:
                claimed = entry.methods.get(method)
                if claimed is not None and claimed[0] not in (route.endpoint, self._guarded.get(route.endpoint)):
                    return f"{method} {route.path} is already served by the {claimed[1]} profile"
        return None

    def add(self, profile: str, routes: list[Route]) -> None:
        conflict = self.check(profile, routes)
        if conflict is not None:
            raise RouteConflict(f"the {profile} profile cannot be served with the others: {conflict}")
        for route in routes:
            entry = self._by_shape.get(route.shape)
            if entry is None:
                templated = "{" in route.path
                entry = self._by_shape[route.shape] = _Entry(route.error, _compile(route.path) if templated else None)
                if templated:
                    self._templates.setdefault(_first_segment(route.path), []).append(entry)
                else:
                    self._exact[route.path] = entry
            pattern = entry.pattern if entry.pattern is None or entry.pattern.pattern == _compile(route.path).pattern \
                else _compile(route.path)
            endpoint = self._endpoint(route)
            for method in route.methods:
                if method not in entry.methods:  # a shared endpoint keeps its first profile (metrics' label)
                    entry.methods[method] = (endpoint, profile, pattern)
            if entry.pattern is None:
                self._exact_methods[route.path] = {m: (e, p) for m, (e, p, _) in entry.methods.items()}
        self.profiles.append(profile)

    def __call__(self, request: Request) -> Response | Deferred | Awaitable[Response]:
        path = request.path
        methods = self._exact_methods.get(path)
        if methods is not None:
            claimed = methods.get(request.method)
            if claimed is not None:
                request.profile = claimed[1]
                return claimed[0](request, NO_PARAMS)
            return self._other_method(request, self._exact[path], NO_PARAMS)
        for entry in self._templates.get(_first_segment(path), ()):
            match = entry.pattern.match(path)
            if match is not None:
                claimed = entry.methods.get(request.method)
                if claimed is not None:
                    request.profile = claimed[1]
                    if claimed[2] is not entry.pattern:
                        match = claimed[2].match(path)
                    return claimed[0](request, match.groupdict())
                return self._other_method(request, entry, match.groupdict())
        return Response.error(404, f"no route for {path}")

    @staticmethod
    def _other_method(request: Request, entry: _Entry, params: Params) -> Any:
        if request.method == "HEAD" and "GET" in entry.methods:
            endpoint, request.profile, _ = entry.methods["GET"]
            return endpoint(request, params)
        allow = entry.allow()
        return entry.error(405, f"method {request.method} is not allowed on {request.path} (allowed: {allow})",
                           {"allow": allow})
