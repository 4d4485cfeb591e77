"""Play a whole day against a running Terrain server, over HTTP, with planted cheaters.

    python -m sim --workers 20 --cheaters-per-kind 2 --seed 7

A client registers, imports a district's shops and launches a campaign with a checklist; the
workers register, plan and reserve routes, photograph each shop slot by slot and submit their
answers (or a "couldn't complete" outcome when the shop is closed). Some workers cheat (wrong
place, stale photo, duplicate photo, mock location, wrong answers, a closed shop claimed from
home). The summary says, per kind, what the checks decided, how many answers the API refused
and which outcomes were reported; the exit status is 0 only if every cheat was caught and every
honest submission accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import httpx

from sim.day import DayReport, play_day
from sim.http import Api, ApiError
from sim.plan import CHEATS, Plan, make_plan
from sim.summary import as_json, as_table, problems

DEFAULT_BASE_URL = "http://127.0.0.1:8000"


def cheater_count(value: str) -> float:
    """A whole number of cheaters per kind, or a fraction of the workers (0.1 = 10 % each)."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if number < 0 or (number >= 1 and not number.is_integer()):
        raise argparse.ArgumentTypeError("give a whole number, or a fraction between 0 and 1")
    return number


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="python -m sim", description=__doc__.split("\n\n")[0])
    parse.add_argument("base_url", nargs="?", help=f"the server (default {DEFAULT_BASE_URL})")
    parse.add_argument(
        "--base-url", dest="base_url_option", metavar="URL", help="the server, as an option"
    )
    parse.add_argument("--workers", type=int, default=10, help="workers in the day (default 10)")
    parse.add_argument(
        "--cheaters-per-kind",
        type=cheater_count,
        default=1,
        metavar="K",
        help=f"cheaters of each kind ({', '.join(CHEATS)}): a count, or a fraction of the "
        "workers (default 1)",
    )
    parse.add_argument(
        "--tasks-per-worker", type=int, default=3, help="stops per route (default 3)"
    )
    parse.add_argument(
        "--travel-kmh",
        type=float,
        default=100.0,
        help="how fast workers go from shop to shop: the day is played in minutes, so far "
        "above walking pace, but under the server's impossible-travel limit (default 100)",
    )
    parse.add_argument("--seed", type=int, default=2026, help="draws the shops and the cheaters")
    parse.add_argument("--json", action="store_true", help="print the outcome as JSON")
    return parse


def per_kind(value: float, workers: int) -> int:
    return int(value) if value >= 1 or value == 0 else round(value * workers)


async def simulate(plan: Plan, args: argparse.Namespace, base_url: str) -> DayReport:
    limits = httpx.Limits(max_connections=min(4 * args.workers, 100))
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0, limits=limits) as client:
        return await play_day(
            Api(client),
            plan,
            tasks_per_worker=args.tasks_per_worker,
            travel_kmh=args.travel_kmh,
        )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    base_url = (args.base_url_option or args.base_url or DEFAULT_BASE_URL).rstrip("/")
    if args.workers < 1 or args.tasks_per_worker < 1 or args.travel_kmh <= 0:
        print("error: workers, tasks per worker and travel speed must be positive", file=sys.stderr)
        return 2
    try:
        plan = make_plan(
            seed=args.seed,
            workers=args.workers,
            cheaters_per_kind=per_kind(args.cheaters_per_kind, args.workers),
            tasks_per_worker=args.tasks_per_worker,
        )
    except ValueError as exc:  # too many cheaters for the workers
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(simulate(plan, args, base_url))
    except (ApiError, httpx.HTTPError) as exc:  # the client's side failed: no day to report
        print(f"error: the day failed against {base_url}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(as_json(report), indent=2))
    else:
        print(as_table(report))
    return 0 if not problems(report) else 1


if __name__ == "__main__":
    sys.exit(main())
