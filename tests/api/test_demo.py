"""The demo ``make run`` loads: its price check holds a submission in every state, made through
the API, so the console's review queue and results have something to show; a second run
changes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI

from api.core.settings import Settings, StorageSettings
from api.demo import DEMO_PASSWORD, PEOPLE, PRICE_CHECK_NAME, seed_demo
from tests.conftest import table_fingerprint
from tests.s3server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, S3TestServer, s3_server

__all__ = ["s3_server"]

STORES = 60


async def token(http: httpx.AsyncClient, email: str) -> dict[str, str]:
    answer = await http.post("/v1/auth/token", data={"username": email, "password": DEMO_PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


async def price_check_submissions(db: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await db.fetch(
        """
        SELECT u.email, s.status, s.verdict, s.outcome, s.answers::text AS answers,
               s.reward_cents, (SELECT count(*) FROM photo p WHERE p.reservation_id =
               s.reservation_id AND p.state = 'completed') AS photos,
               EXISTS (SELECT 1 FROM dispute d WHERE d.submission_id = s.id) AS disputed,
               EXISTS (SELECT 1 FROM appeal a WHERE a.submission_id = s.id) AS appealed,
               (SELECT string_agg(c->>'code', ',' ORDER BY c->>'code')
                  FROM jsonb_array_elements(s.report) c WHERE c->>'outcome' != 'pass') AS flags
          FROM submission s JOIN "user" u ON u.id = s.worker_id
          JOIN task t ON t.id = s.task_id JOIN campaign c ON c.id = t.campaign_id
         WHERE c.name = $1 ORDER BY u.email
        """,
        PRICE_CHECK_NAME,
    )
    return [dict(row) for row in rows]


async def test_the_demo_seeds_every_state_through_the_api_and_a_second_run_changes_nothing(
    app: FastAPI, db: asyncpg.Connection, http: httpx.AsyncClient, settings: Settings
):
    said: list[str] = []
    statuses = await seed_demo(settings, stores=STORES, say=said.append)
    assert statuses == {
        "accepted, then approved by the client": "approved",
        "accepted, awaiting the client": "pending_acceptance",
        "accepted, product missing (empty slot photographed)": "pending_acceptance",
        "flagged for review (mock location)": "needs_review",
        "disputed by the client": "disputed",
        "rejected by the checks, appealed by the worker": "appealed",
        "couldn't complete (store closed), approved by the client": "approved",
    }
    rows = {row["email"]: row for row in await price_check_submissions(db)}
    # Each visit as the checks saw it: what it held, what was flagged, what it earns.
    assert {
        email: (
            row["status"],
            row["verdict"],
            row["outcome"],
            row["photos"],
            row["flags"],
            row["reward_cents"],
            row["disputed"],
            row["appealed"],
        )
        for email, row in rows.items()
    } == {
        "worker@demo.terrain.example": ("approved", "accepted", None, 2, None, 550, False, False),
        "ines@demo.terrain.example": (
            "pending_acceptance", "accepted", None, 2, None, 550, False, False,
        ),
        "yanis@demo.terrain.example": (
            "pending_acceptance", "accepted", None, 3, None, 550, False, False,
        ),
        "lea@demo.terrain.example": (
            "needs_review", "needs_review", None, 2, "device.mock", 550, False, False,
        ),
        "moussa@demo.terrain.example": (
            "disputed", "accepted", None, 2, None, 550, True, False,
        ),
        "chloe@demo.terrain.example": (
            "appealed", "rejected", None, 2, "device.exif_consistency,gps.geofence", 550, False,
            True,
        ),
        "karim@demo.terrain.example": (
            "approved", "accepted", "store_closed", 1, None, 275, False, False,
        ),
    }  # fmt: skip
    assert rows["ines@demo.terrain.example"]["answers"] == (
        '{"price": 2.79, "comment": "Promo ends Sunday", "facings": 2, "on_shelf": true}'
    )
    assert rows["yanis@demo.terrain.example"]["answers"] == (
        '{"comment": "Delivery expected on Thursday", "on_shelf": false}'
    )
    assert rows["karim@demo.terrain.example"]["answers"] == "{}"
    # Approval credited the ledger: the full reward, and half for the closed store.
    credits = await db.fetch(
        'SELECT u.email, l.amount_cents FROM ledger_entry l JOIN "user" u ON u.id = '
        "l.worker_id ORDER BY u.email"
    )
    assert [(r["email"], r["amount_cents"]) for r in credits] == [
        ("karim@demo.terrain.example", 275),
        ("worker@demo.terrain.example", 550),
    ]

    # The console's pages: the reviewer's queue holds the flagged, disputed and appealed work;
    # the client's results hold every submission with its answers.
    queue = (await http.get("/v1/reviews/queue", headers=await token(http, PEOPLE[2][0]))).json()
    assert sorted((item["kind"], item["submission"]["status"]) for item in queue) == [
        ("appeal", "appealed"),
        ("dispute", "disputed"),
        ("review", "needs_review"),
    ]
    client = await token(http, PEOPLE[0][0])
    campaigns = (await http.get("/v1/campaigns", headers=client)).json()["items"]
    assert sorted((c["name"], c["task_total"]) for c in campaigns) == [
        ("Orange juice price check", STORES),
        ("Organic dairy shelf check", STORES),
    ]
    price_check = next(c for c in campaigns if c["name"] == PRICE_CHECK_NAME)
    assert price_check["schedule"]["rrule"] == "FREQ=WEEKLY;BYDAY=MO"
    assert (price_check["onsite_minutes"], price_check["incomplete_reward_cents"]) == (13, 275)
    results = (await http.get(f"/v1/campaigns/{price_check['id']}/results", headers=client)).json()
    submitted = [r for r in results["items"] if r["submission_id"] is not None]
    assert sorted(r["submission_status"] for r in submitted) == [
        "appealed",
        "approved",
        "approved",
        "disputed",
        "needs_review",
        "pending_acceptance",
        "pending_acceptance",
    ]
    assert len(results["items"]) == STORES  # the others open, for this week
    approved = {r["outcome"]: r for r in submitted if r["submission_status"] == "approved"}
    assert approved[None]["answers"] == {"on_shelf": True, "price": 2.49, "facings": 4}
    assert [p["slot"] for p in approved[None]["photos"]] == ["storefront", "shelf"]
    assert approved["store_closed"]["answers"] == {}
    assert [p["slot"] for p in approved["store_closed"]["photos"]] == ["storefront"]

    before = await table_fingerprint(db)
    again: list[str] = []
    assert await seed_demo(settings, stores=STORES, say=again.append) is None
    assert again[0] == "demo: already present"
    assert await table_fingerprint(db) == before


async def test_the_demo_sends_its_photos_to_object_storage_when_it_is_s3(
    app: FastAPI, db: asyncpg.Connection, settings: Settings, s3_server: S3TestServer
):
    # As with docker-compose (TERRAIN_STORAGE_BACKEND=s3): the photos go over the network to
    # the presigned URLs, not through the app.
    bucket = f"terrain-demo-{uuid.uuid4().hex[:8]}"
    s3_server.client().create_bucket(Bucket=bucket)
    storage = StorageSettings(
        backend="s3",
        s3_endpoint_url=s3_server.url,
        s3_region=REGION,
        s3_bucket=bucket,
        s3_access_key_id=ACCESS_KEY_ID,
        s3_secret_access_key=SECRET_ACCESS_KEY,
    )
    statuses = await seed_demo(
        settings.model_copy(update={"storage": storage}), stores=STORES, say=lambda _: None
    )
    assert statuses is not None and len(statuses) == 7
    listed = s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]
    keys = await db.fetch("SELECT object_key FROM photo WHERE state = 'completed'")
    # 2 photos a visit, 3 where the empty slot was photographed, 1 for the closed store.
    assert len(keys) == 14
    assert {o["Key"] for o in listed} >= {row["object_key"] for row in keys}
