"""``OrdersAutoSchema``: each operation of the orders API, from the view that serves it.

Nothing here is a copy of what the views do. Bodies are the serializers the view uses
(``get_create_serializer_class()``, ``get_serializer_class()``, the list's filter
serializer: the host's when it configured its own); the parameters and every status are
read from the settings in force when the schema is generated — the tenant header's name
(and none when ``TENANT_RESOLVER`` does not read a header), whether ``Idempotency-Key`` and
``If-Match`` are required, the page sizes, the body limit, the host's authentication,
permissions and throttles on the view, its tenant access check and order rules.

``OrdersAutoSchema`` has more methods than a class here usually has, on purpose: one per
operation (confirm and close share one, :data:`TRANSITIONS` holds what differs) and one
per part of an operation (parameters, body, headers, the cases of each status), so that
each operation reads as a short list of the parts it is made of.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, cast

from drf_spectacular.openapi import AutoSchema
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import SAFE_METHODS, AllowAny

from django_orders.conf import orders_settings
from django_orders.openapi import documents
from django_orders.openapi import parameters as params
from django_orders.openapi import problems as p
from django_orders.pagination import KeysetPagination
from django_orders.tenancy import _source

JSON = "application/json"

#: What a body of each operation is, as an example the API accepts.
BODY_EXAMPLES: dict[str, dict[str, Any]] = {
    "orders_create": {"totalCents": 1250, "currency": "EUR", "metadata": {"ref": "A-17"}},
    "orders_confirm": {"totalCents": 1999},
    "orders_close": {},
}


class Transition(NamedTuple):
    """What tells a transition's operation apart from the other's."""

    summary: str
    page: str
    #: Whether a body is required (confirm's ``totalCents``).
    body_required: bool
    #: What a client does next with the order answered.
    links: tuple[str, ...]


#: The transitions' operations, by operation id (docs/api/).
TRANSITIONS = {
    "orders_confirm": Transition(
        "Confirm a draft order, setting totalCents",
        "docs/api/confirm-order.md",
        body_required=True,
        links=("orders_close", "orders_retrieve"),
    ),
    "orders_close": Transition(
        "Close a confirmed order",
        "docs/api/close-order.md",
        body_required=False,
        links=("orders_retrieve",),
    ),
}


class OrdersAutoSchema(AutoSchema):
    """The description of one of the package's views (or a host's subclass of it)."""

    def get_operation(
        self, path: str, path_regex: str, path_prefix: str, method: str, registry: Any
    ) -> dict[str, Any] | None:
        from django_orders import views

        self.registry = registry
        self.path, self.path_regex, self.path_prefix = path, path_regex, path_prefix
        self.method = method.upper()
        if self.is_excluded():
            return None
        view = self.view
        if isinstance(view, views.OrderCollectionView):
            builder = self.create if self.method == "POST" else self.list_orders
        elif isinstance(view, views.OrderDetailView):
            builder = self.retrieve
        elif isinstance(view, views.OrderConfirmView):
            builder = functools.partial(self.transition, "orders_confirm")
        elif isinstance(view, views.OrderCloseView):
            builder = functools.partial(self.transition, "orders_close")
        else:  # pragma: no cover - only installed on the package's views
            return super().get_operation(path, path_regex, path_prefix, method, registry)
        operation = builder()
        # [{}] alone ("no authentication") is left out: Swagger UI would show a lock.
        security = self.get_auth()
        if any(security):
            operation["security"] = security
        return operation

    # -- the operations -------------------------------------------------------------------

    def create(self) -> dict[str, Any]:
        serializer = cast(Any, self.view).get_create_serializer_class()
        order = self.order_ref()
        success = {
            "201": {
                "description": "Created (or, with `Idempotent-Replayed`, the stored 201 of "
                "the key's first request).",
                "headers": {
                    **self.headers("Location", "ETag", optional=("Idempotent-Replayed",)),
                    **self.read_your_writes_cookie(),
                },
                "content": {JSON: {"schema": order}},
                "links": self.links("orders_retrieve", "orders_confirm"),
            }
        }
        return self.operation(
            "orders_create",
            "Create a draft order (idempotent)",
            "docs/api/create-order.md",
            parameters=[
                *params.tenant(),
                params.idempotency_key("orders_create", required=self.key_required()),
            ],
            body=self.body(serializer, "orders_create", required=False),
            success=success,
            cases=[
                *self.body_cases(idempotent=True, required_key=self.key_required()),
                *self.rule_cases(),
            ],
        )

    def list_orders(self) -> dict[str, Any]:
        paginator = KeysetPagination()
        page = documents.order_page_component(self, self.order_ref())
        filters = cast(Any, self.view).get_filter_serializer_class()()
        declared = [*params.tenant(), *self.page_parameters(paginator)]
        for name, field in filters.fields.items():
            schema = self._map_serializer_field(field, "request")
            declared.append(
                {
                    "name": name,
                    "in": "query",
                    "required": bool(field.required),
                    "description": str(field.help_text or "Only orders with this value."),
                    "schema": {k: v for k, v in schema.items() if k not in ("readOnly",)},
                }
            )
        first_filter = next(iter(filters.fields), None)
        cases = [p.Case(400, "invalid_limit", self.limit_message(paginator)), p.INVALID_CURSOR]
        if first_filter is not None:
            cases.insert(0, p.INVALID_FILTER)
        success = {
            "200": {
                "description": "A page of orders, newest first.",
                "headers": self.headers(optional=("Link",)),
                "content": {JSON: {"schema": page}},
            }
        }
        return self.operation(
            "orders_list",
            "List the tenant's orders, newest first (keyset-paginated)",
            "docs/api/list-orders.md",
            parameters=declared,
            body=None,
            success=success,
            cases=cases,
        )

    def retrieve(self) -> dict[str, Any]:
        success = {
            "200": {
                "description": "The order.",
                "headers": self.headers("ETag"),
                "content": {JSON: {"schema": self.order_ref()}},
                "links": self.links("orders_confirm"),
            },
            "304": {
                "description": "Not Modified: `If-None-Match` matches the current version.",
                "headers": self.headers("ETag"),
            },
        }
        declared = [
            *params.tenant(),
            params.order_id(),
            params.if_none_match(),
        ]
        return self.operation(
            "orders_retrieve",
            "One order, with its ETag",
            "docs/api/get-order.md",
            parameters=declared,
            body=None,
            success=success,
            cases=[p.NOT_FOUND],
        )

    def transition(self, operation_id: str) -> dict[str, Any]:
        """Confirm or close: the same parts, but for :data:`TRANSITIONS`."""
        summary, page, body_required, links = TRANSITIONS[operation_id]
        success = {
            "200": {
                "description": "The order after the change (or, with `Idempotent-Replayed`, "
                "the stored 200 of the key's first request).",
                "headers": {
                    **self.headers("ETag", optional=("Idempotent-Replayed",)),
                    **self.read_your_writes_cookie(),
                },
                "content": {JSON: {"schema": self.order_ref()}},
                "links": self.links(*links),
            }
        }
        cases = [
            p.NOT_FOUND,
            p.INVALID_IF_MATCH,
            p.VERSION_MISMATCH,
            p.INVALID_TRANSITION,
            *self.body_cases(idempotent=True, required_key=False),
            *self.rule_cases(),
        ]
        if orders_settings.REQUIRE_IF_MATCH:
            cases.append(p.PRECONDITION_REQUIRED)
        return self.operation(
            operation_id,
            summary,
            page,
            parameters=[
                *params.tenant(),
                params.order_id(),
                params.if_match(operation_id),
                params.idempotency_key(operation_id, required=False),
            ],
            body=self.body(
                cast(Any, self.view).get_serializer_class(), operation_id, body_required
            ),
            success=success,
            cases=cases,
        )

    # -- the parts ------------------------------------------------------------------------

    def operation(
        self,
        operation_id: str,
        summary: str,
        page: str,
        *,
        parameters: list[dict[str, Any]],
        body: dict[str, Any] | None,
        success: dict[str, Any],
        cases: list[p.Case],
    ) -> dict[str, Any]:
        description = f"See {page} of the django-orders documentation."
        if not params.reads_tenant_header():
            description += f" The tenant is {_source(orders_settings.TENANT_RESOLVER)}."
        operation: dict[str, Any] = {
            "operationId": operation_id,
            "summary": summary,
            "description": description,
            "tags": ["orders"],
            "parameters": parameters,
        }
        if body is not None:
            operation["requestBody"] = body
        all_cases = [*self.common_cases(), *cases]
        operation["responses"] = {
            **success,
            **p.responses(all_cases, documents.problem_component(self)),
        }
        return operation

    def order_ref(self) -> dict[str, Any]:
        return documents.order_component(self)

    def key_required(self) -> bool:
        required = getattr(self.view, "idempotency_key_required", None)
        return bool(orders_settings.IDEMPOTENCY_KEY_REQUIRED if required is None else required)

    def page_parameters(self, paginator: KeysetPagination) -> list[dict[str, Any]]:
        return [
            {**parameter, "in": "query"}
            for parameter in paginator.get_schema_operation_parameters(self.view)
        ]

    def limit_message(self, paginator: KeysetPagination) -> str:
        maximum = paginator.max_page_size or orders_settings.MAX_PAGE_SIZE
        return str(paginator.invalid_limit_message).format(max_page_size=maximum)

    def body(self, serializer: type, operation_id: str, required: bool) -> dict[str, Any]:
        component = self.resolve_serializer(serializer, "request")
        schema = component.ref if component else {"type": "object", "maxProperties": 0}
        declared = set(getattr(serializer, "_declared_fields", ()))
        example = {k: v for k, v in BODY_EXAMPLES[operation_id].items() if k in declared}
        limit = orders_settings.MAX_BODY_BYTES
        content: dict[str, Any] = {"schema": schema, "example": example}
        return {
            "required": required,
            "description": f"UTF-8 JSON, at most {limit} bytes."
            + ("" if required else " No body is the same as `{}`."),
            "content": {JSON: content},
        }

    def headers(self, *names: str, optional: tuple[str, ...] = ()) -> dict[str, Any]:
        result = {name: {**p.HEADERS[name], "required": True} for name in names}
        for name in optional:
            header = dict(p.HEADERS[name])
            header.pop("required", None)
            result[name] = header
        return result

    def read_your_writes_cookie(self) -> dict[str, Any]:
        """``Set-Cookie`` of a 2xx write when ``READ_REPLICAS`` are configured (the
        read-your-writes window, docs/guide/replicas.md); nothing without replicas."""
        if not orders_settings.READ_REPLICAS:
            return {}
        name = orders_settings.READ_YOUR_WRITES_COOKIE
        return {
            "Set-Cookie": {
                "description": f"`{name}=…`: the signed read-your-writes cookie; sent back, "
                "the client's reads go to the primary for `READ_YOUR_WRITES_WINDOW`.",
                "schema": {"type": "string"},
                "required": True,
            }
        }

    def links(self, *operation_ids: str) -> dict[str, Any]:
        """What a client does next with the order just answered."""
        result: dict[str, Any] = {}
        for operation_id in operation_ids:
            parameters = {"path.order_id": "$response.body#/id"}
            if params.reads_tenant_header():
                name = orders_settings.TENANT_HEADER
                parameters[f"header.{name}"] = f"$request.header.{name}"
            if operation_id in ("orders_confirm", "orders_close"):
                parameters["header.If-Match"] = "$response.header.ETag"
            name = operation_id.removeprefix("orders_").capitalize()
            result[name] = {"operationId": operation_id, "parameters": parameters}
        return result

    # -- the problems ---------------------------------------------------------------------

    def common_cases(self) -> list[p.Case]:
        """The tenant, the host's authentication, permissions and throttles, 405."""
        source = _source(orders_settings.TENANT_RESOLVER)
        cases = [
            p.Case(400, "missing_tenant", f"{source} is required."),
            p.Case(400, "invalid_tenant", f"{source} is not a valid tenant id."),
        ]
        authenticators = self.view.get_authenticators()
        restricted = any(not isinstance(x, AllowAny) for x in self.view.get_permissions())
        if authenticators:
            try:
                challenge = authenticators[0].authenticate_header(self.view.request)
            except Exception:
                challenge = "unknown"
            cases.append(p.NOT_AUTHENTICATED_401 if challenge else p.NOT_AUTHENTICATED_403)
        if self.method not in SAFE_METHODS and any(
            isinstance(x, SessionAuthentication) for x in authenticators
        ):
            # An unsafe request of a logged-in session without its CSRF token.
            cases.append(p.PERMISSION_DENIED)
        if restricted:
            if not authenticators:
                cases.append(p.NOT_AUTHENTICATED_403)
            cases.append(p.PERMISSION_DENIED)
        if orders_settings.TENANT_ACCESS_CHECK is not None:
            cases.append(p.TENANT_FORBIDDEN)
        if self.view.get_throttles():
            cases.append(p.THROTTLED)
        cases.append(p.METHOD_NOT_ALLOWED)
        return cases

    def body_cases(self, *, idempotent: bool, required_key: bool) -> list[p.Case]:
        cases = [
            p.INVALID_JSON,
            p.VALIDATION_ERROR,
            p.payload_too_large(int(orders_settings.MAX_BODY_BYTES)),
            p.UNSUPPORTED_MEDIA_TYPE,
            p.LENGTH_REQUIRED,
            p.CONCURRENT_CONFLICT,
        ]
        if idempotent:
            cases += [p.INVALID_KEY, p.KEY_REUSED, p.KEY_IN_USE]
        if required_key:
            cases.append(p.MISSING_KEY)
        return cases

    def rule_cases(self) -> list[p.Case]:
        if not orders_settings.ORDER_RULES:
            return []
        return [p.HOST_RULE_422, p.HOST_RULE_409]
