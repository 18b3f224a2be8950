"""`system2 incident`, run as an operator runs it, on real Postgres as the app role and a real
SMTP server on loopback (aiosmtpd): an incident's affected companies and admins in counts and
ids, one email per admin however often notify runs, retries, failures and uncertain sends
reported, the 72-hour clock, and the cross-company read that returns no content."""

from __future__ import annotations

import csv
import io
import json
import secrets
import ssl
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from runtime.settings import Settings
from system2.procs import free_port
from tests.conftest import Tenant
from tests.servers import Tls
from tests.test_cli import assert_one_line_error, run

Conn = psycopg.Connection[Any]
SMTP_PASSWORD = "smtp-pw-" + secrets.token_hex(6)
TEMPLATE = """Subject: [System2] Security incident $incident_id affecting $company_name

Hello $user_id,

On $confirmed_at we confirmed a security incident: $summary
Window: $since to $until.
What of $company_name's ($company_id) was touched: $quests quests, $audit_rows audit rows,
$credentials_decrypted credential decrypts ($credentials_by_integration).
"""


# --- a loopback mail server ------------------------------------------------------------


@dataclass
class Inbox:
    """aiosmtpd's handler: keeps what it accepts; ``refuse[address]`` is a list of replies
    to give that recipient first, in order (e.g. a 451, then acceptance)."""

    received: list[tuple[list[str], EmailMessage]] = field(default_factory=list)
    refuse: dict[str, list[str]] = field(default_factory=dict)
    auth: list[str] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        planned = self.refuse.get(address)
        if planned:
            return planned.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append((list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for rcpt, m in self.received if address in rcpt]


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, str]]:
    """(the inbox, an smtp:// URL to it): plain SMTP on loopback."""
    box = Inbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, f"smtp://127.0.0.1:{port}"
    controller.stop()


def tls_server(box: Inbox, tmp_path: Path, *, implicit: bool) -> tuple[Controller, str]:
    """aiosmtpd with TLS (STARTTLS required, or from the first byte) and a login."""
    tls = Tls.make(tmp_path)  # a CA made for the test, and a certificate for 127.0.0.1
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert, tls.key)

    def login(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.password.decode() == SMTP_PASSWORD
        if ok:
            box.auth.append(data.login.decode())
        return AuthResult(success=ok, handled=False)

    port = free_port()
    common: dict[str, Any] = {"authenticator": login, "auth_required": True}
    if implicit:
        controller = Controller(
            box, hostname="127.0.0.1", port=port, ssl_context=context,
            auth_require_tls=False, **common,
        )  # fmt: skip
        scheme = "smtps"
    else:
        controller = Controller(
            box, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
            **common,
        )  # fmt: skip
        scheme = "smtp+starttls"
    controller.start()
    return controller, f"{scheme}://notices:{SMTP_PASSWORD}@127.0.0.1:{port}?cafile={tls.ca}"


# --- the world an incident touches -------------------------------------------------------


@dataclass(frozen=True)
class World:
    since: datetime
    until: datetime
    acme: Tenant
    globex: Tenant
    initech: Tenant
    acme_admin2: str

    @property
    def window(self) -> list[str]:
        return ["--since", self.since.isoformat(), "--until", self.until.isoformat()]


def quest(conn: Conn, company: uuid.UUID, goal: str, **times: datetime | None) -> None:
    conn.execute(
        "INSERT INTO quests (id, company_id, goal, model, created_by, correlation_id, "
        "origin_message_id, status, created_at, started_at, finished_at) "
        "VALUES (%s, %s, %s, 'm', 'u', %s, %s, 'succeeded', %s, %s, %s)",
        (uuid.uuid4(), company, goal, uuid.uuid4(), uuid.uuid4(), times["created"],
         times.get("started"), times.get("finished")),
    )  # fmt: skip


def audit(conn: Conn, company: uuid.UUID, at: datetime, payload: str = "{}") -> None:
    conn.execute(
        "INSERT INTO activity_log (company_id, occurred_at, actor_type, actor_id, action, "
        "target, rationale, payload, idempotency_key) "
        "VALUES (%s, %s, 'ted', 'ted', 'note.added', 'n', 'a secret rationale', %s, %s)",
        (company, at, payload, uuid.uuid4().hex),
    )


def decrypt(conn: Conn, company: uuid.UUID, integration: str, at: datetime) -> None:
    conn.execute(
        "INSERT INTO credential_uses (company_id, credential_id, integration, key_id, purpose, "
        "worker, used_at) VALUES (%s, %s, %s, 'k1', 'tool', 'w', %s)",
        (company, uuid.uuid4(), integration, at),
    )


def email_of(user: str) -> str:
    return f"{user}@example.com"


@pytest.fixture
def world(settings: Settings, make_tenant: Callable[[str], Tenant], admin_conn: Conn) -> World:
    """Three companies and a one-day window of their own (a random day long past, so no
    other test's rows fall in it). Acme: two admins with email, quests, decrypts and audit
    rows in the window and outside it. Globex: an admin without email, an audit row in the
    window. Initech: activity outside the window only."""
    since = datetime(2001, 1, 1, tzinfo=UTC) + timedelta(days=secrets.randbelow(30_000))
    until = since + timedelta(days=1)
    inside, before, after = since + timedelta(hours=6), since - timedelta(hours=6), until
    acme, globex, initech = make_tenant("Acme"), make_tenant("Globex"), make_tenant("Initech")
    admin2 = f"second-{acme.admin}"
    for tenant, user in ((acme, acme.admin), (acme, admin2)):
        done = run(settings, "company", "add-member", str(tenant.id), user, "--role", "admin",
                   "--email", email_of(user))  # fmt: skip
        assert done.returncode == 0, done.stderr
    c = admin_conn
    quest(c, acme.id, "Acme's secret goal", created=inside)
    quest(c, acme.id, "ran through", created=before, started=before, finished=inside)
    quest(c, acme.id, "ended before", created=before, started=before, finished=before)
    quest(c, acme.id, "created after", created=after)
    for integration, at in (("github", inside), ("github", inside), ("slack", inside),
                            ("github", after)):  # fmt: skip
        decrypt(c, acme.id, integration, at)
    audit(c, acme.id, inside, '{"text": "Acme customer content"}')
    audit(c, acme.id, inside)
    audit(c, acme.id, after)
    audit(c, globex.id, inside)
    quest(c, initech.id, "elsewhere", created=before)
    audit(c, initech.id, after)
    return World(since, until, acme, globex, initech, admin2)


def open_incident(settings: Settings, world: World, *extra: str) -> str:
    done = run(settings, "incident", "open", "--summary", "A leaked log file", *world.window,
               "--operator", "oncall", *extra)  # fmt: skip
    assert done.returncode == 0, done.stderr
    incident_id = done.stdout.strip()
    uuid.UUID(incident_id)  # the id alone on stdout
    return incident_id


def notify(
    settings: Settings, incident_id: str, template: Path, url: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    return run(settings, "incident", "notify", incident_id, "--template", str(template), *extra,
               S2_SMTP_URL=url, S2_MAIL_FROM="security@autono.sh")  # fmt: skip


@pytest.fixture
def template(tmp_path: Path) -> Path:
    path = tmp_path / "notice.txt"
    path.write_text(TEMPLATE)
    return path


def status(settings: Settings, incident_id: str) -> dict[str, Any]:
    done = run(settings, "incident", "status", incident_id)
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


# --- affected ----------------------------------------------------------------------------


def test_affected_lists_the_companies_active_in_the_window_with_counts_and_admins(
    settings: Settings, world: World
) -> None:
    incident_id = open_incident(settings, world)
    done = run(settings, "incident", "affected", incident_id)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    companies = {c["company_id"]: c for c in found["companies"]}
    assert set(companies) == {str(world.acme.id), str(world.globex.id)}
    acme = companies[str(world.acme.id)]
    assert (acme["name"], acme["quests"], acme["audit_rows"]) == ("Acme", 2, 2)
    assert acme["credentials_decrypted"] == {
        "total": 3, "by_integration": {"github": 2, "slack": 1}}  # fmt: skip
    assert acme["admins"] == sorted(
        [{"user_id": u, "email": email_of(u)} for u in (world.acme.admin, world.acme_admin2)],
        key=lambda a: a["user_id"],
    )
    globex = companies[str(world.globex.id)]
    assert (globex["quests"], globex["audit_rows"], globex["credentials_decrypted"]["total"]) == (
        0, 1, 0)  # fmt: skip
    assert globex["admins"] == [{"user_id": world.globex.admin, "email": "no email on file"}]
    for content in ("secret goal", "customer content", "secret rationale", world.acme.member):
        assert content not in done.stdout

    rows = list(csv.DictReader(io.StringIO(
        run(settings, "incident", "affected", incident_id, "--csv").stdout)))  # fmt: skip
    assert [(r["company_name"], r["admin_email"]) for r in rows] == [
        ("Acme", email_of(min(world.acme.admin, world.acme_admin2))),
        ("Acme", email_of(max(world.acme.admin, world.acme_admin2))),
        ("Globex", "no email on file"),
    ]
    assert rows[0]["credentials_by_integration"] == "github=2;slack=1"


def test_affected_narrows_to_named_companies_or_an_integration(
    settings: Settings, world: World
) -> None:
    def names(incident_id: str) -> list[str]:
        done = run(settings, "incident", "affected", incident_id)
        assert done.returncode == 0, done.stderr
        return [c["name"] for c in json.loads(done.stdout)["companies"]]

    # a named company is listed even when nothing of its moved in the window
    named = open_incident(settings, world, "--company", str(world.initech.id))
    assert names(named) == ["Initech"]
    assert names(open_incident(settings, world, "--integration", "slack")) == ["Acme"]
    assert names(open_incident(settings, world, "--integration", "github")) == ["Acme"]
    assert names(open_incident(settings, world, "--integration", "demo")) == []


# --- notify ------------------------------------------------------------------------------


def test_each_admin_gets_one_email_and_a_rerun_sends_none(
    settings: Settings,
    world: World,
    inbox: tuple[Inbox, str],
    template: Path,
    admin_conn: Conn,
) -> None:
    box, url = inbox
    incident_id = open_incident(settings, world)
    dry = notify(settings, incident_id, template, url, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stderr.strip() == "2 to send, 0 already sent, 0 uncertain, 1 no email on file"
    assert box.received == []

    first = notify(settings, incident_id, template, url, "--operator", "oncall")
    assert first.returncode == 0, first.stderr
    assert (
        first.stderr.strip() == "2 sent, 0 failed, 0 already sent, 0 uncertain, 1 no email on file"
    )
    assert len(box.received) == 2
    for user in (world.acme.admin, world.acme_admin2):
        (mail,) = box.to(email_of(user))
        assert mail["Subject"] == f"[System2] Security incident {incident_id} affecting Acme"
        assert mail["From"] == "security@autono.sh" and mail["To"] == email_of(user)
        body = mail.get_content().replace("\r\n", "\n")
        assert f"Hello {user}," in body
        assert "A leaked log file" in body
        assert "2 quests, 2 audit rows,\n3 credential decrypts (github: 2, slack: 1)" in body
        assert world.since.strftime("%Y-%m-%d 00:00 UTC") in body
        assert "secret goal" not in body

    again = notify(settings, incident_id, template, url)
    assert again.returncode == 0, again.stderr
    assert "0 sent, 0 failed, 2 already sent" in again.stderr
    assert len(box.received) == 2

    rows = admin_conn.execute(
        "SELECT actor_id, target, payload FROM activity_log "
        "WHERE company_id = %s AND action = 'incident.notified'",
        (world.acme.id,),
    ).fetchall()
    assert len(rows) == 1
    assert rows[0][:2] == ("oncall", f"incident:{incident_id}")
    assert rows[0][2]["notified"] == sorted([world.acme.admin, world.acme_admin2])
    assert not admin_conn.execute(
        "SELECT FROM activity_log WHERE company_id = %s AND action = 'incident.notified'",
        (world.globex.id,),
    ).fetchall(), "nobody at Globex was notified"

    found = status(settings, incident_id)
    assert (found["admins"], found["notified"]) == (3, 2)
    assert found["not_notified"] == [{
        "company_id": str(world.globex.id), "company_name": "Globex",
        "user_id": world.globex.admin, "email": None, "state": "no email on file"}]  # fmt: skip


def test_a_temporary_refusal_is_retried_and_a_permanent_one_fails_the_run(
    settings: Settings, world: World, inbox: tuple[Inbox, str], template: Path
) -> None:
    box, url = inbox
    box.refuse[email_of(world.acme.admin)] = ["451 4.3.0 try again later"]
    box.refuse[email_of(world.acme_admin2)] = ["550 5.1.1 no such mailbox"] * 5
    incident_id = open_incident(settings, world)
    done = notify(settings, incident_id, template, url)
    assert done.returncode == 1
    assert (
        done.stderr.strip() == "1 sent, 1 failed, 0 already sent, 0 uncertain, 1 no email on file"
    )
    report = {n["user_id"]: n for n in json.loads(done.stdout)["notices"]}
    assert (report[world.acme.admin]["state"], report[world.acme.admin]["attempts"]) == ("sent", 2)
    failed = report[world.acme_admin2]
    assert (failed["state"], failed["attempts"]) == ("failed", 1)  # permanent: not retried
    assert failed["detail"].startswith("550 5.1.1 no such mailbox")
    assert len(box.to(email_of(world.acme.admin))) == 1

    left = status(settings, incident_id)["not_notified"]
    assert [(p["user_id"], p["state"][:10]) for p in left if p["company_name"] == "Acme"] == [
        (world.acme_admin2, "failed: 55")]  # fmt: skip

    box.refuse.clear()  # the mailbox exists now: a re-run sends the failed one, only it
    again = notify(settings, incident_id, template, url)
    assert again.returncode == 0, again.stderr
    assert "1 sent, 0 failed, 1 already sent" in again.stderr
    assert len(box.to(email_of(world.acme_admin2))) == 1
    assert len(box.to(email_of(world.acme.admin))) == 1


def test_a_claim_left_by_a_crashed_run_is_reported_uncertain_and_not_resent(
    settings: Settings,
    world: World,
    inbox: tuple[Inbox, str],
    template: Path,
    admin_conn: Conn,
) -> None:
    box, url = inbox
    incident_id = open_incident(settings, world, "--company", str(world.acme.id))
    # A run that handed the message over and died before recording it leaves its claim.
    admin_conn.execute(
        "INSERT INTO incident_notices (company_id, incident_id, user_id, email, status, "
        "message_id) VALUES (%s, %s, %s, %s, 'sending', '<m1@autono.sh>')",
        (world.acme.id, incident_id, world.acme.admin, email_of(world.acme.admin)),
    )
    done = notify(settings, incident_id, template, url)
    assert done.returncode == 1, "an uncertain notice needs the operator"
    assert (
        done.stderr.strip() == "1 sent, 0 failed, 0 already sent, 1 uncertain, 0 no email on file"
    )
    assert box.to(email_of(world.acme.admin)) == []
    assert len(box.to(email_of(world.acme_admin2))) == 1
    (left,) = status(settings, incident_id)["not_notified"]
    assert left["user_id"] == world.acme.admin
    assert left["state"].startswith("uncertain: claimed ") and "<m1@autono.sh>" in left["state"]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # implicit TLS
def test_notices_go_over_starttls_or_implicit_tls_with_a_login(
    settings: Settings, world: World, template: Path, tmp_path: Path
) -> None:
    for implicit in (False, True):
        box = Inbox()
        controller, url = tls_server(box, tmp_path / str(implicit), implicit=implicit)
        try:
            incident_id = open_incident(settings, world, "--company", str(world.acme.id))
            done = notify(settings, incident_id, template, url)
            assert done.returncode == 0, done.stderr
            assert len(box.received) == 2 and box.auth == ["notices", "notices"]
            assert SMTP_PASSWORD not in done.stdout + done.stderr
        finally:
            controller.stop()


def test_a_failing_server_is_reported_without_its_password(
    settings: Settings, world: World, template: Path, tmp_path: Path
) -> None:
    box = Inbox()
    controller, url = tls_server(box, tmp_path, implicit=False)
    try:
        incident_id = open_incident(settings, world, "--company", str(world.acme.id))
        wrong = url.replace(SMTP_PASSWORD, SMTP_PASSWORD + "-wrong")
        refused = notify(settings, incident_id, template, wrong)
        assert refused.returncode == 1
        assert "2 failed" in refused.stderr
        assert SMTP_PASSWORD not in refused.stdout + refused.stderr
        port = free_port()  # nobody listens: transient, retried, then failed
        down = notify(settings, incident_id, template,
                      f"smtp://notices:{SMTP_PASSWORD}@127.0.0.1:{port}")  # fmt: skip
        assert down.returncode == 1
        assert SMTP_PASSWORD not in down.stdout + down.stderr
        assert {n["attempts"] for n in json.loads(down.stdout)["notices"]} == {3}
        assert box.received == []
    finally:
        controller.stop()


# --- status ------------------------------------------------------------------------------


def test_status_runs_the_72_hour_clock_from_confirmation(settings: Settings, world: World) -> None:
    fresh = status(settings, open_incident(settings, world))
    assert fresh["overdue_by"] is None and fresh["time_left"].startswith(("71h", "72h"))
    assert fresh["notified"] == 0 and len(fresh["not_notified"]) == 3
    states = {p["user_id"]: p["state"] for p in fresh["not_notified"]}
    assert states[world.acme.admin] == "not sent yet"
    assert states[world.globex.admin] == "no email on file"

    late = open_incident(settings, world, "--confirmed-at", "2001-01-01T00:00:00")
    found = status(settings, late)
    assert found["confirmed_at"].startswith("2001-01-01T00:00:00+00:00")  # naive: UTC
    assert found["deadline"].startswith("2001-01-04T00:00:00+00:00")
    assert found["time_left"] is None and found["overdue_by"]
    assert "OVERDUE" in run(settings, "incident", "status", late).stderr


# --- hostile input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--since", "yesterday", "--until", "2030-01-01"], "--since: 'yesterday' is not an ISO"),
        (["--since", "2030-01-02", "--until", "2030-01-01"], "--since must be before --until"),
        (["--since", "2030-01-01T00:00", "--until", "2030-01-01T00:00Z"], "before --until"),
        (["--since", "2030-01-01", "--until", "2030-01-02", "--integration", "nope"], "nope"),
        (["--since", "2030-01-01", "--until", "2030-01-02", "--confirmed-at", "2999-01-01"],
         "--confirmed-at is in the future"),
        (["--since", "2030-01-01", "--until", "2030-01-02", "--company", str(uuid.uuid4())],
         "no company"),
    ],
)  # fmt: skip
def test_open_refuses_bad_input_in_one_line(settings: Settings, args: list[str], says: str) -> None:
    line = assert_one_line_error(run(settings, "incident", "open", "--summary", "s", *args))
    assert says in line


def test_a_summary_with_a_carriage_return_is_refused(settings: Settings) -> None:
    done = run(settings, "incident", "open", "--summary", "leak\r\nBcc: x@evil.example",
               "--since", "2030-01-01", "--until", "2030-01-02")  # fmt: skip
    assert "no control characters" in assert_one_line_error(done)


@pytest.mark.parametrize("command", ["affected", "status", "notify"])
def test_an_unknown_incident_is_one_line(
    settings: Settings, command: str, template: Path, inbox: tuple[Inbox, str]
) -> None:
    missing = str(uuid.uuid4())
    extra = ["--template", str(template)] if command == "notify" else []
    done = run(settings, "incident", command, missing, *extra,
               S2_SMTP_URL=inbox[1], S2_MAIL_FROM="security@autono.sh")  # fmt: skip
    assert assert_one_line_error(done) == f"error: no incident {missing}"


def test_a_template_with_an_unknown_placeholder_sends_nothing(
    settings: Settings,
    world: World,
    inbox: tuple[Inbox, str],
    tmp_path: Path,
    admin_conn: Conn,
) -> None:
    box, url = inbox
    incident_id = open_incident(settings, world)
    bad = tmp_path / "bad.txt"
    bad.write_text("Subject: Incident $incident_id\n\nHello $user_id, your $password\n")
    line = assert_one_line_error(notify(settings, incident_id, bad, url))
    assert "unknown placeholder(s) $password" in line
    no_subject = tmp_path / "no-subject.txt"
    no_subject.write_text("Hello $user_id\n")
    assert "'Subject: …' line" in assert_one_line_error(
        notify(settings, incident_id, no_subject, url)
    )
    assert box.received == []
    assert not admin_conn.execute(
        "SELECT FROM incident_notices WHERE incident_id = %s", (incident_id,)
    ).fetchall()


def test_a_summary_with_a_line_break_cannot_reach_a_header(
    settings: Settings,
    world: World,
    inbox: tuple[Inbox, str],
    tmp_path: Path,
    template: Path,
    admin_conn: Conn,
) -> None:
    box, url = inbox
    done = run(settings, "incident", "open", "--summary", "leak\nBcc: attacker@evil.example",
               *world.window, "--company", str(world.acme.id))  # fmt: skip
    assert done.returncode == 0, done.stderr
    incident_id = done.stdout.strip()
    in_subject = tmp_path / "subject.txt"
    in_subject.write_text("Subject: Incident: $summary\n\n$summary\n")
    line = assert_one_line_error(notify(settings, incident_id, in_subject, url))
    assert "cannot be built" in line and "line" in line
    assert box.received == []
    assert not admin_conn.execute(
        "SELECT FROM incident_notices WHERE incident_id = %s", (incident_id,)
    ).fetchall()
    # In the body it is text: each admin alone gets the email, and no Bcc header is made.
    sent = notify(settings, incident_id, template, url)
    assert sent.returncode == 0, sent.stderr
    assert all(rcpt != ["attacker@evil.example"] for rcpt, _ in box.received)
    assert {r for rcpt, _ in box.received for r in rcpt} == {
        email_of(world.acme.admin), email_of(world.acme_admin2)}  # fmt: skip
    assert all(m["Bcc"] is None for _, m in box.received)


def test_add_member_refuses_a_bad_email_address(settings: Settings, tenant: Tenant) -> None:
    done = run(settings, "company", "add-member", str(tenant.id), "u1", "--role", "admin",
               "--email", "not-an-address\r\nBcc: x@y.z")  # fmt: skip
    assert "is not an email address" in assert_one_line_error(done)


# --- the cross-company read, as the app role ---------------------------------------------


def test_the_app_role_reads_no_other_companys_notices(
    settings: Settings, world: World, inbox: tuple[Inbox, str], template: Path
) -> None:
    incident_id = open_incident(settings, world)
    assert notify(settings, incident_id, template, inbox[1]).returncode == 0
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM incident_notices").fetchone() == (0,)
        with conn.transaction():
            conn.execute("SELECT set_config('app.company_id', %s, true)", (str(world.globex.id),))
            assert conn.execute("SELECT count(*) FROM incident_notices").fetchone() == (0,)
        with conn.transaction():
            conn.execute("SELECT set_config('app.company_id', %s, true)", (str(world.acme.id),))
            assert conn.execute("SELECT count(*) FROM incident_notices").fetchone() == (2,)
        for query in ("UPDATE incidents SET confirmed_at = now()", "DELETE FROM incidents"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(query)


def test_the_incident_functions_return_counts_and_ids_only_and_run_with_least_rights(
    settings: Settings, world: World, admin_conn: Conn
) -> None:
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        cur = conn.execute(
            "SELECT * FROM incident_companies(%s, %s, NULL, NULL)", (world.since, world.until)
        )
        assert [d.name for d in cur.description or []] == [
            "company_id", "company_name", "quests", "audit_rows", "credentials_decrypted"]  # fmt: skip
        text = json.dumps(cur.fetchall(), default=str)
        for content in ("secret goal", "customer content", "secret rationale"):
            assert content not in text
        cur = conn.execute("SELECT * FROM incident_admins(%s)", ([world.acme.id],))
        assert [d.name for d in cur.description or []] == ["company_id", "user_id", "email"]
    functions = admin_conn.execute(
        "SELECT p.proname, pg_get_userbyid(p.proowner), p.proconfig "
        "FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace "
        "AND p.proname LIKE 'incident_%%' ORDER BY 1"
    ).fetchall()
    assert functions == [
        ("incident_admins", "system2_incidents", ["search_path=pg_catalog, pg_temp"]),
        ("incident_companies", "system2_incidents", ["search_path=pg_catalog, pg_temp"]),
    ]
    role = admin_conn.execute(
        "SELECT rolcanlogin, rolsuper, rolbypassrls, rolinherit FROM pg_roles "
        "WHERE rolname = 'system2_incidents'"
    ).fetchone()
    assert role == (False, False, False, False)
    members = admin_conn.execute(
        "SELECT count(*) FROM pg_auth_members WHERE roleid = 'system2_incidents'::regrole"
    ).fetchone()
    assert members == (0,)
    columns = admin_conn.execute(
        "SELECT table_name, column_name FROM information_schema.column_privileges "
        "WHERE grantee = 'system2_incidents' AND table_catalog = current_database() ORDER BY 1, 2"
    ).fetchall()
    assert ("quests", "goal") not in columns and ("activity_log", "payload") not in columns
    assert {t for t, _ in columns} == {
        "activity_log", "companies", "credential_uses", "memberships", "quests"}  # fmt: skip


def test_the_documented_notice_template_loads() -> None:
    """DEPLOY.md's runbook starts from docs/incident-notice.txt: it must use known
    placeholders only."""
    from system2.incident_notices import load_template

    template = load_template(Path(__file__).parent.parent / "docs" / "incident-notice.txt")
    assert "$company_name" in template.subject.template
