"""One port for Prometheus and the kubelet: ``/metrics``, ``/livez`` and ``/readyz``.

``/livez`` only asks whether the poll loop is turning (a heartbeat within a bound); it never checks the
brokers, so a Kafka outage does not get healthy pods restarted. ``/readyz`` says whether this replica is
doing its job: subscribed, brokers reachable, not in the fatal state, not draining. Both answer JSON.
``/metrics`` speaks the format the scraper asks for in ``Accept`` (OpenMetrics or Prometheus text). HEAD
answers every path as GET would, without the body.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import choose_encoder

from service.metrics import Metrics

__all__ = ["LIVENESS_BOUND_SECONDS", "HealthServer", "HealthState"]

LIVENESS_BOUND_SECONDS = 30.0


@dataclass
class HealthState:
    """What /livez and /readyz report; written by the poll loop, read by the HTTP thread."""

    heartbeat: float = field(default_factory=time.monotonic)
    subscribed: bool = False
    brokers_up: bool = False
    """False until a broker has answered (the consumer's statistics say one is up), and while none is."""
    fatal_reason: str | None = None
    outputs_blocked: str | None = None
    """Why no call starts: too many records wait for Kafka's acknowledgement (``OutputsBacklog``)."""
    halted_accounts: dict[str, str] = field(default_factory=dict)
    """Accounts whose calls are held on a fatal API answer, with the answer (decision 0020): not ready while any
    is, so that one account's broken key pages even while the others keep deleting."""
    draining: bool = False
    router: str | None = None
    """With the router stage (decision 0022): why it is not forwarding (starting, stopped, its error); None while
    it forwards, and always without it."""
    router_heartbeat: float | None = None
    """The router's loop's last turn; None without it (liveness then asks the pipeline's loop only)."""
    assigned: frozenset[int] = frozenset()
    committed: dict[int, int] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return (
            self.subscribed
            and self.brokers_up
            and self.fatal_reason is None
            and not self.halted_accounts
            and self.outputs_blocked is None
            and not self.draining
            and self.router is None
        )

    def oldest_heartbeat(self) -> float:
        """The staler of the two loops' heartbeats: liveness fails if either stops turning."""
        return min(self.heartbeat, self.heartbeat if self.router_heartbeat is None else self.router_heartbeat)


class HealthServer:
    def __init__(self, host: str, port: int, *, health: HealthState, metrics: Metrics) -> None:
        state, registry = health, metrics.registry

        class Handler(BaseHTTPRequestHandler):
            _with_body = True

            def do_GET(self) -> None:
                self._answer(with_body=True)

            def do_HEAD(self) -> None:
                self._answer(with_body=False)

            def _answer(self, *, with_body: bool) -> None:
                self._with_body = with_body
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                    self._send(200, content_type, encoder(registry))
                elif path == "/livez":
                    age = time.monotonic() - state.oldest_heartbeat()
                    alive = age < LIVENESS_BOUND_SECONDS
                    self._json(200 if alive else 503, {"alive": alive, "heartbeat_age_seconds": round(age, 3)})
                elif path == "/readyz":
                    self._json(
                        200 if state.ready else 503,
                        {
                            "ready": state.ready,
                            "subscribed": state.subscribed,
                            "brokers_up": state.brokers_up,
                            "fatal": state.fatal_reason,
                            "halted_accounts": dict(state.halted_accounts),
                            "outputs_blocked": state.outputs_blocked,
                            "draining": state.draining,
                            "router": state.router,
                            "assigned_partitions": sorted(state.assigned),
                            "committed_offsets": {str(p): o for p, o in sorted(state.committed.items())},
                        },
                    )
                else:
                    self._json(404, {"error": "not found", "paths": ["/metrics", "/livez", "/readyz"]})

            def _json(self, status: int, body: dict[str, Any]) -> None:
                self._send(status, "application/json", json.dumps(body).encode())

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self._with_body:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes and probes every few seconds are not worth a log line

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
