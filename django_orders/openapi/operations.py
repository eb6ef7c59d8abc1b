"""``OrdersAutoSchema``: each operation of the orders API, from the view that serves it.

Nothing here is a copy of what the views do. Bodies are the serializers the view uses
(``get_create_serializer_class()``, ``get_serializer_class()``, the list's filter
serializer: the host's when it configured its own); the parameters and every status are
read from the settings in force when the schema is generated — the tenant header's name
(and none when ``TENANT_RESOLVER`` does not read a header), whether ``Idempotency-Key`` and
``If-Match`` are required, the page sizes, the body limit, the host's authentication,
permissions and throttles on the view, its tenant access check and order rules.
"""

from __future__ import annotations

from typing import Any, cast

from drf_spectacular.openapi import AutoSchema
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import SAFE_METHODS, AllowAny

from django_orders.conf import orders_settings
from django_orders.openapi import documents
from django_orders.openapi import problems as p
from django_orders.pagination import KeysetPagination
from django_orders.tenancy import TENANT_ID_MAX_LENGTH, _source, header_tenant_resolver

JSON = "application/json"
# One example key per operation: a key sent with another request is a 422.
IDEMPOTENCY_KEY_EXAMPLES = {
    "orders_create": "8e03978e-40d5-43e8-bc93-6894a57f9324",
    "orders_confirm": "0b1e6f3a-5c2d-4e8f-9a7b-3d4c5e6f7a8b",
    "orders_close": "6f1d2c3b-4a5e-4f60-8b7a-9c8d7e6f5a4b",
}
# The key as parse_key() accepts it: printable ASCII, not starting with a quote (an RFC
# 8941 string is accepted too, but a generated one is easily malformed) or a space.
IDEMPOTENCY_KEY_PATTERN = "^[!#-~][ -~]{0,254}$"
_ETAG = '(?:W/)?"[!#-~]*"|[0-9]+'
# RFC 9110 §13.1.1: "*" or a list of entity-tags (bare digits too, as older clients send).
IF_MATCH_PATTERN = f"^(?:\\*|(?:{_ETAG})(?:[ \\t]*,[ \\t]*(?:{_ETAG}))*)$"

#: What a body of each operation is, as an example the API accepts.
BODY_EXAMPLES: dict[str, dict[str, Any]] = {
    "orders_create": {"totalCents": 1250, "currency": "EUR", "metadata": {"ref": "A-17"}},
    "orders_confirm": {"totalCents": 1999},
    "orders_close": {},
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
            builder = self.confirm
        elif isinstance(view, views.OrderCloseView):
            builder = self.close
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
                "headers": self.headers("Location", "ETag", optional=("Idempotent-Replayed",)),
                "content": {JSON: {"schema": order}},
                "links": self.links("orders_retrieve", "orders_confirm"),
            }
        }
        return self.operation(
            "orders_create",
            "Create a draft order (idempotent)",
            "docs/api/create-order.md",
            parameters=[*self.tenant(), self.idempotency_key("orders_create")],
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
        parameters = [*self.tenant(), *self.page_parameters(paginator)]
        for name, field in filters.fields.items():
            schema = self._map_serializer_field(field, "request")
            parameters.append(
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
            parameters=parameters,
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
        parameters = [
            *self.tenant(),
            self.order_id(),
            {
                "name": "If-None-Match",
                "in": "header",
                "required": False,
                "description": "ETags you hold (weak comparison); a match answers 304. A "
                "malformed value never matches.",
                "schema": {"type": "string"},
                "example": '"1"',
            },
        ]
        return self.operation(
            "orders_retrieve",
            "One order, with its ETag",
            "docs/api/get-order.md",
            parameters=parameters,
            body=None,
            success=success,
            cases=[p.NOT_FOUND],
        )

    def confirm(self) -> dict[str, Any]:
        return self.transition(
            "orders_confirm",
            "Confirm a draft order, setting totalCents",
            "docs/api/confirm-order.md",
            body_required=True,
            links=("orders_close", "orders_retrieve"),
        )

    def close(self) -> dict[str, Any]:
        return self.transition(
            "orders_close",
            "Close a confirmed order",
            "docs/api/close-order.md",
            body_required=False,
            links=("orders_retrieve",),
        )

    def transition(
        self,
        operation_id: str,
        summary: str,
        page: str,
        *,
        body_required: bool,
        links: tuple[str, ...],
    ) -> dict[str, Any]:
        success = {
            "200": {
                "description": "The order after the change (or, with `Idempotent-Replayed`, "
                "the stored 200 of the key's first request).",
                "headers": self.headers("ETag", optional=("Idempotent-Replayed",)),
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
                *self.tenant(),
                self.order_id(),
                self.if_match(operation_id),
                self.idempotency_key(operation_id),
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
        if not self.reads_tenant_header():
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

    def reads_tenant_header(self) -> bool:
        return orders_settings.TENANT_RESOLVER is header_tenant_resolver

    def tenant(self) -> list[dict[str, Any]]:
        """The tenant header, when the tenant is read from one."""
        if not self.reads_tenant_header():
            return []
        pattern = orders_settings.TENANT_ID_PATTERN
        pattern = getattr(pattern, "pattern", pattern)
        return [
            {
                "name": orders_settings.TENANT_HEADER,
                "in": "header",
                "required": True,
                "description": "The tenant the request acts for.",
                "schema": {"type": "string", "maxLength": TENANT_ID_MAX_LENGTH, "pattern": pattern},
                "example": "shop-1",
            }
        ]

    def key_required(self) -> bool:
        required = getattr(self.view, "idempotency_key_required", None)
        return bool(orders_settings.IDEMPOTENCY_KEY_REQUIRED if required is None else required)

    def idempotency_key(self, operation_id: str) -> dict[str, Any]:
        required = self.key_required() if operation_id == "orders_create" else False
        return {
            "name": "Idempotency-Key",
            "in": "header",
            "required": required,
            "description": "1–255 printable ASCII characters (a bare token, or an RFC 8941 "
            "string). A retry with the same key and request answers the stored response; "
            "the same key with another request is 422.",
            "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
            "example": IDEMPOTENCY_KEY_EXAMPLES[operation_id],
        }

    def if_match(self, operation_id: str) -> dict[str, Any]:
        return {
            "name": "If-Match",
            "in": "header",
            "required": bool(orders_settings.REQUIRE_IF_MATCH),
            "description": 'The ETag of the version you read, e.g. `"1"` (also bare digits, '
            'a list, or `*`). Strong comparison: `W/"1"` never matches.',
            "schema": {"type": "string", "pattern": IF_MATCH_PATTERN},
            # The version a new draft has, and the one a confirmed order has.
            "example": '"1"' if operation_id == "orders_confirm" else '"2"',
        }

    def order_id(self) -> dict[str, Any]:
        return {
            "name": "order_id",
            "in": "path",
            "required": True,
            "description": "The order's id; anything but a UUID is a 404 like a missing order.",
            "schema": {"type": "string", "format": "uuid"},
        }

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

    def links(self, *operation_ids: str) -> dict[str, Any]:
        """What a client does next with the order just answered."""
        result: dict[str, Any] = {}
        for operation_id in operation_ids:
            parameters = {"path.order_id": "$response.body#/id"}
            if self.reads_tenant_header():
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
