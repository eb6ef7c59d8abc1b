"""The example project's own app: customers, and orders with a customer and a channel.

It shows the host extensions of docs/guide/extending.md: a swapped order model with host
fields (``models.py``), the serializers that accept them (``serializers.py``) and a rule
that refuses a confirm above the customer's credit limit (``rules.py``).
"""
