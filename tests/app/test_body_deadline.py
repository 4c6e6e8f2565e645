"""The body deadline outside gevent (sync and gthread workers): the socket's timeout."""

from __future__ import annotations

import socket
import time

import pytest

from app.body_deadline import BodyTimeout, DeadlineInput


def test_a_stalled_body_times_out_and_the_read_side_is_shut() -> None:
    server_side, client_side = socket.socketpair()
    with server_side, client_side:
        client_side.sendall(b"{")  # 1 byte of a longer body, then nothing
        stream = DeadlineInput(server_side.makefile("rb"), time.monotonic() + 0.2, server_side)
        started = time.monotonic()
        with pytest.raises(BodyTimeout):
            stream.read(1000)
        assert time.monotonic() - started < 2.0
        assert server_side.recv(1) == b""  # shut for reading: nothing more is waited for
        with pytest.raises(BodyTimeout):
            stream.read(1)  # past the deadline: refused at once


def test_a_body_that_arrives_in_time_is_read_whole() -> None:
    server_side, client_side = socket.socketpair()
    with server_side, client_side:
        client_side.sendall(b'{"age": 1}')
        stream = DeadlineInput(server_side.makefile("rb"), time.monotonic() + 5, server_side)
        assert stream.read(10) == b'{"age": 1}'
        assert server_side.gettimeout() is None  # the socket's own timeout is restored
