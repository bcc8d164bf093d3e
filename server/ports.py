"""Owning a port: refusing one another process already serves, and holding it for our workers.

SO_REUSEPORT lets any process of the same user bind a port ours listen on, and the kernel would
then split the traffic between two unrelated servers. So before binding, a probe socket without
SO_REUSEPORT tries the port: it fails while anything is bound there. A supervisor then keeps a
reservation, bound with SO_REUSEPORT but never listening (the kernel hands connections only to
listening sockets), so that the next probe fails even while no worker listens.
"""

from __future__ import annotations

import errno
import socket

from .errors import ServingError


class PortInUse(ServingError):
    pass


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def refuse_if_served(host: str, port: int, what: str) -> None:
    """PortInUse when some socket is already bound to ``port`` (port 0 picks a free one: no check)."""
    if not port:
        return
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR: a connection of an earlier run left in TIME_WAIT does not count; a socket
        # that listens, or one bound without SO_REUSEADDR (a reservation), still does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise PortInUse(f"the {what} port {host}:{port} is already served by another process; "
                                "refusing to share it (choose another port, or stop that server)") from None
            raise


class Reservation:
    """``port`` held for this process and its workers for as long as the reservation is open."""

    def __init__(self, host: str, port: int):
        self.sock = socket.socket(_family(host), socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.sock.bind((host, port))

    def close(self) -> None:
        self.sock.close()


def reserve(host: str, port: int, what: str) -> Reservation | None:
    """Refuse a served port, else hold it; None for port 0."""
    if not port:
        return None
    refuse_if_served(host, port, what)
    return Reservation(host, port)
