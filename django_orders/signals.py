"""Django signals sent after a transition's transaction commits.

Each is sent with ``sender=Order`` and ``order=<the Order as committed>``; receivers run
in-process, after commit, so a rolled-back change never signals. They are a convenience
for the host; the outbox (and its relay) is the reliable way to tell other systems.
"""

from django.dispatch import Signal

order_created = Signal()
order_confirmed = Signal()
order_closed = Signal()
