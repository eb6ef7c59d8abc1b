from django.contrib import admin

from django_orders.admin import OrderAdmin
from shop.models import Customer, Order

# django-orders registers its read-only admin for the order model in force; this one shows
# the host fields as well. ("shop" comes after "django_orders" in INSTALLED_APPS.)
admin.site.unregister(Order)


@admin.register(Order)
class ShopOrderAdmin(OrderAdmin):
    list_display = (*OrderAdmin.list_display, "customer", "channel")
    list_filter = (*OrderAdmin.list_filter, "channel")


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("name", "tenant_id", "credit_limit_cents")
    search_fields = ("name",)
