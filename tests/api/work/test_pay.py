"""The hourly rate's two forms, Python's and the SQL the database computes answers with, agree
to the cent, at the halves too."""

from __future__ import annotations

import random

from api.work.pay import estimated_hourly_rate_cents, estimated_hourly_rate_cents_sql

# (reward, on-site minutes, travel minutes): exact halves (60 * 1 / 8 = 7.5 rounds to 8, 60 * 3
# / 8 = 22.5 to 22), no travel, and fractional travel as the walking time gives it.
CASES = [
    (1, 8, 0.0),
    (3, 8, 0.0),
    (5, 8, 0.0),
    (600, 15, 0.0),
    (600, 15, 7.2),
    (1, 1, 7.0),
    (5000, 45, 23.999999),
    *(
        (rng.randint(1, 100_000), rng.randint(1, 600), rng.uniform(0, 600))
        for rng in [random.Random(7)]
        for _ in range(500)
    ),
]


async def test_python_and_sql_give_the_same_rate(db):
    computed = await db.fetch(
        "SELECT i, "
        + estimated_hourly_rate_cents_sql("reward", "onsite", "travel")
        + " AS rate FROM unnest($1::int[], $2::int[], $3::float8[]) "
        "WITH ORDINALITY AS c(reward, onsite, travel, i) ORDER BY i",
        [c[0] for c in CASES],
        [c[1] for c in CASES],
        [c[2] for c in CASES],
    )
    assert [row["rate"] for row in computed] == [estimated_hourly_rate_cents(*c) for c in CASES]
    assert [estimated_hourly_rate_cents(*c) for c in CASES[:3]] == [8, 22, 38]
