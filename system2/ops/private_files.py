"""Files and directories that hold a dump's worth of tenant data: the owner's only, from the
moment they exist.

A dump holds every tenant's content, so nothing a backup or a restore test writes is ever
readable by anyone but the backup user: ``S2_BACKUP_DIR`` (and ``reports/``) is created 0700,
and every dump, manifest, report and temporary file is *created* 0600 (``os.open`` with that
mode, whatever the umask), never loosened and tightened afterwards.

An existing directory must be the backup user's own, and writable by it alone: a symbolic
link, a directory another user owns, and one group- or world-writable or sticky (``/tmp``)
are refused as they are, untouched — whoever else may write in it could swap a file for a
link between our creating it and writing, renaming or reading it. Only a directory we own
that is merely group/other-*readable* (as older releases left it) is made 0700. Inside a
directory only we can write, files are then created, renamed and removed by name.
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
    """Make sure ``path`` is a directory only its owner may enter and only its owner may
    write: created 0700; an existing one must be this user's own, not a symbolic link and
    writable by no one else (refused, untouched, otherwise); one merely readable by group or
    others is made 0700. Files of ours left in it group- or world-readable by older releases
    become 0600. Returns what it changed, to tell the operator."""
    try:
        path.mkdir(mode=DIR_MODE, parents=True)
    except FileExistsError:
        pass
    except OSError as exc:
        raise BackupError(f"cannot create {path}: {exc.strerror}") from None
    st = path.lstat()
    _check_own_dir(path, st)
    notes = []
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        # Readable (never writable: refused above) by group or others. Tighten rather than
        # refuse: it protects, at once, the dumps older releases left in it world-readable,
        # and the nightly backup keeps running.
        _chmod_dir(path, st, mode & DIR_MODE)
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


def _check_own_dir(path: Path, st: os.stat_result) -> None:
    """Refuse, in one line naming it and what to do, a directory that is not this user's own
    and writable by it alone."""
    if stat.S_ISLNK(st.st_mode):
        raise BackupError(
            f"{path} is a symbolic link: set S2_BACKUP_DIR to a real directory the backup user "
            "owns (mode 0700), not a link to one"
        )
    if not stat.S_ISDIR(st.st_mode):
        raise BackupError(f"{path} is not a directory")
    uid = os.geteuid()
    if st.st_uid != uid:
        raise BackupError(
            f"{path} is owned by uid {st.st_uid}, not by this user (uid {uid}): backups go in a "
            f"directory the backup user owns — chown it to uid {uid} and chmod 700 it, or "
            "choose another S2_BACKUP_DIR"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH | stat.S_ISVTX):
        raise BackupError(
            f"{path} is a shared directory (mode {mode:04o}: writable by group/others or "
            "sticky), left as it is: set S2_BACKUP_DIR to a directory of the backup user's "
            "own, mode 0700"
        )


def _chmod_dir(path: Path, st: os.stat_result, mode: int) -> None:
    """chmod the directory ``st`` describes, through a descriptor opened without following
    a link, so that it is that directory which changes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise BackupError(f"cannot make {path} private: {exc.strerror}") from None
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise BackupError(f"{path} was replaced while it was checked: run the command again")
        os.fchmod(fd, mode)
    except OSError as exc:
        raise BackupError(f"cannot make {path} private: {exc.strerror}") from None
    finally:
        os.close(fd)


@contextmanager
def private_file(path: Path) -> Iterator[int]:
    """A new file at ``path`` created 0600 (O_EXCL, so never someone else's file or link),
    whatever the process umask: never readable by anyone else, not even for a moment. Open
    for reading too, so that what was written can be read back through the same descriptor
    rather than by name."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
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
