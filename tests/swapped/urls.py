"""The test host's URLs, plus the example project's own endpoints (``shop.urls``)."""

from django.urls import include, path

from tests.urls import urlpatterns as host_urlpatterns

urlpatterns = [*host_urlpatterns, path("", include("shop.urls"))]
