"""The fingerprint behind every "a refusal changes nothing" assertion sees any change to any
column of any row of any table the application owns, and says where it is."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from api.core.models import Role
from tests.conftest import (
    OWNED_TABLES,
    UNFINGERPRINTED,
    UNFINGERPRINTED_COLUMNS,
    Factory,
    catalog,
    quoted,
    table_fingerprint,
)


async def a_row_in_every_table(db: asyncpg.Connection, factory: Factory) -> None:
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    admin = await factory.account(Role.admin)
    store_id = await factory.store(client.organization_id)
    _, (task_id,) = await factory.campaign(client, [store_id])
    reservation_id = await db.fetchval(
        "INSERT INTO reservation (task_id, worker_id, state, expires_at, ended_at) "
        "VALUES ($1, $2, 'submitted', now() + interval '1 hour', now()) RETURNING id",
        task_id,
        worker.id,
    )
    await db.execute(
        "INSERT INTO photo (reservation_id, worker_id, object_key, content_type, size_bytes, "
        "sha256, state, upload_expires_at, width, height, phash, phash_bands, checks) "
        "VALUES ($1, $2, 'photos/shelf.jpg', 'image/jpeg', 1000, repeat('ab', 32), 'completed', "
        "now(), 1600, 1200, 12345, ARRAY[1, 2, 3], '[]')",
        reservation_id,
        worker.id,
    )
    submission_id = await db.fetchval(
        "INSERT INTO submission (reservation_id, task_id, worker_id, idempotency_key, "
        "request_hash, device_location, device_accuracy_m, device_fixed_at, device_is_mock, "
        "report, verdict, status) VALUES ($1, $2, $3, 'key', repeat('0', 64), "
        "'SRID=4326;POINT(2.35 48.85)', 5, now(), false, '[]', 'accepted', 'approved') "
        "RETURNING id",
        reservation_id,
        task_id,
        worker.id,
    )
    await db.execute(
        "INSERT INTO appeal (submission_id, worker_id, message) VALUES ($1, $2, 'Look again')",
        submission_id,
        worker.id,
    )
    await db.execute(
        "INSERT INTO dispute (submission_id, client_id, reason_code, message) "
        "VALUES ($1, $2, 'incomplete', 'Half the shelf')",
        submission_id,
        client.id,
    )
    await db.execute("INSERT INTO payout_batch (created_by) VALUES ($1)", admin.id)
    await db.execute(
        "INSERT INTO ledger_entry (worker_id, kind, amount_cents, currency, submission_id, seq, "
        "available_at, reason) VALUES ($1, 'earned', 600, 'EUR', $2, 1, now(), 'approved')",
        worker.id,
        submission_id,
    )
    await db.execute(
        "INSERT INTO suspension (user_id, reason_code, message, suspended_by) "
        "VALUES ($1, 'fraud', 'Copied photos', $2)",
        worker.id,
        admin.id,
    )
    await db.execute(
        "INSERT INTO task_report (task_id, worker_id, reason_code, message) "
        "VALUES ($1, $2, 'misleading', 'No such shelf')",
        task_id,
        worker.id,
    )
    await db.execute(
        "INSERT INTO alert_area (worker_id, center, radius_m, bounds, min_hourly_rate_cents) "
        "VALUES ($1, 'SRID=4326;POINT(2.35 48.85)', 500, "
        "ST_Expand('SRID=4326;POINT(2.35 48.85)'::geometry, 0.01), 1200)",
        worker.id,
    )
    await db.execute("INSERT INTO alert (worker_id, task_id) VALUES ($1, $2)", worker.id, task_id)
    await db.execute(
        "INSERT INTO audit_event (actor_id, subject_id, action, object_type, object_id, data) "
        "VALUES ($1, $2, 'suspension.created', 'user', $2, '{\"reason\": \"fraud\"}')",
        admin.id,
        worker.id,
    )
    endpoint_id = await db.fetchval(
        "INSERT INTO webhook_endpoint (organization_id, url, secret, event_types, created_by) "
        "VALUES ($1, 'https://hooks.example.org/terrain', 'secret', ARRAY['task.approved'], $2) "
        "RETURNING id",
        client.organization_id,
        client.id,
    )
    event_id = await db.fetchval(
        "INSERT INTO webhook_event (id, organization_id, type, payload) "
        "VALUES ($1, $2, 'task.approved', '{}') RETURNING id",
        uuid.uuid4(),
        client.organization_id,
    )
    delivery_id = await db.fetchval(
        "INSERT INTO webhook_delivery (event_id, endpoint_id, status, next_attempt_at) "
        "VALUES ($1, $2, 'pending', now()) RETURNING id",
        event_id,
        endpoint_id,
    )
    await db.execute(
        "INSERT INTO webhook_attempt (delivery_id, number, started_at, status_code) "
        "VALUES ($1, 1, now(), 500)",
        delivery_id,
    )
    await db.execute(
        "INSERT INTO idempotency_key (user_id, route, key, request_hash, status_code, response) "
        "VALUES ($1, 'POST /v1/stores', 'key', repeat('0', 64), 201, '{}')",
        client.id,
    )
    await db.execute(
        "INSERT INTO rate_limit_window (user_id, bucket, window_start, hits) "
        "VALUES ($1, 'reservations', date_trunc('minute', now()), 1)",
        worker.id,
    )
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
