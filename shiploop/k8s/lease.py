"""Leadership through a coordination.k8s.io Lease, as client-go's leader election holds it.

One holder at a time: a candidate takes the Lease when it is free or its holder
has not renewed it within `leaseDurationSeconds`, and renews it while it leads.
Every write is a replace carrying the resourceVersion it read, so of two
candidates racing for the same Lease the API server lets one win and answers
the other 409 Conflict (which loses, and tries again next time).

The in-cluster controller (k8s/controller.py) acts only while `try_lead()`
says it leads, and calls it before every step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shiploop.errors import Unavailable

CONFLICT = 409


class LeaseLeader:
    def __init__(
        self,
        client: Any,
        namespace: str,
        name: str,
        identity: str,
        duration_s: int = 15,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration_s = duration_s
        self.clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def try_lead(self) -> bool:
        """Take or renew the Lease; True while this candidate holds it."""
        from lightkube import ApiError
        from lightkube.models.coordination_v1 import LeaseSpec
        from lightkube.resources.coordination_v1 import Lease

        try:
            lease = self.client.get(Lease, self.name, namespace=self.namespace)
        except ApiError as e:
            raise Unavailable(
                f"cannot read Lease {self.namespace}/{self.name}: {e.status.code} {e.status.message}",
                hint="shiploop deploy --target kubernetes",  # it renders and applies the Lease
            ) from None
        spec = lease.spec or LeaseSpec()
        now = self._now()
        holder = spec.holderIdentity
        duration = spec.leaseDurationSeconds or self.duration_s
        renewed = spec.renewTime or spec.acquireTime
        expired = renewed is None or (now - renewed).total_seconds() > duration
        if holder and holder != self.identity and not expired:
            return False
        changes_hands = holder != self.identity
        lease.spec = LeaseSpec(
            holderIdentity=self.identity,
            leaseDurationSeconds=self.duration_s,
            acquireTime=now if changes_hands else spec.acquireTime,
            renewTime=now,
            leaseTransitions=(spec.leaseTransitions or 0) + (1 if changes_hands and holder else 0),
        )
        try:
            self.client.replace(lease, namespace=self.namespace)  # carries the resourceVersion read above
        except ApiError as e:
            if e.status.code == CONFLICT:
                return False  # another candidate wrote first
            raise Unavailable(
                f"cannot write Lease {self.namespace}/{self.name}: {e.status.code} {e.status.message}",
                hint="its Role allows get, watch and update on this Lease: shiploop render --target kubernetes",
            ) from None
        return True
