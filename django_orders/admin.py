"""The admin: look at orders, idempotency keys and the outbox; re-queue dead events.

Everything is read-only. An order changes only through the API (or the service layer),
where versions, ``If-Match`` and events are taken care of: an edit in the admin would
bypass all three. The outbox's only writes are its two actions:

- **Re-queue** (dead → pending, attempts reset, due now): after fixing what made the
  publish fail. Needs the ``change_outboxevent`` permission.
- **Discard** (delete dead events): when an event must never be delivered. It stops
  blocking the later events of its order. Needs ``delete_outboxevent``.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from django_orders.models import IdempotencyKey, OutboxEvent, get_order_model
from django_orders.outbox.maintenance import discard, requeue
from django_orders.outbox.recording import (
    ORDER_CLOSED,
    ORDER_CONFIRMED,
    ORDER_CREATED,
    type_prefix,
)


class TypedFilter(admin.SimpleListFilter):
    """Filter by an exact value typed into a box (the shortcuts of :meth:`lookups` below it).

    Django's default filter for a field lists its distinct values, a scan of the whole
    table on every changelist page; with many tenants (or event types) it is slow and the
    list useless.
    """

    template = "admin/django_orders/typed_filter.html"
    #: What the box says before anything is typed.
    placeholder = ""

    def __init__(self, request: HttpRequest, *args: Any) -> None:
        super().__init__(request, *args)
        # Kept in the box's form so typing a value keeps the other filters.
        self.preserved_params = [
            (name, value)
            for name, values in request.GET.lists()
            if name not in (self.parameter_name, "p")
            for value in values
        ]

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return []

    def has_output(self) -> bool:
        return True

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return _exactly(queryset, str(self.parameter_name), self.value())


class TenantFilter(TypedFilter):
    title = "tenant"
    parameter_name = "tenant_id"
    placeholder = "Exact tenant id, then Enter"


class EventTypeFilter(TypedFilter):
    """Any event type, the host's own included; the package's as shortcuts."""

    title = "type"
    parameter_name = "type"
    placeholder = "Exact event type, then Enter"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        prefix = type_prefix()
        types = [f"{prefix}{name}" for name in (ORDER_CREATED, ORDER_CONFIRMED, ORDER_CLOSED)]
        return [(name, name) for name in types]


def _exactly(queryset: QuerySet[Any], field: str, value: str | None) -> QuerySet[Any]:
    """Rows whose ``field`` equals ``value`` (all rows for no value). A value no column can
    hold (a NUL) matches nothing, rather than reaching the database as a 500."""
    if not value:
        return queryset
    if "\x00" in value:
        return queryset.none()
    return queryset.filter(**{field: value})


class ReadOnlyAdmin(admin.ModelAdmin):
    """Every field shown, none editable; no add, change or delete."""

    # Counting every row of a large table on each changelist page is what makes admin
    # pages slow; "show all" counts are not needed to browse.
    show_full_result_count = False
    #: Fields a search term must equal (see ``get_search_results``).
    exact_search_fields: tuple[str, ...] = ("tenant_id",)
    list_per_page = 50

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        """Exact match on ``exact_search_fields`` or a UUID (``uuid_search_fields``), never
        ``LIKE``: a substring search would scan whole tables."""
        term = search_term.strip()
        if not term:
            return queryset, False
        condition = Q()
        for name in self.exact_search_fields:
            condition |= Q(**{name: term})
        try:
            value = uuid.UUID(term)
        except ValueError:
            pass
        else:
            for name in getattr(self, "uuid_search_fields", ()):
                condition |= Q(**{name: value})
        return queryset.filter(condition), False


class OrderAdmin(ReadOnlyAdmin):
    """The orders, read-only. Registered for the order model in force (a host's swapped
    model too); a host shows its own fields by registering a subclass in its place
    (docs/guide/extending.md)."""

    list_display = (
        "id",
        "tenant_id",
        "status",
        "version",
        "total_cents",
        "currency",
        "created_at",
        "updated_at",
    )
    list_filter = ("status", TenantFilter)
    search_fields = ("tenant_id",)
    search_help_text = "An order id or a tenant id (exact)."
    uuid_search_fields = ("id",)
    ordering = ("-created_at", "-id")


admin.site.register(get_order_model(), OrderAdmin)


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdmin):
    list_display = (
        "type",
        "tenant_id",
        "aggregate_id",
        "aggregate_version",
        "status",
        "attempts",
        "available_at",
        "published_at",
        "error",
    )
    list_filter = ("status", TenantFilter, EventTypeFilter)
    search_fields = ("tenant_id",)
    search_help_text = "An event id, an order id or a tenant id (exact)."
    uuid_search_fields = ("id", "aggregate_id")
    ordering = ("-created_at", "-id")
    actions = ("requeue_events", "discard_events")

    @admin.display(description="last error")
    def error(self, obj: OutboxEvent) -> str:
        return obj.last_error if len(obj.last_error) <= 80 else obj.last_error[:79] + "…"

    def has_requeue_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("django_orders.change_outboxevent")

    def has_discard_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("django_orders.delete_outboxevent")

    @admin.action(description="Re-queue selected dead events", permissions=["requeue"])
    def requeue_events(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> None:
        count = requeue(queryset)
        skipped = queryset.count() - count
        self.message_user(
            request, f"Re-queued {count} dead event(s); they are due now.", messages.SUCCESS
        )
        if skipped:
            self.message_user(
                request,
                f"Left {skipped} event(s) alone: only dead events can be re-queued.",
                messages.WARNING,
            )

    @admin.action(
        description="Discard selected dead events (delete, never deliver)", permissions=["discard"]
    )
    def discard_events(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> None:
        count = discard(queryset)
        self.message_user(
            request,
            f"Discarded {count} dead event(s); later events of their "
            "orders are no longer held back by them.",
            messages.SUCCESS,
        )


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(ReadOnlyAdmin):
    list_display = (
        "key",
        "tenant_id",
        "method",
        "path",
        "state",
        "response_status",
        "created_at",
        "expires_at",
    )
    list_filter = ("state", "method")
    search_fields = ("tenant_id", "key")
    search_help_text = "A tenant id or an idempotency key (exact)."
    exact_search_fields = ("tenant_id", "key")
    ordering = ("-id",)
