"""What the day showed: per planted kind, the verdicts and the checks that decided them, the
answers the API refused and the outcomes reported, and whether the checks told the cheats from
the honest work."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from typing import Any

from sim.day import DayReport, SubmissionRecord
from sim.plan import KINDS, Kind

ACCEPTED = "pending_acceptance"
STATUSES = ("pending_acceptance", "needs_review", "rejected")


def tally(report: DayReport) -> dict[Kind, dict[str, Any]]:
    """Per kind: workers planted, submissions, submissions per status, answers refused (422
    invalid_answers, nothing stored), outcomes reported, and how often each check failed or
    warned."""
    rows: dict[Kind, dict[str, Any]] = {}
    for kind in KINDS:
        submissions = [s for s in report.submissions if s.kind == kind]
        rows[kind] = {
            "workers": sum(1 for w in report.workers if w.kind == kind),
            "submissions": len(submissions),
            "statuses": {st: sum(s.status == st for s in submissions) for st in STATUSES},
            "answers_refused": sum(r.kind == kind for r in report.refusals),
            "outcomes": dict(sorted(Counter(s.outcome for s in submissions if s.outcome).items())),
            "failed": dict(sorted(Counter(c for s in submissions for c in s.failed).items())),
            "warned": dict(sorted(Counter(c for s in submissions for c in s.warned).items())),
        }
    return rows


def problems(report: DayReport) -> list[str]:
    """Everything that keeps the day from being a success; empty when it is one."""
    found = []
    if report.error:
        found.append(f"the day stopped: {report.error}")
    for worker in report.workers:
        if worker.error:
            found.append(f"worker {worker.index} ({worker.kind}) stopped: {worker.error}")
    rows = tally(report)
    for kind in KINDS:
        tried = rows[kind]["submissions"] + rows[kind]["answers_refused"]
        if kind != "honest" and rows[kind]["workers"] and not tried:
            found.append(f"no {kind} cheat was submitted: nothing to catch")
    for refusal in report.refusals:
        if refusal.kind != "bad_answers":
            found.append(
                f"{refusal.kind} answers for task {refusal.task_id} were refused "
                f"({', '.join(refusal.items)})"
            )
    for submission in report.submissions:
        if submission.kind == "honest" and submission.status != ACCEPTED:
            found.append(f"honest submission {submission.submission_id} is {_why(submission)}")
        if submission.kind != "honest" and submission.status == ACCEPTED:
            found.append(f"{submission.kind} cheat {submission.submission_id} was accepted")
        if submission.kind == "bad_answers":
            found.append(f"wrong answers were taken: submission {submission.submission_id}")
    return found


def _why(submission: SubmissionRecord) -> str:
    codes = ", ".join(submission.failed + submission.warned) or "no failing check"
    return f"{submission.status} ({codes})"


def as_json(report: DayReport) -> dict[str, Any]:
    found = problems(report)
    return {
        "ok": not found,
        "problems": found,
        "seed": report.seed,
        "run_id": report.run_id,
        "district": report.district,
        "organization": report.organization,
        "campaign_id": report.campaign_id,
        "shops": report.shops,
        "kinds": tally(report),
        "workers": [asdict(w) for w in report.workers],
        "submissions": [asdict(s) for s in report.submissions],
        "refusals": [asdict(r) for r in report.refusals],
    }


def as_table(report: DayReport) -> str:
    rows = tally(report)
    header = (
        "kind",
        "workers",
        "submitted",
        *STATUSES,
        "answers_refused",
        "outcomes",
        "checks that failed (F) or warned (W)",
    )
    lines: list[tuple[str, ...]] = [header]
    for kind, row in rows.items():
        codes = [f"F {code} x{n}" for code, n in row["failed"].items()]
        codes += [f"W {code} x{n}" for code, n in row["warned"].items()]
        lines.append(
            (
                kind,
                str(row["workers"]),
                str(row["submissions"]),
                *(str(row["statuses"][status]) for status in STATUSES),
                str(row["answers_refused"]),
                ", ".join(f"{o} x{n}" for o, n in row["outcomes"].items()) or "-",
                ", ".join(codes) or "-",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    text = [
        "  ".join([*(cell.ljust(w) for cell, w in zip(line, widths, strict=False)), line[-1]])
        for line in lines
    ]
    intro = (
        f"Simulated day in {report.district}: {report.shops} shops of {report.organization} "
        f"(campaign {report.campaign_id}), {len(report.workers)} workers, seed {report.seed}."
    )
    found = problems(report)
    if not found:
        verdict = (
            "OK: every planted cheat was caught (not pending_acceptance, or its answers "
            "refused) and every honest submission accepted (pending_acceptance)."
        )
    else:
        verdict = "NOT OK:\n" + "\n".join(f"  - {problem}" for problem in found)
    return "\n".join([intro, "", *text, "", verdict])
