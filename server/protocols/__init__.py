"""The protocol front-ends: one module per profile, each a route table over the data plane.

``build_router`` puts the chosen profiles on one Router. By default every profile is served
unless its routes conflict with one served before it (in PROFILES order), which is then left out
with a warning; a profile named in ``--protocols`` that conflicts is an error.
"""

from __future__ import annotations

import logging
from types import ModuleType

from ..errors import ServingError
from ..router import Router
from . import admin, azureml, kserve_v1, mlflow, sagemaker, tf_serving, torchserve, v2, vertex
from .common import Context, Settings

log = logging.getLogger("hyperserve.protocols")

# REST profiles in precedence order. ("grpc", OIP v2 over gRPC, has its own port: server/grpc.)
PROFILES: dict[str, ModuleType] = {m.NAME: m for m in (admin, vertex, kserve_v1, tf_serving, sagemaker, torchserve, v2, azureml,
                                                  mlflow)}
GRPC = "grpc"
ALL = (*PROFILES, GRPC)


def parse_protocols(text: str) -> tuple[list[str], bool]:
    """--protocols → (profile names, whether the user listed them: 'all' or '' means every one)."""
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    if not names or names == ["all"]:
        return list(ALL), False
    unknown = [n for n in names if n not in ALL]
    if unknown:
        raise ServingError(f"--protocols: unknown profile(s) {', '.join(unknown)} (known: {', '.join(ALL)})")
    return names, True


def build_router(context: Context, names: list[str], explicit: bool, guard=None) -> Router:
    router = Router(guard)
    for name in PROFILES:
        if name not in names:
            continue
        routes = PROFILES[name].routes(context)
        conflict = router.check(name, routes)
        if conflict is not None:
            if explicit:
                raise ServingError(f"--protocols: the {name} profile conflicts with another one listed: {conflict}")
            log.warning("the %s profile is not served: %s (choose profiles with --protocols)", name, conflict)
            continue
        router.add(name, routes)
    return router


__all__ = ["ALL", "GRPC", "PROFILES", "Context", "Settings", "build_router", "parse_protocols"]
