"""docs/operations.md: the relay command as an operator runs it (orders_outbox_status:
tests/test_outbox_status.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from django_orders import services
from django_orders.models import OutboxEvent
from tests.receiver import Receiver
from tests.relay_runs import ROOT, relay_env, relay_once


@pytest.mark.django_db
def test_relay_rejects_a_publisher_that_does_not_import() -> None:
    with pytest.raises(CommandError, match="does not import"):
        call_command("orders_outbox_relay", "--once", "--publisher", "no.such.Publisher")


def test_relay_rejects_what_is_not_a_publisher_saying_what_it_lacks() -> None:
    with pytest.raises(CommandError, match=r"OrderedDict is not a publisher.*it lacks publish"):
        call_command("orders_outbox_relay", "--once", "--publisher", "collections.OrderedDict")


@pytest.mark.django_db
def test_relay_rejects_bad_publisher_options() -> None:
    with pytest.raises(CommandError, match="must be a JSON object"):
        call_command("orders_outbox_relay", "--once", "--publisher-options", "[1]")
    with pytest.raises(CommandError, match="Cannot create publisher"):
        call_command("orders_outbox_relay", "--once", "--publisher-options", '{"url": "x"}')


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_relay_once_exit_status_as_a_process() -> None:
    services.create_order("shop-1")
    with Receiver() as receiver:
        env = relay_env(receiver)
        command = [
            sys.executable,
            "-m",
            "django",
            "orders_outbox_relay",
            "--once",
            "--publisher",
            "tests.relay_publishers.ReceiverPublisher",
        ]
        receiver.status = 503
        failed = subprocess.run(
            command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
        )
        assert failed.returncode == 1, failed.stderr
        assert "published 0, failed 1 (dead 0)" in failed.stdout

        receiver.status = 200
        OutboxEvent.objects.update(available_at=timezone.now())
        ok = subprocess.run(
            command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
        )
        assert ok.returncode == 0, ok.stderr
        assert "published 1, failed 0 (dead 0)" in ok.stdout
        assert receiver.count() == 1


# -- the publisher and batch size from the settings (docs/reference/settings.md) -------------------


def relay_command(*args: str) -> None:
    call_command("orders_outbox_relay", "--once", "--no-listen", *args)


def batch_sizes(caplog: pytest.LogCaptureFixture) -> list[int]:
    return [r.outbox_batch["claimed"] for r in caplog.records if hasattr(r, "outbox_batch")]


@pytest.mark.django_db
def test_the_relay_uses_the_publisher_and_options_of_the_settings(receiver: Receiver) -> None:
    order = services.create_order("shop-1")
    with override_settings(
        DJANGO_ORDERS={
            "OUTBOX_PUBLISHER": "tests.relay_publishers.ReceiverPublisher",
            "OUTBOX_PUBLISHER_OPTIONS": {"url": receiver.url},
        }
    ):
        relay_command()
    assert receiver.ids() == [str(OutboxEvent.objects.get(aggregate_id=order.id).id)]


@pytest.mark.django_db
def test_publisher_on_the_command_line_overrides_the_setting(receiver: Receiver) -> None:
    services.create_order("shop-1")
    with override_settings(
        DJANGO_ORDERS={"OUTBOX_PUBLISHER": "tests.relay_publishers.FailingPublisher"}
    ):
        assert relay_once("tests.relay_publishers.ReceiverPublisher", url=receiver.url) == 0
    assert receiver.count() == 1
    assert not OutboxEvent.objects.exclude(status="published").exists()


@pytest.mark.django_db
def test_without_a_setting_the_relay_logs_each_event(caplog: pytest.LogCaptureFixture) -> None:
    order = services.create_order("shop-1")
    with caplog.at_level("INFO", logger="django_orders.events"):
        relay_command()
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "django_orders.events"]
    assert [line["id"] for line in lines] == [
        str(OutboxEvent.objects.get(aggregate_id=order.id).id)
    ]


@pytest.mark.django_db
def test_outbox_batch_size_sets_the_claim_and_the_option_overrides_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    for _ in range(5):
        services.create_order("shop-1")
    with (
        override_settings(DJANGO_ORDERS={"OUTBOX_BATCH_SIZE": 2}),
        caplog.at_level("INFO", logger="django_orders"),
    ):
        relay_command()
        assert batch_sizes(caplog) == [2, 2, 1]
        caplog.clear()
        OutboxEvent.objects.update(status="pending", published_at=None)
        relay_command("--batch-size", "3")
        assert batch_sizes(caplog) == [3, 2]


# -- orders_rls (docs/guide/row-level-security.md; PostgreSQL: tests/test_row_level_security.py)


def test_orders_rls_prints_its_sql_on_any_database() -> None:
    out = StringIO()
    call_command("orders_rls", "sql", stdout=out)
    assert "CREATE POLICY django_orders_tenant_isolation" in out.getvalue()


@pytest.mark.skipif(
    "postgresql" in settings.DATABASES["default"]["ENGINE"], reason="SQLite's answer"
)
@pytest.mark.django_db
def test_orders_rls_refuses_to_install_without_postgresql() -> None:
    with pytest.raises(CommandError, match="needs PostgreSQL"):
        call_command("orders_rls", "install")
