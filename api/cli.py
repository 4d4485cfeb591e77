"""Administration commands: ``python -m api.cli <command> --help``."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from api.core.db import make_engine, make_sessionmaker
from api.core.errors import DomainError
from api.core.models import Role
from api.core.settings import Settings


async def _create_user(args: argparse.Namespace) -> None:
    from api.accounts.auth import create_user

    password = args.password or getpass.getpass("Password (10+ characters): ")
    if len(password) < 10:
        raise SystemExit("The password needs at least 10 characters.")
    settings = Settings()
    engine = make_engine(settings.db)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            user = await create_user(
                session,
                email=args.email,
                password=password,
                display_name=args.name or args.email.split("@")[0],
                role=Role(args.role),
            )
            print(f"created {user.role.value} {user.email} ({user.id})")
    finally:
        await engine.dispose()


async def _sweep(args: argparse.Namespace) -> None:
    from api.background.housekeeping import reconcile, sweep_once
    from api.core.object_store import build_object_store

    settings = Settings()
    engine = make_engine(settings.db)
    store = build_object_store(
        settings.storage, signing_key=settings.auth.secret_key.get_secret_value().encode()
    )
    try:
        print(await sweep_once(make_sessionmaker(engine), settings))
        print(await reconcile(make_sessionmaker(engine), store, settings))
    finally:
        await engine.dispose()


async def _seed_demo(args: argparse.Namespace) -> None:
    from api.demo import seed_demo

    # The demo's campaigns and submissions are made through the API, in-process: it opens
    # its own connections and commits as each request does.
    await seed_demo(Settings(), stores=args.stores)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m api.cli", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    create = commands.add_parser("create-user", help="create a reviewer or an admin account")
    create.add_argument("--email", required=True)
    create.add_argument("--role", required=True, choices=[Role.reviewer.value, Role.admin.value])
    create.add_argument("--name")
    create.add_argument("--password", help="prompted for when omitted")
    create.set_defaults(run=_create_user)

    sweep = commands.add_parser(
        "sweep", help="run the housekeeping now (expiry, auto-approval, retention, orphan uploads)"
    )
    sweep.set_defaults(run=_sweep)

    seed = commands.add_parser("seed-demo", help="load the demo data (idempotent)")
    seed.add_argument("--stores", type=int, default=200)
    seed.set_defaults(run=_seed_demo)

    args = parser.parse_args(argv)
    try:
        asyncio.run(args.run(args))
    except DomainError as exc:
        print(f"error: {exc.detail} ({exc.code})", file=sys.stderr)
        raise SystemExit(1) from exc


if __name__ == "__main__":
    main()
