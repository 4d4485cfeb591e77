"""Photo validation: pure functions on a photo's bytes plus the context of its task.

``read_photo`` turns bytes into :class:`PhotoFacts` (or raises :class:`UnreadablePhoto`);
``photo_checks``, ``submission_checks`` and ``duplicate_checks`` turn facts and context into
:class:`Check` results; ``verdict`` sums them up. ``sanitize`` makes the metadata-free copy that
clients download. Nothing here touches the network, the database or the web framework.
"""

from validation.checks import PhotoContext, capture_time_utc, photo_checks
from validation.duplicates import duplicate_checks
from validation.exif import CaptureSource, FieldProblem
from validation.phash import NEAR_DUPLICATE_MAX_DISTANCE, hamming, phash_bands
from validation.photo import PhotoFacts, UnreadablePhoto, read_photo
from validation.report import Check, Outcome, Verdict, verdict
from validation.sanitize import sanitize
from validation.submission import (
    DeviceFix,
    PhotoPosition,
    PreviousSubmission,
    SubmissionContext,
    submission_checks,
)
from validation.thresholds import Thresholds

__all__ = [
    "NEAR_DUPLICATE_MAX_DISTANCE",
    "CaptureSource",
    "Check",
    "DeviceFix",
    "FieldProblem",
    "Outcome",
    "PhotoContext",
    "PhotoFacts",
    "PhotoPosition",
    "PreviousSubmission",
    "SubmissionContext",
    "Thresholds",
    "UnreadablePhoto",
    "Verdict",
    "capture_time_utc",
    "duplicate_checks",
    "hamming",
    "phash_bands",
    "photo_checks",
    "read_photo",
    "sanitize",
    "submission_checks",
    "verdict",
]
