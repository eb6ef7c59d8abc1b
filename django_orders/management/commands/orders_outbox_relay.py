"""``manage.py orders_outbox_relay``: publish pending outbox events (docs/guide/publishers.md).

A thin command: it parses the options and hands over to :class:`django_orders.outbox.relay.Relay`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.module_loading import import_string

from django_orders import rls
from django_orders.conf import orders_settings
from django_orders.outbox.relay import Relay, RelayAlreadyRunning, metrics_from_settings
from django_orders.publishers.base import Publisher, check_publisher


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


def port_number(value: str) -> int:
    """An argparse type: a TCP port, 0 for any free one."""
    number = int(value)
    if not 0 <= number <= 65535:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = (
        "Publish pending outbox events. Runs until SIGTERM/SIGINT (the first finishes the "
        "sends in flight and releases the rest, the second exits at once); with --once, "
        "publishes what is due and "
        "exits 0 if every publish succeeded, 1 otherwise."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--once",
            action="store_true",
            help="Publish every event due now (and those they unblock), then exit.",
        )
        parser.add_argument(
            "--publisher",
            metavar="DOTTED_PATH",
            help="Publisher class, overriding DJANGO_ORDERS['OUTBOX_PUBLISHER']. It gets the "
            "options of --publisher-options, not OUTBOX_PUBLISHER_OPTIONS.",
        )
        parser.add_argument(
            "--publisher-options",
            metavar="JSON",
            type=json.loads,
            help='Keyword arguments of the publisher as a JSON object, e.g. \'{"url": "..."}\'.',
        )
        parser.add_argument(
            "--no-listen",
            action="store_true",
            help="Poll only, no LISTEN/NOTIFY (behind a pooler in transaction mode).",
        )
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            metavar="N",
            help="Events claimed per batch [DJANGO_ORDERS['OUTBOX_BATCH_SIZE']].",
        )
        parser.add_argument(
            "--metrics-port",
            type=port_number,
            metavar="PORT",
            help="Serve Prometheus metrics on http://ADDRESS:PORT/metrics (0: a free port, "
            "logged) [DJANGO_ORDERS['OUTBOX_METRICS_PORT']]. Needs django-orders[prometheus].",
        )
        parser.add_argument(
            "--metrics-address",
            metavar="ADDRESS",
            help="Where the metrics are served [DJANGO_ORDERS['OUTBOX_METRICS_ADDRESS']].",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if rls.enabled():
            rls.allow_cross_tenant()  # the outbox of every tenant (row-level security)
        publisher = self.build_publisher(options["publisher"], options["publisher_options"])
        try:
            metrics = metrics_from_settings(options["metrics_port"], options["metrics_address"])
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        relay = Relay(
            publisher,
            batch_size=options["batch_size"],
            listen=not options["no_listen"],
            metrics=metrics,
        )
        relay.install_signal_handlers()
        try:
            ok = relay.run(once=options["once"])
        except (RelayAlreadyRunning, ImproperlyConfigured) as exc:
            raise CommandError(str(exc)) from None
        if options["once"]:
            totals = relay.totals
            self.stdout.write(
                f"published {totals.published}, failed {totals.failed} (dead {totals.dead})"
            )
            if not ok:
                sys.exit(1)

    def build_publisher(self, path: str | None, publisher_options: Any) -> Publisher:
        if publisher_options is not None and not isinstance(publisher_options, dict):
            raise CommandError("--publisher-options must be a JSON object.")
        if path:
            try:
                cls = import_string(path)
            except ImportError as exc:
                raise CommandError(f"--publisher {path!r} does not import: {exc}") from None
            kwargs = publisher_options or {}
        else:
            cls = orders_settings.OUTBOX_PUBLISHER
            kwargs = (
                publisher_options
                if publisher_options is not None
                else dict(orders_settings.OUTBOX_PUBLISHER_OPTIONS)
            )
        try:
            publisher = cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise CommandError(f"Cannot create publisher {cls!r}: {exc}") from None
        try:
            check_publisher(publisher)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        return publisher
