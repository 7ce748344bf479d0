"""TCP ports on the loopback: free ones for tests, and whether one is taken or answers.

The local broker, its controller and the workers all listen on 127.0.0.1. These helpers
let a cluster refuse to start on a taken port (before touching its data directory), let
tests pick ports no other run uses, and give the broker's readiness check a cheap first
step before a real Kafka round trip.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from typing import Final

__all__ = ["HOST", "free_port", "free_ports", "port_in_use", "tcp_accepts"]

#: Every local node listens here only.
HOST: Final = "127.0.0.1"


def free_ports(count: int, host: str = HOST) -> list[int]:
    """``count`` distinct TCP ports that are free right now on ``host``.

    All sockets are held open until every port is chosen, so the ports differ from one
    another.  As with any such helper, another process may take a port before you do.
    """
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_port(host: str = HOST) -> int:
    """A TCP port that is free right now on ``host`` (for tests)."""
    return free_ports(1, host)[0]


def port_in_use(port: int, host: str = HOST) -> bool:
    """True if a listening socket already holds ``host:port``.

    SO_REUSEADDR is set, as the JVM does for server sockets: connections of a previous
    broker lingering in TIME_WAIT do not count, a listening socket (also one bound to the
    wildcard address) does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def tcp_accepts(port: int, host: str = HOST, timeout: float = 1.0) -> bool:
    """True if something accepts a TCP connection on ``host:port`` right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
