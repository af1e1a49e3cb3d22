"""Leadership through a Lease, against a MOCK of the API server's documented Lease contract: GET returns
the object with its resourceVersion; PUT with a stale resourceVersion is 409 Conflict."""

from __future__ import annotations

import json
from typing import Any

import httpx2

from shiploop.k8s import deploy as k8s_deploy
from shiploop.k8s.lease import LeaseLeader

PATH = "/apis/coordination.k8s.io/v1/namespaces/shop/leases/shiploop-controller"


class RecordedLeaseApi:
    """A mock API server holding one Lease; `race` makes the next PUT lose to another writer."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "shiploop-controller", "namespace": "shop", "resourceVersion": "1"},
            "spec": {"leaseDurationSeconds": 15},
        }
        self.race = False

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        assert request.url.path == PATH
        if request.method == "GET":
            return httpx2.Response(200, json=self.lease)
        body = json.loads(request.content)
        if self.race or body["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
            self.race = False
            self.lease["metadata"]["resourceVersion"] = str(int(self.lease["metadata"]["resourceVersion"]) + 1)
            conflict = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "reason": "Conflict", "code": 409, "message": "the object has been modified"}  # fmt: skip
            return httpx2.Response(409, json=conflict)
        body["metadata"]["resourceVersion"] = str(int(self.lease["metadata"]["resourceVersion"]) + 1)
        self.lease = body
        return httpx2.Response(200, json=body)


def test_one_leader_at_a_time_takeover_after_expiry_and_a_lost_race():
    api = RecordedLeaseApi()
    now = [1_800_000_000.0]
    client = k8s_deploy.connect(
        None, "shop", transport=httpx2.MockTransport(api.handle), server="https://recorded.invalid"
    )
    a = LeaseLeader(client, "shop", "shiploop-controller", "pod-a", 15, clock=lambda: now[0])
    b = LeaseLeader(client, "shop", "shiploop-controller", "pod-b", 15, clock=lambda: now[0])

    assert a.try_lead() is True  # free: a takes it
    assert api.lease["spec"]["holderIdentity"] == "pod-a" and api.lease["spec"]["leaseTransitions"] == 0
    assert b.try_lead() is False  # held and fresh
    now[0] += 10
    assert a.try_lead() is True and b.try_lead() is False  # a renews
    now[0] += 16  # a stops renewing (its pod died): the Lease expires
    assert b.try_lead() is True
    assert api.lease["spec"]["holderIdentity"] == "pod-b" and api.lease["spec"]["leaseTransitions"] == 1
    assert a.try_lead() is False  # a, back, follows
    now[0] += 16
    api.race = True  # another candidate writes between our read and our write
    assert a.try_lead() is False and api.lease["spec"]["holderIdentity"] == "pod-b"
