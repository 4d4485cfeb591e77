"""Shared fixtures: a test database built by ``alembic upgrade head``, the app from the real
factory, a client per role, and small factories. Every test starts from empty tables."""

from __future__ import annotations

import asyncio
import contextlib
import graphlib
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from alembic import command
from alembic.config import Config
from fastapi import FastAPI
from geoalchemy2 import WKTElement
from procrastinate.schema import SchemaManager
from sqlalchemy import ColumnDefault, Float, String, cast, func, insert, literal, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.sql.expression import ClauseElement
from sqlalchemy.sql.selectable import TableValuedAlias
from sqlalchemy.types import TypeEngine

from api.core.db import Base
from api.core.models import (
    Campaign,
    CampaignStatus,
    ChecklistVersion,
    Organization,
    Role,
    Store,
    Task,
    TaskStatus,
    User,
)
from api.core.security import hash_password, issue_token
from api.core.settings import (
    AppSettings,
    AuthSettings,
    DatabaseSettings,
    Settings,
    StorageSettings,
    WorkSettings,
)
from api.main import create_app
from checklists import estimated_minutes, photo_checklist
from tests.shared_data import pytest_terminal_summary  # noqa: F401  (the skipped-data summary)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADMIN_URL = os.environ.get(
    "TERRAIN_TEST_DB_ADMIN_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
TEST_DB = os.environ.get("TERRAIN_TEST_DB_NAME", "terrain_test")
# Migration 0010 installs the schema procrastinate ships, as it ships it: the application owns
# those tables as much as its models' (their names are read from that schema, not listed here).
PROCRASTINATE_SCHEMA = SchemaManager.get_schema()
PROCRASTINATE_TABLES = frozenset(
    re.findall(r"CREATE (?:UNLOGGED )?TABLE (?:IF NOT EXISTS )?(\w+)", PROCRASTINATE_SCHEMA)
)
OWNED_TABLES = frozenset(Base.metadata.tables) | PROCRASTINATE_TABLES
# Tables a refused request may change, each with the reason; nothing else may change.
UNFINGERPRINTED = {
    "rate_limit_window": "the rate limit counts every request, refused ones too (rate_limits.py)"
}
# Columns a refused request may change, by table, each with the reason.
UNFINGERPRINTED_COLUMNS = {
    "user": dict.fromkeys(
        ("sign_in_failures", "sign_in_failed_at", "sign_in_locked_until"),
        "a wrong password counts against its account however the request ends (auth.py)",
    )
}
PASSWORD = "correct horse battery"
PASSWORD_HASH = hash_password(PASSWORD)


def plain_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def database_url(name: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


async def recreate_database(name: str) -> None:
    connection = await asyncpg.connect(plain_dsn(ADMIN_URL))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


def alembic_config(url: str) -> Config:
    config = Config(os.path.join(ROOT, "alembic.ini"))
    config.attributes["database_url"] = url
    config.attributes["configure_logger"] = False
    return config


@pytest.fixture(scope="session")
def test_database_url() -> str:
    asyncio.run(recreate_database(TEST_DB))
    url = database_url(TEST_DB)
    command.upgrade(alembic_config(url), "head")
    return url


def make_settings(url: str, objects: str, *, connections: int = 15, **work: Any) -> Settings:
    return Settings(
        app=AppSettings(env="test", run_sweeper=False, max_body_bytes=1024 * 1024),
        db=DatabaseSettings(url=url, pool_size=5, max_overflow=connections - 5),
        auth=AuthSettings(),
        work=WorkSettings(**work),
        storage=StorageSettings(local_root=objects, public_base_url="http://terrain.test"),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(app: FastAPI, port: int, **config: Any) -> Iterator[str]:
    """``app`` served by uvicorn in a thread on a loopback ``port``, for as long as the block
    lasts; yields its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **config)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def live_server(  # a real uvicorn server on a loopback port, sharing the test database
    test_database_url: str, tmp_path_factory
) -> Iterator[str]:
    # Enough connections for 50 requests at once, within PostgreSQL's default 100.
    objects = str(tmp_path_factory.mktemp("objects"))
    settings = make_settings(test_database_url, objects, connections=55)
    # Tests pause between rounds to arrange data; a server closing idle connections meanwhile
    # would race the client reusing them.
    with serving(create_app(settings), free_port(), timeout_keep_alive=300) as url:
        yield url


@pytest.fixture
def settings(test_database_url: str, tmp_path) -> Settings:
    return make_settings(test_database_url, str(tmp_path / "objects"))


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Catalog:
    """What the database says about the owned tables: their columns (all, and those the
    fingerprint reads), primary keys, and an order to empty them in (each before the tables it
    references)."""

    columns: dict[str, list[str]]
    fingerprinted: dict[str, list[str]]
    primary_keys: dict[str, list[str]]
    emptying_order: list[str]
    fingerprint_sql: str


_catalogs: dict[str, Catalog] = {}


async def catalog(connection: asyncpg.Connection) -> Catalog:
    name = await connection.fetchval("SELECT current_database()")
    if name not in _catalogs:
        _catalogs[name] = await _read_catalog(connection)
    return _catalogs[name]


async def _read_catalog(connection: asyncpg.Connection) -> Catalog:
    owned = sorted(OWNED_TABLES)
    rows = await connection.fetch(
        """
        SELECT c.relname,
               array_agg(a.attname::text ORDER BY a.attnum) AS columns,
               (SELECT array_agg(k.attname::text ORDER BY array_position(i.indkey, k.attnum))
                  FROM pg_index i JOIN pg_attribute k
                    ON k.attrelid = i.indrelid AND k.attnum = ANY (i.indkey)
                 WHERE i.indrelid = c.oid AND i.indisprimary) AS primary_key
          FROM pg_class c
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY ($1)
         GROUP BY c.oid, c.relname
        """,
        owned,
    )
    columns = {row["relname"]: row["columns"] for row in rows}
    fingerprinted = {
        table: [c for c in names if c not in UNFINGERPRINTED_COLUMNS.get(table, {})]
        for table, names in columns.items()
        if table not in UNFINGERPRINTED
    }
    primary_keys = {row["relname"]: row["primary_key"] for row in rows}
    missing = set(owned) - set(columns)
    assert not missing, f"owned tables absent from the test database: {sorted(missing)}"
    keyless = [table for table, key in primary_keys.items() if not key]
    assert not keyless, f"tables without a primary key cannot be fingerprinted: {keyless}"
    references = await connection.fetch(
        """
        SELECT DISTINCT f.relname AS referencing, t.relname AS referenced
          FROM pg_constraint k
          JOIN pg_class f ON f.oid = k.conrelid
          JOIN pg_class t ON t.oid = k.confrelid
         WHERE k.contype = 'f' AND f.relname = ANY ($1) AND t.relname = ANY ($1)
        """,
        owned,
    )
    referenced_by: dict[str, set[str]] = {table: set() for table in owned}
    for row in references:
        if row["referencing"] != row["referenced"]:
            referenced_by[row["referenced"]].add(row["referencing"])
    emptying_order = list(graphlib.TopologicalSorter(referenced_by).static_order())
    selects = []
    for table in sorted(fingerprinted):
        key = ", ".join(f"r.{quoted(column)}" for column in primary_keys[table])
        if len(primary_keys[table]) > 1:
            key = f"ROW({key})"
        digests = ", ".join(f"md5(r.{quoted(column)}::text)" for column in fingerprinted[table])
        selects.append(
            f"SELECT '{table}' AS relation, ({key})::text AS key, ARRAY[{digests}] AS digests "
            f"FROM {quoted(table)} r"
        )
    return Catalog(
        columns, fingerprinted, primary_keys, emptying_order, "\nUNION ALL\n".join(selects)
    )


async def truncate(url: str) -> None:
    connection = await asyncpg.connect(plain_dsn(url))
    try:
        tables = (await catalog(connection)).emptying_order
        # DELETE, in foreign-key order: on tables this small it is ~100x faster than TRUNCATE.
        # TRUNCATE (~40 ms even on empty tables) only for append-only tables, whose trigger
        # refuses DELETE but does not see TRUNCATE, and only when a test wrote to them.
        append_only = [
            table
            for table in tables
            if table in Base.metadata.tables and Base.metadata.tables[table].info.get("append_only")
        ]
        written = " OR ".join(f"EXISTS (SELECT 1 FROM {quoted(table)})" for table in append_only)
        if append_only and await connection.fetchval(f"SELECT {written}"):
            await connection.execute(f"TRUNCATE {', '.join(map(quoted, append_only))}")
        await connection.execute(
            "; ".join(
                f"DELETE FROM {quoted(table)}" for table in tables if table not in append_only
            )
        )
    finally:
        await connection.close()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    await truncate(settings.db.url)
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def db(app: FastAPI) -> AsyncIterator[asyncpg.Connection]:
    """A raw connection for arranging and inspecting state (autocommit)."""
    connection = await asyncpg.connect(plain_dsn(app.state.settings.db.url))
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://terrain.test") as client:
        yield client


# Test data is written through the models, so a column renamed or retyped in the schema
# breaks here too: statements are built from the model classes, then compiled for the raw
# asyncpg connection the tests arrange and inspect state with.
ASYNCPG = asyncpg_dialect()


def compiled(statement: ClauseElement) -> list[Any]:
    """``statement`` as asyncpg's arguments: the SQL that SQLAlchemy's asyncpg dialect writes
    for it, then its parameters, converted by their types (enums, JSON, geography) and with
    the Python-side defaults of the columns it leaves out (server defaults stay the
    database's). For ``connection.fetchval(*compiled(statement))`` and the like."""
    query = statement.compile(dialect=ASYNCPG)
    params = query.construct_params()
    for column in query.insert_prefetch:  # a single-row INSERT's Python-side defaults
        default = column.default
        assert isinstance(default, ColumnDefault), f"{column} has no plain default"
        params[column.key] = default.arg if default.is_scalar else default.arg(None)
    args = []
    for name in query.positiontup or ():
        process = query.binds[name].type.dialect_impl(ASYNCPG).bind_processor(ASYNCPG)
        args.append(process(params[name]) if process else params[name])
    return [query.string, *args]


def unnest(*arrays: list[Any], names: tuple[str, ...], type_: TypeEngine[Any]) -> TableValuedAlias:
    """These arrays (of one element type) side by side as a table: a column per array, named
    by ``names``, and ``i``, the row's position from 1."""
    return (
        func.unnest(*(literal(array, ARRAY(type_)) for array in arrays))
        .table_valued(*names, with_ordinality="i")
        .render_derived()
    )


@dataclass
class Account:
    id: uuid.UUID
    email: str
    role: Role
    organization_id: uuid.UUID | None
    headers: dict[str, str]


class Factory:
    """Small factories that write straight to the database, for arranging a test quickly."""

    def __init__(self, db: asyncpg.Connection, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.counter = 0

    def _next(self) -> int:
        self.counter += 1
        return self.counter

    async def organization(self, name: str | None = None) -> uuid.UUID:
        n = self._next()
        return await self.db.fetchval(
            *compiled(
                insert(Organization)
                .values(
                    name=name or f"Client {n}",
                    description=f"Retail client number {n}",
                    join_code=f"join-{n}-{uuid.uuid4().hex[:8]}",
                )
                .returning(Organization.id)
            )
        )

    async def account(self, role: Role, organization_id: uuid.UUID | None = None) -> Account:
        n = self._next()
        if role == Role.client and organization_id is None:
            organization_id = await self.organization()
        email = f"{role.value}{n}@example.org"
        user_id = await self.db.fetchval(
            *compiled(
                insert(User)
                .values(
                    email=email,
                    display_name=f"{role.value.title()} {n}",
                    password_hash=PASSWORD_HASH,
                    role=role,
                    organization_id=organization_id,
                )
                .returning(User.id)
            )
        )
        token, _ = issue_token(user_id, role.value, self.settings.auth)
        return Account(user_id, email, role, organization_id, {"Authorization": f"Bearer {token}"})

    async def store(
        self,
        organization_id: uuid.UUID,
        *,
        lat: float = 48.8566,
        lon: float = 2.3522,
        name: str | None = None,
        external_ref: str | None = None,
        opening_hours: str = "24/7",
        instructions: str = "",
    ) -> uuid.UUID:
        n = self._next()
        return await self.db.fetchval(
            *compiled(
                insert(Store)
                .values(
                    organization_id=organization_id,
                    external_ref=external_ref,
                    name=name or f"Store {n}",
                    address=f"{n} Rue de Test, 75001 Paris",
                    location=WKTElement(f"POINT({lon} {lat})", srid=4326),
                    geofence_radius_m=50,
                    timezone="Europe/Paris",
                    opening_hours=opening_hours,
                    instructions=instructions,
                )
                .returning(Store.id)
            )
        )

    async def stores_at(
        self, organization_id: uuid.UUID, points: list[tuple[float, float]]
    ) -> list[uuid.UUID]:
        """One store per point, named by its position in ``points`` (one statement, however
        many points), with the model's address and opening hours."""
        rows = unnest(
            [p[0] for p in points], [p[1] for p in points], names=("lat", "lon"), type_=Float
        )
        statement = (
            insert(Store)
            .from_select(
                [
                    Store.organization_id,
                    Store.name,
                    Store.location,
                    Store.geofence_radius_m,
                    Store.timezone,
                ],
                select(
                    literal(organization_id, Store.organization_id.type),
                    literal("Store ") + cast(rows.c.i, String),
                    cast(
                        func.ST_SetSRID(func.ST_MakePoint(rows.c.lon, rows.c.lat), 4326),
                        Store.location.type,
                    ),
                    literal(50),
                    literal("UTC"),
                ).order_by(rows.c.i),
            )
            .returning(Store.id)
        )
        return [row["id"] for row in await self.db.fetch(*compiled(statement))]

    async def campaign(
        self,
        client: Account,
        store_ids: list[uuid.UUID],
        *,
        reward_cents: int = 600,
        onsite_minutes: int = 15,
        reservation_minutes: int = 60,
        starts_at: datetime | None = None,
        ends_at: datetime | None = None,
    ) -> tuple[uuid.UUID, list[uuid.UUID]]:
        """A launched campaign with one open task per store; returns (campaign id, task ids)
        in the order of ``store_ids``."""
        now = datetime.now(UTC)
        starts_at = starts_at or now - timedelta(hours=1)
        ends_at = ends_at or now + timedelta(days=7)
        campaign_id = await self.db.fetchval(
            *compiled(
                insert(Campaign)
                .values(
                    organization_id=client.organization_id,
                    name="Shelf check",
                    purpose="Check the organic range is on shelf",
                    min_photos=1,
                    max_photos=3,
                    reward_cents=reward_cents,
                    currency="EUR",
                    onsite_minutes=onsite_minutes,
                    reservation_minutes=reservation_minutes,
                    starts_at=starts_at,
                    ends_at=ends_at,
                    status=CampaignStatus.active,
                    created_by=client.id,
                )
                .returning(Campaign.id)
            )
        )
        checklist = photo_checklist(1, 3)
        await self.db.execute(
            *compiled(
                insert(ChecklistVersion).values(
                    campaign_id=campaign_id,
                    version=1,
                    definition=checklist.to_dict(),
                    estimated_minutes=estimated_minutes(checklist),
                    created_by=client.id,
                )
            )
        )
        stores = unnest(store_ids, names=("store_id",), type_=Store.id.type)
        tasks = (
            insert(Task)
            .from_select(
                [
                    Task.campaign_id,
                    Task.store_id,
                    Task.reward_cents,
                    Task.currency,
                    Task.status,
                    Task.starts_at,
                    Task.ends_at,
                    Task.checklist_version,
                ],
                select(
                    literal(campaign_id, Task.campaign_id.type),
                    Store.id,
                    literal(reward_cents),
                    literal("EUR"),
                    literal(TaskStatus.open, Task.status.type),
                    literal(starts_at, Task.starts_at.type),
                    literal(ends_at, Task.ends_at.type),
                    literal(1),
                )
                .join_from(stores, Store, Store.id == stores.c.store_id)
                .order_by(stores.c.i),
            )
            .returning(Task.id)
        )
        return campaign_id, [row["id"] for row in await self.db.fetch(*compiled(tasks))]


@pytest.fixture
def factory(db: asyncpg.Connection, settings: Settings) -> Factory:
    return Factory(db, settings)


class Fingerprint(dict[str, dict[str, tuple[str | None, ...]]]):
    """Every row of every owned table (but UNFINGERPRINTED): per table, per primary key, an md5
    of each column's value (but UNFINGERPRINTED_COLUMNS). Equal fingerprints mean no row was
    added, removed or changed."""

    def __init__(self, schema: Catalog) -> None:
        super().__init__()
        self.schema = schema

    def differences(self, other: Fingerprint) -> list[str]:
        """What differs, by table, row (primary key) and column: this is the left side."""
        lines = []
        for table in sorted(set(self) | set(other)):
            mine, theirs = self.get(table, {}), other.get(table, {})
            primary_key = self.schema.primary_keys[table]
            key = primary_key[0] if len(primary_key) == 1 else f"({', '.join(primary_key)})"
            for row in sorted(set(mine) - set(theirs)):
                lines.append(f"{table}: {key}={row} only on the left")
            for row in sorted(set(theirs) - set(mine)):
                lines.append(f"{table}: {key}={row} only on the right")
            for row in sorted(set(mine) & set(theirs)):
                changed = [
                    column
                    for column, left, right in zip(
                        self.schema.fingerprinted[table], mine[row], theirs[row], strict=True
                    )
                    if left != right
                ]
                if changed:
                    lines.append(f"{table}: {key}={row} differs in {', '.join(changed)}")
        return lines


async def table_fingerprint(db: asyncpg.Connection) -> Fingerprint:
    """A digest of every row of every table the application owns, computed in the database."""
    schema = await catalog(db)
    fingerprint = Fingerprint(schema)
    for table in schema.fingerprinted:
        fingerprint[table] = {}
    for relation, key, digests in await db.fetch(schema.fingerprint_sql):
        fingerprint[relation][key] = tuple(digests)
    return fingerprint


def pytest_assertrepr_compare(op: str, left: Any, right: Any) -> list[str] | None:
    if op == "==" and isinstance(left, Fingerprint) and isinstance(right, Fingerprint):
        return ["the database differs:", *left.differences(right)]
    return None
