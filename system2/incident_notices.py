"""Who an incident touched, and the one email each of their admins is sent about it.

The security page promises affected account admins an email within 72 hours of confirmation
with what happened, what data was affected and what we are doing. The email is the
operator's template filled with the incident's details and the company's counts; every
message is built before the first is sent, so a bad template or a header that would break
(a line break in the subject) stops the run with nobody emailed.

Each admin is emailed at most once: the notice is claimed and committed before the send
(``store.incidents.claim``); a claim a crashed run left behind is reported as uncertain and
not sent again.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from pathlib import Path
from string import Template
from typing import Any, Literal
from uuid import UUID

from runtime.mail import MailError, MailServer, send_retrying
from store import Database
from store import activity as activity_store
from store import incidents as incidents_store
from store.activity import NewActivity
from store.incidents import Admin, Incident, Notice, Touched
from system2.errors import System2Error

DEADLINE = timedelta(hours=72)
NO_EMAIL: Literal["no email on file"] = "no email on file"
PLACEHOLDERS = (
    "incident_id", "summary", "since", "until", "confirmed_at", "deadline",
    "company_name", "company_id", "quests", "audit_rows", "credentials_decrypted",
    "credentials_by_integration", "user_id",
)  # fmt: skip
State = Literal["sent", "failed", "already sent", "uncertain", "no email on file", "to send"]


@dataclass(frozen=True)
class Affected:
    """One company the incident touched, with its admins."""

    touched: Touched
    admins: list[Admin]


async def affected(db: Database, incident: Incident) -> list[Affected]:
    """The companies ``incident`` touched and their admins (counts and ids, no content)."""
    async with db.connection() as conn:
        touched = await incidents_store.touched(conn, incident)
        admins = await incidents_store.admins(conn, [t.company_id for t in touched])
    return [Affected(t, [a for a in admins if a.company_id == t.company_id]) for t in touched]


async def find(db: Database, incident_id: UUID) -> Incident:
    async with db.connection() as conn:
        incident = await incidents_store.get(conn, incident_id)
    if incident is None:
        raise System2Error(f"no incident {incident_id}")
    return incident


async def notices_of(db: Database, incident_id: UUID, company_id: UUID) -> dict[str, Notice]:
    async with db.tenant(company_id) as tx:
        return {n.user_id: n for n in await incidents_store.notices(tx, incident_id)}


# --- the template --------------------------------------------------------------------


@dataclass(frozen=True)
class NoticeTemplate:
    subject: Template
    body: Template


def load_template(path: Path) -> NoticeTemplate:
    """``Subject: …``, a blank line, the body; ``$placeholders`` from ``PLACEHOLDERS`` only."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise System2Error(f"cannot read the template {path}: {type(exc).__name__}") from None
    head, blank, body = text.partition("\n\n")
    if not head.startswith("Subject: ") or "\n" in head.strip("\n") or not blank:
        raise System2Error(
            f"{path}: the template starts with one 'Subject: …' line, then a blank line"
        )
    template = NoticeTemplate(Template(head.removeprefix("Subject: ").strip()), Template(body))
    for part in (template.subject, template.body):
        if not part.is_valid():
            raise System2Error(f"{path}: a '$' that is no placeholder (write $$ for a dollar)")
        unknown = sorted(set(part.get_identifiers()) - set(PLACEHOLDERS))
        if unknown:
            raise System2Error(
                f"{path}: unknown placeholder(s) {', '.join('$' + u for u in unknown)}; "
                f"known: {', '.join('$' + p for p in PLACEHOLDERS)}"
            )
    return template


def when(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def details(incident: Incident, touched: Touched, user_id: str) -> dict[str, str]:
    by_integration = touched.credentials_decrypted
    return {
        "incident_id": str(incident.id),
        "summary": incident.summary,
        "since": when(incident.since),
        "until": when(incident.until),
        "confirmed_at": when(incident.confirmed_at),
        "deadline": when(incident.confirmed_at + DEADLINE),
        "company_name": touched.company_name,
        "company_id": str(touched.company_id),
        "quests": str(touched.quests),
        "audit_rows": str(touched.audit_rows),
        "credentials_decrypted": str(sum(by_integration.values())),
        "credentials_by_integration": ", ".join(f"{k}: {v}" for k, v in by_integration.items())
        or "none",
        "user_id": user_id,
    }


def build(
    template: NoticeTemplate, values: dict[str, str], sender: str, recipient: str
) -> EmailMessage:
    """The email; ``System2Error`` when a value would break a header (a line break)."""
    message = EmailMessage(policy=SMTP)
    try:
        message["Subject"] = template.subject.substitute(values)
        message["From"] = sender
        message["To"] = recipient
    except ValueError as exc:
        raise System2Error(
            f"the notice to {values['user_id']} cannot be built: {exc} (the subject takes "
            "no line breaks: keep multi-line values such as $summary in the body)"
        ) from None
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[1])
    message["X-System2-Incident"] = values["incident_id"]
    message.set_content(template.body.substitute(values))
    return message


# --- the run -------------------------------------------------------------------------


@dataclass
class Outcome:
    company_id: UUID
    user_id: str
    email: str | None
    state: State
    attempts: int = 0
    message_id: str | None = None
    detail: str | None = None


@dataclass
class Report:
    incident_id: UUID
    dry_run: bool
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, state: State) -> int:
        return sum(1 for o in self.outcomes if o.state == state)

    def ok(self) -> bool:
        return not (self.count("failed") or self.count("uncertain"))

    def line(self) -> str:
        states: tuple[State, ...] = (
            ("to send", "already sent", "uncertain", NO_EMAIL)
            if self.dry_run
            else ("sent", "failed", "already sent", "uncertain", NO_EMAIL)
        )
        return ", ".join(f"{self.count(s)} {s}" for s in states)

    def as_json(self) -> dict[str, Any]:
        return {
            "incident_id": self.incident_id,
            "dry_run": self.dry_run,
            "summary": self.line(),
            "notices": [asdict(o) for o in self.outcomes],
        }


@dataclass(frozen=True)
class Planned:
    outcome: Outcome
    message: EmailMessage | None = None  # None: nothing to send


def _held(notice: Notice | None) -> State | None:
    if notice is None or notice.status == "failed":
        return None
    return "already sent" if notice.status == "sent" else "uncertain"


async def plan(
    db: Database, incident: Incident, template: NoticeTemplate, sender: str
) -> list[Planned]:
    """Every admin of every affected company with what this run does for them; each message
    to send is built here, before any goes out."""
    planned = []
    for company in await affected(db, incident):
        notices = await notices_of(db, incident.id, company.touched.company_id)
        for admin in company.admins:
            outcome = Outcome(admin.company_id, admin.user_id, admin.email, "to send")
            notice = notices.get(admin.user_id)
            held = _held(notice)
            if admin.email is None:
                outcome.state = NO_EMAIL
            elif held is not None and notice is not None:
                outcome.state, outcome.message_id = held, notice.message_id
                outcome.detail = (
                    f"claimed {when(notice.claimed_at)}" if held == "uncertain" else None
                )
            message = None
            if outcome.state == "to send" and admin.email is not None:
                values = details(incident, company.touched, admin.user_id)
                message = build(template, values, sender, admin.email)
            planned.append(Planned(outcome, message))
    return planned


async def notify(
    db: Database,
    incident: Incident,
    planned: list[Planned],
    server: MailServer,
    operator: str,
    *,
    attempts: int = 3,
    backoff_s: float = 1.0,
) -> Report:
    """Send each planned message once, recording each notice, then one ``incident.notified``
    audit row in each company that had someone newly notified."""
    report = Report(incident.id, dry_run=False)
    for item in planned:
        report.outcomes.append(item.outcome)
        if item.message is not None:
            await _send_one(db, incident, item, server, attempts=attempts, backoff_s=backoff_s)
    for company_id in dict.fromkeys(o.company_id for o in report.outcomes):
        sent = [
            o.user_id for o in report.outcomes if o.company_id == company_id and o.state == "sent"
        ]
        if sent:
            await _audit(db, incident, company_id, sent, operator)
    return report


async def _send_one(
    db: Database,
    incident: Incident,
    item: Planned,
    server: MailServer,
    *,
    attempts: int,
    backoff_s: float,
) -> None:
    outcome, message = item.outcome, item.message
    assert message is not None and outcome.email is not None
    outcome.message_id = message["Message-ID"]
    async with db.tenant(outcome.company_id) as tx:
        held = await incidents_store.claim(
            tx, incident.id, outcome.user_id, outcome.email, outcome.message_id
        )
    if held is not None:  # another run got there between the plan and now
        outcome.state = "already sent" if held == "sent" else "uncertain"
        return
    try:
        outcome.attempts = await send_retrying(
            server, message, outcome.email, attempts=attempts, backoff_s=backoff_s
        )
    except MailError as exc:
        outcome.attempts, outcome.detail = exc.attempts, exc.reason
        if exc.uncertain:  # the claim stays: never sent again unasked
            outcome.state = "uncertain"
            return
        outcome.state = "failed"
        async with db.tenant(outcome.company_id) as tx:
            await incidents_store.mark_failed(
                tx, incident.id, outcome.user_id, exc.reason, exc.attempts
            )
        return
    outcome.state = "sent"
    async with db.tenant(outcome.company_id) as tx:
        await incidents_store.mark_sent(tx, incident.id, outcome.user_id, outcome.attempts)


async def _audit(
    db: Database, incident: Incident, company_id: UUID, users: list[str], operator: str
) -> None:
    """The company's admins see the notice in their audit trail too (one row per run that
    notified someone; the key repeats for the same admins, so a row is never doubled)."""
    digest = hashlib.sha256("\n".join(sorted(users)).encode()).hexdigest()[:16]
    row = NewActivity(
        idempotency_key=f"incident.notified:{incident.id}:{digest}",
        occurred_at=datetime.now(UTC),
        actor_type="operator",
        actor_id=operator,
        action="incident.notified",
        target=f"incident:{incident.id}",
        rationale=incident.summary,
        originating_message_id=None,
        quest_id=None,
        payload={
            "incident_id": str(incident.id),
            "since": incident.since.isoformat(),
            "until": incident.until.isoformat(),
            "confirmed_at": incident.confirmed_at.isoformat(),
            "notified": sorted(users),
        },
    )
    async with db.tenant(company_id) as tx:
        await activity_store.append(tx, [row])


# --- the clock -----------------------------------------------------------------------


def span(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60}h {minutes % 60:02d}m"


async def status(db: Database, incident: Incident, now: datetime) -> dict[str, Any]:
    """The 72-hour clock from confirmation, and each admin not notified yet (no email on
    file, not sent yet, failed, or an uncertain send) with why."""
    deadline = incident.confirmed_at + DEADLINE
    admins = waiting = 0
    pending = []
    for company in await affected(db, incident):
        notices = await notices_of(db, incident.id, company.touched.company_id)
        for admin in company.admins:
            admins += 1
            notice = notices.get(admin.user_id)
            if notice is not None and notice.status == "sent":
                continue
            waiting += 1
            why = (
                NO_EMAIL
                if admin.email is None
                else "not sent yet"
                if notice is None
                else f"failed: {notice.last_error}"
                if notice.status == "failed"
                else f"uncertain: claimed {when(notice.claimed_at)}, Message-ID {notice.message_id}"
            )
            pending.append(
                {
                    "company_id": admin.company_id,
                    "company_name": company.touched.company_name,
                    "user_id": admin.user_id,
                    "email": admin.email,
                    "state": why,
                }
            )
    return {
        "incident_id": incident.id,
        "summary": incident.summary,
        "confirmed_at": incident.confirmed_at.isoformat(),
        "deadline": deadline.isoformat(),
        "now": now.isoformat(),
        "time_left": span(deadline - now) if now <= deadline else None,
        "overdue_by": span(now - deadline) if now > deadline else None,
        "admins": admins,
        "notified": admins - waiting,
        "not_notified": pending,
    }
