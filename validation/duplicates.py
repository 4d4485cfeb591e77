"""Duplicate checks. The caller finds the matches (indexed lookups by sha256 and by pHash band).

- ``duplicate.exact``: fail when the same bytes were already submitted, by anyone.
- ``duplicate.near``: warn when an earlier photo's pHash is within
  ``NEAR_DUPLICATE_MAX_DISTANCE`` bits (a re-encoded, resized or lightly edited copy).
"""

from __future__ import annotations

from collections.abc import Sequence

from validation.phash import NEAR_DUPLICATE_MAX_DISTANCE
from validation.report import Check


def duplicate_checks(
    *, exact_matches: Sequence[str], near_matches: Sequence[tuple[str, int]]
) -> list[Check]:
    """``exact_matches``: ids of earlier photos with the same sha256; ``near_matches``: (id,
    Hamming distance) of candidates sharing a pHash band. Candidates farther than the limit and
    photos already reported as exact copies are ignored."""
    exact_ids = list(dict.fromkeys(exact_matches))
    if exact_ids:
        exact = Check(
            code="duplicate.exact",
            outcome="fail",
            value=exact_ids[0],
            threshold=None,
            message=f"This exact photo was already submitted (photo {_names(exact_ids)}).",
        )
    else:
        exact = Check(
            code="duplicate.exact",
            outcome="pass",
            value=None,
            threshold=None,
            message="This photo was not submitted before.",
        )

    near = sorted(
        (distance, photo_id)
        for photo_id, distance in near_matches
        if distance <= NEAR_DUPLICATE_MAX_DISTANCE and photo_id not in exact_ids
    )
    limit = float(NEAR_DUPLICATE_MAX_DISTANCE)
    if near:
        distance, photo_id = near[0]
        others = len({other for _, other in near}) - 1
        more = f" and {others} more" if others else ""
        similar = Check(
            code="duplicate.near",
            outcome="warn",
            value=float(distance),
            threshold=limit,
            unit="bits",
            message=(
                f"This photo looks like photo {photo_id}{more} submitted earlier "
                f"(perceptual hash {distance} bits apart, at most {NEAR_DUPLICATE_MAX_DISTANCE} "
                "counts as the same picture); a reviewer will compare them."
            ),
        )
    else:
        similar = Check(
            code="duplicate.near",
            outcome="pass",
            value=None,
            threshold=limit,
            unit="bits",
            message="No earlier photo looks like this one.",
        )
    return [exact, similar]


def _names(photo_ids: list[str]) -> str:
    if len(photo_ids) == 1:
        return photo_ids[0]
    return f"{photo_ids[0]} and {len(photo_ids) - 1} more"
