"""Submission intake: every submission becomes a private copy before anything grades it.

A submission is a folder or a ``.zip``. Either way the grader copies its regular files into
a folder of its own (:func:`take_in`) and grades only that copy, so that nothing a learner
can change later (a link swapped, a file rewritten while it is read) reaches the grading:

* **No links.** A symbolic link anywhere in the submission (the folder itself included), a
  hard link (a regular file with more than one name) or anything that is not a regular file
  or a folder (a FIFO, a socket, a device) refuses the whole submission with one line naming
  the first such path. Nothing is ever followed: every file is opened with ``O_NOFOLLOW``
  and checked to be the file that was listed.
* **Bounded.** At most :data:`MAX_FILES` files and :data:`MAX_BYTES` bytes in all, folders
  at most :data:`MAX_DEPTH` deep.
* **Zip defects are the submission's own error.** Whatever :mod:`zipfile` raises (a bad
  header, an encrypted entry, an unknown compression method, corrupt deflate data, a name
  that is not UTF-8), a name that would land outside the copy, a bomb (a member inflating
  more than :data:`MAX_RATIO` times, or more than the size bound in all): each becomes
  :class:`IntakeError`, which the grader turns into that submission's error row; the class
  run goes on.
"""

from __future__ import annotations

import os
import shutil
import stat
import unicodedata
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from alexnet_course import CourseError

MAX_BYTES = 500 * 2**20
MAX_FILES = 20_000
MAX_DEPTH = 32
MAX_RATIO = 200  # a deflated member may inflate this many times (text compresses ~5-10x)
RATIO_FLOOR = 2**20  # members smaller than this are not judged by their ratio
CHUNK = 1 << 20


class IntakeError(CourseError):
    """A submission that cannot be graded as it is; the message is one line for the
    gradebook."""


def take_in(submission: Path, dest: Path) -> Path:
    """Copy ``submission`` (a folder or a .zip) into the new folder ``dest``; return ``dest``.

    Raises:
        IntakeError: the submission is missing, holds a link or a special file, is too large
            or is a defective zip.
    """
    shown = str(submission)
    try:
        st = os.lstat(submission)
    except OSError:
        raise IntakeError(f"{shown}: no such file or folder") from None
    if stat.S_ISLNK(st.st_mode):
        raise IntakeError(f"{shown} is a symbolic link: submissions are refused with links in "
                          "them (links are never followed)")  # fmt: skip
    dest.mkdir(parents=True, exist_ok=False)
    os.chmod(dest, 0o700)
    try:
        if stat.S_ISDIR(st.st_mode):
            _copy_folder(submission, dest, shown)
        elif stat.S_ISREG(st.st_mode):
            _unzip(submission, dest, shown)
        else:
            raise IntakeError(f"{shown} is neither a folder nor a .zip file")
    except IntakeError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    except OSError as e:
        shutil.rmtree(dest, ignore_errors=True)
        raise IntakeError(f"{shown}: could not be read ({type(e).__name__}: {e})") from None
    return dest


class _Budget:
    def __init__(self, shown: str) -> None:
        self.shown, self.files, self.bytes = shown, 0, 0

    def file(self, rel: str) -> None:
        self.files += 1
        if self.files > MAX_FILES:
            raise IntakeError(f"{self.shown}: more than {MAX_FILES} files; submit the lessons/ "
                              "folder only")  # fmt: skip

    def add(self, n: int) -> None:
        self.bytes += n
        if self.bytes > MAX_BYTES:
            raise IntakeError(f"{self.shown}: more than {MAX_BYTES >> 20} MB in all; submit "
                              "the lessons/ folder only")  # fmt: skip


# ---------------------------------------------------------------- folders
def _copy_folder(src: Path, dest: Path, shown: str) -> None:
    budget = _Budget(shown)
    stack = [(src, dest, 0)]
    while stack:
        here, there, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise IntakeError(f"{shown}: folders nested more than {MAX_DEPTH} deep")
        with os.scandir(here) as entries:
            listing = sorted(entries, key=lambda e: e.name)
        for entry in listing:
            rel = os.path.relpath(entry.path, src)
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                raise IntakeError(f"{shown}: {rel} is a symbolic link; submissions are refused "
                                  "with links in them (links are never followed)")  # fmt: skip
            if stat.S_ISDIR(st.st_mode):
                target = there / entry.name
                target.mkdir()
                stack.append((Path(entry.path), target, depth + 1))
            elif stat.S_ISREG(st.st_mode):
                if st.st_nlink > 1:
                    raise IntakeError(f"{shown}: {rel} is a hard link (one file under "
                                      f"{st.st_nlink} names); submissions are refused with "
                                      "links in them")  # fmt: skip
                budget.file(rel)
                budget.add(st.st_size)
                _copy_file(Path(entry.path), there / entry.name, st, budget, shown, rel)
            else:
                raise IntakeError(f"{shown}: {rel} is not a regular file or folder")


def _copy_file(path: Path, target: Path, listed: os.stat_result, budget: _Budget, shown: str,
               rel: str) -> None:  # fmt: skip
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (listed.st_dev, listed.st_ino) or not stat.S_ISREG(st.st_mode):
            raise IntakeError(f"{shown}: {rel} changed while it was read")
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            copied = 0
            while chunk := os.read(fd, CHUNK):
                copied += len(chunk)
                if copied > st.st_size:  # grew while read: count it
                    budget.add(len(chunk))
                os.write(out, chunk)
        finally:
            os.close(out)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- zips
def _member_path(name: str, shown: str) -> PurePosixPath:
    if "\x00" in name or "\\" in name:
        raise IntakeError(f"{shown}: zip member name {name!r} holds a NUL or a backslash")
    p = PurePosixPath(unicodedata.normalize("NFC", name))
    if p.is_absolute() or name.startswith("/") or any(part == ".." for part in p.parts):
        raise IntakeError(f"{shown}: zip member {name!r} would land outside the submission")
    if p.parts and ":" in p.parts[0]:
        raise IntakeError(f"{shown}: zip member {name!r} names a drive")
    parts = [q for q in p.parts if q not in ("", ".")]
    if len(parts) > MAX_DEPTH:
        raise IntakeError(f"{shown}: zip member {name!r} is nested more than {MAX_DEPTH} deep")
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def _unzip(path: Path, dest: Path, shown: str) -> None:
    try:
        _unzip_checked(path, dest, shown)
    except IntakeError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as e:
        raise IntakeError(f"{shown}: not a readable zip file ({e})") from None
    except (RuntimeError, NotImplementedError, ValueError, UnicodeError, EOFError, zlib.error,
            OSError, KeyError, IndexError, TypeError, OverflowError, MemoryError) as e:  # fmt: skip
        # zipfile's own errors for encrypted members, unknown methods, corrupt data, bad
        # names: every one is this submission's defect, never the class run's
        raise IntakeError(f"{shown}: a defective zip file ({type(e).__name__}: "
                          f"{str(e)[:200]})") from None  # fmt: skip


def _unzip_checked(path: Path, dest: Path, shown: str) -> None:
    budget = _Budget(shown)
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if len(infos) > MAX_FILES:
            raise IntakeError(f"{shown}: more than {MAX_FILES} zip members")
        seen: set[str] = set()
        for info in infos:  # everything is checked before anything is written
            rel = _member_path(info.filename, shown)
            key = str(rel).casefold()
            kind = (info.external_attr >> 16) & 0o170000
            if kind == stat.S_IFLNK:
                raise IntakeError(f"{shown}: zip member {info.filename!r} is a symbolic link; "
                                  "submissions are refused with links in them")  # fmt: skip
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise IntakeError(f"{shown}: zip member {info.filename!r} is not a regular "
                                  "file or folder")  # fmt: skip
            if info.flag_bits & 0x1:
                raise IntakeError(f"{shown}: zip member {info.filename!r} is encrypted")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED,
                                          zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):  # fmt: skip
                raise IntakeError(f"{shown}: zip member {info.filename!r} uses compression "
                                  f"method {info.compress_type}, which this grader does not "
                                  "read")  # fmt: skip
            if info.is_dir():
                continue
            if key in seen:
                raise IntakeError(f"{shown}: zip member {info.filename!r} appears twice")
            seen.add(key)
            budget.file(info.filename)
            budget.add(info.file_size)
            if (info.file_size > RATIO_FLOOR
                    and info.file_size > MAX_RATIO * max(info.compress_size, 1)):  # fmt: skip
                raise IntakeError(f"{shown}: zip member {info.filename!r} inflates "
                                  f"{info.file_size // max(info.compress_size, 1)} times (a zip "
                                  "bomb?)")  # fmt: skip
        written = 0
        for info in infos:
            rel = _member_path(info.filename, shown)
            target = dest.joinpath(*rel.parts) if rel.parts != (".",) else dest
            if info.is_dir():
                _make_dirs(dest, rel)
                continue
            _make_dirs(dest, rel.parent)
            out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                with zf.open(info) as member:  # reads at most file_size bytes, checks the CRC
                    while chunk := member.read(CHUNK):
                        written += len(chunk)
                        if written > MAX_BYTES:
                            raise IntakeError(f"{shown}: unpacks to more than "
                                              f"{MAX_BYTES >> 20} MB")  # fmt: skip
                        os.write(out, chunk)
            finally:
                os.close(out)


def _make_dirs(dest: Path, rel: PurePosixPath) -> None:
    here = dest
    for part in rel.parts:
        if part in ("", "."):
            continue
        here = here / part
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            os.mkdir(here, 0o700)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise IntakeError(f"zip member folder {str(rel)!r} collides with a file")
