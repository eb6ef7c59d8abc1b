"""The package mounted under a prefix, as a host might do."""

from django.urls import include, path

urlpatterns = [path("api/v1/", include("django_orders.urls"))]
