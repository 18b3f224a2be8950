"""Files and directories that hold a dump's worth of tenant data: the owner's only, from the
moment they exist.

A dump holds every tenant's content, so nothing a backup or a restore test writes is ever
readable by anyone but the backup user: ``S2_BACKUP_DIR`` (and ``reports/``) is created 0700
— an existing one open to group or others is made private, or refused if this user may not
— and every dump, manifest, report and temporary file is *created* 0600 (``os.open`` with
that mode, whatever the umask), never loosened and tightened afterwards.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from system2.ops.backup_tools import BackupError

# Files and directories holding tenant data: the owner only, from the moment they exist.
FILE_MODE = 0o600
DIR_MODE = 0o700
# What backup and restore-test write into S2_BACKUP_DIR and reports/ (and so may make private).
_OURS = re.compile(
    r"^(system2-.+\.(dump|dump\.age|manifest\.json)|restore-test-.+\.(md|json))"
    r"(\.partial|\.tmp)?$"
)


def private_dir(path: Path) -> list[str]:
    """Make sure ``path`` is a directory only its owner may enter: created 0700, or an
    existing one open to group or others made so (refused when this user may not). Files of
    ours left in it group- or world-readable by older releases become 0600. Returns what it
    changed, to tell the operator."""
    try:
        path.mkdir(mode=DIR_MODE, parents=True)
    except FileExistsError:
        pass
    except OSError as exc:
        raise BackupError(f"cannot create {path}: {exc.strerror}") from None
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise BackupError(f"{path} is not a directory")
    notes = []
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        # Tighten rather than refuse: it protects, at once, the dumps older releases left in
        # it world-readable, and the nightly backup keeps running.
        try:
            os.chmod(path, mode & DIR_MODE)
        except PermissionError:
            raise BackupError(
                f"{path} is open to group/others (mode {mode:04o}) and this user (uid "
                f"{os.geteuid()}) may not change it (owner uid {st.st_uid}): chmod 700 it, or "
                "choose another S2_BACKUP_DIR"
            ) from None
        notes.append(
            f"made {path} private: mode {mode:04o} -> {mode & DIR_MODE:04o} "
            "(backups hold every tenant's data)"
        )
    loose = []
    for child in path.iterdir():
        if not _OURS.match(child.name):
            continue
        cst = child.lstat()
        if stat.S_ISREG(cst.st_mode) and stat.S_IMODE(cst.st_mode) & 0o077:
            try:
                os.chmod(child, stat.S_IMODE(cst.st_mode) & FILE_MODE)
            except PermissionError:
                raise BackupError(
                    f"{child} is readable by group/others and this user may not change it: "
                    "chmod 600 it"
                ) from None
            loose.append(child.name)
    if loose:
        notes.append(f"made {len(loose)} older file(s) in {path} private (0600)")
    return notes


@contextmanager
def private_file(path: Path) -> Iterator[int]:
    """A new file at ``path`` created 0600 (O_EXCL, so never someone else's file or link),
    whatever the process umask: never readable by anyone else, not even for a moment."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        raise BackupError(f"{path} exists: is another backup or restore test running?") from None
    try:
        yield fd
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with private_file(tmp) as fd, open(fd, "wb", closefd=False) as f:
        f.write(text.encode("utf-8"))
        f.flush()
        os.fsync(fd)
    tmp.replace(path)
