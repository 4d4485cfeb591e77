"""The fingerprint behind every "a refusal changes nothing" assertion sees any change to any
column of any row of any table the application owns, and says where it is."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
import pytest
from geoalchemy2 import WKTElement
from sqlalchemy import func, insert

from api.core.models import (
    AccountToken,
    Alert,
    AlertArea,
    Appeal,
    AuditEvent,
    AuthRefreshToken,
    AuthSession,
    Dispute,
    IdempotencyKey,
    LedgerEntry,
    MailOutbox,
    Notification,
    PayoutBatch,
    Photo,
    PhotoState,
    RateLimitWindow,
    Reservation,
    ReservationState,
    Role,
    Submission,
    SubmissionStatus,
    Suspension,
    TaskReport,
    Verdict,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from tests.conftest import (
    OWNED_TABLES,
    UNFINGERPRINTED,
    UNFINGERPRINTED_COLUMNS,
    Factory,
    catalog,
    compiled,
    quoted,
    table_fingerprint,
)

PARIS = WKTElement("POINT(2.35 48.85)", srid=4326)


async def a_row_in_every_table(db: asyncpg.Connection, factory: Factory) -> None:
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    admin = await factory.account(Role.admin)
    store_id = await factory.store(client.organization_id)
    _, (task_id,) = await factory.campaign(client, [store_id])
    reservation_id = await db.fetchval(
        *compiled(
            insert(Reservation)
            .values(
                task_id=task_id,
                worker_id=worker.id,
                state=ReservationState.submitted,
                expires_at=func.now() + timedelta(hours=1),
                ended_at=func.now(),
            )
            .returning(Reservation.id)
        )
    )
    await db.execute(
        *compiled(
            insert(Photo).values(
                reservation_id=reservation_id,
                worker_id=worker.id,
                object_key="photos/shelf.jpg",
                content_type="image/jpeg",
                size_bytes=1000,
                sha256="ab" * 32,
                state=PhotoState.completed,
                upload_expires_at=func.now(),
                width=1600,
                height=1200,
                phash=12345,
                phash_bands=[1, 2, 3],
                checks=[],
            )
        )
    )
    submission_id = await db.fetchval(
        *compiled(
            insert(Submission)
            .values(
                reservation_id=reservation_id,
                task_id=task_id,
                worker_id=worker.id,
                idempotency_key="key",
                request_hash="0" * 64,
                device_location=PARIS,
                device_accuracy_m=5,
                device_fixed_at=func.now(),
                device_is_mock=False,
                reward_cents=600,
                report=[],
                verdict=Verdict.accepted,
                status=SubmissionStatus.approved,
            )
            .returning(Submission.id)
        )
    )
    await db.execute(
        *compiled(
            insert(Appeal).values(
                submission_id=submission_id, worker_id=worker.id, message="Look again"
            )
        )
    )
    await db.execute(
        *compiled(
            insert(Dispute).values(
                submission_id=submission_id,
                client_id=client.id,
                reason_code="incomplete",
                message="Half the shelf",
            )
        )
    )
    await db.execute(*compiled(insert(PayoutBatch).values(created_by=admin.id)))
    await db.execute(
        *compiled(
            insert(LedgerEntry).values(
                worker_id=worker.id,
                kind="earned",
                amount_cents=600,
                currency="EUR",
                submission_id=submission_id,
                seq=1,
                available_at=func.now(),
                reason="approved",
            )
        )
    )
    await db.execute(
        *compiled(
            insert(Suspension).values(
                user_id=worker.id,
                reason_code="fraud",
                message="Copied photos",
                suspended_by=admin.id,
            )
        )
    )
    await db.execute(
        *compiled(
            insert(TaskReport).values(
                task_id=task_id,
                worker_id=worker.id,
                reason_code="misleading",
                message="No such shelf",
            )
        )
    )
    await db.execute(
        *compiled(
            insert(AlertArea).values(
                worker_id=worker.id,
                center=PARIS,
                radius_m=500,
                bounds=func.ST_Expand(PARIS, 0.01),
                min_hourly_rate_cents=1200,
            )
        )
    )
    await db.execute(*compiled(insert(Alert).values(worker_id=worker.id, task_id=task_id)))
    await db.execute(
        *compiled(
            insert(AuditEvent).values(
                actor_id=admin.id,
                subject_id=worker.id,
                action="suspension.created",
                object_type="user",
                object_id=worker.id,
                data={"reason": "fraud"},
            )
        )
    )
    endpoint_id = await db.fetchval(
        *compiled(
            insert(WebhookEndpoint)
            .values(
                organization_id=client.organization_id,
                url="https://hooks.example.org/terrain",
                secret="secret",
                event_types=["task.approved"],
                created_by=client.id,
            )
            .returning(WebhookEndpoint.id)
        )
    )
    event_id = await db.fetchval(
        *compiled(
            insert(WebhookEvent)
            .values(
                id=uuid.uuid4(),
                organization_id=client.organization_id,
                type="task.approved",
                payload={},
            )
            .returning(WebhookEvent.id)
        )
    )
    delivery_id = await db.fetchval(
        *compiled(
            insert(WebhookDelivery)
            .values(
                event_id=event_id,
                endpoint_id=endpoint_id,
                status="pending",
                next_attempt_at=func.now(),
            )
            .returning(WebhookDelivery.id)
        )
    )
    await db.execute(
        *compiled(
            insert(WebhookAttempt).values(
                delivery_id=delivery_id, number=1, started_at=func.now(), status_code=500
            )
        )
    )
    await db.execute(
        *compiled(
            insert(IdempotencyKey).values(
                user_id=client.id,
                route="POST /v1/stores",
                key="key",
                request_hash="0" * 64,
                status_code=201,
                response="{}",
            )
        )
    )
    await db.execute(
        *compiled(
            insert(RateLimitWindow).values(
                user_id=worker.id,
                bucket="reservations",
                window_start=func.date_trunc("minute", func.now()),
                hits=1,
            )
        )
    )
    session_id = await db.fetchval(
        *compiled(
            insert(AuthSession)
            .values(user_id=worker.id, device="Phone", expires_at=func.now() + timedelta(days=1))
            .returning(AuthSession.id)
        )
    )
    await db.execute(
        *compiled(insert(AuthRefreshToken).values(token_sha256="cd" * 32, session_id=session_id))
    )
    await db.execute(
        *compiled(
            insert(Notification).values(
                user_id=worker.id, kind="submission.approved", data={"reward_cents": 600}
            )
        )
    )
    await db.execute(
        *compiled(
            insert(AccountToken).values(
                token_sha256="ef" * 32,
                user_id=worker.id,
                purpose="password_reset",
                expires_at=func.now() + timedelta(hours=1),
            )
        )
    )
    await db.execute(
        *compiled(
            insert(MailOutbox).values(
                to_address="worker@example.org", subject="Reset", body="A link"
            )
        )
    )
    # procrastinate's own tables have no model: written as the schema it ships spells them.
    job_worker = await db.fetchval("INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id")
    job_id = await db.fetchval(  # its insert trigger writes a procrastinate_events row
        "INSERT INTO procrastinate_jobs (queue_name, task_name, args, worker_id) "
        "VALUES ('default', 'sweep', '{}', $1) RETURNING id",
        job_worker,
    )
    await db.execute(
        "INSERT INTO procrastinate_periodic_defers (task_name, defer_timestamp, job_id) "
        "VALUES ('sweep', 1, $1)",
        job_id,
    )


# One change of one column, by kind of type: the same row, another value (a constraint may
# still refuse it, which the test tells apart).
def changed(column: str, type_name: str, category: str, declared: str) -> str:
    value = f"r.{quoted(column)}"
    if category == "B":
        return f"NOT {value}"
    if category == "N":
        return f"{value} + 2"  # + 2 keeps parity, which some checks rely on
    if category == "S":
        other = f"CASE WHEN left({value}, 1) = 'x' THEN 'y' ELSE 'x' END"
        return f"overlay({value} placing {other} from 1 for 1)"  # the same length
    if category == "D":
        return f"{value} + interval '1 second'"
    if category == "E":
        return f"(SELECT v FROM unnest(enum_range({value})) AS v WHERE v <> {value} LIMIT 1)"
    if category == "A":
        return f"{value} || {value}[1:1]"
    if type_name == "uuid":
        return "gen_random_uuid()"
    if type_name == "jsonb":
        return f"jsonb_build_array({value})"
    if type_name in ("geography", "geometry"):
        return f"ST_Translate({value}::geometry, 0.001, 0.001)::{declared}"
    if type_name == "point":
        return f"point({value}[0] + 1, {value}[1])"
    raise AssertionError(f"no change written for {column} of type {declared}")


async def test_every_owned_table_is_fingerprinted_but_the_named_exceptions():
    assert set(UNFINGERPRINTED) <= OWNED_TABLES
    # Its own tables and procrastinate's, read from the models and the schema the package ships.
    assert {"alert", "alert_area", "procrastinate_events", "procrastinate_jobs"} <= OWNED_TABLES


async def test_a_change_to_any_column_of_any_table_changes_the_fingerprint(db, factory):
    await a_row_in_every_table(db, factory)
    schema = await catalog(db)
    fingerprinted = sorted(OWNED_TABLES - set(UNFINGERPRINTED))
    before = await table_fingerprint(db)
    empty = [table for table in fingerprinted if not before[table]]
    assert not empty, f"arrange a row in {empty} (a_row_in_every_table)"
    columns = {
        (row["table"], row["column"]): row
        for row in await db.fetch(
            "SELECT c.relname AS table, a.attname AS column, t.typname, t.typcategory::text, "
            "format_type(a.atttypid, a.atttypmod) AS declared, a.attgenerated <> '' AS generated, "
            "a.attidentity = 'a' AS identity "
            "FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid "
            "JOIN pg_type t ON t.oid = a.atttypid "
            "WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY ($1) "
            "AND a.attnum > 0 AND NOT a.attisdropped",
            fingerprinted,
        )
    }
    seen: dict[str, list[str]] = {table: [] for table in fingerprinted}
    refused: dict[str, list[str]] = {table: [] for table in fingerprinted}
    async with db.transaction():
        # Foreign keys and triggers (the ledger's refusal of any UPDATE) off for this
        # transaction: each change is one column of one row, whatever they would say.
        await db.execute("SET LOCAL session_replication_role = replica")
        for table in fingerprinted:
            for column in schema.fingerprinted[table]:
                info = columns[(table, column)]
                if info["generated"] or info["identity"]:
                    continue  # the database writes these; they follow the columns above
                value = changed(column, info["typname"], info["typcategory"], info["declared"])
                update = (
                    f"UPDATE {quoted(table)} r SET {quoted(column)} = {value} WHERE ctid = "
                    f"(SELECT ctid FROM {quoted(table)} WHERE {quoted(column)} IS NOT NULL LIMIT 1)"
                )
                try:
                    async with db.transaction():
                        if await db.execute(update) == "UPDATE 0":
                            continue  # no row has a value there to change
                        after = await table_fingerprint(db)
                        assert after != before, (table, column)
                        where = after.differences(before)
                        assert where and all(line.startswith(f"{table}: ") for line in where)
                        key = schema.primary_keys[table]
                        if column not in key:
                            # The row, and the column (with any generated from it).
                            assert len(where) == 1, where
                            assert column in where[0].partition(" differs in ")[2].split(", ")
                        seen[table].append(column)
                        raise Rollback
                except Rollback:
                    pass
                except asyncpg.IntegrityConstraintViolationError:
                    refused[table].append(column)  # a check or unique constraint said no
    assert [table for table in fingerprinted if not seen[table]] == []
    assert await table_fingerprint(db) == before


class Rollback(Exception):
    pass


async def test_a_refused_request_that_rewrote_an_alert_area_would_fail(db, factory):
    await a_row_in_every_table(db, factory)
    before = await table_fingerprint(db)
    area_id = await db.fetchval("UPDATE alert_area SET radius_m = radius_m + 1 RETURNING id")
    after = await table_fingerprint(db)
    assert after != before
    assert after.differences(before) == [f"alert_area: id={area_id} differs in radius_m"]
    await db.execute("UPDATE alert_area SET radius_m = radius_m - 1")
    assert await table_fingerprint(db) == before


@pytest.mark.parametrize("table", sorted(UNFINGERPRINTED))
async def test_an_unfingerprinted_table_is_left_out_on_purpose(db, table):
    assert table not in await table_fingerprint(db)


async def test_exactly_the_named_columns_are_left_out(db, factory):
    await a_row_in_every_table(db, factory)
    schema = await catalog(db)
    left_out = {
        (table, column)
        for table in OWNED_TABLES - set(UNFINGERPRINTED)
        for column in schema.columns[table]
        if column not in schema.fingerprinted[table]
    }
    assert left_out == {
        ("user", "sign_in_failures"),
        ("user", "sign_in_failed_at"),
        ("user", "sign_in_locked_until"),
    }
    assert left_out == {(t, c) for t, columns in UNFINGERPRINTED_COLUMNS.items() for c in columns}

    # A refused sign-in's writes alone leave the fingerprint as it was...
    before = await table_fingerprint(db)
    counted = await db.execute(
        'UPDATE "user" SET sign_in_failures = sign_in_failures + 1, sign_in_failed_at = now(), '
        "sign_in_locked_until = now() + interval '15 seconds'"
    )
    assert counted == "UPDATE 3"
    assert await table_fingerprint(db) == before
    # ...and the rest of the same row is still seen.
    user_id = await db.fetchval(
        "UPDATE \"user\" SET display_name = display_name || '!' "
        'WHERE id = (SELECT min(id::text)::uuid FROM "user") RETURNING id'
    )
    assert (await table_fingerprint(db)).differences(before) == [
        f"user: id={user_id} differs in display_name"
    ]
