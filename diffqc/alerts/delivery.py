"""Delivering outbox alerts to the MES webhook (and line-stop requests), exactly once per alert id.

Two loops work the outbox, each on its own thread: ``DeliveryLoop(..., line_stops=True)`` requests the
line stops that alerts ask for, and the MES loop (``line_stops=False``) delivers alerts to the MES, so
a line stop never queues behind routine MES posts. A line-stopping alert reaches the MES once its stop
is settled (requested, or failed for good); the two never hold one alert at the same time.

Each attempt leases one due row in a short transaction (``diffqc.store.alerts.lease_next_due``: the row
is locked ``SKIP LOCKED``, its attempt counted, ``next_attempt_at`` moved to ``2 × request_timeout_s``
ahead, committed), POSTs with no transaction open, and records the outcome in a new transaction only if
the lease is still its own. A crash mid-POST leaves the lease to run out and the alert is sent again;
``Idempotency-Key: <alert id>`` lets the MES drop the duplicate. The POST carries the configured auth
header, and the answer decides:

- 2xx: delivered (``delivered_at``), or the line stop requested (``line_stop_at``, audited);
- 408, 429, 5xx, a connection error or a timeout: retried after ``backoff_base_s * 2^(attempts-1)``,
  at most ``backoff_max_s``, half of it random (``diffqc.core.backoff``), for as long as it takes
  (an MES outage loses nothing);
- 401 or 403: the credentials were refused (a rotation under way): retried the same way, counted in
  ``diffqc_credentials_refused_total{dependency="mes"|"line_stop"}`` and logged as an ERROR naming
  ``DIFFQC_BRIDGE_MES_AUTH_VALUE``;
- any other status (400, 404, 422 ...): permanently FAILED, the status and body kept in
  ``last_error``; ``diffqc alerts redrive`` (or ``POST /api/alerts/redrive``) sends it again once
  the cause is fixed. A failed line stop is audited and never re-driven.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from prometheus_client import Counter, Gauge
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from diffqc.core import clock
from diffqc.core.backoff import backoff_delay
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.runtime.metrics import CREDENTIALS_REFUSED
from diffqc.settings import BridgeSettings
from diffqc.store import db
from diffqc.store.alerts import Lease, count_undelivered, lease_next_due, leased_row
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
CREDENTIALS_STATUS = frozenset({401, 403})


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    retriable: bool
    detail: str
    credentials_refused: bool = False


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
        detail = f"HTTP {status} from {url}: {response.text[:300]}"
        if status in CREDENTIALS_STATUS:  # a credential rotation under way: retried until the new value is set
            return Outcome(False, True, detail, credentials_refused=True)
        return Outcome(False, status in RETRIABLE_STATUS or status >= 500, detail)

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
    """A delivery worker of the bridge (a ``run_service`` loop): works due outbox rows until stopped, their line
    stops (``line_stops``) or else their MES deliveries."""

    def __init__(
        self, engine: Engine, settings: BridgeSettings, client: WebhookClient | None = None, line_stops: bool = False
    ):
        self.webhook_url = require_webhook(settings)
        self.engine, self.settings, self.line_stops = engine, settings, line_stops
        self.client = client or WebhookClient(settings)
        # Long enough for the one POST an attempt makes; a crashed sender's alert is due again after it.
        self.lease = timedelta(seconds=2 * settings.request_timeout_s)

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
                lease = lease_next_due(session, now, now + self.lease, self.line_stops)
            if lease is None:
                break
            if self.line_stops:
                self._stop_line(lease)
            else:
                self._deliver(lease)
            attempted += 1
        if not self.line_stops:
            with db.session(self.engine) as session:
                UNDELIVERED.set(count_undelivered(session))
        return attempted

    def _send(self, target: str, url: str, lease: Lease, body: dict) -> tuple[bool | None, str]:
        """(True delivered | False failed for good | None retry later, the outcome's detail)."""
        outcome = self.client.post(url, lease.alert_id, body)
        result = True if outcome.delivered else None if outcome.retriable else False
        DELIVERIES.labels(target=target, outcome={True: "delivered", False: "failed", None: "retry"}[result]).inc()
        if outcome.credentials_refused:
            CREDENTIALS_REFUSED.labels(dependency=target).inc()
            log.error(
                "alert %s to %s: the credentials were refused (%s); set DIFFQC_BRIDGE_MES_AUTH_VALUE (header "
                "%s) to a value it accepts; retrying",
                lease.alert_id,
                target,
                outcome.detail,
                self.settings.mes_auth_header,
            )
        elif result is not True:
            log.warning("alert %s to %s: %s", lease.alert_id, target, outcome.detail)
        return result, f"{target}: {outcome.detail}"

    def _record(
        self,
        lease: Lease,
        target: str,
        result: bool | None,
        error: str,
        settle: Callable[[Session, Alert, datetime], None],
    ) -> None:
        """Record an attempt's outcome if the lease is still ours: ``settle(session, row, now)`` on success or
        refusal; otherwise the next attempt is scheduled after the backoff."""
        now = clock.now()
        with db.session(self.engine, write=True) as session:
            row = leased_row(session, lease)
            if row is None:  # the lease ran out mid-POST and another attempt took the alert over
                log.warning(
                    "alert %s to %s: the lease ran out before the answer; the outcome is not kept",
                    lease.alert_id,
                    target,
                )
                return
            if result is not True:
                row.last_error = error[:2000]
            if result is None:
                delay = backoff_delay(row.attempts, self.settings.backoff_base_s, self.settings.backoff_max_s)
                row.next_attempt_at = now + timedelta(seconds=delay)
            else:
                settle(session, row, now)

    def _stop_line(self, lease: Lease) -> None:
        body = line_stop_body(lease.payload)
        result: bool | None
        if self.settings.line_stop_url is None:
            result, error = False, "line_stop: DIFFQC_BRIDGE_LINE_STOP_URL is not set"
        else:
            result, error = self._send("line_stop", self.settings.line_stop_url, lease, body)

        def settle(session: Session, row: Alert, now: datetime) -> None:
            row.line_stop_state = LineStop.REQUESTED if result else LineStop.FAILED
            row.line_stop_at = now if result else None
            row.next_attempt_at = None  # the MES delivery, if pending, is due now
            # In the transaction that records the outcome: no stop without its audit row.
            record_line_stop(
                session,
                lease.line_id,
                body["reason"],
                alert_id=lease.alert_id,
                inspection_id=lease.inspection_id,
                outcome="requested" if result else error.removeprefix("line_stop: "),
            )

        self._record(lease, "line_stop", result, error, settle)

    def _deliver(self, lease: Lease) -> None:
        result, error = self._send("mes", self.webhook_url, lease, lease.payload)

        def settle(_session: Session, row: Alert, now: datetime) -> None:
            row.delivery_state = DeliveryState.DELIVERED if result else DeliveryState.FAILED
            row.delivered_at = now if result else None
            row.next_attempt_at = None

        self._record(lease, "mes", result, error, settle)


def delivery_loops(engine: Engine, settings: BridgeSettings) -> list[DeliveryLoop]:
    """The bridge's two delivery workers: line stops on their own fast path, then MES deliveries."""
    return [DeliveryLoop(engine, settings, line_stops=True), DeliveryLoop(engine, settings)]
