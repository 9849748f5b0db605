"""make install's last step (alexnet_course.pagecache): it advises the kernel about the
venv's shared libraries and nothing else, and never fails on what it cannot open."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from alexnet_course.pagecache import _is_library, drop_library_pages


def test_only_shared_libraries_are_advised(tmp_path):
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    for name in ("libtorch_cpu.so", "libcublasLt.so.13", "libx.so.1.2", "_C.cpython-311-x86_64-linux-gnu.so",
                 "sub/libtensorflow_cc.so.2"):  # fmt: skip
        (tmp_path / "pkg" / name).write_bytes(b"\0" * 4096)
    for name in ("module.py", "notes.so.txt", "data.sone", "sub/readme.md"):
        (tmp_path / "pkg" / name).write_text("x")
    (tmp_path / "pkg" / "link.so").symlink_to(tmp_path / "pkg" / "libtorch_cpu.so")
    want = 5 if hasattr(os, "posix_fadvise") else 0
    assert drop_library_pages(tmp_path) == want
    assert (tmp_path / "pkg" / "libtorch_cpu.so").read_bytes() == b"\0" * 4096  # nothing lost


@pytest.mark.parametrize("name,want", [("libc.so.6", True), ("a.b.so", True), ("lib.so.1.2.3", True),
                                       ("x.so.txt", False), ("x.sox", False), (".so", False)])  # fmt: skip
def test_library_names(name, want):
    assert _is_library(name) is want


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root opens any file")
def test_an_unreadable_library_is_passed_over(tmp_path):
    lib = tmp_path / "libsecret.so"
    lib.write_bytes(b"\0")
    lib.chmod(0)
    assert drop_library_pages(tmp_path) == 0


def test_the_command_says_what_it_did_and_refuses_a_missing_folder(tmp_path):
    (tmp_path / "libx.so").write_bytes(b"\0")
    ok = subprocess.run([sys.executable, "-m", "alexnet_course.pagecache", str(tmp_path)],
                        capture_output=True, text=True)  # fmt: skip
    assert ok.returncode == 0 and "shared libraries" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "alexnet_course.pagecache", str(tmp_path / "no")],
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and "usage" in bad.stderr
