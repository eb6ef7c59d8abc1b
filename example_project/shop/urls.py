from django.urls import path

from shop.views import CreditLimitView

urlpatterns = [
    path("customers/<int:customer_id>/credit-limit", CreditLimitView.as_view()),
]
