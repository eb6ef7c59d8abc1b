"""docs/operations.md, "Is a relay alive?": each relay's heartbeat row, what it says it
holds, ``orders_outbox_status`` listing the live relays and ``--min-relays`` (exit 5);
a killed relay dropping out within its lease, a stopped one removing its row, old rows
purged. With real relay processes where it matters."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from django_orders import services
from django_orders.management.commands.orders_outbox_status import (
    RELAYS_MISSING,
    THRESHOLD_BREACHED,
    ThresholdBreached,
)
from django_orders.models import OutboxEvent, RelayHeartbeat
from django_orders.outbox.heartbeat import KEEP_STALE_ROWS, live_relays, purge_stale_heartbeats
from django_orders.outbox.relay import Relay
from tests.receiver import Receiver
from tests.relay_publishers import ReceiverPublisher
from tests.relay_runs import ROOT, RelayProcess, relay_env
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def status_json(*args: str) -> dict[str, Any]:
    out = StringIO()
    call_command("orders_outbox_status", "--json", *args, stdout=out)
    return json.loads(out.getvalue())


def heartbeat(beat_age: float = 0.0, **fields: Any) -> RelayHeartbeat:
    """A relay's row as if it had beaten ``beat_age`` seconds ago."""
    now = timezone.now()
    return RelayHeartbeat.objects.create(
        id=uuid.uuid4(),
        host="worker-1",
        pid=4242,
        publisher="WebhookPublisher",
        started_at=now - dt.timedelta(seconds=beat_age + 60),
        last_beat_at=now - dt.timedelta(seconds=beat_age),
        **fields,
    )


# -- in process ----------------------------------------------------------------------------


@override_settings(DJANGO_ORDERS={"OUTBOX_LEASE": 0.6, "OUTBOX_POLL_INTERVAL": 0.05})
def test_a_running_relay_beats_and_says_what_it_holds(receiver: Receiver) -> None:
    for _ in range(3):
        services.create_order("shop-1")
    receiver.delay = 2.0  # the batch stays in flight while the relay beats
    relay = Relay(ReceiverPublisher(receiver.url), listen=False, pipeline=False)
    runner = threading.Thread(target=lambda: (relay.run(), connection.close()))
    runner.start()
    try:
        row = wait_until(
            lambda: RelayHeartbeat.objects.filter(id=relay.id, leased_batches=1).first(),
            10,
            "a beat while the batch is in flight",
        )
        assert (row.host, row.pid, row.publisher) == (
            socket.gethostname(),
            os.getpid(),
            "ReceiverPublisher",
        )
        tokens = {str(t) for t in OutboxEvent.objects.values_list("lease_token", flat=True)}
        assert row.lease_tokens == list(tokens)  # one claim, one token
        assert row.leased_events == 3
        first_beat = row.last_beat_at
        wait_until(
            lambda: RelayHeartbeat.objects.get(id=relay.id).last_beat_at > first_beat,
            10,
            "the next beat",
        )
        assert [r.id for r in live_relays()] == [relay.id]
    finally:
        relay.stop()
        runner.join(20)
    assert not RelayHeartbeat.objects.exists()  # a clean stop removes the row


def test_a_relay_whose_row_was_purged_writes_it_again() -> None:
    with override_settings(DJANGO_ORDERS={"OUTBOX_LEASE": 0.3, "OUTBOX_POLL_INTERVAL": 0.05}):
        relay = Relay(ReceiverPublisher("http://127.0.0.1:9/"), listen=False)
        runner = threading.Thread(target=lambda: (relay.run(), connection.close()))
        runner.start()
        try:
            wait_until(lambda: RelayHeartbeat.objects.filter(id=relay.id).exists(), 10, "row")
            RelayHeartbeat.objects.all().delete()
            wait_until(lambda: RelayHeartbeat.objects.filter(id=relay.id).exists(), 10, "again")
        finally:
            relay.stop()
            runner.join(20)


def test_status_lists_live_relays_only() -> None:
    with override_settings(DJANGO_ORDERS={"OUTBOX_LEASE": 30}):
        live = heartbeat(beat_age=5, leased_batches=2, leased_events=150, lease_tokens=["a", "b"])
        heartbeat(beat_age=31)  # past its lease: not alive
        summary = status_json()
        assert [r["id"] for r in summary["relays"]] == [str(live.id)]
        (listed,) = summary["relays"]
        assert listed["host"] == "worker-1"
        assert listed["pid"] == 4242
        assert listed["leased_batches"] == 2
        assert listed["leased_events"] == 150
        assert listed["lease_tokens"] == ["a", "b"]
        assert 5 <= listed["last_beat_age_seconds"] < 30

        out = StringIO()
        call_command("orders_outbox_status", stdout=out)
        lines = out.getvalue().splitlines()
        assert "Live relays: 1" in lines
        assert any(
            "worker-1:4242" in line and "holds 2 batch(es), 150 event(s)" in line for line in lines
        )


def test_min_relays_exits_5_when_fewer_are_alive() -> None:
    services.create_order("shop-1")
    OutboxEvent.objects.update(created_at=timezone.now() - dt.timedelta(minutes=10))
    with pytest.raises(ThresholdBreached) as raised:
        status_json("--min-relays", "1")
    assert raised.value.returncode == RELAYS_MISSING == 5
    assert str(raised.value) == "0 live relay(s) (< --min-relays 1)"
    # Behind as well: both are named, and "no relay" decides the exit status.
    with pytest.raises(ThresholdBreached) as raised:
        status_json("--min-relays", "1", "--max-age", "60")
    assert raised.value.returncode == RELAYS_MISSING
    assert str(raised.value).startswith("0 live relay(s) (< --min-relays 1); the oldest pending")

    heartbeat()
    status_json("--min-relays", "1")  # alive: healthy
    with pytest.raises(ThresholdBreached) as raised:
        status_json("--min-relays", "1", "--max-age", "60")
    assert raised.value.returncode == THRESHOLD_BREACHED  # alive, but behind


def test_old_rows_are_purged_by_orders_purge_and_by_a_starting_relay() -> None:
    hour = KEEP_STALE_ROWS.total_seconds()
    old, recent = heartbeat(beat_age=hour + 60), heartbeat(beat_age=hour - 60)
    call_command("orders_purge", stdout=StringIO())
    assert list(RelayHeartbeat.objects.values_list("id", flat=True)) == [recent.id]

    heartbeat(beat_age=hour + 60)
    Relay(ReceiverPublisher("http://127.0.0.1:9/"), listen=False).run(once=True)
    assert list(RelayHeartbeat.objects.values_list("id", flat=True)) == [recent.id]
    assert purge_stale_heartbeats() == 0
    assert old.id not in set(RelayHeartbeat.objects.values_list("id", flat=True))


# -- real processes ------------------------------------------------------------------------


@pytest.mark.slow
def test_a_killed_relay_drops_out_of_the_live_list_within_its_lease(
    receiver: Receiver, log_dir: Path
) -> None:
    lease = 2.0
    env = relay_env(receiver, OUTBOX_LEASE=lease, OUTBOX_POLL_INTERVAL=0.1)
    relay = RelayProcess(log_dir / "killed.log", env)
    try:
        relay.wait_started()
        with override_settings(DJANGO_ORDERS={"OUTBOX_LEASE": lease}):
            wait_until(lambda: [r.pid for r in live_relays()] == [relay.proc.pid], 20, "alive")
            relay.kill()  # SIGKILL: no chance to remove its row
            killed_at = time.monotonic()
            wait_until(lambda: not live_relays(), lease + 10, "dropped out")
            gone_after = time.monotonic() - killed_at
    finally:
        if relay.proc.poll() is None:
            relay.kill()
    # Its last beat was at most lease/3 before the kill (plus the machine's delays).
    assert gone_after <= lease + 1.0, gone_after
    assert RelayHeartbeat.objects.filter(pid=relay.proc.pid).exists()  # stale, kept a while


@pytest.mark.slow
def test_a_relay_stopped_cleanly_removes_its_row_and_the_probe_says_so(
    receiver: Receiver, log_dir: Path
) -> None:
    env = relay_env(receiver, OUTBOX_POLL_INTERVAL=0.1)
    relay = RelayProcess(log_dir / "stopped.log", env)
    probe = [sys.executable, "-m", "django", "orders_outbox_status", "--min-relays", "1"]
    try:
        relay.wait_started()
        wait_until(lambda: RelayHeartbeat.objects.filter(pid=relay.proc.pid).exists(), 20, "row")
        alive = subprocess.run(probe, env=env, cwd=ROOT, capture_output=True, text=True)
        assert alive.returncode == 0, alive.stderr
        assert f":{relay.proc.pid}" in alive.stdout
        relay.signal(signal.SIGTERM)
        assert relay.wait(20) == 0
    finally:
        if relay.proc.poll() is None:
            relay.kill()
    assert not RelayHeartbeat.objects.exists()
    gone = subprocess.run(probe, env=env, cwd=ROOT, capture_output=True, text=True)
    assert gone.returncode == RELAYS_MISSING, gone.stderr
    assert "0 live relay(s)" in gone.stderr
