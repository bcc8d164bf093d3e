"""The model lifecycle as a transition table: starting → loading → ready → draining (or failed).

Readiness is true only in ``ready``. Every change goes through ``Lifecycle.fire``; an event that
the table does not allow from the current state is a bug and raises.
"""

from __future__ import annotations

import enum
import threading


class State(enum.Enum):
    STARTING = "starting"
    LOADING = "loading"
    READY = "ready"
    DRAINING = "draining"
    FAILED = "failed"


TRANSITIONS: dict[tuple[State, str], State] = {
    (State.STARTING, "load"): State.LOADING,
    (State.LOADING, "loaded"): State.READY,
    (State.LOADING, "failed"): State.FAILED,
    (State.STARTING, "drain"): State.DRAINING,
    (State.LOADING, "drain"): State.DRAINING,
    (State.READY, "drain"): State.DRAINING,
    (State.FAILED, "drain"): State.DRAINING,
    (State.DRAINING, "drain"): State.DRAINING,
    # A load that finishes after draining began does not make the model ready again.
    (State.DRAINING, "loaded"): State.DRAINING,
    (State.DRAINING, "failed"): State.DRAINING,
}


class Lifecycle:
    def __init__(self):
        self.state = State.STARTING
        self.reason = "starting"
        self.ready = False  # state is READY, kept as a plain attribute: read on every request
        self._lock = threading.Lock()

    def fire(self, event: str, reason: str = "") -> State:
        with self._lock:
            key = (self.state, event)
            if key not in TRANSITIONS:
                raise RuntimeError(f"lifecycle event '{event}' is not allowed in state '{self.state.value}'")
            self.state = TRANSITIONS[key]
            self.ready = self.state is State.READY
            self.reason = reason or self.state.value
            return self.state
