"""URLs of the orders API. Mount anywhere: ``path("api/", include("django_orders.urls"))``.

With views of your own (subclasses of the package's, with your permissions, throttles, …),
mount :func:`orders_urls` instead: the same routes, names and namespace::

    path("api/", include(orders_urls(collection=MyOrderCollectionView)))

Trailing slashes are optional on every route. They are written ``(?:/)?`` rather than
``/?`` so that generated OpenAPI paths read ``/orders``, as the contract writes them.
"""

from __future__ import annotations

from django.urls import URLPattern, re_path

from django_orders import views

app_name = "django_orders"


def orders_urls(
    *,
    collection: type[views.OrderCollectionView] = views.OrderCollectionView,
    detail: type[views.OrderDetailView] = views.OrderDetailView,
    confirm: type[views.OrderConfirmView] = views.OrderConfirmView,
    close: type[views.OrderCloseView] = views.OrderCloseView,
) -> tuple[list[URLPattern], str]:
    """The orders API's routes, served by the given view classes, for ``include()``.

    Each class must be the package's view or a subclass of it, so every route keeps the
    contract (idempotency, ``ETag`` / ``If-Match``, tenancy). Returns ``(urlpatterns,
    "django_orders")``: the routes keep their names under the ``django_orders``
    namespace, as with ``include("django_orders.urls")``.
    """
    for given, base in (
        (collection, views.OrderCollectionView),
        (detail, views.OrderDetailView),
        (confirm, views.OrderConfirmView),
        (close, views.OrderCloseView),
    ):
        if not (isinstance(given, type) and issubclass(given, base)):
            raise TypeError(
                f"orders_urls() needs a subclass of {base.__qualname__}, not {given!r}."
            )
    patterns = [
        re_path(r"^orders(?:/)?$", collection.as_view(), name="order-list"),
        # Any segment, not only a UUID: a malformed id answers 404 not_found problem+json
        # from the view, like a missing order, instead of Django's HTML 404.
        re_path(r"^orders/(?P<order_id>[^/]+)(?:/)?$", detail.as_view(), name="order-detail"),
        re_path(
            r"^orders/(?P<order_id>[^/]+)/confirm(?:/)?$",
            confirm.as_view(),
            name="order-confirm",
        ),
        re_path(r"^orders/(?P<order_id>[^/]+)/close(?:/)?$", close.as_view(), name="order-close"),
    ]
    return patterns, app_name


urlpatterns = orders_urls()[0]
