"""Outbound Messages: envelope, 100 notifications a message, retries until the Ack."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import defusedxml.ElementTree as SafeET
import pytest
from simple_salesforce import Salesforce

from integrations.salesforce.emulator import ACK, SalesforceEmulator, is_ack

from .conftest import AS_OF, client

NS = {
    "soapenv": "http://schemas.xmlsoap.org/soap/envelope/",
    "out": "http://soap.sforce.com/2005/09/outbound",
    "sf": "urn:sobject.enterprise.soap.sforce.com",
}


class Receiver:
    """A plain-HTTP endpoint that answers the first ``failures`` posts wrongly, then acks."""

    def __init__(self, failures: list[tuple[int, str]]) -> None:
        self.failures = list(failures)
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.bodies.append(body)
                status, reply = receiver.failures.pop(0) if receiver.failures else (200, ACK)
                data = reply.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/outbound/secret"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver([(500, "oops"), (200, "<ok/>")])
    yield running
    running.close()


def test_message_is_retried_until_acked(seeded: SalesforceEmulator, receiver: Receiver) -> None:
    ids = [r["Id"] for r in seeded.records("Opportunity")[:3]]
    [delivery] = seeded.send_outbound_messages(receiver.url, ids, backoff=0.01)
    assert delivery.acked is True
    assert delivery.attempts == 3 and delivery.statuses == [500, 200, 200]
    assert len(receiver.bodies) == 3 and len(set(receiver.bodies)) == 1  # the same message

    root = SafeET.fromstring(receiver.bodies[0])
    notifications = root.find("soapenv:Body/out:notifications", NS)
    assert notifications is not None
    assert notifications.findtext("out:OrganizationId", namespaces=NS) == seeded.org.org_id
    assert notifications.findtext("out:ActionId", namespaces=NS).startswith("04k")
    assert "/services/Soap/c/59.0/" in notifications.findtext("out:EnterpriseUrl", namespaces=NS)
    items = notifications.findall("out:Notification", NS)
    assert len(items) == 3
    sobject = items[0].find("out:sObject", NS)
    assert sobject is not None
    assert sobject.get("{http://www.w3.org/2001/XMLSchema-instance}type") == "sf:Opportunity"
    assert sobject.findtext("sf:Id", namespaces=NS) == ids[0]
    assert sobject.findtext("sf:StageName", namespaces=NS)
    assert sobject.findtext("sf:SystemModstamp", namespaces=NS).endswith(".000Z")


def test_at_most_100_notifications_a_message(emulator: SalesforceEmulator) -> None:
    emulator.seed(150, as_of=AS_OF)
    ok = Receiver([])
    try:
        ids = [r["Id"] for r in emulator.records("Opportunity")]
        deliveries = emulator.send_outbound_messages(ok.url, ids)
    finally:
        ok.close()
    assert [len(d.notification_ids) for d in deliveries] == [100, 50]
    assert all(d.acked and d.attempts == 1 for d in deliveries)


def test_gives_up_after_the_attempts_without_an_ack(seeded: SalesforceEmulator) -> None:
    never = Receiver([(200, "<soapenv:Envelope/>")] * 10)
    try:
        opp_id = seeded.records("Opportunity")[0]["Id"]
        [delivery] = seeded.send_outbound_messages(
            never.url, [opp_id], max_attempts=3, backoff=0.01
        )
    finally:
        never.close()
    assert delivery.acked is False and delivery.attempts == 3


def test_stage_change_sends_a_message_with_the_latest_values(
    seeded: SalesforceEmulator, receiver: Receiver, sf: Salesforce
) -> None:
    seeded.configure_outbound(receiver.url, backoff=0.01)
    opp_id = sf.query("SELECT Id FROM Opportunity WHERE IsClosed = false LIMIT 1")["records"][0][
        "Id"
    ]
    sf.Opportunity.update(opp_id, {"NextStep": "no stage change, no message"})
    sf.Opportunity.update(opp_id, {"StageName": "Closed Won"})
    assert seeded.wait_for_outbound(5)
    assert len(seeded.deliveries) == 1 and seeded.deliveries[0].acked
    root = SafeET.fromstring(receiver.bodies[-1])
    sobject = root.find("soapenv:Body/out:notifications/out:Notification/out:sObject", NS)
    assert sobject is not None
    assert sobject.findtext("sf:StageName", namespaces=NS) == "Closed Won"
    assert sobject.findtext("sf:IsWon", namespaces=NS) == "true"


def test_ack_check_is_strict_about_names_and_namespaces() -> None:
    assert is_ack(200, ACK.encode())
    assert not is_ack(500, ACK.encode())
    assert not is_ack(200, ACK.replace("<Ack>true", "<Ack>false").encode())
    assert not is_ack(200, ACK.replace("2005/09/outbound", "2005/09/inbound").encode())
    assert not is_ack(200, b"true")


def test_state_survives_a_restart_with_a_state_dir(tmp_path: Path) -> None:
    with SalesforceEmulator(tmp_path) as first:
        ids = first.seed(3, as_of=AS_OF)
        token = first.issue_token()
    with SalesforceEmulator(tmp_path) as second:
        sf = client(second, token=token)
        records = sf.query("SELECT Id FROM Opportunity ORDER BY CreatedDate")["records"]
        assert sorted(r["Id"] for r in records) == sorted(ids)
        assert second.seed(1, as_of=AS_OF)[0] not in ids
