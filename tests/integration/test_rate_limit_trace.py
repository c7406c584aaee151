"""The rate limiter learns when a request has left from httpcore's trace events (service/api/rate_limit.py).

Those event names are httpcore's, not a documented API: a real request through imgsweep's own httpx client to a
loopback server shows that they still fire, in order, so an httpcore upgrade that renames them fails here, not
as a pace that silently stops counting sends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from service.api.client import new_http_client
from service.api.rate_limit import _SENDING_EVENT, _SENT_EVENT, SendSlot

pytestmark = pytest.mark.integration

HEADERS_STARTED = _SENDING_EVENT  # the names the limiter listens for, whatever they are
BODY_COMPLETE = _SENT_EVENT


class Answer(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b'{"code":0}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # http.server's own signature
        """Quiet: the test's output is its assertions."""


@pytest.fixture
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/regions/cn-north-1/images:batchDelete"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_events_the_limiter_waits_for_fire_in_order(url: str) -> None:
    events: list[str] = []
    with new_http_client(connect=5, read=5, write=5, pool=5, connections=1) as client:
        client.post(url, content=b'{"collection_name":"shoes"}', extensions={"trace": lambda e, _i: events.append(e)})
    assert HEADERS_STARTED in events
    assert BODY_COMPLETE in events
    assert events.index(HEADERS_STARTED) < events.index(BODY_COMPLETE)


def test_a_send_slot_counts_a_real_request_as_sent_before_its_answer(url: str) -> None:
    """The slot ends its turn (as sent) when the body has been written; release afterwards changes nothing."""
    finished: list[bool] = []
    slot = SendSlot(finished.append, waited=0.0)
    with new_http_client(connect=5, read=5, write=5, pool=5, connections=1) as client:
        response = client.post(url, content=b'{"collection_name":"shoes"}', extensions={"trace": slot.trace})
    assert response.status_code == 200
    assert finished == [True]
    slot.release()
    assert finished == [True]
