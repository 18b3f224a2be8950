"""Backups and tested restores against this machine's Postgres: deploy/backup, then
deploy/restore-test passes and writes a report; a damaged dump fails loudly; retention.
Dumps, manifests and reports are private from the moment they exist, and with an age public
key the dump on disk is ciphertext that restore and restore-test decrypt."""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import stat
import struct
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from runtime.settings import Settings
from store import activity as activity_store
from store.activity import NewActivity
from system2.ops.backup import BackupConfig, backup, manifest_for
from system2.ops.backup_tools import BackupError, split_password
from system2.ops.restore import restore, restore_test
from tests.conftest import Tenant, settings_env
from tests.support import InTenant

ROOT = Path(__file__).resolve().parent.parent
AdminConn = psycopg.Connection[tuple[Any, ...]]


def run(
    settings: Settings, script: str, *args: str, umask: int = -1, **env: str
) -> subprocess.CompletedProcess[str]:
    """A deploy/ script, as cron or an operator runs it (with that umask, if given)."""
    return subprocess.run(
        [str(ROOT / "deploy" / script), *args],
        env=settings_env(settings, **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
        umask=umask,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def backup_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    return {
        "S2_BACKUP_DATABASE_URL": settings.admin_database_url,  # the owner: a superuser here
        "S2_BACKUP_DIR": str(tmp_path / "backups"),
    }


@pytest.fixture
def with_audit_rows(in_tenant: InTenant, make_tenant: Callable[[str], Tenant]) -> Tenant:
    tenant = make_tenant("Backed Up Inc")
    rows = [
        NewActivity(
            idempotency_key=f"backup-test-{uuid.uuid4().hex}",
            occurred_at=datetime.now(UTC),
            actor_type="ted",
            actor_id="ted",
            action="note.added",
            target=f"note:{n}",
            rationale="so the backup has audit rows",
            originating_message_id=uuid.uuid4(),
            quest_id=None,
            payload={"n": n, "nested": {"ok": True}},
        )
        for n in range(5)
    ]
    in_tenant(tenant.id, lambda tx: activity_store.append(tx, rows))
    return tenant


def config(env: dict[str, str], keep_days: int = 30) -> BackupConfig:
    return BackupConfig(env["S2_BACKUP_DATABASE_URL"], Path(env["S2_BACKUP_DIR"]), keep_days)


def take_backup(settings: Settings, env: dict[str, str]) -> tuple[Path, dict[str, Any]]:
    """A backup the way cron takes it: the deploy/backup script."""
    done = run(settings, "backup", **env)
    assert done.returncode == 0, done.stderr
    dump = Path(done.stdout.strip())
    return dump, manifest_of(dump)


def quick_backup(env: dict[str, str]) -> tuple[Path, dict[str, Any]]:
    """The same backup, in process (the script costs a second of interpreter start)."""
    dump = backup(config(env)).dump
    return dump, manifest_of(dump)


def manifest_of(dump: Path) -> dict[str, Any]:
    return dict(json.loads(manifest_for(dump).read_text()))


def test_backup_then_restore_test_passes_and_writes_a_report(
    settings: Settings,
    admin_conn: AdminConn,
    backup_env: dict[str, str],
    with_audit_rows: Tenant,
) -> None:
    dump, manifest = take_backup(settings, backup_env)

    # The manifest holds what the database held: every table's rows, the audit fingerprint.
    for table, count in manifest["tables"].items():
        row = admin_conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()
        assert row is not None and row[0] == count, table
    assert manifest["tables"]["activity_log"] >= 5
    assert manifest["activity_log"]["rows"] == manifest["tables"]["activity_log"]
    version = admin_conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    assert version is not None and manifest["schema_version"] == version[0]
    assert manifest["dump_bytes"] == dump.stat().st_size

    done = run(settings, "restore-test", **backup_env)
    assert done.returncode == 0, done.stderr
    report = Path(done.stdout.strip())
    assert report.parent == Path(backup_env["S2_BACKUP_DIR"]) / "reports"
    assert report.name.startswith("restore-test-") and report.suffix == ".md"
    text = report.read_text()
    assert "**Outcome: PASS**" in text
    assert f"`{dump.name}`" in text
    assert f"| activity_log | {manifest['tables']['activity_log']} |" in text
    details = json.loads(report.with_suffix(".json").read_text())
    assert details["ok"] is True
    assert {c["name"] for c in details["checks"]} >= {
        "checksum",
        "pg_restore",
        "row counts",
        "activity_log",
        "schema",
    }
    scratch = details["database"]
    gone = admin_conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (scratch,))
    assert gone.fetchone() is None, f"{scratch} was not dropped"


def copy_as_newest(dump: Path, directory: Path, hours: int = 1) -> Path:
    """A copy of ``dump`` and its manifest, named an hour later so restore-test picks it."""
    stamp = (datetime.now(UTC) + timedelta(hours=hours)).strftime("%Y%m%dT%H%M%SZ")
    suffix = ".dump.age" if dump.name.endswith(".age") else ".dump"
    target = directory / f"system2-copy-{stamp}{suffix}"
    shutil.copyfile(dump, target)
    manifest = manifest_of(dump)
    manifest["dump"] = target.name
    write_manifest(target, manifest)
    return target


def write_manifest(dump: Path, manifest: dict[str, Any]) -> None:
    manifest_for(dump).write_text(json.dumps(manifest))


def resign(dump: Path) -> None:
    """Make the manifest agree with the (damaged) file, as if it had been damaged before the
    manifest was written: the restore itself must then catch it."""
    path = manifest_for(dump)
    manifest = json.loads(path.read_text())
    data = dump.read_bytes()
    manifest["dump_bytes"] = len(data)
    manifest["dump_sha256"] = hashlib.sha256(data).hexdigest()
    path.write_text(json.dumps(manifest))


def last_report(env: dict[str, str]) -> str:
    reports = sorted((Path(env["S2_BACKUP_DIR"]) / "reports").glob("*.md"))
    return reports[-1].read_text()


def test_restore_test_fails_loudly_on_a_truncated_dump(
    settings: Settings, backup_env: dict[str, str], with_audit_rows: Tenant
) -> None:
    dump, _ = take_backup(settings, backup_env)
    bad = copy_as_newest(dump, dump.parent)
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])

    line = one_line_error(run(settings, "restore-test", **backup_env))
    assert line.startswith("error: checksum:")
    assert bad.name in line and "truncated" in line
    assert "Outcome: FAIL — checksum" in last_report(backup_env)

    resign(bad)  # the manifest no longer gives it away: pg_restore must fail on it
    line = one_line_error(run(settings, "restore-test", **backup_env))
    assert line.startswith(("error: archive: pg_restore cannot read", "error: pg_restore:")), line
    assert "Outcome: FAIL — " in last_report(backup_env)


def test_restore_test_fails_loudly_on_flipped_bytes(
    settings: Settings, backup_env: dict[str, str], with_audit_rows: Tenant
) -> None:
    dump, _ = quick_backup(backup_env)
    bad = copy_as_newest(dump, dump.parent)
    data = bytearray(bad.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    bad.write_bytes(bytes(data))

    with pytest.raises(
        BackupError, match=r"^checksum: .* does not match its manifest's SHA-256: damaged"
    ):
        restore_test(config(backup_env))
    assert "Outcome: FAIL — checksum" in last_report(backup_env)


def test_restore_test_fails_when_the_restored_rows_differ_from_the_manifest(
    settings: Settings, backup_env: dict[str, str], with_audit_rows: Tenant
) -> None:
    dump, manifest = quick_backup(backup_env)
    miscounted = copy_as_newest(dump, dump.parent, hours=1)
    manifest["dump"] = miscounted.name
    write_manifest(miscounted, {**manifest, "tables": {**manifest["tables"], "quests": 10**6}})
    with pytest.raises(
        BackupError, match=r"^row counts: differ from the manifest: quests 1000000→"
    ):
        restore_test(config(backup_env))

    tampered = copy_as_newest(dump, dump.parent, hours=2)
    audit = {**manifest["activity_log"], "rows_sha256": "0" * 64}
    write_manifest(tampered, {**manifest, "dump": tampered.name, "activity_log": audit})
    with pytest.raises(
        BackupError, match=r"^activity_log: restored \d+ rows, .* the manifest says"
    ):
        restore_test(config(backup_env))


def test_backup_refuses_a_role_bound_by_row_level_security(
    settings: Settings, backup_env: dict[str, str]
) -> None:
    env = {**backup_env, "S2_BACKUP_DATABASE_URL": settings.database_url}  # the app role
    line = one_line_error(run(settings, "backup", **env))
    assert "may not read every tenant's rows" in line and "BYPASSRLS" in line
    assert not list(Path(backup_env["S2_BACKUP_DIR"]).glob("*.dump"))


def test_restore_test_without_any_dump_says_so(backup_env: dict[str, str]) -> None:
    with pytest.raises(BackupError, match=r"^dump: no dump in "):
        restore_test(config(backup_env))


def test_retention_deletes_dumps_older_than_the_keep_window(
    settings: Settings, backup_env: dict[str, str]
) -> None:
    directory = Path(backup_env["S2_BACKUP_DIR"])
    directory.mkdir(parents=True)
    now = datetime.now(UTC)

    def fake(days: float) -> Path:
        stamp = (now - timedelta(days=days)).strftime("%Y%m%dT%H%M%SZ")
        dump = directory / f"system2-old-{stamp}.dump"
        dump.write_bytes(b"old")
        write_manifest(dump, {"format": 1})
        return dump

    expired, also_expired, kept = fake(45), fake(8.5), fake(6.5)
    unrelated = directory / "notes.txt"
    unrelated.write_text("not a dump")

    result = backup(config(backup_env, keep_days=7))
    dump = result.dump
    assert sorted(result.deleted) == sorted([expired, also_expired])
    assert not expired.exists() and not also_expired.exists()
    assert not manifest_for(expired).exists()
    assert kept.exists() and dump.exists() and unrelated.exists()


def test_restore_into_a_new_database_keeps_grants_and_row_level_security(
    settings: Settings,
    admin_conn: AdminConn,
    backup_env: dict[str, str],
    with_audit_rows: Tenant,
) -> None:
    dump, _ = quick_backup(backup_env)
    target = f"s2_restored_{uuid.uuid4().hex[:8]}"
    try:
        done = run(settings, "restore", "--dump", str(dump), "--into", target, **backup_env)
        assert done.returncode == 0, done.stderr
        assert "row counts: " in done.stderr
        # The app role works on the restored copy, through its grants and policies.
        app_url = make_conninfo(settings.database_url, dbname=target)
        with psycopg.connect(app_url) as conn:
            conn.execute(
                "SELECT set_config('app.company_id', %s, true)", (str(with_audit_rows.id),)
            )
            row = conn.execute("SELECT count(*) FROM activity_log").fetchone()
            assert row is not None and row[0] == 5
            conn.rollback()
            row = conn.execute("SELECT count(*) FROM activity_log").fetchone()
            assert row is not None and row[0] == 0  # no tenant, no rows
        again = run(settings, "restore", "--dump", str(dump), "--into", target, **backup_env)
        assert "exists: restore into a new one" in one_line_error(again)
    finally:
        admin_conn.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')


# --- private files, encryption ---------------------------------------------------------

IN_ATTRIB, IN_MOVED_TO, IN_CREATE, IN_Q_OVERFLOW = 0x4, 0x80, 0x100, 0x4000


class Watch:
    """The kernel's own record (inotify) of what happens in some directories: each entry
    created or renamed into them, and each change of an entry's metadata — a chmod is one.
    Events queue up as they happen, so nothing between two looks is missed."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        self.dirs: dict[int, Path] = {}

    def add(self, directory: Path) -> None:
        mask = IN_ATTRIB | IN_CREATE | IN_MOVED_TO
        wd = self._libc.inotify_add_watch(self.fd, str(directory).encode(), mask)
        assert wd >= 0, os.strerror(ctypes.get_errno())
        self.dirs[wd] = directory

    def events(self) -> list[tuple[str, Path]]:
        """(``attrib`` | ``create`` | ``moved``, path) in order; the directory itself for an
        event on it."""
        out = []
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return out
            i = 0
            while i < len(data):
                wd, mask, _cookie, length = struct.unpack_from("iIII", data, i)
                name = data[i + 16 : i + 16 + length].rstrip(b"\0").decode()
                i += 16 + length
                assert not mask & IN_Q_OVERFLOW, "inotify queue overflowed"
                kind = "attrib" if mask & IN_ATTRIB else "create" if mask & IN_CREATE else "moved"
                out.append((kind, self.dirs[wd] / name if name else self.dirs[wd]))

    def close(self) -> None:
        os.close(self.fd)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_backups_and_reports_are_private_from_the_moment_they_exist(
    settings: Settings, backup_env: dict[str, str], with_audit_rows: Tenant
) -> None:
    directory = Path(backup_env["S2_BACKUP_DIR"])
    reports = directory / "reports"
    watch = Watch()
    try:
        # umask 0: whatever is created with default permissions is readable by everyone.
        watch.add(directory.parent)
        done = run(settings, "backup", umask=0, **backup_env)
        assert done.returncode == 0, done.stderr
        watch.add(directory)
        done = run(settings, "backup", umask=0o022, **backup_env)  # the usual umask
        assert done.returncode == 0, done.stderr
        done = run(settings, "restore-test", umask=0, **backup_env)
        assert done.returncode == 0, done.stderr
        watch.add(reports)
        done = run(settings, "restore-test", umask=0o022, **backup_env)
        assert done.returncode == 0, done.stderr
        events = watch.events()
    finally:
        watch.close()

    assert mode(directory) == 0o700 and mode(reports) == 0o700
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    assert len(list(directory.glob("*.dump"))) == 2
    assert len(list(directory.glob("*.manifest.json"))) == 2
    assert len(list(reports.glob("*.md"))) == 2 and len(list(reports.glob("*.json"))) == 2
    assert {p: oct(mode(p)) for p in files} == {p: oct(0o600) for p in files}
    # Created so, not tightened afterwards: the kernel saw no chmod of any of them (a file
    # made with the umask's mode, then chmodded, would be readable for that moment).
    assert [p for kind, p in events if kind == "attrib"] == []
    created = [p for kind, p in events if kind == "create"]
    assert directory in created and reports in created
    assert any(p.name.endswith(".dump.partial") for p in created)


def test_an_open_backup_directory_is_made_private_with_what_older_releases_left(
    settings: Settings, backup_env: dict[str, str]
) -> None:
    directory = Path(backup_env["S2_BACKUP_DIR"])
    directory.mkdir()
    os.chmod(directory, 0o755)  # as the default umask made it before this release
    stamp = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y%m%dT%H%M%SZ")
    old = directory / f"system2-old-{stamp}.dump"
    old.write_bytes(b"old")
    write_manifest(old, {"format": 1})
    unrelated = directory / "notes.txt"
    unrelated.write_text("not ours")
    for path in (old, manifest_for(old), unrelated):
        os.chmod(path, 0o644)

    done = run(settings, "backup", **backup_env)
    assert done.returncode == 0, done.stderr
    assert mode(directory) == 0o700
    assert f"made {directory} private: mode 0755 -> 0700" in done.stderr
    assert mode(old) == 0o600 and mode(manifest_for(old)) == 0o600
    assert mode(unrelated) == 0o644  # not a file of ours: left alone
    new = Path(done.stdout.strip())
    assert mode(new) == 0o600 and mode(manifest_for(new)) == 0o600


@dataclass(frozen=True)
class AgeKeys:
    recipient: str  # the public key, for S2_BACKUP_AGE_RECIPIENTS
    identity: Path  # its private key, for S2_BACKUP_AGE_IDENTITY
    other_identity: Path  # someone else's private key


@pytest.fixture
def age_keys(tmp_path: Path) -> AgeKeys:
    """A throw-away key pair (and a second private key), as DEPLOY.md makes them."""
    if shutil.which("age") is None or shutil.which("age-keygen") is None:
        pytest.fail("age is not installed (apt-get install age): backup encryption needs it")
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)

    def keygen(name: str) -> tuple[str, Path]:
        path = keys / name
        subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True)
        public = subprocess.run(
            ["age-keygen", "-y", str(path)], check=True, capture_output=True, text=True
        ).stdout.strip()
        return public, path

    recipient, identity = keygen("backup.agekey")
    _, other = keygen("other.agekey")
    return AgeKeys(recipient, identity, other)


def decrypted_sql(dump: Path, identity: Path) -> str:
    """The dump as SQL, through ``age -d | pg_restore -f -`` (all in pipes)."""
    age = subprocess.Popen(
        ["age", "--decrypt", "--identity", str(identity), str(dump)], stdout=subprocess.PIPE
    )
    sql = subprocess.run(
        ["pg_restore", "--file", "-"], stdin=age.stdout, capture_output=True, check=True
    ).stdout
    assert age.stdout is not None
    age.stdout.close()
    assert age.wait() == 0
    return sql.decode()


def test_an_encrypted_dump_is_ciphertext_on_disk_and_restores_with_its_key(
    settings: Settings,
    admin_conn: AdminConn,
    backup_env: dict[str, str],
    age_keys: AgeKeys,
    with_audit_rows: Tenant,
) -> None:
    env = {**backup_env, "S2_BACKUP_AGE_RECIPIENTS": age_keys.recipient}
    directory = Path(env["S2_BACKUP_DIR"])
    directory.mkdir(mode=0o700)
    watch = Watch()
    try:
        watch.add(directory)
        dump, manifest = take_backup(settings, env)
        events = watch.events()
    finally:
        watch.close()

    assert dump.name.endswith(".dump.age") and mode(dump) == 0o600
    data = dump.read_bytes()
    assert data.startswith(b"age-encryption.org/v1\n")
    name = "Backed Up Inc"  # the tenant's name: in the dump's data, only with the key
    for plaintext in (b"PGDMP", b"CREATE TABLE", b"activity_log", name.encode()):
        assert plaintext not in data, plaintext
    assert name in decrypted_sql(dump, age_keys.identity)  # so the check above means something

    # Only the ciphertext and the manifest were ever written there: pg_dump's plaintext
    # went through a pipe into age, never into a file of the backup directory.
    assert sorted(p.name for kind, p in events if kind in ("create", "moved")) == sorted(
        [
            f"{dump.name}.partial",
            dump.name,
            f"{manifest_for(dump).name}.tmp",
            manifest_for(dump).name,
        ]
    )
    # The manifest describes what is on disk, and says how it is encrypted.
    assert manifest["dump_bytes"] == len(data)
    assert manifest["dump_sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["encryption"] == {"tool": "age", "recipients": [age_keys.recipient]}

    keyed = {**env, "S2_BACKUP_AGE_IDENTITY": str(age_keys.identity)}
    done = run(settings, "restore-test", **keyed)
    assert done.returncode == 0, done.stderr
    report = Path(done.stdout.strip())
    assert "**Outcome: PASS**" in report.read_text()
    checks = [c["name"] for c in json.loads(report.with_suffix(".json").read_text())["checks"]]
    assert checks[:3] == ["checksum", "decrypt", "archive"]
    assert {"pg_restore", "row counts", "activity_log", "schema"} <= set(checks)

    target = f"s2_restored_{uuid.uuid4().hex[:8]}"
    try:
        done = run(settings, "restore", "--dump", str(dump), "--into", target, **keyed)
        assert done.returncode == 0, done.stderr
        url = make_conninfo(settings.admin_database_url, dbname=target)
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM activity_log WHERE company_id = %s", (with_audit_rows.id,)
            ).fetchone()
            assert row is not None and row[0] == 5
    finally:
        admin_conn.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')

    # Damaged, with a manifest that agrees: age's authentication is what catches it.
    bad = copy_as_newest(dump, directory)
    damaged = bytearray(bad.read_bytes())
    damaged[-20:-12] = bytes(b ^ 0xFF for b in damaged[-20:-12])
    bad.write_bytes(bytes(damaged))
    resign(bad)
    line = one_line_error(run(settings, "restore-test", **keyed))
    assert line.startswith(f"error: decrypt: cannot decrypt {bad.name} with "), line
    assert "Outcome: FAIL — decrypt" in last_report(env)


def test_an_encrypted_dump_without_its_private_key_fails_in_one_line(
    settings: Settings,
    admin_conn: AdminConn,
    backup_env: dict[str, str],
    age_keys: AgeKeys,
    tmp_path: Path,
) -> None:
    env = {**backup_env, "S2_BACKUP_AGE_RECIPIENTS": age_keys.recipient}
    dump, _ = take_backup(settings, env)

    line = one_line_error(run(settings, "restore-test", **env))
    assert line.startswith(f"error: decrypt: {dump.name} is encrypted with age"), line
    assert age_keys.recipient in line and "set S2_BACKUP_AGE_IDENTITY" in line
    assert "Outcome: FAIL — decrypt" in last_report(env)

    missing = {**env, "S2_BACKUP_AGE_IDENTITY": str(tmp_path / "no-such.agekey")}
    line = one_line_error(run(settings, "restore-test", **missing))
    assert line.startswith("error: decrypt: S2_BACKUP_AGE_IDENTITY: "), line
    assert "no-such.agekey does not exist" in line

    wrong = {**env, "S2_BACKUP_AGE_IDENTITY": str(age_keys.other_identity)}
    line = one_line_error(run(settings, "restore-test", **wrong))
    assert line.startswith(f"error: decrypt: cannot decrypt {dump.name} with "), line
    assert "no identity matched any of the recipients" in line

    target = f"s2_restored_{uuid.uuid4().hex[:8]}"
    try:
        line = one_line_error(
            run(settings, "restore", "--dump", str(dump), "--into", target, **wrong)
        )
        assert line.startswith("error: decrypt: ") and "no identity matched" in line, line
        gone = admin_conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target,))
        assert gone.fetchone() is None, "the target database was created before the key failed"
    finally:
        admin_conn.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')

    # A malformed public key stops the backup before anything is dumped.
    bad = {**backup_env, "S2_BACKUP_AGE_RECIPIENTS": "age1notakey"}
    line = one_line_error(run(settings, "backup", **bad))
    assert line.startswith("error: S2_BACKUP_AGE_RECIPIENTS: malformed recipient"), line
    assert [p.name for p in dumps_in(Path(backup_env["S2_BACKUP_DIR"]))] == [dump.name]


def dumps_in(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if ".dump" in p.name)


def test_the_production_image_installs_age() -> None:
    from tests.test_deploy_config import final_stage

    installs = [part for op, args in final_stage() if op == "RUN" for part in args.split("&&")]
    assert any("apt-get install" in part and "age" in part.split() for part in installs), (
        "deploy/Dockerfile's runtime stage must install age: backups are encrypted with it"
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to become a user who owns nothing")
def test_an_open_backup_directory_someone_else_owns_is_refused() -> None:
    """The backup user does not use (nor try to tighten) a directory it does not own: a
    clear refusal, and nothing written into it. (A forked child becomes ``nobody`` and calls
    the code.)"""
    import tempfile

    from system2.ops.private_files import private_dir

    outside = Path(tempfile.mkdtemp(prefix="s2-backup-open-"))  # where nobody can reach
    try:
        os.chmod(outside, 0o755)
        directory = outside / "backups"
        directory.mkdir()
        os.chmod(directory, 0o777)  # root's, open to all
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 0
            try:
                os.close(read)
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                try:
                    private_dir(directory)
                    message = "no error"
                except BackupError as exc:
                    message = str(exc)
                os.write(write, message.encode())
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(write)
        with os.fdopen(read, "rb") as f:
            message = f.read().decode()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert message.startswith(
            f"{directory} is owned by uid 0, not by this user (uid 65534): "
        ), message
        assert "chown it to uid 65534 and chmod 700 it, or choose another S2_BACKUP_DIR" in message
        assert mode(directory) == 0o777 and list(directory.iterdir()) == []
    finally:
        shutil.rmtree(outside)


@pytest.mark.parametrize("env_name", ["staging", "production"])
def test_a_deployed_backup_refuses_plain_text_and_a_connection_without_tls(
    settings: Settings, backup_env: dict[str, str], env_name: str
) -> None:
    """Staging and production write no dump of every tenant's content unencrypted, and reach
    the database over TLS only."""
    deployed = {**backup_env, "S2_ENV": env_name}
    line = one_line_error(run(settings, "backup", **deployed))
    assert line == (
        f"error: S2_ENV={env_name}: S2_BACKUP_DATABASE_URL must set sslmode=verify-full "
        "(or verify-ca, require): TLS"
    )
    # TLS asked for, on a server that offers none: the refusal is the encryption's, first.
    url = make_conninfo(backup_env["S2_BACKUP_DATABASE_URL"], sslmode="require")
    tls = {**deployed, "S2_BACKUP_DATABASE_URL": url}
    line = one_line_error(run(settings, "backup", **tls))
    assert line == (
        "error: set S2_BACKUP_AGE_RECIPIENTS: staging and production write no dump in plain text"
    )
    assert (
        not Path(backup_env["S2_BACKUP_DIR"]).exists()
        or dumps_in(Path(backup_env["S2_BACKUP_DIR"])) == []
    )


# --- what the backup commands refuse ---------------------------------------------------

ENV_REFUSAL = "error: S2_ENV must be one of dev, test, staging, production"


@pytest.mark.parametrize("typo", ["prod", "Production", " production", "production ", ""])
def test_a_mistyped_s2_env_is_refused_before_anything_is_dumped(
    settings: Settings, backup_env: dict[str, str], typo: str
) -> None:
    """A typo must not turn production into a laptop that writes plaintext dumps over a
    connection without TLS (backup_env's URL has no sslmode, and no age recipients)."""
    mistyped = {**backup_env, "S2_ENV": typo}
    assert one_line_error(run(settings, "backup", **mistyped)) == ENV_REFUSAL
    assert not Path(backup_env["S2_BACKUP_DIR"]).exists()
    assert one_line_error(run(settings, "restore-test", **mistyped)) == ENV_REFUSAL
    assert not Path(backup_env["S2_BACKUP_DIR"]).exists()


PASSWORD = "S3CR%ETpw"  # a bad percent-encoding: the driver's message quotes it
UNPARSABLE = [
    f"postgresql://u:{PASSWORD}@h/db?sslmode=require",
    f"postgresql://u:{PASSWORD.replace('%', '')}@[::1/db?sslmode=require",
]
URL_REFUSAL = (
    "error: S2_BACKUP_DATABASE_URL is not a valid Postgres URL: check its quoting and "
    "percent-encoding (a % in the password is written %25)"
)


@pytest.mark.parametrize("env_name", ["dev", "test", "staging", "production"])
@pytest.mark.parametrize("url", UNPARSABLE)
def test_a_database_url_that_does_not_parse_is_refused_without_its_password(
    settings: Settings, backup_env: dict[str, str], tmp_path: Path, env_name: str, url: str
) -> None:
    env = {**backup_env, "S2_ENV": env_name, "S2_BACKUP_DATABASE_URL": url}
    for command in (
        ["backup"],
        ["restore-test"],
        ["restore", "--dump", str(tmp_path / "x.dump"), "--into", "s2_never"],
    ):
        done = run(settings, command[0], *command[1:], **env)
        assert one_line_error(done) == URL_REFUSAL, command
        assert "S3CR" not in done.stdout + done.stderr
    assert not Path(backup_env["S2_BACKUP_DIR"]).exists()


def test_every_use_of_a_database_url_that_does_not_parse_is_refused_without_it(
    settings: Settings, backup_env: dict[str, str], with_audit_rows: Tenant
) -> None:
    """Past from_env too (a BackupConfig made in code): backup, restore-test and restore
    parse the URL (and make others from it) only to refuse it naming the variable."""
    dump, _ = quick_backup(backup_env)
    bad = BackupConfig(UNPARSABLE[0], Path(backup_env["S2_BACKUP_DIR"]))
    with pytest.raises(BackupError) as refused:
        backup(bad)
    assert str(refused.value) == URL_REFUSAL.removeprefix("error: ")
    with pytest.raises(BackupError) as refused:
        restore_test(bad)  # the dump checks out; the scratch database's URL is the refusal
    assert str(refused.value).startswith(f"error: {URL_REFUSAL.removeprefix('error: ')}")
    assert "S3CR" not in str(refused.value) and "S3CR" not in last_report(backup_env)
    with pytest.raises(BackupError) as refused:
        restore(bad, dump, "s2_never")
    assert str(refused.value) == URL_REFUSAL.removeprefix("error: ")


def test_a_backup_directory_another_user_owns_is_refused_though_private(
    settings: Settings, backup_env: dict[str, str]
) -> None:
    """0700 is not enough: its owner could swap a file of ours for a link while we write."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to give the directory to another user")
    directory = Path(backup_env["S2_BACKUP_DIR"])
    directory.mkdir(mode=0o700)
    os.chown(directory, 65534, 65534)
    refusal = (
        f"error: {directory} is owned by uid 65534, not by this user (uid 0): backups go in a "
        "directory the backup user owns — chown it to uid 0 and chmod 700 it, or choose "
        "another S2_BACKUP_DIR"
    )
    assert one_line_error(run(settings, "backup", **backup_env)) == refusal
    assert one_line_error(run(settings, "restore-test", **backup_env)) == refusal
    assert list(directory.iterdir()) == []
    st = directory.lstat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (65534, 0o700)


@pytest.mark.parametrize(
    "shared", [0o1777, 0o0777, 0o0770, 0o0730, 0o1700], ids=lambda m: f"mode-{m:04o}"
)
def test_a_shared_backup_directory_is_refused_and_left_as_it_is(
    settings: Settings, backup_env: dict[str, str], shared: int
) -> None:
    """Never made private: as root with S2_BACKUP_DIR=/tmp that would break the host's
    /tmp, and whoever else may write in it may have left links in it already."""
    directory = Path(backup_env["S2_BACKUP_DIR"])
    directory.mkdir()
    os.chmod(directory, shared)
    refusal = (
        f"error: {directory} is a shared directory (mode {shared:04o}: writable by "
        "group/others or sticky), left as it is: set S2_BACKUP_DIR to a directory of the "
        "backup user's own, mode 0700"
    )
    assert one_line_error(run(settings, "backup", **backup_env)) == refusal
    assert one_line_error(run(settings, "restore-test", **backup_env)) == refusal
    assert mode(directory) == shared and list(directory.iterdir()) == []


def test_a_symlinked_backup_directory_is_refused(
    settings: Settings, backup_env: dict[str, str], tmp_path: Path
) -> None:
    real = tmp_path / "real-backups"
    real.mkdir(mode=0o700)
    link = Path(backup_env["S2_BACKUP_DIR"])
    link.symlink_to(real)
    refusal = (
        f"error: {link} is a symbolic link: set S2_BACKUP_DIR to a real directory the backup "
        "user owns (mode 0700), not a link to one"
    )
    assert one_line_error(run(settings, "backup", **backup_env)) == refusal
    assert one_line_error(run(settings, "restore-test", **backup_env)) == refusal
    assert list(real.iterdir()) == []
    dangling = tmp_path / "not-yet"
    link.unlink()
    link.symlink_to(dangling)  # not created through the link either
    assert one_line_error(run(settings, "backup", **backup_env)) == refusal
    assert not dangling.exists()


def test_pg_dump_writes_into_the_file_we_made_never_by_its_name(
    backup_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the directory checks now keep others out of, staged here by the test itself:
    as pg_dump starts, the .partial is renamed away and a link to someone else's file put in
    its place. pg_dump writes through the descriptor of the file we created 0600 (no
    --file); the link gets nothing, and the swap is noticed: no backup is reported."""
    directory = Path(backup_env["S2_BACKUP_DIR"])
    stolen = tmp_path / "elsewhere" / "stolen.dump"
    stolen.parent.mkdir()
    stolen.touch()
    moved = directory / "moved-away"
    dumped: list[list[str]] = []
    real_run = subprocess.run

    def swapping_run(argv: list[str], *args: Any, **kwargs: Any) -> Any:
        if argv[0] == "pg_dump" and "--version" not in argv:
            dumped.append(list(argv))
            (partial,) = directory.glob("*.partial")
            partial.rename(moved)
            partial.symlink_to(stolen)
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", swapping_run)
    with pytest.raises(BackupError, match=r"\.dump was replaced while it was written: "):
        backup(config(backup_env))
    monkeypatch.undo()

    assert len(dumped) == 1 and not any(a.startswith("--file") for a in dumped[0])
    assert stolen.read_bytes() == b""  # the old code wrote the whole dump here
    assert moved.read_bytes().startswith(b"PGDMP") and mode(moved) == 0o600
    assert sorted(p.name for p in directory.iterdir()) == ["moved-away"]  # no dump, manifest


def test_a_plaintext_dump_keeps_its_data_offsets_for_a_parallel_restore(
    settings: Settings,
    admin_conn: AdminConn,
    backup_env: dict[str, str],
    with_audit_rows: Tenant,
) -> None:
    """Written through a descriptor of a regular file (not a pipe), pg_dump could seek back
    and record in the table of contents where each table's data is. (pg_restore 15 -j also
    restores an archive without them, by scanning it: the offsets are checked themselves.)"""
    dump, manifest = quick_backup(backup_env)
    offsets = data_offsets(dump)
    assert set(offsets) == set(manifest["tables"])
    assert all(offsets.values()), offsets  # a piped dump: every one None
    target = f"s2_parallel_{uuid.uuid4().hex[:8]}"
    admin_conn.execute(f'CREATE DATABASE "{target}"')
    try:
        conninfo, env = split_password(make_conninfo(settings.admin_database_url, dbname=target))
        argv = ["pg_restore", "--jobs=2", "--exit-on-error", "--no-owner", "--dbname", conninfo]
        done = subprocess.run(
            [*argv, str(dump)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        with psycopg.connect(make_conninfo(settings.admin_database_url, dbname=target)) as conn:
            row = conn.execute("SELECT count(*) FROM activity_log").fetchone()
            assert row is not None and row[0] == manifest["tables"]["activity_log"]
    finally:
        admin_conn.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')


class ArchiveReader:
    """pg_dump's custom format, read as pg_backup_archiver.c reads it: an integer is a sign
    byte and ``int_size`` little-endian bytes, a string its length (-1: NULL) and bytes."""

    def __init__(self, data: bytes) -> None:
        assert data[:5] == b"PGDMP", "not a custom-format archive"
        self.data = data
        self.version = (data[5], data[6])
        self.int_size, self.off_size = data[8], data[9]
        self.pos = 11  # magic, version (3 bytes), int size, offset size, format

    def ints(self, n: int = 1) -> int:
        for _ in range(n):
            sign = self.data[self.pos]
            value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + self.int_size], "little")
            self.pos += 1 + self.int_size
        return -value if sign else value

    def strs(self, n: int = 1) -> str | None:
        text = None
        for _ in range(n):
            length = self.ints()
            text = None if length < 0 else self.data[self.pos : self.pos + length].decode()
            self.pos += max(length, 0)
        return text

    def offset(self) -> int | None:
        """The custom format's data offset: a flag byte (2: set) and ``off_size`` bytes."""
        flag = self.data[self.pos]
        at = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + self.off_size], "little")
        self.pos += 1 + self.off_size
        return at if flag == 2 and self.data[at] == 1 else None  # 1: a data block starts


def data_offsets(dump: Path) -> dict[str, int | None]:
    """Each TABLE DATA entry of a custom-format archive (versions 1.14-1.16: pg_dump 12-17)
    and the offset its table of contents records for its data block (None: not recorded, as
    when pg_dump writes into a pipe)."""
    a = ArchiveReader(dump.read_bytes())
    assert (1, 14) <= a.version <= (1, 16), f"archive version {a.version}: teach ArchiveReader"
    if a.version >= (1, 15):
        a.pos += 1  # the compression algorithm, a byte
    else:
        a.ints()  # the compression level
    a.ints(7)  # creation time
    a.strs(3)  # database name, server version, pg_dump version
    found: dict[str, int | None] = {}
    for _ in range(a.ints()):
        a.ints(2)  # dump id, had a data dumper
        a.strs(2)  # table oid, oid
        tag, desc = a.strs(), a.strs()
        a.ints()  # section
        a.strs(6)  # definition, drop, copy, namespace, tablespace, table access method
        if a.version >= (1, 16):
            a.ints()  # relkind
        a.strs(2)  # owner, "false" (no OIDs)
        while a.strs() is not None:
            pass  # dependencies
        at = a.offset()
        if desc == "TABLE DATA":
            found[str(tag)] = at
    return found
