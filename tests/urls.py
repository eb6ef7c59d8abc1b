from django.contrib import admin
from django.urls import include, path

from tests.hostapp import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health", views.health),
    path("host/scoped-function", views.scoped_function),
    path("host/scoped-api", views.ScopedAPIView.as_view()),
    path("host/plain-api", views.PlainAPIView.as_view()),
    path("host/notes/<str:ref>/pin", views.PinNoteView.as_view()),
    path("host/scoped-django-view", views.ScopedDjangoView.as_view()),
    path("host/browsable-api", views.BrowsableScopedAPIView.as_view()),
    path("host/orders-seen", views.OrdersSeenView.as_view()),
    path("host/orders-seen-function", views.orders_seen_function),
    path("docs/scoped-api", views.ScopedAPIView.as_view()),
    path("", include("django_orders.urls")),
]
