"""After ``make install``: give the kernel back the page cache of the shared libraries pip
has just written, so that every process maps them as a long-used installation does.

Freshly written files sit in Linux's page cache as large folios, and a process that maps a
library then maps whole folios of it: on a clean clone (Linux 6.18, ext4) importing torch,
torchvision and TensorFlow left 1468 MB resident, of which 336 MB for
``libtensorflow_cc.so.2`` and about 70 MB each for CUDA libraries a CPU never calls; after
this, 1200 MB (250 MB for ``libtensorflow_cc.so.2``), the same as in a checkout used for
days. The suite's per-test memory goal (2.5 GB, #30) measured that difference on every
Keras test of a clean clone. Nothing is deleted: the kernel reads the pages again as they
are used.

    python -m alexnet_course.pagecache .venv
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def drop_library_pages(root: Path) -> int:
    """Write back and drop the cached pages of every shared library under ``root``
    (``*.so`` and ``*.so.N``); returns how many files were advised. Files that cannot be
    opened are passed over: this only ever saves memory, it is never needed."""
    if not hasattr(os, "posix_fadvise"):  # macOS, Windows: nothing to do
        return 0
    count = 0
    for path in Path(root).rglob("*.so*"):
        if not path.is_file() or path.is_symlink() or not _is_library(path.name):
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)  # dirty pages are written back first: the advice drops clean ones
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            count += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return count


def _is_library(name: str) -> bool:
    stem, sep, version = name.rpartition(".so")
    return bool(stem) and sep == ".so" and (version == "" or version[1:].replace(".", "").isdigit())


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_dir():
        print("usage: python -m alexnet_course.pagecache VENV_FOLDER", file=sys.stderr)
        return 2
    n = drop_library_pages(Path(args[0]))
    print(f"page cache: {n} shared libraries under {args[0]} will be read again as used")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
