"""The OpenAPI description of the orders API, for drf-spectacular (the ``openapi`` extra).

Imported by ``AppConfig.ready()`` only when drf-spectacular is installed. The description
is derived from what the views run, when the schema is generated (docs/guide/openapi.md):

- :mod:`~django_orders.openapi.operations` — each operation from its view: the
  serializers it validates with, the parameters and statuses the settings in force give;
- :mod:`~django_orders.openapi.parameters` — the tenant header (or none), the
  ``Idempotency-Key``, ``If-Match`` and ``If-None-Match`` headers, the order id;
- :mod:`~django_orders.openapi.documents` — the order (from the order model's
  ``to_dict()``, host members included), the page, the problem;
- :mod:`~django_orders.openapi.problems` — every problem code, grouped into
  ``application/problem+json`` responses with their headers;
- :mod:`~django_orders.openapi.extensions` — the drf-spectacular extensions that attach
  all of it to the package's views (and a host's subclasses).
"""

from django_orders.openapi import extensions  # noqa: F401  (registers the extensions)
