"""A host app that takes over an existing installation's orders (docs/guide/extending.md,
"An existing installation"): its order model keeps the table ``django_orders_order``, its
rows and its index names, and adds a host field. Used by tests/test_adoption.py only."""
