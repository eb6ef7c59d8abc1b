"""The project's business rules, run by django-orders inside each change's transaction
(``DJANGO_ORDERS["ORDER_RULES"]``)."""

from __future__ import annotations

from django_orders.services import OrderChange, RuleViolation


def credit_limit(change: OrderChange) -> None:
    """An order's total may not exceed its customer's credit limit (on create and confirm).

    Refused with 422 ``credit_limit_exceeded``; then nothing of the request is written.
    """
    if change.action == "close":
        return
    total = change.value("total_cents")
    customer = change.value("customer")  # given now, or the order's (one query)
    if total is None or customer is None:
        return
    # Read inside the confirm's transaction. A rule that adds up a customer's open orders
    # would lock the customer first (select_for_update), so that two confirms running at
    # once cannot both pass.
    if total > customer.credit_limit_cents:
        raise RuleViolation(
            "credit_limit_exceeded",
            f"The total of {total} cents exceeds the credit limit of customer "
            f"{customer.pk} ({customer.credit_limit_cents} cents).",
            creditLimitCents=customer.credit_limit_cents,
        )
