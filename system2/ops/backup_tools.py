"""The error every backup and restore step raises, and the command-line tools they drive.

``pg_dump``, ``pg_restore`` and ``age`` run as subprocesses with the umask 077, the database
password in their environment rather than on their command line (where a process list would
show it), and a time limit. Where a dump is encrypted or decrypted one tool is piped straight
into the other, so the plaintext archive passes through an OS pipe only and never touches a
disk. What fails is reported in one line: the tool's last line of error text, or age's own
``age: error:`` line.

``S2_BACKUP_DATABASE_URL`` is parsed only through ``url_params`` and ``url_with``: a URL that
does not parse is refused naming the variable, never with the driver's message, which quotes
the URL (its password with it).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any

from psycopg import ProgrammingError
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from system2.errors import System2Error

TIMEOUT = 6 * 3600
_CHILD_UMASK = 0o077
URL_VARIABLE = "S2_BACKUP_DATABASE_URL"


class BackupError(System2Error):
    """A backup or a restore check failed; one line says what."""


def invalid_url() -> BackupError:
    """The refusal of an S2_BACKUP_DATABASE_URL that does not parse. Never the URL nor the
    driver's message (``invalid percent-encoded token: "S3CR%ETpw"``): both may hold the
    password."""
    return BackupError(
        f"{URL_VARIABLE} is not a valid Postgres URL: check its quoting and percent-encoding "
        "(a % in the password is written %25)"
    )


def url_params(url: str) -> dict[str, Any]:
    """The connection parameters of ``url`` (S2_BACKUP_DATABASE_URL or one made from it)."""
    try:
        return conninfo_to_dict(url)
    except ProgrammingError:
        raise invalid_url() from None


def url_with(url: str, **params: Any) -> str:
    """``url`` (S2_BACKUP_DATABASE_URL) with ``params`` replaced: another database on its
    server."""
    try:
        return make_conninfo(url, **params)
    except ProgrammingError:
        raise invalid_url() from None


def split_password(url: str) -> tuple[str, dict[str, str]]:
    """The conninfo without its password, and an environment carrying it (so the password
    never shows in a process list)."""
    params = url_params(url)
    env = dict(os.environ)
    password = params.pop("password", None)
    if password:
        env["PGPASSWORD"] = str(password)
    return make_conninfo("", **params), env


def run(
    argv: list[str], env: dict[str, str], *, out_fd: int | None = None
) -> subprocess.CompletedProcess[str]:
    """``argv``, its output captured, or written straight into the open file ``out_fd``."""
    return subprocess.run(  # noqa: S603 - argv built here
        argv,
        env=env,
        stdout=subprocess.PIPE if out_fd is None else out_fd,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
        timeout=TIMEOUT,
        umask=_CHILD_UMASK,
    )


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def pipe(
    first: list[str],
    second: list[str],
    first_env: dict[str, str],
    second_env: dict[str, str],
    out_fd: int | None,
) -> tuple[Ran, Ran]:
    """``first | second``, the second's output into ``out_fd`` (or captured). The stream
    passes through an OS pipe only, never a file."""
    with tempfile.TemporaryFile() as first_err:  # 0600, unlinked: error text only
        producer = subprocess.Popen(  # noqa: S603 - argv built here
            first,
            env=first_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=first_err,
            umask=_CHILD_UMASK,
        )
        assert producer.stdout is not None
        try:
            consumer = subprocess.Popen(  # noqa: S603 - argv built here
                second,
                env=second_env,
                stdin=producer.stdout,
                stdout=subprocess.PIPE if out_fd is None else out_fd,
                stderr=subprocess.PIPE,
                text=True,
                umask=_CHILD_UMASK,
            )
        except BaseException:
            producer.kill()
            producer.wait()
            raise
        finally:
            producer.stdout.close()  # the consumer holds the read end now
        try:
            out, err = consumer.communicate(timeout=TIMEOUT)
            producer.wait(timeout=60)
        except subprocess.TimeoutExpired:
            for proc in (consumer, producer):
                proc.kill()
                proc.wait()
            raise BackupError(f"{first[0]} | {second[0]} timed out") from None
        first_err.seek(0)
        first_stderr = first_err.read().decode(errors="replace")
    return (
        Ran(producer.returncode, "", first_stderr),
        Ran(consumer.returncode, out or "", err or ""),
    )


def broken_pipe(ran: Ran) -> bool:
    """Killed by SIGPIPE (or said so): the other end of its pipe stopped reading first, which
    is that end's failure (or, for pg_restore --list, reading just the table of contents)."""
    return ran.returncode == -signal.SIGPIPE or "broken pipe" in ran.stderr.lower()


def age_error(stderr: str) -> str:
    """age's own error line, without its 'report unexpected errors' footer."""
    for line in stderr.splitlines():
        if line.startswith("age: error: "):
            return line.removeprefix("age: error: ").strip()
    return last_line(stderr) or "failed"


def need(tool: str, what: str = "the PostgreSQL client tools, same major") -> None:
    if shutil.which(tool) is None:
        raise BackupError(f"{tool} is not installed ({what})")


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""
