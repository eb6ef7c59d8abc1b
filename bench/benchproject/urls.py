"""The package at ``/`` (``/orders``…) and the reference views at ``/ref/``."""

from django.urls import include, path, re_path

from benchproject import refviews

urlpatterns = [
    path("ref/noop", refviews.NoopView.as_view()),
    path("ref/create", refviews.PlainCreateView.as_view()),
    re_path(r"^ref/list/offset/?$", refviews.OffsetListView.as_view()),
    re_path(r"^ref/list/offset-nocount/?$", refviews.OffsetNoCountListView.as_view()),
    re_path(r"^ref/list/or-keyset/?$", refviews.OrKeysetListView.as_view()),
    path("", include("django_orders.urls")),
]
