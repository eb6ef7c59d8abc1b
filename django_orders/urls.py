"""URLs of the orders API. Mount anywhere: ``path("api/", include("django_orders.urls"))``.

Trailing slashes are optional on every route. They are written ``(?:/)?`` rather than
``/?`` so that generated OpenAPI paths read ``/orders``, as the contract writes them.
"""

from django.urls import re_path

from django_orders import views

app_name = "django_orders"

urlpatterns = [
    re_path(r"^orders(?:/)?$", views.OrderCollectionView.as_view(), name="order-list"),
    # Any segment, not only a UUID: a malformed id answers 404 not_found problem+json
    # from the view, like a missing order, instead of Django's HTML 404.
    re_path(
        r"^orders/(?P<order_id>[^/]+)(?:/)?$", views.OrderDetailView.as_view(), name="order-detail"
    ),
    re_path(
        r"^orders/(?P<order_id>[^/]+)/confirm(?:/)?$",
        views.OrderConfirmView.as_view(),
        name="order-confirm",
    ),
    re_path(
        r"^orders/(?P<order_id>[^/]+)/close(?:/)?$",
        views.OrderCloseView.as_view(),
        name="order-close",
    ),
]
