"""The port `records serve --workers` holds for its workers (joinedup.web.listening)."""

from __future__ import annotations

import pickle
import socket
from multiprocessing.reduction import ForkingPickler

import pytest

from joinedup.web.listening import bind_plain, shared_port


def test_a_second_server_is_refused_while_the_first_has_no_worker_listening() -> None:
    """Between binding the port and its first worker listening (a worker's start took 7.5 s
    at load 12), or while every worker is being replaced, a second server on the port is
    still refused: otherwise its workers would join the first's on the port
    (`SO_REUSEPORT`, same user) and the kernel would share connections out between two
    servers, perhaps over different stores."""
    first = shared_port("127.0.0.1", 0)
    with first:
        port = first.getsockname()[1]
        with pytest.raises(OSError):
            shared_port("127.0.0.1", port).close()
        # a worker's socket (sent to its process) still binds the port and listens
        worker = pickle.loads(ForkingPickler.dumps(first))
        with worker:
            worker.listen()
            assert worker.getsockname() == first.getsockname()
            with pytest.raises(OSError):
                shared_port("127.0.0.1", port).close()
    again = shared_port("127.0.0.1", port)  # and once the first has stopped, a new one may
    again.close()


def test_a_port_another_program_listens_on_is_refused() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            shared_port("127.0.0.1", taken.getsockname()[1]).close()


def test_without_reuse_port_the_workers_share_one_plain_socket() -> None:
    """Where the system has no SO_REUSEPORT (Windows), `records serve --workers` binds one
    socket as Uvicorn does, inheritable by its workers, and a port in use is refused."""
    sock = bind_plain("127.0.0.1", 0)
    with sock:
        assert sock.get_inheritable()
        assert not sock.getsockopt(socket.SOL_SOCKET, getattr(socket, "SO_REUSEPORT", 15))
        sock.listen()
        with pytest.raises(OSError):
            bind_plain("127.0.0.1", sock.getsockname()[1]).close()
