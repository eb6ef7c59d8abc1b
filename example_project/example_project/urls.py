from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from django_orders.problems import problem_response

urlpatterns = [
    path("admin/", admin.site.urls),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("", include("django_orders.urls")),  # wiring edit 2 of 2
    path("", include("shop.urls")),  # the project's own endpoints
]


# Django's own error pages (a URL no route matches, …) as problem+json, like the API's
# errors; in effect with DEBUG off (with DEBUG on, Django shows its technical pages).
def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    return problem_response(404, "not_found", "Not found.")


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    return problem_response(400, "bad_request", "The request is malformed.")


def server_error(request: HttpRequest) -> HttpResponse:
    return problem_response(500, "server_error", "Internal server error.")


handler404 = not_found
handler400 = bad_request
handler500 = server_error
