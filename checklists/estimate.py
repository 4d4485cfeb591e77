"""The on-site time a checklist asks for, used to price and schedule a store visit.

    minutes = ceil(5                            per store visit (find the shelf, check in)
                   + 2   x photo slots           frame and take the first photo
                   + 0.5 x (min_photos - 1)      each further photo a slot demands
                   + 0.5 x questions            yes/no, number, choice and text items
                   + 0   x notes)               read with the rest

Every item counts, conditional ones included: the estimate is the longest visit the checklist
can ask for, so a worker is never paid for less than the visit may take.
"""

from __future__ import annotations

from fractions import Fraction
from math import ceil

from checklists.model import QUESTIONS, Checklist, Kind

BASE_MINUTES = Fraction(5)
PER_PHOTO_SLOT = Fraction(2)
PER_EXTRA_PHOTO = Fraction(1, 2)
PER_QUESTION = Fraction(1, 2)


def estimated_minutes(checklist: Checklist) -> int:
    """Whole minutes on site for one visit, rounded up (see the module docstring)."""
    total = BASE_MINUTES
    for item in checklist.items:
        if item.kind is Kind.PHOTO:
            total += PER_PHOTO_SLOT + PER_EXTRA_PHOTO * ((item.min_photos or 1) - 1)
        elif item.kind in QUESTIONS:
            total += PER_QUESTION
    return ceil(total)
