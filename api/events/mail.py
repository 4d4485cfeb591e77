"""Account e-mail through an outbox: ``queue_mail`` writes the message in the transaction of
the change it tells of, so nothing is sent for a change rolled back; the job worker sends what
is due (``send_due``) over SMTP. A message is marked sent only once the server accepted it;
until then a failed attempt waits ``backoff_base_s`` doubling up to ``backoff_cap_s`` and is
tried again, however long the server stays away. A worker that dies mid-send leaves the
message due: it may be sent twice, never lost."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.core.models import MailOutbox
from api.core.settings import MailSettings

log = logging.getLogger("terrain.mail")


async def queue_mail(session: AsyncSession, *, to: str, subject: str, body: str) -> None:
    await session.execute(insert(MailOutbox).values(to_address=to, subject=subject, body=body))


# One due message, held by this worker's transaction while it is sent: another worker skips
# it rather than sending it twice.
_CLAIM = text(
    """
    SELECT id, to_address, subject, body, attempts FROM mail_outbox
    WHERE sent_at IS NULL AND next_attempt_at <= now()
    ORDER BY next_attempt_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
    """
)
_SENT = text(
    """
    UPDATE mail_outbox SET sent_at = now(), next_attempt_at = NULL,
        attempts = attempts + 1, last_error = NULL
    WHERE id = :id
    """
)
_FAILED = text(
    """
    UPDATE mail_outbox SET attempts = attempts + 1, last_error = :error,
        next_attempt_at = now() + make_interval(secs => :wait_s)
    WHERE id = :id
    """
)


def retry_wait_s(attempts: int, settings: MailSettings) -> float:
    """The wait after the ``attempts``-th failed attempt."""
    return min(settings.backoff_cap_s, settings.backoff_base_s * 2 ** min(attempts - 1, 30))


def message(row: dict[str, str], settings: MailSettings) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = settings.from_address
    mail["To"] = row["to_address"]
    mail["Subject"] = row["subject"]
    mail["Message-ID"] = make_msgid(domain="terrain.invalid")
    mail.set_content(row["body"])
    return mail


async def send_due(
    sessionmaker: async_sessionmaker[AsyncSession], settings: MailSettings, *, limit: int = 100
) -> tuple[int, int]:
    """Send up to ``limit`` due messages, each in its own transaction; (sent, failed)."""
    sent = failed = 0
    for _ in range(limit):
        async with sessionmaker() as session, session.begin():
            row = (await session.execute(_CLAIM)).mappings().first()
            if row is None:
                break
            try:
                await aiosmtplib.send(
                    message(dict(row), settings),
                    hostname=settings.smtp_host,
                    port=settings.smtp_port,
                    username=settings.smtp_username,
                    password=(
                        settings.smtp_password.get_secret_value()
                        if settings.smtp_password
                        else None
                    ),
                    use_tls=settings.smtp_tls,
                    start_tls=settings.smtp_starttls,
                    timeout=settings.timeout_s,
                )
            except (aiosmtplib.SMTPException, OSError) as error:
                attempts = row["attempts"] + 1
                wait_s = retry_wait_s(attempts, settings)
                log.warning(
                    "mail %s: attempt %s failed (%r), next in %s s",
                    row["id"],
                    attempts,
                    error,
                    wait_s,
                )
                await session.execute(
                    _FAILED, {"id": row["id"], "error": repr(error)[:1000], "wait_s": wait_s}
                )
                failed += 1
                # The server is away: the rest waits for the next run rather than failing too.
                break
            await session.execute(_SENT, {"id": row["id"]})
            sent += 1
    return sent, failed


async def send_mail_at(
    sessionmaker: async_sessionmaker[AsyncSession], settings: MailSettings
) -> dict[str, int]:
    """The job's work: what is due now (by the database's clock, as ``next_attempt_at``)."""
    sent, failed = await send_due(sessionmaker, settings)
    done = {"mails_sent": sent, "mail_attempts_failed": failed}
    if sent or failed:
        log.info("send_mail: %s sent, %s failed", sent, failed)
    return done
