"""One listening socket a worker process, so the kernel shares connections out evenly.

Uvicorn's `--workers N` binds one socket and every worker accepts from its one queue; a worker
that wakes first takes what is waiting. Keep-alive clients stay on the worker that accepted
them, so a burst of connections can settle unevenly for good: 50 clients of the records
benchmark were measured split 39 and 11 between two workers (7 December 2026,
docs/records.md), and the 39 then wait on one interpreter while the other is half idle.

With `SO_REUSEPORT` (Linux 3.9+) each worker listens on a socket of its own bound to the same
address, and the kernel hands each new connection to one of them by a hash of its addresses
(as nginx's `reuseport` and Gunicorn's `--reuse-port` do): the split is then a fair coin's for
each connection. The parent binds a socket with the option and never listens on it: it holds
the port, and Uvicorn's supervisor passes it to each worker it starts or restarts. Passing it
to a process (pickling) makes a new socket there, bound to the same address with the same
options, which the worker's server then listens on.
"""

from __future__ import annotations

import socket
from typing import Any

#: Whether this system has `SO_REUSEPORT` (Linux, the BSDs; not Windows).
REUSE_PORT = hasattr(socket, "SO_REUSEPORT")


def bind_plain(host: str, port: int) -> socket.socket:
    """One socket at `host`:`port` for every worker to accept from (as Uvicorn binds it),
    where there is no `SO_REUSEPORT`: connections then go to whichever worker wakes first."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _bound(family: int, address: tuple[Any, ...], *, reuse_address: bool = True) -> socket.socket:
    """A socket bound to `address` with `SO_REUSEPORT`: a worker's, with `SO_REUSEADDR` too
    (its closed connections' TIME_WAIT then never keeps the next server off the port), or,
    without it, the parent's (which so keeps a second server's plain bind off the port while
    no worker listens yet: Linux lets two `SO_REUSEADDR` sockets bind one port when neither
    listens)."""
    sock = SharedPortSocket(family, socket.SOCK_STREAM)
    try:
        if reuse_address:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


class SharedPortSocket(socket.socket):
    """A TCP socket bound with `SO_REUSEPORT`; sent to another process, it arrives as a new
    socket bound to the same address (its own queue of connections), not a copy of this one."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_bound, (self.family, self.getsockname()))


def url_address(host: str, port: int) -> str:
    """`host`:`port` as a URL writes it: an IPv6 address in brackets (`[::1]:8001`)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def shared_port(host: str, port: int) -> SharedPortSocket:
    """The parent's socket for workers at `host`:`port` (0: a free port, then this socket's).

    Checked first with a plain bind, so that a port another program already holds fails here
    with the system's message (a socket bound with `SO_REUSEPORT` could otherwise join a group
    another program of the same user listens in). The parent's own socket is bound without
    `SO_REUSEADDR`, so that the check also fails for a second server started while the first
    has no worker listening (starting, or all being replaced), whose workers would otherwise
    join the first's on the port and be handed some of its connections."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        port = probe.getsockname()[1]
    sock = _bound(family, (host, port), reuse_address=False)
    assert isinstance(sock, SharedPortSocket)
    return sock
