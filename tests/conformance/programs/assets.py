"""From the assets page: persisting a file, a directory (with match=) or the
whole execution directory, and restoring (with to=)."""

from pathlib import Path

import coflux as cf


@cf.task()
def write_greeting() -> cf.Asset:
    path = Path.cwd().joinpath("foo.txt")
    path.write_text("hello")
    return cf.persist_asset(path)


@cf.workflow()
def restore_file() -> list:
    asset = write_greeting()
    path = asset.restore()
    with open(cf.restore_asset(asset, force=True)) as f:
        opened = f.read()
    moved = asset.restore(to="other/dir")
    return [
        path.read_text(),
        opened,
        path.name,
        moved.relative_to(Path.cwd()).as_posix(),
        moved.read_text(),
        asset.id == asset.ref,
    ]


@cf.task()
def persist_all() -> cf.Asset:
    Path.cwd().joinpath("foo.txt").write_text("one")
    folder = Path.cwd().joinpath("bees")
    folder.mkdir()
    folder.joinpath("bar.txt").write_text("two")
    folder.joinpath("baz.html").write_text("<b>three</b>")
    return cf.persist_asset()


@cf.task()
def persist_text(match: str) -> cf.Asset:
    folder = Path.cwd().joinpath("bees")
    folder.mkdir()
    folder.joinpath("bar.txt").write_text("two")
    folder.joinpath("baz.html").write_text("<b>three</b>")
    return cf.persist_asset(folder, match=match)


def listing(root: Path) -> dict:
    return {
        p.relative_to(root).as_posix(): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@cf.workflow()
def restore_directory() -> list:
    everything = persist_all()
    only_text = persist_text("*.txt")
    return [
        listing(everything.restore(to="all")),
        listing(only_text.restore(to="text")),
    ]
