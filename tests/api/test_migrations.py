"""The migrations and the models describe one schema.

Three comparisons, each catching what the others cannot:
- Alembic's autogenerate comparison of the migrated database with the models (tables,
  columns, types, nullability, server defaults, indexes, unique constraints, foreign keys):
  what ``alembic revision --autogenerate`` would write is nothing;
- the database's own rendering of the migrated schema against the same schema built from the
  models (``create_all`` in a second database): every column (type, nullability, default,
  generated expression), constraint (checks and foreign-key actions included, which Alembic
  does not compare), index (method, operator class, predicate), enum label and table
  persistence, as PostgreSQL writes them;
- the triggers, which SQLAlchemy does not model, against the list each model declares
  (``_triggers`` in api/core/models.py) plus the ones in the schema procrastinate ships.

Left out, each for a reason: PostGIS's ``spatial_ref_sys`` (the extension's own table) and
``alembic_version`` (Alembic's); procrastinate's tables, types and triggers are not in the
models (migration 0010 installs the package's schema as shipped) and are compared with that
schema instead.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from geoalchemy2 import alembic_helpers
from sqlalchemy import Column, MetaData, Text, text
from sqlalchemy.ext.asyncio import create_async_engine

from api.core.db import Base
from tests.conftest import (
    PROCRASTINATE_SCHEMA,
    PROCRASTINATE_TABLES,
    TEST_DB,
    alembic_config,
    database_url,
    plain_dsn,
    recreate_database,
)

pytestmark = [
    # SQLAlchemy reflects no type for PostgreSQL's native point (task.mercator), and Alembic
    # does not compare generated columns' expressions: the catalog comparison checks both.
    pytest.mark.filterwarnings("ignore:Did not recognize type 'point':sqlalchemy.exc.SAWarning"),
    pytest.mark.filterwarnings("ignore:Computed default on .* cannot be modified:UserWarning"),
]

MIGRATED = f"{TEST_DB}_migrations"
MODELLED = f"{TEST_DB}_models"
NOT_OURS = {
    "spatial_ref_sys": "PostGIS's own table, created with the extension",
    "alembic_version": "Alembic's record of the revision",
}
PROCRASTINATE_TRIGGERS = frozenset(re.findall(r"CREATE TRIGGER (\w+)", PROCRASTINATE_SCHEMA))

# What PostgreSQL says about the tables it is given ($1), in its own words.
CATALOG = {
    "tables": """
        SELECT c.relname, c.relpersistence::text FROM pg_class c
         WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
           AND c.relname = ANY ($1)""",
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attgenerated::text, a.attidentity::text
          FROM pg_class c
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
          LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
         WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY ($1)""",
    "constraints": """
        SELECT c.relname, k.conname, k.contype::text, pg_get_constraintdef(k.oid)
          FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
         WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY ($1)""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
         WHERE schemaname = current_schema() AND tablename = ANY ($1)""",
    "enums": """
        SELECT t.typname, array_to_string(array_agg(e.enumlabel ORDER BY e.enumsortorder), ',')
          FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
         WHERE t.typnamespace = current_schema()::regnamespace
           AND t.typname NOT LIKE 'procrastinate\\_%'
         GROUP BY t.typname""",
    "triggers": """
        SELECT c.relname, g.tgname FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
         WHERE c.relnamespace = current_schema()::regnamespace AND NOT g.tgisinternal""",
}


def declared_triggers(metadata: MetaData) -> set[tuple[str, str]]:
    return {
        (table.name, trigger)
        for table in metadata.tables.values()
        for trigger in table.info.get("triggers", ())
    }


async def catalog(url: str, tables: list[str]) -> dict[str, set[tuple[Any, ...]]]:
    connection = await asyncpg.connect(plain_dsn(url))
    try:
        return await read_catalog(connection, tables)
    finally:
        await connection.close()


async def read_catalog(
    connection: asyncpg.Connection, tables: list[str]
) -> dict[str, set[tuple[Any, ...]]]:
    found = {}
    for part, sql in CATALOG.items():
        args = [tables] if "$1" in sql else []
        found[part] = {tuple(row) for row in await connection.fetch(sql, *args)}
    return found


def catalog_differences(
    migrated: dict[str, set[tuple[Any, ...]]], modelled: dict[str, set[tuple[Any, ...]]]
) -> list[str]:
    lines = []
    for part in migrated:
        if part == "triggers":
            continue  # compared with the declarations: create_all makes none
        lines += [
            f"{part}, migrations only: {row}"
            for row in sorted(migrated[part] - modelled[part], key=str)
        ]
        lines += [
            f"{part}, models only: {row}"
            for row in sorted(modelled[part] - migrated[part], key=str)
        ]
    return lines


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    if type_ == "table" and (name in NOT_OURS or name in PROCRASTINATE_TABLES):
        return False
    # GeoAlchemy2's rule: the spatial indexes it adds by itself are not the models' to declare.
    return bool(alembic_helpers.include_object(obj, name, type_, reflected, compare_to))


def autogenerate_differences(connection: Any, metadata: MetaData) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": True,
            "compare_server_default": True,
            "include_object": include_object,
            "target_metadata": metadata,
        },
    )
    return list(compare_metadata(context, metadata))


async def autogenerate(url: str, metadata: MetaData, *, first: str | None = None) -> list[Any]:
    """Alembic's differences between the database and ``metadata``; ``first`` is run in the
    same transaction beforehand, and rolled back."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            transaction = await connection.begin()
            if first:
                await connection.execute(text(first))
            differences = await connection.run_sync(autogenerate_differences, metadata)
            await transaction.rollback()
            return differences
    finally:
        await engine.dispose()


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@pytest.fixture(scope="module")
def migrated() -> Iterator[str]:
    """A database built by the migrations alone, from empty to head."""
    run(recreate_database(MIGRATED))
    url = database_url(MIGRATED)
    command.upgrade(alembic_config(url), "head")
    yield url


@pytest.fixture(scope="module")
def modelled() -> str:
    """The same schema built from the models alone."""

    async def build() -> str:
        await recreate_database(MODELLED)
        url = database_url(MODELLED)
        engine = create_async_engine(url)
        async with engine.begin() as connection:
            await connection.execute(text("CREATE EXTENSION postgis"))
            await connection.run_sync(Base.metadata.create_all)
        await engine.dispose()
        return url

    return run(build())


MODEL_TABLES = sorted(Base.metadata.tables)


async def test_the_migrations_build_exactly_the_models(migrated: str, modelled: str):
    assert await autogenerate(migrated, Base.metadata) == []
    differences = catalog_differences(
        await catalog(migrated, MODEL_TABLES), await catalog(modelled, MODEL_TABLES)
    )
    assert differences == []


async def test_the_tables_are_the_models_and_procrastinate_s(migrated: str):
    connection = await asyncpg.connect(plain_dsn(migrated))
    try:
        tables = await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        )
    finally:
        await connection.close()
    assert {row[0] for row in tables} == set(MODEL_TABLES) | PROCRASTINATE_TABLES | set(NOT_OURS)


async def test_every_trigger_is_declared_with_its_model_or_shipped_by_procrastinate(
    migrated: str,
):
    found = (await catalog(migrated, MODEL_TABLES))["triggers"]
    procrastinate = {(table, name) for table, name in found if table in PROCRASTINATE_TABLES}
    assert found - procrastinate == declared_triggers(Base.metadata)
    assert {name for _, name in procrastinate} == PROCRASTINATE_TRIGGERS


def copy_of_the_models() -> MetaData:
    copy = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(copy)
    return copy


async def test_a_model_column_without_its_migration_is_caught(migrated: str):
    models = copy_of_the_models()
    models.tables["alert_area"].append_column(Column("label", Text, nullable=True))
    differences = await autogenerate(migrated, models)
    assert [(d[0], d[2], d[3].name) for d in differences] == [("add_column", "alert_area", "label")]


async def test_a_migration_column_without_its_model_is_caught(migrated: str):
    differences = await autogenerate(
        migrated, Base.metadata, first="ALTER TABLE alert_area ADD COLUMN label text"
    )
    assert [(d[0], d[2], d[3].name) for d in differences] == [
        ("remove_column", "alert_area", "label")
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # A check Alembic does not compare.
        (
            "ALTER TABLE store DROP CONSTRAINT ck_store_geofence_radius_range, ADD CONSTRAINT "
            "ck_store_geofence_radius_range CHECK (geofence_radius_m BETWEEN 10 AND 5000)",
            "constraints, migrations only: ('store', 'ck_store_geofence_radius_range', 'c', "
            "'CHECK (((geofence_radius_m >= 10) AND (geofence_radius_m <= 5000)))')",
        ),
        # A foreign key's action, and an index's predicate.
        (
            "ALTER TABLE alert DROP CONSTRAINT fk_alert_task_id_task, ADD CONSTRAINT "
            "fk_alert_task_id_task FOREIGN KEY (task_id) REFERENCES task (id)",
            "constraints, migrations only: ('alert', 'fk_alert_task_id_task', 'f', "
            "'FOREIGN KEY (task_id) REFERENCES task(id)')",
        ),
        (
            "DROP INDEX ix_task_reserved_until; CREATE INDEX ix_task_reserved_until "
            "ON task (reserved_until)",
            "indexes, migrations only: ('task', 'ix_task_reserved_until', "
            "'CREATE INDEX ix_task_reserved_until ON public.task USING btree (reserved_until)')",
        ),
        ("ALTER TYPE role ADD VALUE 'guest'", "enums, migrations only: ('role', "),
    ],
)
async def test_what_alembic_does_not_compare_the_catalog_does(
    migrated: str, modelled: str, change: str, expected: str
):
    connection = await asyncpg.connect(plain_dsn(migrated))
    transaction = connection.transaction()
    await transaction.start()
    try:
        await connection.execute(change)
        found = await read_catalog(connection, MODEL_TABLES)
    finally:
        await transaction.rollback()
        await connection.close()
    differences = catalog_differences(found, await catalog(modelled, MODEL_TABLES))
    assert [line for line in differences if "migrations only" in line and expected in line]


async def test_a_trigger_added_by_a_migration_without_its_declaration_is_caught(migrated: str):
    connection = await asyncpg.connect(plain_dsn(migrated))
    transaction = connection.transaction()
    await transaction.start()
    try:
        await connection.execute(
            "CREATE TRIGGER alert_area_touched BEFORE UPDATE ON alert_area "
            "FOR EACH ROW EXECUTE FUNCTION ledger_entry_append_only()"
        )
        found = (await read_catalog(connection, MODEL_TABLES))["triggers"]
    finally:
        await transaction.rollback()
        await connection.close()
    mine = {(table, name) for table, name in found if table not in PROCRASTINATE_TABLES}
    assert mine - declared_triggers(Base.metadata) == {("alert_area", "alert_area_touched")}


async def test_downgrade_to_base_leaves_nothing_and_upgrade_rebuilds_the_same(migrated: str):
    config = alembic_config(migrated)
    head = await catalog(migrated, MODEL_TABLES)
    await asyncio.to_thread(command.downgrade, config, "base")
    connection = await asyncpg.connect(plain_dsn(migrated))
    try:
        # Whatever is in the schema and belongs to no extension (PostGIS's), but Alembic's table.
        left = await connection.fetch(
            """
            SELECT kind, name FROM (
                SELECT 'relation' AS kind, relname::text AS name, oid, 'pg_class' AS catalog
                  FROM pg_class WHERE relnamespace = current_schema()::regnamespace
                   AND relkind IN ('r', 'p', 'v', 'm', 'S')
                UNION ALL
                SELECT 'type', typname::text, oid, 'pg_type' FROM pg_type
                 WHERE typnamespace = current_schema()::regnamespace AND typtype IN ('e', 'c')
                   AND typrelid = 0
                UNION ALL
                SELECT 'routine', proname::text, oid, 'pg_proc' FROM pg_proc
                 WHERE pronamespace = current_schema()::regnamespace
            ) AS o
            WHERE name NOT IN ('alembic_version', 'alembic_version_pkc')
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = o.oid
                              AND d.classid = o.catalog::regclass AND d.deptype = 'e')
            ORDER BY 1, 2
            """
        )
    finally:
        await connection.close()
    assert left == []
    await asyncio.to_thread(command.upgrade, config, "head")
    assert await catalog(migrated, MODEL_TABLES) == head
