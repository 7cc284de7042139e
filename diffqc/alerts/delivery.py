"""Delivering outbox alerts to the MES webhook (and line-stop requests), exactly once per alert id.

Each round the loop claims due rows one by one (each in its own transaction, so a delivery is
recorded as soon as the MES acknowledged it) and POSTs the alert's JSON with
``Idempotency-Key: <alert id>`` and the configured auth header:

- 2xx: delivered (``delivered_at``);
- 408, 429, 5xx, a connection error or a timeout: retried after ``backoff_base_s * 2^(attempts-1)``,
  at most ``backoff_max_s``, half of it random (``diffqc.core.backoff``), for as long as it takes
  (an MES outage loses nothing);
- any other status (400, 401, 404, 422 ...): permanently FAILED, the status and body kept in
  ``last_error``; no retry can fix the request.

An alert whose severity asks for a line stop also gets one POST to the line-stop URL, by the same
rules and independently of the MES delivery, and at most once successfully (``line_stop_at``).
A crash between the MES's acknowledgement and the commit re-sends that one alert; the
Idempotency-Key lets the MES drop the duplicate.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from prometheus_client import Counter, Gauge
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from diffqc.core import clock
from diffqc.core.backoff import backoff_delay
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.settings import BridgeSettings
from diffqc.store import db
from diffqc.store.alerts import claim_next_due, count_undelivered
from diffqc.store.audit import record_line_stop
from diffqc.store.models import Alert, DeliveryState, LineStop

log = logging.getLogger(__name__)

DELIVERIES = Counter(
    "diffqc_alert_deliveries",
    "Alert POSTs, by target (mes|line_stop) and outcome (delivered|retry|failed)",
    ["target", "outcome"],
)
UNDELIVERED = Gauge("diffqc_alerts_undelivered", "Alerts in the outbox that the MES has not acknowledged")
RETRIABLE_STATUS = frozenset({408, 429})


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    retriable: bool
    detail: str


class WebhookClient:
    """POSTs JSON with the auth header and an Idempotency-Key; classifies the answer."""

    def __init__(self, settings: BridgeSettings):
        headers = {}
        if settings.mes_auth_value is not None:
            headers[settings.mes_auth_header] = settings.mes_auth_value.get_secret_value()
        self.http = httpx.Client(timeout=settings.request_timeout_s, headers=headers)

    def post(self, url: str, idempotency_key: str, body: dict) -> Outcome:
        try:
            response = self.http.post(url, json=body, headers={"Idempotency-Key": idempotency_key})
        except httpx.HTTPError as exc:  # refused, reset, timed out
            return Outcome(False, True, f"{url} unreachable: {exc.__class__.__name__}: {exc}")
        status = response.status_code
        if response.is_success:
            return Outcome(True, False, f"HTTP {status}")
        retriable = status in RETRIABLE_STATUS or status >= 500
        return Outcome(False, retriable, f"HTTP {status} from {url}: {response.text[:300]}")

    def close(self) -> None:
        self.http.close()


def line_stop_body(alert: dict) -> dict:
    if alert.get("status") == "NOT_INSPECTED":
        why = alert["not_inspected_reason"]
        reason = f"{alert['severity']}: a {alert['product_type']} part was not inspected ({why})"
    else:
        reason = (
            f"{alert['severity']} defect on {alert['product_type']}: score {alert['score']:.4g} > "
            f"threshold {alert['threshold']:.4g}"
        )
    return {
        "alert_id": alert["alert_id"],
        "plant_id": alert["plant_id"],
        "line_id": alert["line_id"],
        "station_id": alert["station_id"],
        "severity": alert["severity"],
        "inspection_id": alert["inspection_id"],
        "reason": reason,
    }


def require_webhook(settings: BridgeSettings) -> str:
    """The MES webhook URL; ValueError naming the variable when it is not set (malformed ones fail in settings)."""
    if settings.mes_webhook_url is None:
        raise ValueError("DIFFQC_BRIDGE_MES_WEBHOOK_URL is not set: the bridge has nowhere to deliver alerts")
    return settings.mes_webhook_url


class DeliveryLoop:
    """The bridge's delivery worker (a ``run_service`` loop): works due outbox rows until stopped."""

    def __init__(self, engine: Engine, settings: BridgeSettings, client: WebhookClient | None = None):
        self.webhook_url = require_webhook(settings)
        self.engine, self.settings = engine, settings
        self.client = client or WebhookClient(settings)

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    worked = self.deliver_due(stop)
                except DependencyUnavailable as exc:  # the database is down: wait for it
                    log.warning("delivery round failed (%s); retrying", exc)
                    worked = 0
                if worked < self.settings.batch_size:
                    stop.wait(self.settings.poll_interval_s)
        finally:
            self.client.close()

    def deliver_due(self, stop: threading.Event | None = None) -> int:
        """One round: attempt up to ``batch_size`` due alerts (fewer once ``stop`` is set, so that a
        hanging MES cannot hold a shutdown for a whole batch of timeouts); returns how many were attempted."""
        attempted = 0
        while attempted < self.settings.batch_size and not (stop and stop.is_set()):
            now = clock.now()
            with db.session(self.engine, write=True) as session:
                row = claim_next_due(session, now)
                if row is None:
                    break
                self._attempt(session, row, now)
            attempted += 1
        with db.session(self.engine) as session:
            UNDELIVERED.set(count_undelivered(session))
        return attempted

    def _send(self, target: str, url: str, row: Alert, body: dict) -> tuple[bool | None, str | None]:
        """(True delivered | False failed for good | None retry later, error detail)."""
        outcome = self.client.post(url, row.id, body)
        result = True if outcome.delivered else None if outcome.retriable else False
        DELIVERIES.labels(target=target, outcome={True: "delivered", False: "failed", None: "retry"}[result]).inc()
        if result is not True:
            log.warning("alert %s to %s: %s", row.id, target, outcome.detail)
        return result, None if outcome.delivered else f"{target}: {outcome.detail}"

    def _attempt(self, session: Session, row: Alert, now: datetime) -> None:
        row.attempts += 1
        errors = []
        if row.line_stop_state == LineStop.PENDING:
            if self.settings.line_stop_url is None:
                row.line_stop_state = LineStop.FAILED
                errors.append("line_stop: DIFFQC_BRIDGE_LINE_STOP_URL is not set")
            else:
                result, error = self._send("line_stop", self.settings.line_stop_url, row, line_stop_body(row.payload))
                if result is not None:
                    row.line_stop_state = LineStop.REQUESTED if result else LineStop.FAILED
                    row.line_stop_at = now if result else None
                    # In the transaction that records the outcome: no stop without its audit row.
                    record_line_stop(
                        session,
                        row.line_id,
                        line_stop_body(row.payload)["reason"],
                        alert_id=row.id,
                        inspection_id=row.inspection_id,
                        outcome="requested" if result else "refused by the line controller",
                    )
                errors += [error] if error else []
        if row.delivery_state == DeliveryState.PENDING:
            result, error = self._send("mes", self.webhook_url, row, row.payload)
            if result is not None:
                row.delivery_state = DeliveryState.DELIVERED if result else DeliveryState.FAILED
                row.delivered_at = now if result else None
            errors += [error] if error else []
        if errors:
            row.last_error = "; ".join(errors)[:2000]
        work_left = row.delivery_state == DeliveryState.PENDING or row.line_stop_state == LineStop.PENDING
        delay = backoff_delay(row.attempts, self.settings.backoff_base_s, self.settings.backoff_max_s)
        row.next_attempt_at = now + timedelta(seconds=delay) if work_left else None
