"""The assets page: persist a file (restore gives the file's path), a directory
with match=, the whole execution directory, and restore with to=."""

from __future__ import annotations

from .conftest import Mode

PROGRAMS = ["assets"]


def test_a_file_restores_to_its_path(mode: Mode) -> None:
    run = mode.run("assets", "restore_file")
    assert run["result"] == ["hello", "hello", "foo.txt", "other/dir/foo.txt", "hello", True]


def test_directories_and_match(mode: Mode) -> None:
    run = mode.run("assets", "restore_directory")
    assert run["result"] == [
        {"bees/bar.txt": "two", "bees/baz.html": "<b>three</b>", "foo.txt": "one"},
        {"bar.txt": "two"},
    ]
