"""The sandbox's HTTP edge: the delete endpoint, the admin endpoints, and a launcher that runs it in a thread.

Stdlib ``ThreadingHTTPServer`` speaking HTTP/1.1 with keep-alive: a thread per connection, every answer sent
in one write with an exact ``Content-Length`` (except the truncation fault, which lies on purpose). Decisions
come from :class:`~service.sandbox.state.SandboxState`; this module only reads, waits and writes.

HTTP statuses:

* the endpoint answers **200** with the gateway's JSON for every gateway code, success or not, as the real
  gateway does (``10043``, ``10047``... are 200s);
* injected faults answer **503** or **500** with an nginx-style HTML page (not JSON), keep-alive kept;
* a body over 5 MB gets **413** with an HTML page before it is read, and the connection is closed (the
  gateway's front proxy refuses it; nothing is charged); a body without ``Content-Length`` gets **411**;
* a hang waits ``hang_seconds`` and then closes the connection unanswered, or answers late;
* the admin endpoints answer JSON: 200, 400 ``{"error": ...}`` for a bad request, 404 for an unknown path.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import uuid
from datetime import timedelta, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, cast
from urllib.parse import parse_qs

from service.api.signing import NONCE_HEADER, Credentials
from service.sandbox import admin
from service.sandbox.auth import AuthRefused, authenticate
from service.sandbox.protocol import DELETE_PATH, MAX_BODY_BYTES
from service.sandbox.state import SandboxState, TransportFault

__all__ = ["ADMIN_MAX_BODY_BYTES", "IDLE_TIMEOUT_SECONDS", "SandboxServer"]

logger = logging.getLogger(__name__)

IDLE_TIMEOUT_SECONDS: Final = 120.0
"""A connection idle (or stalled mid-request) this long is closed, as a gateway's keep-alive timeout would."""
ADMIN_MAX_BODY_BYTES: Final = 64 * 1024 * 1024
_JSON: Final = "application/json; charset=utf-8"
_CHINA_STANDARD_TIME: Final = timezone(timedelta(hours=8))
_TRUNCATED_MISSING_BYTES: Final = 1024
_DRAIN_MAX_BYTES: Final = 64 * 1024 * 1024


def _error_page(status: HTTPStatus) -> bytes:
    title = f"{status.value} {status.phrase}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
        "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    ).encode("ascii")


class _SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a hanging handler must not hold up stop()
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: SandboxState, credentials: Credentials) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.state = state
        self.credentials = credentials
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _SandboxHandler)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Wake every handler blocked on an idle keep-alive connection, so stop() leaves no socket open."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the peer
                connection.shutdown(socket.SHUT_RDWR)


class _SandboxHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "imgsweep-sandbox"
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT_SECONDS

    @property
    def _sandbox(self) -> _SandboxHTTPServer:
        return cast(_SandboxHTTPServer, self.server)

    def setup(self) -> None:
        super().setup()
        self._sandbox.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._sandbox.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("sandbox http: " + format, *args)

    # --- routing --------------------------------------------------------------------------------------------

    def do_POST(self) -> None:
        path = self.path.partition("?")[0]
        if path == DELETE_PATH:
            self._delete_images()
            return
        body = self._read_body(ADMIN_MAX_BODY_BYTES, count_as_call=False)
        if body is not None:
            self._send_json(*admin.post(self._sandbox.state, path, body))

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if path == "/healthz":
            self._send_json(HTTPStatus.OK, {"status": "ok"})
        elif path == DELETE_PATH:
            self._send_json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"{DELETE_PATH} takes POST"})
        else:
            self._send_json(*admin.get(self._sandbox.state, path, parse_qs(query)))

    # --- the endpoint ---------------------------------------------------------------------------------------

    def _delete_images(self) -> None:
        server = self._sandbox
        state = server.state
        body = self._read_body(MAX_BODY_BYTES, count_as_call=True)
        if body is None:
            return
        plan = state.plan_call()
        if plan.latency_seconds:
            server.stopping.wait(plan.latency_seconds)
        if plan.transport in {TransportFault.HTTP_503, TransportFault.HTTP_500}:
            state.record_transport_failure(plan.transport.value)
            status = (
                HTTPStatus.SERVICE_UNAVAILABLE
                if plan.transport is TransportFault.HTTP_503
                else HTTPStatus.INTERNAL_SERVER_ERROR
            )
            self._send(status, _error_page(status), content_type="text/html")
            self._log_call(status.value, plan.transport.value)
            return
        if plan.transport is TransportFault.HANG:
            if plan.hang_then == "drop":
                state.record_transport_failure(TransportFault.HANG.value)
                server.stopping.wait(plan.hang_seconds)
                self.close_connection = True
                self._log_call(0, "hang")
                return
            server.stopping.wait(plan.hang_seconds)
        try:
            authenticate(
                method=self.command,
                target=self.path,
                headers=self.headers.items(),
                body=body,
                credentials=server.credentials,
                now=state.wall_clock(),
            )
        except AuthRefused as refused:
            reply = state.record_auth_failure(refused.code, refused.reason)
            self._send(HTTPStatus.OK, reply.render())
            self._log_call(HTTPStatus.OK, reply.code, refused.reason)
            return
        reply = state.handle_delete(body, plan, nonce=self.headers.get(NONCE_HEADER))
        rendered = reply.render()
        if plan.transport is TransportFault.TRUNCATE:
            self._send(
                HTTPStatus.OK,
                rendered[: len(rendered) // 2],
                declared_length=len(rendered) + _TRUNCATED_MISSING_BYTES,
                close=True,
            )
            self._log_call(HTTPStatus.OK, "truncated", reply.code)
            return
        self._send(HTTPStatus.OK, rendered)
        self._log_call(HTTPStatus.OK, reply.code, f"result.code={reply.business_code}")

    # --- reading and writing --------------------------------------------------------------------------------

    def _read_body(self, limit: int, *, count_as_call: bool) -> bytes | None:
        """The request body, or None after answering 411/413/400 and closing the connection.

        An oversized body is read and discarded first (up to ``_DRAIN_MAX_BYTES``), so the client sees the 413
        instead of a reset while it is still sending.
        """
        length_header = self.headers.get("Content-Length")
        if length_header is None or self.headers.get("Transfer-Encoding"):
            self._refuse(HTTPStatus.LENGTH_REQUIRED, count_as_call=count_as_call)
            return None
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if length < 0:
            self._refuse(HTTPStatus.BAD_REQUEST, count_as_call=count_as_call)
            return None
        if length > limit:
            if length <= _DRAIN_MAX_BYTES:
                self._discard(length)
            self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, count_as_call=count_as_call)
            return None
        body = self.rfile.read(length)
        if len(body) != length:  # the client went away mid-body
            self.close_connection = True
            return None
        return body

    def _discard(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                return
            length -= len(chunk)

    def _refuse(self, status: HTTPStatus, *, count_as_call: bool) -> None:
        label = f"http_{status.value}"
        if count_as_call:
            self._sandbox.state.record_transport_failure(label)
        self._send(status, _error_page(status), content_type="text/html", close=True)
        self._log_call(status.value, label)

    def _send_json(self, status: HTTPStatus, document: object) -> None:
        self._send(status, json.dumps(document).encode("ascii"))  # ASCII: ids may hold lone surrogates
        self._log_call(status.value, "admin")

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        *,
        content_type: str = _JSON,
        close: bool = False,
        declared_length: int | None = None,
    ) -> None:
        """Status line, headers and body in one write (no Nagle/delayed-ACK stall between them)."""
        close = close or self.close_connection
        head = (
            f"HTTP/1.1 {status.value} {status.phrase}\r\n"
            f"Server: {self.server_version}\r\n"
            f"Date: {self.date_time_string()}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body) if declared_length is None else declared_length}\r\n"
            # As JD Cloud's gateway names a request, so the client's logs and spans can carry it.
            f"X-Jdcloud-Request-Id: {uuid.uuid4().hex}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
        )
        if close:
            self.close_connection = True
        self.wfile.write(head.encode("latin-1") + body)

    def _log_call(self, status: int, label: str, detail: str = "") -> None:
        logger.debug(
            "%s %s -> %s %s %s",
            self.command,
            self.path,
            status,
            label,
            detail,
            extra={"status": status, "code": label, "reason": detail or None},
        )


class SandboxServer:
    """The sandbox on a loopback port, served from a daemon thread; for tests and benchmarks.

    ``port=0`` binds any free port; :attr:`url` then names the one bound. :meth:`start` returns only once the
    socket is listening; :meth:`stop` ends hangs and keep-alive connections and joins the serving thread.
    """

    def __init__(
        self, state: SandboxState, host: str = "127.0.0.1", port: int = 0, *, credentials: Credentials
    ) -> None:
        self.state = state
        self.host = host
        self._requested_port = port
        self._credentials = credentials
        self._httpd: _SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SandboxServer:
        if self._httpd is not None:
            raise RuntimeError("the sandbox server is already started")
        httpd = _SandboxHTTPServer((self.host, self._requested_port), self.state, self._credentials)
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="sandbox-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        httpd.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> SandboxServer:
        return self if self._httpd is not None else self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the sandbox server is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def endpoint(self) -> str:
        """The delete endpoint's full URL, for the service's ``IMGSWEEP_API__ENDPOINT``."""
        return self.url + DELETE_PATH
