"""A forked helper process fed with pickled messages: the second core for an import.

:class:`Sidecar` forks (before the import starts its own threads), and the child runs
``serve(recv, reply)``: ``recv()`` returns the next message the parent sent (None once the parent closed its
end), ``reply(obj)`` answers the parent's :meth:`Sidecar.request`. Messages are pickled in the parent's thread and
written to the pipe by a sender thread, so the parent parses on while the child works; the queue is bounded, so a
child that falls behind slows the parent down instead of letting memory grow.

The child never touches what it inherited from the parent's database connection (closing it would end the
parent's session on the shared socket): it opens its own connections and leaves with ``os._exit``, so no
inherited object is finalised. An exception in the child is sent back as the answer to the next request and
raised there as :class:`SidecarError` with the child's traceback; a child that died answers with EOF, also a
:class:`SidecarError`.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import struct
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

_LEN = struct.Struct(">Q")
_QUEUED_MESSAGES = 8  # messages waiting for the sender thread before send() blocks


class SidecarError(RuntimeError):
    """The child failed (its traceback is the message) or went away."""


def available() -> bool:
    return hasattr(os, "fork")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_exact(fd: int, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, min(n - len(buf), 1 << 20))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _read_message(fd: int) -> tuple[bool, Any]:
    head = _read_exact(fd, _LEN.size)
    if head is None:
        return False, None
    body = _read_exact(fd, _LEN.unpack(head)[0])
    if body is None:
        return False, None
    return True, pickle.loads(body)  # noqa: S301 - our own child/parent, over a private pipe


def _frame(obj: Any) -> bytes:
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(body)) + body


class Sidecar:
    """The parent's end. ``serve`` runs in the forked child; see the module docstring."""

    def __init__(self, serve: Callable[[Callable[[], Any], Callable[[Any], None]], None]) -> None:
        to_child_r, to_child_w = os.pipe()
        to_parent_r, to_parent_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            os.close(to_child_w)
            os.close(to_parent_r)
            code = 0
            try:
                _child(serve, to_child_r, to_parent_w)
            except BaseException:  # noqa: BLE001 - the child must leave through os._exit whatever happens
                code = 1
            finally:
                os._exit(code)
        os.close(to_child_r)
        os.close(to_parent_w)
        self.pid = pid
        self._out = to_child_w
        self._in = to_parent_r
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUED_MESSAGES)
        self._send_error: BaseException | None = None
        self._sender = threading.Thread(target=self._send_loop, name="sidecar-sender", daemon=True)
        self._sender.start()
        self._closed = False

    def _send_loop(self) -> None:
        while (data := self._queue.get()) is not None:
            if self._send_error is not None:
                continue  # the child is gone: drain, the next request reports it
            try:
                _write_all(self._out, data)
            except OSError as exc:
                self._send_error = exc

    def send(self, obj: Any) -> None:
        """Queue a message for the child (pickled here; written by the sender thread)."""
        if self._closed:
            raise SidecarError("sidecar is closed")
        self._queue.put(_frame(obj))

    @property
    def backlog(self) -> int:
        """Messages queued for the child and not yet written to it."""
        return self._queue.qsize()

    def request(self, obj: Any) -> Any:
        """Send ``obj`` and wait for the child's reply (every message before it is handled first)."""
        self.send(obj)
        ok, answer = _read_message(self._in)
        if not ok:
            raise SidecarError(f"sidecar process {self.pid} went away ({self._exit_status()})")
        if isinstance(answer, _ChildFailed):
            raise SidecarError(f"sidecar process {self.pid} failed:\n{answer.text}")
        return answer

    def _exit_status(self, wait_s: float = 5.0) -> str:
        # the pipe reports EOF while the child is still exiting: give it a moment to become reapable
        deadline = time.monotonic() + wait_s
        while True:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return "already reaped"
            if pid:
                return f"exit status {os.waitstatus_to_exitcode(status)}"
            if time.monotonic() > deadline:
                return "still running"
            time.sleep(0.01)

    def close(self) -> None:
        """Tell the child there is nothing more (its ``recv()`` returns None), then wait for it to exit."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._sender.join()
        os.close(self._out)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        os.close(self._in)

    def __enter__(self) -> Sidecar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ChildFailed:
    def __init__(self, text: str) -> None:
        self.text = text


def _child(serve: Callable[[Callable[[], Any], Callable[[Any], None]], None], fd_in: int, fd_out: int) -> None:
    failed: list[str] = []

    def recv() -> Any:
        ok, msg = _read_message(fd_in)
        return msg if ok else None

    def reply(obj: Any) -> None:
        _write_all(fd_out, _frame(obj))

    try:
        serve(recv, reply)
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        failed.append(traceback.format_exc())
    if failed:
        # answer every request still to come with the failure (the parent is waiting on one of them)
        reply(_ChildFailed(failed[0]))
        raise SystemExit(1)
