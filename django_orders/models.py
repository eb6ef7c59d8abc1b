"""The package's tables: orders, idempotency keys and the transactional outbox.

The order model is swappable (``DJANGO_ORDERS_ORDER_MODEL``, docs/guide/extending.md):
code that works with orders asks :func:`get_order_model` for it.

Index and constraint names are explicit and stable (they appear in migrations and in
``EXPLAIN`` output). Tenant-facing indexes and unique constraints lead with ``tenant_id``;
the outbox's delivery indexes serve the relay, which works across tenants.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import models
from django.db.models import Q
from django.dispatch import receiver
from django.utils import timezone

from django_orders.ids import uuid7
from django_orders.timestamps import rfc3339

TENANT_ID_MAX_LENGTH = 64
IDEMPOTENCY_KEY_MAX_LENGTH = 255
AGGREGATE_ID_MAX_LENGTH = 128


ORDER_MODEL_SETTING = "DJANGO_ORDERS_ORDER_MODEL"
DEFAULT_ORDER_MODEL = "django_orders.Order"


def order_indexes(prefix: str) -> list[models.Index]:
    """The indexes every order table needs, named ``<prefix>_tenant_keyset`` and
    ``<prefix>_status_keyset``.

    They serve the list's keyset walk (docs/api/list-orders.md): ``WHERE tenant_id = %s
    [AND status = %s] AND (created_at, id) < (%s, %s) ORDER BY created_at DESC, id DESC``,
    read backwards. A host order model gets them from :class:`AbstractOrder` (named after
    its app and class); ``order_indexes("orders_order")`` gives the names of the package's
    own table, for a host model that takes that table over (docs/guide/extending.md).
    """
    return [
        models.Index(fields=("tenant_id", "created_at", "id"), name=f"{prefix}_tenant_keyset"),
        models.Index(
            fields=("tenant_id", "status", "created_at", "id"), name=f"{prefix}_status_keyset"
        ),
    ]


def order_constraints(prefix: str) -> list[models.BaseConstraint]:
    """The check constraints of every order table, named ``<prefix>_…`` (see
    :func:`order_indexes`)."""
    return [
        models.CheckConstraint(condition=Q(version__gte=1), name=f"{prefix}_version_gte_1"),
        models.CheckConstraint(
            condition=Q(total_cents__isnull=True) | Q(total_cents__gte=0),
            name=f"{prefix}_total_cents_gte_0",
        ),
        models.CheckConstraint(
            condition=Q(status__in=("draft", "confirmed", "closed")),
            name=f"{prefix}_status_valid",
        ),
    ]


class AbstractOrder(models.Model):
    """An order of one tenant. ``version`` grows by exactly 1 on every change.

    The base of the order model. A host that needs fields of its own on orders (a foreign
    key to its customer, a channel) subclasses it and names its model in the
    ``DJANGO_ORDERS_ORDER_MODEL`` setting, as ``AUTH_USER_MODEL`` swaps the user model
    (docs/guide/extending.md); it then overrides :meth:`to_dict` to show them.
    """

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        CONFIRMED = "confirmed", "Confirmed"
        CLOSED = "closed", "Closed"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    tenant_id = models.CharField(max_length=TENANT_ID_MAX_LENGTH)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    version = models.PositiveIntegerField(default=1)
    total_cents = models.BigIntegerField(null=True, blank=True)
    currency = models.CharField(max_length=3)
    metadata = models.JSONField(default=dict, blank=True)
    # Set in Python, not by the database, so the stored row, the response and the event
    # snapshot carry the very same instant (microseconds included: cursors depend on it).
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ("-created_at", "-id")
        # Named after the concrete model: "shop_order_tenant_keyset" for shop.Order.
        indexes = order_indexes("%(app_label)s_%(class)s")
        constraints = order_constraints("%(app_label)s_%(class)s")

    def __str__(self) -> str:
        return f"{self.tenant_id}/{self.id} ({self.status}, v{self.version})"

    def to_dict(self) -> dict[str, Any]:
        """The order as the API and the events show it (docs/api/README.md).

        ``metadata`` keys are sorted: PostgreSQL's ``jsonb`` gives them back in its own
        order, not the client's, and one version must always be the same bytes, as its
        strong ``ETag`` promises (RFC 9110 §8.8.1): the 201 of a create and a later ``GET``.

        A host order model extends it with its own members (``{**super().to_dict(),
        "customerId": self.customer_id}``): JSON values only, rendered from what the
        database gives back, so the instance that was just written and the one read later
        give the same document.
        """
        return {
            "id": str(self.id),
            "tenantId": self.tenant_id,
            "status": self.status,
            "version": self.version,
            "totalCents": self.total_cents,
            "currency": self.currency,
            "metadata": dict(sorted(self.metadata.items())),
            "createdAt": rfc3339(self.created_at),
            "updatedAt": rfc3339(self.updated_at),
            "confirmedAt": rfc3339(self.confirmed_at),
            "closedAt": rfc3339(self.closed_at),
        }


class Order(AbstractOrder):
    """The package's order model, unless ``DJANGO_ORDERS_ORDER_MODEL`` names another."""

    class Meta(AbstractOrder.Meta):
        db_table = "django_orders_order"
        # The names migration 0001 gave them.
        indexes = order_indexes("orders_order")
        constraints = order_constraints("orders_order")
        # Swappable only when the host names the setting. For a swappable model, Django
        # writes ``settings.DJANGO_ORDERS_ORDER_MODEL`` into the migrations of every model
        # relating to it, and those would not load in a project without the setting (a
        # known trap of swappable models outside django.contrib.auth, which has a default
        # in global_settings). Which model is in force is fixed per process, as for
        # AUTH_USER_MODEL.
        if hasattr(settings, ORDER_MODEL_SETTING):
            swappable = ORDER_MODEL_SETTING


def get_order_model() -> type[AbstractOrder]:
    """The order model in force: ``DJANGO_ORDERS_ORDER_MODEL``, else :class:`Order`.

    Like ``django.contrib.auth.get_user_model()``: call it where you need the model
    rather than importing :class:`Order`, which is unusable when the host swapped it.
    Remembered once found (every request asks; a lookup costs about 4 µs), forgotten when
    the setting changes (``override_settings``, for the system checks' tests).
    """
    model = _order_model.get("model")
    if model is not None:
        return model
    label = getattr(settings, ORDER_MODEL_SETTING, DEFAULT_ORDER_MODEL)
    try:
        model = apps.get_model(label, require_ready=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"{ORDER_MODEL_SETTING} must be of the form 'app_label.model_name', not {label!r}."
        ) from None
    except LookupError:
        raise ImproperlyConfigured(
            f"{ORDER_MODEL_SETTING} refers to model {label!r}, which is not installed."
        ) from None
    _order_model["model"] = model
    return model


_order_model: dict[str, Any] = {}


@receiver(setting_changed)
def _forget_order_model(*, setting: str, **kwargs: Any) -> None:
    if setting == ORDER_MODEL_SETTING:
        _order_model.clear()


class IdempotencyKey(models.Model):
    """A remembered ``Idempotency-Key`` and the response it produced.

    The row is inserted in the same transaction as the work it guards and holds the unique
    (tenant, key) slot: a concurrent request with the same key waits on that row and then
    sees the committed response (or, if the first rolled back, takes the slot itself).
    Only successful (2xx) responses are ever committed.
    """

    class State(models.TextChoices):
        PROCESSING = "processing", "Processing"
        COMPLETED = "completed", "Completed"

    id = models.BigAutoField(primary_key=True)
    tenant_id = models.CharField(max_length=TENANT_ID_MAX_LENGTH)
    key = models.CharField(max_length=IDEMPOTENCY_KEY_MAX_LENGTH)
    method = models.CharField(max_length=10)
    path = models.TextField()
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the request, hex.")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PROCESSING)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, default="")
    response_headers = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        db_table = "django_orders_idempotency_key"
        constraints = (
            models.UniqueConstraint(
                fields=("tenant_id", "key"), name="orders_idempotency_key_unique"
            ),
        )

    def __str__(self) -> str:
        return f"{self.tenant_id}/{self.key}"


class OutboxEvent(models.Model):
    """An event written in the same transaction as the change it describes.

    ``id`` is the CloudEvents ``id``: stable across redeliveries, consumers dedupe on it.
    The delivery fields belong to the relay: ``attempts`` is counted at claim time,
    ``lease_token`` / ``leased_until`` fence a claim, ``available_at`` carries the backoff.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PUBLISHED = "published", "Published"
        DEAD = "dead", "Dead"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    tenant_id = models.CharField(max_length=TENANT_ID_MAX_LENGTH)
    aggregate_type = models.CharField(max_length=64)
    # Text, not a UUID: a host's aggregates may have any id (an integer key, a slug).
    aggregate_id = models.CharField(max_length=AGGREGATE_ID_MAX_LENGTH)
    aggregate_version = models.PositiveIntegerField()
    type = models.CharField(max_length=128)
    payload = models.JSONField(
        help_text="The CloudEvents data: the aggregate right after the change."
    )
    extensions = models.JSONField(
        default=dict,
        # Also in the database: rows written by SQL of their own (a host's, a benchmark's)
        # need not name the column.
        db_default=models.Value({}, output_field=models.JSONField()),
        blank=True,
        help_text="CloudEvents extension attributes, by name.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    available_at = models.DateTimeField(default=timezone.now)
    lease_token = models.UUIDField(null=True, blank=True)
    leased_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "django_orders_outbox_event"
        ordering = ("created_at", "id")
        constraints = (
            models.UniqueConstraint(
                fields=("tenant_id", "aggregate_type", "aggregate_id", "aggregate_version"),
                name="orders_outbox_aggregate_version_unique",
            ),
        )
        indexes = (
            # What the relay claims: pending rows by due time.
            models.Index(
                fields=("available_at", "id"),
                condition=Q(status="pending"),
                name="orders_outbox_pending",
            ),
            # "Is there an earlier unfinished event of this aggregate?" (per-order order).
            models.Index(
                fields=("aggregate_id", "aggregate_version"),
                condition=~Q(status="published"),
                name="orders_outbox_unfinished",
            ),
            # Retention purge of published events.
            models.Index(
                fields=("published_at",),
                condition=Q(status="published"),
                name="orders_outbox_published",
            ),
        )

    def __str__(self) -> str:
        return f"{self.type} {self.aggregate_id} v{self.aggregate_version} ({self.status})"


class OutboxSequence(models.Model):
    """The last version handed out for one aggregate of the host's (``record_event``).

    The row is upserted in the transaction that records the event and stays locked until
    that transaction ends, so two transactions recording events of one aggregate take
    their versions in the order they commit. The package's orders do not use it: their
    version is the order's own.
    """

    id = models.BigAutoField(primary_key=True)
    tenant_id = models.CharField(max_length=TENANT_ID_MAX_LENGTH)
    aggregate_type = models.CharField(max_length=64)
    aggregate_id = models.CharField(max_length=AGGREGATE_ID_MAX_LENGTH)
    last_version = models.PositiveIntegerField()

    class Meta:
        db_table = "django_orders_outbox_sequence"
        constraints = (
            models.UniqueConstraint(
                fields=("tenant_id", "aggregate_type", "aggregate_id"),
                name="orders_outbox_sequence_aggregate_unique",
            ),
        )

    def __str__(self) -> str:
        return f"{self.tenant_id}/{self.aggregate_type}/{self.aggregate_id} v{self.last_version}"


class RelayHeartbeat(models.Model):
    """A running relay, as other processes see it: one row per relay run.

    The relay inserts it when it starts, updates ``last_beat_at`` and what it holds every
    third of ``OUTBOX_LEASE``, and deletes it when it stops cleanly. A relay whose last
    beat is older than ``OUTBOX_LEASE`` is not alive (killed, frozen, cut off from the
    database): ``orders_outbox_status`` leaves it out of the live relays. Rows of relays
    gone for an hour are purged by the next relay to start and by ``orders_purge``.
    """

    id = models.UUIDField(primary_key=True, editable=False, help_text="The relay's run id.")
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    publisher = models.CharField(max_length=200)
    started_at = models.DateTimeField()
    # On PostgreSQL the database's clock (as for leases): hosts whose clocks disagree
    # still agree on which relays are alive.
    last_beat_at = models.DateTimeField()
    leased_batches = models.PositiveIntegerField(
        default=0, help_text="Batches the relay holds leased."
    )
    leased_events = models.PositiveIntegerField(default=0, help_text="Events in those batches.")
    lease_tokens = models.JSONField(
        default=list, blank=True, help_text="The lease tokens of those batches."
    )

    class Meta:
        db_table = "django_orders_relay_heartbeat"
        ordering = ("started_at", "id")
        indexes = (models.Index(fields=("last_beat_at",), name="orders_relay_last_beat"),)

    def __str__(self) -> str:
        return f"relay {self.host}:{self.pid} ({self.id})"
