"""Webhooks against a real receiver on a loopback port: signatures, the events each change
sends and to whom, retries and replay, at-least-once delivery across crashes, the outbox's
transaction, concurrent runners, and who may see what."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from api.core.db import make_engine, make_sessionmaker
from api.core.models import Role
from api.core.settings import Settings, WebhookSettings
from api.events import outbox, webhook_delivery
from api.events.outbox import EVENT_TYPES, emit, forget_old_events
from api.events.webhook_delivery import backoff_s, deliver_due, verify_signature
from api.submissions.settlement import Decision, lock_submission, settle
from checklists import Checklist, validate_answers
from tests.api.races import finish, queued, until
from tests.api.submissions.test_photos import (
    STORE,
    complete,
    device_fix,
    reserve,
    shelf_photo,
    submit,
    upload,
)
from tests.api.submissions.test_settlement import decide, submitted
from tests.conftest import make_settings, table_fingerprint

WEBHOOKS = WebhookSettings(
    allow_private_hosts=True,
    timeout_s=2,
    max_attempts=3,
    backoff_base_s=2,
    backoff_cap_s=3,
    backoff_jitter=0,
)


@pytest.fixture
def settings(test_database_url: str, tmp_path) -> Settings:
    base = make_settings(test_database_url, str(tmp_path / "objects"))
    return base.model_copy(update={"webhooks": WEBHOOKS.model_copy()})


class Receiver:
    """An HTTP server on 127.0.0.1 that records every call and answers each path with the
    statuses it is told, then 200."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.plan: dict[str, list[int]] = {}
        self.delay_s = 0.0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay_s)
                with receiver.lock:
                    receiver.calls.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body}
                    )
                    planned = receiver.plan.get(self.path) or []
                    status = planned.pop(0) if planned else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def events(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(c["body"]) for c in self.calls if c["path"] == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.server.shutdown()
    server.server.server_close()


async def register(http, client, url: str, types: tuple[str, ...] = EVENT_TYPES) -> dict:
    response = await http.post(
        "/v1/webhooks", headers=client.headers, json={"url": url, "event_types": list(types)}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def deliver(app, **kwargs: Any) -> int:
    return await deliver_due(app.state.sessionmaker, app.state.settings, **kwargs)


async def make_due(db) -> None:
    """Time passes: every scheduled retry and every lease is due now."""
    await db.execute(
        "UPDATE webhook_delivery SET next_attempt_at = now() "
        "WHERE status IN ('pending', 'sending', 'failed')"
    )


async def deliveries(http, client, endpoint_id: str) -> list[dict]:
    response = await http.get(f"/v1/webhooks/{endpoint_id}/deliveries", headers=client.headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def ping(http, client, endpoint_id: str) -> dict:
    response = await http.post(f"/v1/webhooks/{endpoint_id}/ping", headers=client.headers)
    assert response.status_code == 202, response.text
    return response.json()


# --- Signatures ---------------------------------------------------------------------------------


async def test_calls_are_signed_with_the_secret_given_at_registration(app, http, factory, receiver):
    client = await factory.account(Role.client)
    endpoint = await register(http, client, receiver.url("/hooks"))
    assert len(endpoint["secret"]) == 43  # secrets.token_urlsafe(32)
    shown = await http.get(f"/v1/webhooks/{endpoint['id']}", headers=client.headers)
    assert "secret" not in shown.json()
    queued = await ping(http, client, endpoint["id"])
    assert (queued["status"], queued["event_type"], queued["attempts"]) == ("pending", "ping", 0)

    assert await deliver(app) == 1
    (call,) = receiver.calls
    body, headers = call["body"], call["headers"]
    event = json.loads(body)
    assert event == {
        "id": queued["event_id"],
        "type": "ping",
        "created_at": event["created_at"],
        "organization_id": str(client.organization_id),
        "data": {"endpoint_id": endpoint["id"]},
    }
    assert headers["Terrain-Event-Id"] == queued["event_id"]
    assert headers["Terrain-Event-Type"] == "ping"
    assert headers["Content-Type"] == "application/json"
    signature = headers["Terrain-Signature"]
    timestamp = int(headers["Terrain-Timestamp"])
    assert signature.startswith(f"t={timestamp},v1=")
    assert abs(time.time() - timestamp) < 60
    assert verify_signature(endpoint["secret"], signature, body, tolerance_s=300)
    # Tampered body, another secret, a missing or forged part, an old or a future timestamp.
    assert not verify_signature(endpoint["secret"], signature, body.replace(b"ping", b"pong"))
    assert not verify_signature("another secret", signature, body)
    assert not verify_signature(endpoint["secret"], f"t={timestamp}", body)
    assert not verify_signature(endpoint["secret"], signature.replace("t=", "t=1"), body)
    assert not verify_signature(endpoint["secret"], signature, body, 300, now=timestamp + 301)
    assert not verify_signature(endpoint["secret"], signature, body, 300, now=timestamp - 301)
    assert verify_signature(endpoint["secret"], signature, body, 300, now=timestamp + 299)

    (delivery,) = await deliveries(http, client, endpoint["id"])
    assert delivery["status"] == "delivered"
    assert (delivery["attempts"], delivery["last_status_code"]) == (1, 200)
    assert delivery["last_error"] is None and delivery["next_attempt_at"] is None


# --- Events -------------------------------------------------------------------------------------


def by_type(events: list[dict]) -> Counter[tuple[str, str | None]]:
    return Counter(
        (e["type"], e["data"].get("submission", {}).get("id") or e["data"]["campaign"]["id"])
        for e in events
    )


async def test_each_change_sends_its_event_to_the_owning_organization_only(
    app, http, factory, db, receiver
):
    owner = await factory.account(Role.client)
    other = await factory.account(Role.client)
    await register(http, owner, receiver.url("/owner"))
    await register(http, other, receiver.url("/other"))
    only_disputes = await register(http, owner, receiver.url("/disputes"), ("task.disputed",))
    reviewer = await factory.account(Role.reviewer)

    accepted = await submitted(http, factory, "accepted", client=owner)
    review = await submitted(http, factory, "needs_review", client=owner)
    checked_out = await submitted(http, factory, "rejected", client=owner)
    disputed = await submitted(http, factory, "accepted", client=owner)

    approve = await http.post(f"/v1/submissions/{accepted.id}/accept", headers=owner.headers)
    assert approve.status_code == 200, approve.text
    reject = await decide(
        http, reviewer, review.id, decision="reject", reason_code="wrong_subject", comment="No."
    )
    assert reject.status_code == 200, reject.text
    dispute = await http.post(
        f"/v1/submissions/{disputed.id}/dispute",
        headers=owner.headers,
        json={"reason_code": "incomplete", "message": "Half the shelf."},
    )
    assert dispute.status_code == 201, dispute.text

    assert await deliver(app) == 10  # 9 to the owner's endpoint, 1 to its disputes-only one
    assert receiver.events("/other") == []
    campaign_of_accepted = await db.fetchval(
        "SELECT campaign_id FROM task WHERE id = $1", accepted.task_id
    )
    assert by_type(receiver.events("/owner")) == Counter(
        [
            ("task.submitted", accepted.id),
            ("task.submitted", review.id),
            ("task.submitted", checked_out.id),
            ("task.submitted", disputed.id),
            ("task.approved", accepted.id),
            ("campaign.completed", str(campaign_of_accepted)),
            ("task.rejected", review.id),
            ("task.rejected", checked_out.id),  # the checks' own decision, at submission
            ("task.disputed", disputed.id),
        ]
    )
    assert [e["type"] for e in receiver.events("/disputes")] == ["task.disputed"]
    (delivery,) = await deliveries(http, owner, only_disputes["id"])
    assert delivery["event_type"] == "task.disputed"

    events = {
        (e["type"], e["data"].get("submission", {}).get("id")): e for e in receiver.events("/owner")
    }
    rejected = events[("task.rejected", review.id)]
    store = await db.fetchrow(
        "SELECT s.id, s.name, t.campaign_id FROM task t JOIN store s ON s.id = t.store_id "
        "WHERE t.id = $1",
        review.task_id,
    )
    assert rejected["organization_id"] == str(owner.organization_id)
    assert rejected["data"] == {
        "campaign": {
            "id": str(store["campaign_id"]),
            "name": "Shelf check",
            "purpose": "Check the organic range is on shelf",
        },
        # Held while the rejection may be appealed; it goes back to the pool once final.
        "task": {
            "id": str(review.task_id),
            "status": "rejected",
            "period_key": "",
            "checklist_version": 1,
        },
        "store": {"id": str(store["id"]), "name": store["name"], "external_ref": None},
        "submission": {
            "id": review.id,
            "status": "rejected",
            "verdict": "needs_review",
            "worker_id": str(review.worker.id),
            "submitted_at": rejected["data"]["submission"]["submitted_at"],
            "decided_at": rejected["data"]["submission"]["decided_at"],
            "outcome": None,
            "answers": {},
        },
        "reason_code": "wrong_subject",
    }
    assert rejected["data"]["submission"]["decided_at"] is not None
    assert events[("task.disputed", disputed.id)]["data"]["reason_code"] == "incomplete"
    assert events[("task.disputed", disputed.id)]["data"]["submission"]["status"] == "disputed"
    assert events[("task.rejected", checked_out.id)]["data"]["reason_code"] == "failed_checks"
    assert events[("task.approved", accepted.id)]["data"]["task"]["status"] == "approved"
    assert events[("task.submitted", accepted.id)]["data"]["submission"]["status"] == (
        "pending_acceptance"
    )
    completed = next(e for e in receiver.events("/owner") if e["type"] == "campaign.completed")
    assert completed["data"]["task_counts"] == {"approved": 1}
    # Nothing personal about workers: no email, no display name, anywhere.
    workers = await db.fetch("SELECT email, display_name FROM \"user\" WHERE role = 'worker'")
    for call in receiver.calls:
        for row in workers:
            assert row["email"].encode() not in call["body"]
            assert row["display_name"].encode() not in call["body"]


async def two_task_campaign(http, factory, client) -> tuple[uuid.UUID, list[str]]:
    """A campaign of two tasks, each submitted by its own worker and awaiting acceptance."""
    stores = [await factory.store(client.organization_id, lat=STORE[0], lon=STORE[1])]
    stores.append(await factory.store(client.organization_id, lat=STORE[0], lon=STORE[1]))
    campaign_id, task_ids = await factory.campaign(client, stores)
    submission_ids = []
    for task_id in task_ids:
        worker = await factory.account(Role.worker)
        reservation_id = await reserve(http, worker, task_id)
        photo_id = await upload(http, worker, reservation_id, shelf_photo(seed=factory._next()))
        assert (await complete(http, worker, reservation_id, photo_id)).status_code == 200
        response = await submit(http, worker, reservation_id, device_fix())
        assert response.json()["status"] == "pending_acceptance", response.text
        submission_ids.append(response.json()["id"])
    return campaign_id, submission_ids


async def test_a_campaign_completes_with_its_last_decision_once(app, http, factory, receiver):
    client = await factory.account(Role.client)
    await register(http, client, receiver.url("/hooks"), ("campaign.completed", "task.approved"))
    campaign_id, (first, second) = await two_task_campaign(http, factory, client)

    assert (await http.post(f"/v1/submissions/{first}/accept", headers=client.headers)).is_success
    await deliver(app)
    # One task still awaits the client's acceptance: not complete.
    assert [e["type"] for e in receiver.events("/hooks")] == ["task.approved"]

    assert (await http.post(f"/v1/submissions/{second}/accept", headers=client.headers)).is_success
    await deliver(app)
    # Both events of one transaction are sent at once, in no set order.
    second_batch = receiver.events("/hooks")[1:]
    assert sorted(e["type"] for e in second_batch) == ["campaign.completed", "task.approved"]
    (completed,) = (e for e in second_batch if e["type"] == "campaign.completed")
    assert completed["data"] == {
        "campaign": {
            "id": str(campaign_id),
            "name": "Shelf check",
            "purpose": "Check the organic range is on shelf",
        },
        "task_counts": {"approved": 2},
    }
    # A dispute reopens a decision; its outcome is sent, the completion is not sent again.
    dispute = await http.post(
        f"/v1/submissions/{first}/dispute",
        headers=client.headers,
        json={"reason_code": "incomplete", "message": "Half the shelf."},
    )
    assert dispute.status_code == 201, dispute.text
    reviewer = await factory.account(Role.reviewer)
    dismissed = await decide(http, reviewer, first, decision="approve", comment="It is fine.")
    assert dismissed.status_code == 200, dismissed.text
    await deliver(app)
    assert [e["type"] for e in receiver.events("/hooks")[3:]] == ["task.approved"]
    assert sum(e["type"] == "campaign.completed" for e in receiver.events("/hooks")) == 1


async def test_the_last_two_decisions_racing_complete_the_campaign_once(
    app, http, factory, db, receiver, monkeypatch: pytest.MonkeyPatch
):
    client = await factory.account(Role.client)
    await register(http, client, receiver.url("/hooks"), ("campaign.completed",))
    campaign_id, submission_ids = await two_task_campaign(http, factory, client)
    # Each acceptance waits, its decision made and not committed, until the other has made
    # its own: each sees the other's task still undecided, the interleaving that would
    # complete the campaign twice or never.
    meeting = asyncio.Barrier(2)
    check_completion = outbox._emit_if_campaign_completed

    async def once_both_decided(session, submission_id):
        async with asyncio.timeout(20):  # a bound on a hang: the other never came
            await meeting.wait()
        return await check_completion(session, submission_id)

    monkeypatch.setattr(outbox, "_emit_if_campaign_completed", once_both_decided)
    accepts = [
        http.post(f"/v1/submissions/{s}/accept", headers=client.headers) for s in submission_ids
    ]
    assert [r.status_code for r in await asyncio.gather(*accepts)] == [200, 200]
    events = await db.fetch(
        "SELECT payload FROM webhook_event WHERE type = 'campaign.completed' "
        "AND organization_id = $1",
        client.organization_id,
    )
    assert [json.loads(row["payload"])["task_counts"] for row in events] == [{"approved": 2}]
    await deliver(app)
    assert [e["data"]["campaign"]["id"] for e in receiver.events("/hooks")] == [str(campaign_id)]


class LaterFailure(Exception):
    pass


WRITTEN = (
    "SELECT count(*) FROM webhook_event e JOIN webhook_delivery d ON d.event_id = e.id "
    "WHERE e.type IN ('task.approved', 'campaign.completed')"
)


async def test_a_change_that_rolls_back_leaves_no_event(app, http, factory, db, receiver):
    client = await factory.account(Role.client)
    await register(http, client, receiver.url("/hooks"))
    work = await submitted(http, factory, "accepted", client=client)
    before = await db.fetchval("SELECT count(*) FROM webhook_event")
    with pytest.raises(LaterFailure):
        async with app.state.sessionmaker() as session, session.begin():
            submission = await lock_submission(session, work.submission_uuid)
            decision = Decision(True, client.id, None, None, "accepted_by_client")
            await settle(session, submission, decision, app.state.settings)
            # Inside the transaction the event and its delivery are there...
            assert (await session.execute(text(WRITTEN))).scalar() == 2
            raise LaterFailure  # ...something after them fails: the transaction rolls back
    # ...and gone with the change it described.
    assert await db.fetchval("SELECT count(*) FROM webhook_event") == before
    assert await db.fetchval(WRITTEN) == 0
    assert (
        await db.fetchval("SELECT status::text FROM submission WHERE id = $1", work.submission_uuid)
        == "pending_acceptance"
    )


# --- Retries and replay -------------------------------------------------------------------------


async def test_failures_are_retried_on_the_configured_schedule_then_delivered_once(
    app, http, factory, db, receiver
):
    client = await factory.account(Role.client)
    endpoint = await register(http, client, receiver.url("/flaky"))
    receiver.plan["/flaky"] = [500, 503]
    queued = await ping(http, client, endpoint["id"])
    url = f"/v1/webhook-deliveries/{queued['id']}"

    assert await deliver(app) == 1
    assert await deliver(app) == 0  # the retry is not due yet
    first = (await http.get(url, headers=client.headers)).json()
    assert (first["status"], first["attempts"], first["last_status_code"]) == ("failed", 1, 500)
    assert first["last_error"] == "unexpected status 500"
    # The wait after attempt n is base * 2**(n - 1), capped: 2 s, then 3 s (not 4).
    (attempt,) = first["log"]
    waits = [await _scheduled_wait(db, queued["id"])]
    await make_due(db)
    assert await deliver(app) == 1
    waits.append(await _scheduled_wait(db, queued["id"]))
    assert waits == [timedelta(seconds=2), timedelta(seconds=3)]
    await make_due(db)
    assert await deliver(app) == 1
    await make_due(db)
    assert await deliver(app) == 0

    done = (await http.get(url, headers=client.headers)).json()
    assert (done["status"], done["attempts"], done["last_status_code"]) == ("delivered", 3, 200)
    assert done["last_error"] is None and done["delivered_at"] is not None
    assert [(a["number"], a["status_code"], a["error"]) for a in done["log"]] == [
        (1, 500, "unexpected status 500"),
        (2, 503, "unexpected status 503"),
        (3, 200, None),
    ]
    assert attempt["started_at"] <= attempt["finished_at"]
    calls = [c["headers"]["Terrain-Event-Id"] for c in receiver.calls]
    assert calls == [queued["event_id"]] * 3
    assert [c["body"] for c in receiver.calls] == [receiver.calls[0]["body"]] * 3


async def _scheduled_wait(db, delivery_id: str) -> timedelta:
    """From the end of the last attempt to the next one."""
    return await db.fetchval(
        "SELECT d.next_attempt_at - a.finished_at FROM webhook_delivery d "
        "JOIN webhook_attempt a ON a.delivery_id = d.id WHERE d.id = $1 "
        "ORDER BY a.id DESC LIMIT 1",
        uuid.UUID(delivery_id),
    )


def test_backoff_grows_exponentially_is_capped_and_jittered_below_the_cap():
    plain = WebhookSettings(backoff_base_s=30, backoff_cap_s=600, backoff_jitter=0)
    assert [backoff_s(n, plain) for n in range(1, 8)] == [30, 60, 120, 240, 480, 600, 600]
    assert backoff_s(500, plain) == 600
    jittered = WebhookSettings(backoff_base_s=30, backoff_cap_s=600, backoff_jitter=0.2)
    rng = random.Random(7)
    for n in range(1, 10):
        delay = min(600, 30 * 2 ** (n - 1))
        waits = [backoff_s(n, jittered, rng) for _ in range(200)]
        assert all(0.8 * delay <= w <= delay for w in waits)
        assert max(waits) - min(waits) > 0.1 * delay  # spread, not a constant


async def test_an_endpoint_that_always_fails_goes_dead_and_a_replay_delivers_it(
    app, http, factory, db, receiver
):
    client = await factory.account(Role.client)
    endpoint = await register(http, client, receiver.url("/down"))
    receiver.plan["/down"] = [500] * 3
    queued = await ping(http, client, endpoint["id"])
    for _ in range(3):
        assert await deliver(app) == 1
        await make_due(db)
    assert await deliver(app) == 0
    (dead,) = await deliveries(http, client, endpoint["id"])
    assert (dead["status"], dead["attempts"], dead["next_attempt_at"]) == ("dead", 3, None)

    replayed = await http.post(
        f"/v1/webhook-deliveries/{queued['id']}/replay", headers=client.headers
    )
    assert replayed.status_code == 200, replayed.text
    assert (replayed.json()["status"], replayed.json()["attempts"]) == ("pending", 0)
    assert await deliver(app) == 1
    detail = (
        await http.get(f"/v1/webhook-deliveries/{queued['id']}", headers=client.headers)
    ).json()
    assert (detail["status"], detail["attempts"]) == ("delivered", 1)
    assert [a["status_code"] for a in detail["log"]] == [500, 500, 500, 200]
    assert [a["number"] for a in detail["log"]] == [1, 2, 3, 4]
    assert {c["headers"]["Terrain-Event-Id"] for c in receiver.calls} == {queued["event_id"]}
    assert len(receiver.calls) == 4


async def test_timeouts_and_refused_connections_count_as_failed_attempts(
    app, http, factory, db, receiver
):
    client = await factory.account(Role.client)
    slow = await register(http, client, receiver.url("/slow"))
    closed = await register(http, client, "http://127.0.0.1:9/nobody-listens")
    app.state.settings.webhooks.timeout_s = 0.3
    receiver.delay_s = 1.0
    for endpoint in (slow, closed):
        await ping(http, client, endpoint["id"])
    assert await deliver(app) == 2
    (timed_out,) = await deliveries(http, client, slow["id"])
    (refused,) = await deliveries(http, client, closed["id"])
    assert (timed_out["status"], timed_out["last_status_code"]) == ("failed", None)
    assert timed_out["last_error"] == "no answer within 0.3 s"
    assert (refused["status"], refused["last_status_code"]) == ("failed", None)
    assert refused["last_error"].startswith("ConnectError")


# --- At least once, across crashes --------------------------------------------------------------


class Crash(BaseException):
    """The process dies here."""


class CrashingTransport(httpx.AsyncBaseTransport):
    """Dies before the call leaves, or after the receiver answered."""

    def __init__(self, *, after_sending: bool) -> None:
        self.after_sending = after_sending
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.after_sending:
            response = await self.inner.handle_async_request(request)
            await response.aread()
        raise Crash


async def test_a_committed_change_is_delivered_once_by_a_process_started_afterwards(
    app, http, factory, db, receiver
):
    client = await factory.account(Role.client)
    await register(http, client, receiver.url("/hooks"), ("task.approved",))
    work = await submitted(http, factory, "accepted", client=client)
    accepted = await http.post(f"/v1/submissions/{work.id}/accept", headers=client.headers)
    assert accepted.status_code == 200  # committed; this process delivers nothing and dies
    engine = make_engine(app.state.settings.db)
    try:
        fresh = make_sessionmaker(engine)
        assert await deliver_due(fresh, app.state.settings) == 1
        assert await deliver_due(fresh, app.state.settings) == 0
    finally:
        await engine.dispose()
    (event,) = receiver.events("/hooks")
    assert (event["type"], event["data"]["submission"]["id"]) == ("task.approved", work.id)


async def test_a_crash_after_the_claim_sends_once_when_the_lease_lapses(
    app, http, factory, db, receiver
):
    client = await factory.account(Role.client)
    endpoint = await register(http, client, receiver.url("/hooks"))
    await ping(http, client, endpoint["id"])
    async with httpx.AsyncClient(transport=CrashingTransport(after_sending=False)) as dying:
        with pytest.raises(Crash):
            await deliver(app, http=dying)
    assert receiver.calls == []
    (claimed,) = await deliveries(http, client, endpoint["id"])
    assert (claimed["status"], claimed["attempts"]) == ("sending", 1)
    assert await deliver(app) == 0  # leased: no other runner takes it meanwhile
    await make_due(db)
    assert await deliver(app) == 1
    assert len(receiver.calls) == 1
    (done,) = await deliveries(http, client, endpoint["id"])
    assert (done["status"], done["attempts"]) == ("delivered", 2)


async def test_a_crash_after_sending_sends_again_with_the_same_event_id(
    app, http, factory, db, receiver
):
    client = await factory.account(Role.client)
    endpoint = await register(http, client, receiver.url("/hooks"))
    queued = await ping(http, client, endpoint["id"])
    async with httpx.AsyncClient(transport=CrashingTransport(after_sending=True)) as dying:
        with pytest.raises(Crash):
            await deliver(app, http=dying)
    assert len(receiver.calls) == 1  # received, but its outcome was never recorded
    await make_due(db)
    assert await deliver(app) == 1
    # At least once: the receiver got it twice, same id and bytes, and dedupes on the id.
    assert [c["headers"]["Terrain-Event-Id"] for c in receiver.calls] == [queued["event_id"]] * 2
    assert receiver.calls[0]["body"] == receiver.calls[1]["body"]
    (done,) = await deliveries(http, client, endpoint["id"])
    assert (done["status"], done["attempts"]) == ("delivered", 2)


async def test_attempts_spent_by_crashes_end_dead(app, http, factory, db, receiver):
    client = await factory.account(Role.client)
    endpoint = await register(http, client, receiver.url("/hooks"))
    await ping(http, client, endpoint["id"])
    async with httpx.AsyncClient(transport=CrashingTransport(after_sending=False)) as dying:
        for _ in range(3):
            with pytest.raises(Crash):
                await deliver(app, http=dying)
            await make_due(db)
    assert await deliver(app) == 0
    (dead,) = await deliveries(http, client, endpoint["id"])
    assert (dead["status"], dead["attempts"]) == ("dead", 3)
    assert dead["last_error"] == "no outcome recorded for the last attempt"


async def ten_due_deliveries(app, http, factory, receiver) -> str:
    client = await factory.account(Role.client)
    endpoint = await register(http, client, receiver.url("/hooks"), ("task.submitted",))
    async with app.state.sessionmaker() as session, session.begin():
        for n in range(10):
            await emit(session, client.organization_id, "task.submitted", {"n": n})
    return endpoint["id"]


async def sent_once_each(db, receiver, endpoint_id: str) -> None:
    ids = Counter(c["headers"]["Terrain-Event-Id"] for c in receiver.calls)
    assert sorted(e["data"]["n"] for e in receiver.events("/hooks")) == list(range(10))
    assert set(ids.values()) == {1}
    states = await db.fetch(
        "SELECT status, attempts, count(*) FROM webhook_delivery WHERE endpoint_id = $1 "
        "GROUP BY 1, 2",
        uuid.UUID(endpoint_id),
    )
    assert [tuple(r) for r in states] == [("delivered", 1, 10)]


def event_ids(receiver) -> set[str]:
    return {c["headers"]["Terrain-Event-Id"] for c in receiver.calls}


async def test_a_runner_claiming_beside_an_open_claim_takes_the_rest_without_waiting(
    app, http, factory, db, receiver
):
    endpoint_id = await ten_due_deliveries(app, http, factory, receiver)
    webhooks = app.state.settings.webhooks
    running: list[asyncio.Task] = []
    # Runner A's claim of four, its transaction still open (its rows locked, not yet leased).
    async with app.state.sessionmaker() as session, session.begin():
        claimed = await session.execute(
            webhook_delivery._CLAIM,
            {"max_attempts": webhooks.max_attempts, "limit": 4, "lease_s": 60},
        )
        held = {str(row.event_id) for row in claimed}
        assert len(held) == 4
        running = [asyncio.create_task(deliver(app)), asyncio.create_task(_claim_waits(db))]
        try:
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            assert running[0] in done, "runner B waited for runner A's claim"
            await finish(running[1])
            assert running[0].result() == 6
            assert event_ids(receiver).isdisjoint(held)
        finally:
            await finish(*running)
        # Runner A dies before committing: its claim was never made.
        await session.rollback()
    assert await deliver(app) == 4
    assert event_ids(receiver) >= held
    await sent_once_each(db, receiver, endpoint_id)


async def _claim_waits(db) -> None:
    async def waiting() -> bool:
        return await queued(db, "webhook_delivery") > 0

    await until(waiting, "a claim waiting on a delivery", timeout_s=3600)


class HeldCalls(httpx.AsyncBaseTransport):
    """Calls held at the door until ``go`` is set, then sent on."""

    def __init__(self) -> None:
        self.arrived: list[str] = []
        self.go = asyncio.Event()
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.arrived.append(request.headers["Terrain-Event-Id"])
        await self.go.wait()
        return await self.inner.handle_async_request(request)


async def test_a_runner_passes_by_the_deliveries_another_is_sending(
    app, http, factory, db, receiver
):
    endpoint_id = await ten_due_deliveries(app, http, factory, receiver)
    held = HeldCalls()
    # Runner A's calls wait at the door (a slow receiver); a long timeout, so they do not fail.
    patient = app.state.settings.model_copy(
        update={"webhooks": WEBHOOKS.model_copy(update={"timeout_s": 600})}
    )
    async with httpx.AsyncClient(transport=held) as slow:
        runner_a = asyncio.create_task(
            deliver_due(app.state.sessionmaker, patient, http=slow, limit=4)
        )
        try:

            async def sending() -> bool:
                return len(held.arrived) == 4

            await until(sending, "runner A sending its four deliveries")
            # Runner B runs start to end while A's four are in flight.
            assert await deliver(app) == 6
            assert event_ids(receiver).isdisjoint(held.arrived)
            held.go.set()
            assert await runner_a == 4
        finally:
            held.go.set()
            await finish(runner_a)
    assert event_ids(receiver) >= set(held.arrived)
    await sent_once_each(db, receiver, endpoint_id)


# --- Endpoints, authorization and bad input -----------------------------------------------------


async def test_others_cannot_see_or_touch_an_organizations_endpoints_or_deliveries(
    app, http, factory, db, receiver
):
    owner = await factory.account(Role.client)
    colleague = await factory.account(Role.client, owner.organization_id)
    other = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    reviewer = await factory.account(Role.reviewer)
    endpoint = await register(http, owner, receiver.url("/hooks"))
    queued = await ping(http, owner, endpoint["id"])
    await deliver(app)
    before = await table_fingerprint(db)
    paths = [
        ("GET", f"/v1/webhooks/{endpoint['id']}"),
        ("DELETE", f"/v1/webhooks/{endpoint['id']}"),
        ("GET", f"/v1/webhooks/{endpoint['id']}/deliveries"),
        ("POST", f"/v1/webhooks/{endpoint['id']}/ping"),
        ("GET", f"/v1/webhook-deliveries/{queued['id']}"),
        ("POST", f"/v1/webhook-deliveries/{queued['id']}/replay"),
    ]
    for method, path in paths:
        response = await http.request(method, path, headers=other.headers)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["code"] in (
            "webhook_endpoint_not_found",
            "webhook_delivery_not_found",
        )
        for refused in (worker, reviewer):
            response = await http.request(method, path, headers=refused.headers)
            assert (response.status_code, response.json()["code"]) == (403, "role_not_allowed")
    listed = await http.get("/v1/webhooks", headers=other.headers)
    assert listed.json() == {"items": [], "next_cursor": None}
    creating = await http.post(
        "/v1/webhooks",
        headers=worker.headers,
        json={"url": receiver.url("/w"), "event_types": ["task.approved"]},
    )
    assert (creating.status_code, creating.json()["code"]) == (403, "role_not_allowed")
    assert await table_fingerprint(db) == before
    assert await db.fetchval("SELECT count(*) FROM webhook_endpoint") == 1
    # A colleague of the same organization sees and manages them.
    mine = await http.get(f"/v1/webhook-deliveries/{queued['id']}", headers=colleague.headers)
    assert mine.status_code == 200 and mine.json()["status"] == "delivered"
    (listed_endpoint,) = (await http.get("/v1/webhooks", headers=colleague.headers)).json()["items"]
    assert listed_endpoint["id"] == endpoint["id"] and "secret" not in listed_endpoint


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://1.1.1.1/hooks", "webhook_url_not_https"),
        ("ftp://1.1.1.1/hooks", "webhook_url_invalid"),
        ("not a url", "webhook_url_invalid"),
        ("https:///no-host", "webhook_url_invalid"),
        ("https://user:secret@1.1.1.1/hooks", "webhook_url_invalid"),
        ("https://1.1.1.1:99999/hooks", "webhook_url_invalid"),
        ("https://127.0.0.1/hooks", "webhook_url_private"),
        ("https://localhost:8443/hooks", "webhook_url_private"),
        ("https://10.1.2.3/hooks", "webhook_url_private"),
        ("https://192.168.0.10/hooks", "webhook_url_private"),
        ("https://169.254.169.254/latest/meta-data", "webhook_url_private"),
        ("https://[::1]/hooks", "webhook_url_private"),
        ("https://[fe80::1]/hooks", "webhook_url_private"),
        ("https://[::ffff:127.0.0.1]/hooks", "webhook_url_private"),
        ("https://0.0.0.0/hooks", "webhook_url_private"),
        ("https://no-such-host.invalid/hooks", "webhook_url_unresolvable"),
    ],
)
async def test_urls_the_server_must_not_call_are_refused(app, http, factory, db, url, code):
    app.state.settings.webhooks.allow_private_hosts = False
    client = await factory.account(Role.client)
    before = await table_fingerprint(db)
    response = await http.post(
        "/v1/webhooks", headers=client.headers, json={"url": url, "event_types": ["task.approved"]}
    )
    assert (response.status_code, response.json()["code"]) == (422, code), response.text
    assert await table_fingerprint(db) == before


async def test_a_public_https_url_is_accepted_without_private_hosts(app, http, factory):
    app.state.settings.webhooks.allow_private_hosts = False
    client = await factory.account(Role.client)
    endpoint = await register(
        http, client, "https://1.1.1.1/hooks", ("task.approved", "task.approved")
    )
    assert endpoint["event_types"] == ["task.approved"]
    assert (endpoint["url"], endpoint["active"]) == ("https://1.1.1.1/hooks", True)


async def test_bad_bodies_are_refused_and_change_nothing(app, http, factory, db, receiver):
    client = await factory.account(Role.client)
    before = await table_fingerprint(db)
    for body in (
        {"url": receiver.url("/h"), "event_types": []},
        {"url": receiver.url("/h"), "event_types": ["task.exploded"]},
        {"url": receiver.url("/h"), "event_types": ["ping"]},
        {"url": receiver.url("/h")},
        {"url": receiver.url("/h"), "event_types": ["task.approved"], "secret": "mine"},
        {"url": "", "event_types": ["task.approved"]},
        {"url": 5, "event_types": ["task.approved"]},
    ):
        response = await http.post("/v1/webhooks", headers=client.headers, json=body)
        assert (response.status_code, response.json()["code"]) == (422, "invalid_request"), body
    assert await table_fingerprint(db) == before


async def test_a_server_side_check_refuses_a_host_that_turned_private(
    app, http, factory, db, receiver
):
    client = await factory.account(Role.client)
    endpoint = await register(http, client, receiver.url("/hooks"))
    await ping(http, client, endpoint["id"])
    app.state.settings.webhooks.allow_private_hosts = False
    assert await deliver(app) == 1
    assert receiver.calls == []
    (refused,) = await deliveries(http, client, endpoint["id"])
    assert (refused["status"], refused["last_status_code"]) == ("failed", None)
    assert refused["last_error"] == "the host resolves to a private or reserved address"


async def test_endpoints_per_organization_are_capped(app, http, factory, db, receiver):
    app.state.settings.webhooks.endpoints_per_organization = 2
    client = await factory.account(Role.client)
    first = await register(http, client, receiver.url("/1"))
    await register(http, client, receiver.url("/2"))
    before = await table_fingerprint(db)
    third = await http.post(
        "/v1/webhooks",
        headers=client.headers,
        json={"url": receiver.url("/3"), "event_types": ["task.approved"]},
    )
    assert (third.status_code, third.json()["code"]) == (409, "webhook_endpoint_limit")
    assert await table_fingerprint(db) == before
    assert (
        await http.delete(f"/v1/webhooks/{first['id']}", headers=client.headers)
    ).status_code == 204
    await register(http, client, receiver.url("/3"))


async def test_a_deactivated_endpoint_gets_nothing_more(app, http, factory, db, receiver):
    client = await factory.account(Role.client)
    endpoint = await register(http, client, receiver.url("/gone"))
    queued = await ping(http, client, endpoint["id"])
    deleted = await http.delete(f"/v1/webhooks/{endpoint['id']}", headers=client.headers)
    assert deleted.status_code == 204
    again = await http.delete(f"/v1/webhooks/{endpoint['id']}", headers=client.headers)
    assert again.status_code == 204
    shown = (await http.get(f"/v1/webhooks/{endpoint['id']}", headers=client.headers)).json()
    assert shown["active"] is False and shown["deactivated_at"] is not None
    (given_up,) = await deliveries(http, client, endpoint["id"])
    assert (given_up["status"], given_up["last_error"]) == ("dead", "endpoint deactivated")
    async with app.state.sessionmaker() as session, session.begin():
        await emit(session, client.organization_id, "task.approved", {})
    assert await deliver(app) == 0
    assert receiver.calls == []
    pinged = await http.post(f"/v1/webhooks/{endpoint['id']}/ping", headers=client.headers)
    assert (pinged.status_code, pinged.json()["code"]) == (409, "webhook_endpoint_inactive")
    replay = await http.post(
        f"/v1/webhook-deliveries/{queued['id']}/replay", headers=client.headers
    )
    assert (replay.status_code, replay.json()["code"]) == (409, "webhook_endpoint_inactive")


async def test_deliveries_are_listed_newest_first_by_pages(app, http, factory, receiver):
    client = await factory.account(Role.client)
    endpoint = await register(http, client, receiver.url("/hooks"))
    queued = [(await ping(http, client, endpoint["id"]))["id"] for _ in range(3)]
    url = f"/v1/webhooks/{endpoint['id']}/deliveries"
    page = (await http.get(url, params={"limit": 2}, headers=client.headers)).json()
    assert [d["id"] for d in page["items"]] == queued[::-1][:2]
    assert page["next_cursor"] == queued[1]
    rest = (
        await http.get(
            url, params={"limit": 2, "cursor": page["next_cursor"]}, headers=client.headers
        )
    ).json()
    assert ([d["id"] for d in rest["items"]], rest["next_cursor"]) == ([queued[0]], None)


async def test_replay_is_refused_while_the_delivery_is_being_sent(app, http, factory, db, receiver):
    client = await factory.account(Role.client)
    endpoint = await register(http, client, receiver.url("/hooks"))
    queued = await ping(http, client, endpoint["id"])
    async with httpx.AsyncClient(transport=CrashingTransport(after_sending=False)) as dying:
        with pytest.raises(Crash):
            await deliver(app, http=dying)
    response = await http.post(
        f"/v1/webhook-deliveries/{queued['id']}/replay", headers=client.headers
    )
    assert (response.status_code, response.json()["code"]) == (409, "webhook_delivery_in_flight")


async def test_an_event_nobody_subscribed_to_is_not_written(app, factory, db, receiver, http):
    client = await factory.account(Role.client)
    other = await factory.account(Role.client)
    await register(http, client, receiver.url("/hooks"), ("task.approved",))
    async with app.state.sessionmaker() as session, session.begin():
        unsubscribed = await emit(session, client.organization_id, "task.submitted", {})
        no_endpoint = await emit(session, other.organization_id, "task.approved", {})
        wanted = await emit(session, client.organization_id, "task.approved", {})

    assert (unsubscribed, no_endpoint) == (None, None)
    assert await db.fetchval("SELECT array_agg(id) FROM webhook_event") == [wanted]
    assert (
        await db.fetchval("SELECT count(*) FROM webhook_delivery WHERE event_id = $1", wanted) == 1
    )


async def test_old_events_are_forgotten_once_nothing_is_left_to_send(
    app, http, factory, db, receiver
):
    client = await factory.account(Role.client)
    await register(http, client, receiver.url("/hooks"), ("task.approved",))
    async with app.state.sessionmaker() as session, session.begin():
        sent = await emit(session, client.organization_id, "task.approved", {"n": 1})
        waiting = await emit(session, client.organization_id, "task.approved", {"n": 2})
        recent = await emit(session, client.organization_id, "task.approved", {"n": 3})
    await db.execute(
        "UPDATE webhook_delivery SET status = 'delivered', delivered_at = now(), "
        "next_attempt_at = NULL "
        "WHERE event_id = ANY($1)",
        [sent, recent],
    )
    await db.execute(
        "UPDATE webhook_event SET created_at = now() - interval '31 days' WHERE id = ANY($1)",
        [sent, waiting],
    )

    async with app.state.sessionmaker() as session, session.begin():
        forgotten = await forget_old_events(session, days=30, now=None)

    assert forgotten == 1
    assert set(await db.fetchval("SELECT array_agg(id) FROM webhook_event")) == {waiting, recent}
    assert await db.fetchval("SELECT count(*) FROM webhook_delivery WHERE event_id = $1", sent) == 0


async def test_task_events_carry_the_answers_the_outcome_and_the_checklist_version(
    app, http, factory, db, receiver
):
    owner = await factory.account(Role.client)
    await register(http, owner, receiver.url("/owner"))
    work = await submitted(http, factory, "accepted", client=owner)
    # The task follows a second version of the checklist, and its work answered it (the
    # answers as the submission stores them, normalized by the checklist).
    checklist = Checklist.from_dict(
        {
            "items": [
                {"kind": "photo", "name": "shelf", "label": "Shelf", "max_photos": 2},
                {"kind": "yes_no", "name": "present", "label": "On the shelf?", "required": True},
                {"kind": "number", "name": "price", "label": "Price", "decimals": 2},
                {
                    "kind": "multiple_choice",
                    "name": "issues",
                    "label": "Issues",
                    "choices": [
                        {"name": "dusty", "label": "Dusty"},
                        {"name": "no_label", "label": "No price label"},
                    ],
                },
                {"kind": "text", "name": "comment", "label": "Comment"},
            ]
        }
    )
    answers = validate_answers(
        checklist,
        {"present": False, "price": 2.5, "issues": ["no_label", "dusty"], "comment": " Gone "},
        {"shelf": 1},
    )
    assert answers == {
        "present": False,
        "price": 2.5,
        "issues": ["dusty", "no_label"],
        "comment": "Gone",
    }
    campaign_id = await db.fetchval("SELECT campaign_id FROM task WHERE id = $1", work.task_id)
    await db.execute(
        "INSERT INTO checklist_version (campaign_id, version, definition, estimated_minutes, "
        "created_by) VALUES ($1, 2, $2, 10, $3)",
        campaign_id,
        json.dumps(checklist.to_dict()),
        owner.id,
    )
    await db.execute("UPDATE task SET checklist_version = 2 WHERE id = $1", work.task_id)
    await db.execute(
        "UPDATE submission SET answers = $2, outcome = 'product_absent' WHERE id = $1",
        uuid.UUID(work.id),
        json.dumps(answers),
    )
    async with app.state.sessionmaker() as session:
        await outbox.emit_submitted(session, uuid.UUID(work.id))
        await session.commit()
    accepted = await http.post(f"/v1/submissions/{work.id}/accept", headers=owner.headers)
    assert accepted.status_code == 200, accepted.text

    assert await deliver(app) == 4  # submitted twice (at submission and here), approved, completed
    events = [e for e in receiver.events("/owner") if e["type"] != "campaign.completed"]
    carried = sorted(
        ((e["type"], e["data"]["task"], e["data"]["submission"]["outcome"]) for e in events),
        key=lambda event: (event[0], event[1]["checklist_version"]),
    )
    assert carried == [
        (
            "task.approved",
            {
                "id": str(work.task_id),
                "status": "approved",
                "period_key": "",
                "checklist_version": 2,
            },
            "product_absent",
        ),
        (
            "task.submitted",
            {
                "id": str(work.task_id),
                "status": "submitted",
                "period_key": "",
                "checklist_version": 1,
            },
            None,
        ),
        (
            "task.submitted",
            {
                "id": str(work.task_id),
                "status": "submitted",
                "period_key": "",
                "checklist_version": 2,
            },
            "product_absent",
        ),
    ]
    answered = {
        (e["type"], e["data"]["task"]["checklist_version"]): e["data"]["submission"]["answers"]
        for e in events
    }
    assert answered == {
        ("task.submitted", 1): {},
        ("task.submitted", 2): answers,
        ("task.approved", 2): answers,
    }
