"""The routing-state document the cluster keeps and the agent reads: round trip, one-line mistakes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shiploop.errors import Invalid
from shiploop.gateway import render
from shiploop.gateway.model import (
    Assignment,
    Cluster,
    Endpoint,
    Match,
    OutlierPolicy,
    Retry,
    Route,
    RoutingState,
    WeightedTarget,
)
from shiploop.k8s import routing_doc
from shiploop.k8s.agent import bootstrap

STATE = RoutingState(
    (
        Cluster("web_aaa", (Endpoint("web-aaa.shop.svc.cluster.local", 80),), outlier=OutlierPolicy()),
        Cluster("web_bbb", (Endpoint("10.0.0.7", 80),)),
    ),
    (
        Route(
            "web-0-h0", Match(prefix="/", headers=(("x-user", "ana"),)), (WeightedTarget("web_bbb", 100, "web@bbb"),)
        ),
        Route(
            "web-0",
            Match(prefix="/", methods=("GET",)),
            (WeightedTarget("web_aaa", 90, "web@aaa"), WeightedTarget("web_bbb", 10, "web@bbb")),
            host="shop.example.com",
            rewrite="/",
            timeout_s=2.5,
            retry=Retry(2, ("connect-failure",), 0.5),
            mirrors=("web_bbb",),
        ),
        Route(  # an experiment's route: the assignment must survive the document
            "web-1",
            Match(prefix="/signup"),
            (WeightedTarget("web_aaa", 100, "web@aaa"),),
            assignment=Assignment(
                "exp-7", "web", "cookie", "shiploop_uid", 50.0,
                WeightedTarget("web_aaa", 100, "web@aaa"), WeightedTarget("web_bbb", 100, "web@bbb"),
            ),  # fmt: skip
        ),
    ),
    8080,
    "0.0.0.0",
    event_log="/var/log/shiploop/experiments.jsonl",
)


def test_the_document_round_trips_field_for_field():
    text = routing_doc.dumps(STATE)
    assert json.loads(text)["schema"] == routing_doc.SCHEMA
    assert routing_doc.loads(text) == STATE


def test_a_dns_endpoint_makes_a_strict_dns_cluster_an_ip_a_static_one():
    assert render.cluster(STATE.clusters[0])["type"] == "STRICT_DNS"
    assert render.cluster(STATE.clusters[1])["type"] == "STATIC"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not JSON"),
        ('{"clusters": []}', "not a routing-state document"),
        (json.dumps({"schema": routing_doc.SCHEMA, "routes": [{"name": "x"}]}), "malformed routing-state document"),
    ],
)
def test_a_broken_document_is_one_line_naming_it(text: str, message: str):
    with pytest.raises(Invalid) as caught:
        routing_doc.loads(text, "/etc/shiploop/routing/routing.json")
    assert message in caught.value.line() and caught.value.line().startswith("/etc/shiploop/routing/routing.json: ")


def test_check_refuses_unknown_clusters_and_weights_out_of_range():
    doc = routing_doc.to_document(STATE)
    doc["routes"][1]["targets"][0]["cluster"] = "web_zzz"
    with pytest.raises(Invalid, match="unknown cluster 'web_zzz'"):
        routing_doc.check(routing_doc.from_document(doc))
    doc = routing_doc.to_document(STATE)
    doc["routes"][1]["targets"][0]["weight"] = 101
    with pytest.raises(Invalid, match="weight 101"):
        routing_doc.check(routing_doc.from_document(doc))


def test_the_pods_bootstrap_serves_stats_on_every_address_and_keeps_admin_on_the_socket():
    boot = bootstrap(Path("/xds"), "gw", 9902, "0.0.0.0")
    (listener,) = boot["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 9902}
    assert boot["admin"]["address"]["pipe"]["path"] == "/xds/admin.sock"
    assert boot["dynamic_resources"]["cds_config"]["path_config_source"]["path"] == "/xds/current/cds.json"
