"""A host mounting its subclasses of the package's views with ``orders_urls()``."""

from django.urls import include, path

from django_orders.urls import orders_urls
from tests.hostapp import orders_views as host

urlpatterns = [
    path("locked/", include(orders_urls(collection=host.LockedCollection), namespace="locked")),
    path(
        "reopened/", include(orders_urls(collection=host.ReopenedCollection), namespace="reopened")
    ),
    path("basic/", include(orders_urls(collection=host.BasicAuthCollection), namespace="basic")),
    path(
        "throttled/",
        include(orders_urls(collection=host.ThrottledCollection), namespace="throttled"),
    ),
    path("unguarded/", include(orders_urls(detail=host.UnguardedDetail), namespace="unguarded")),
    path(
        "enveloped/",
        include(orders_urls(collection=host.EnvelopedCollection), namespace="enveloped"),
    ),
    path(
        "relocated/",
        include(orders_urls(collection=host.RelocatedCollection), namespace="relocated"),
    ),
    path("", include("django_orders.urls")),
]
