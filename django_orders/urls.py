"""URLs of the orders API. Mount anywhere: ``path("api/", include("django_orders.urls"))``.

Trailing slashes are optional on every route.
"""

from django.urls import re_path

from django_orders import views

app_name = "django_orders"

urlpatterns = [
    re_path(r"^orders/?$", views.OrderCollectionView.as_view(), name="order-list"),
]
