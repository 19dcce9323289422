"""The edit corpus: for each kind of change, exactly which targets' code hashes change.

Each case edits a copy of one monorepo (a git repository whose project lives
in ``proj/``, with a shared library in ``libs/`` outside it and an installed
package in a ``site-packages`` folder), imports it afresh and builds its
manifests with the real loader and hasher. End-to-end re-runs of some of
these edits, through a server and agents, are in ``test_code_identity.py``.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from coflux.execution.loader import manifest
from coflux.identity import distributions

HELPERS = """
    import enum
    import functools
    import os
    from dataclasses import dataclass
    from pathlib import Path

    HERE = os.path.dirname(__file__)
    DATA = Path(__file__).parent / "data"

    SCALE = 3
    LIMITS = {"max": 10}
    FACTOR = 5
    KEYS = frozenset({"a", "b"})


    class Scaler:
        def __init__(self, k):
            self.k = k

        def apply(self, x):
            return x * self.k


    SCALER = Scaler(2)


    def double(x):
        return x * 2


    def triple(x):
        return x * 3


    def quad(x):
        return x * 4


    OPS = {"double": double}
    PIPE = [triple]
    LAMBDAS = {"inc": lambda x: x + 1}


    @functools.lru_cache(maxsize=None)
    def cached_inc(x):
        return x + 1


    def power(x, p):
        return x**p


    SQUARE = functools.partial(power, p=2)


    def shout(fn):
        @functools.wraps(fn)
        def wrapper(*args):
            return str(fn(*args)) + "!"

        return wrapper


    class Base:
        OFFSET = 1

        def offset(self):
            return self.OFFSET


    class Child(Base):
        pass


    class Tools:
        @staticmethod
        def s(x):
            return x + 1

        @classmethod
        def c(cls, x):
            return x + 2

        @property
        def p(self):
            return 3


    class Outer:
        class Inner:
            @staticmethod
            def value():
                return 1


    def with_default(x, f=FACTOR):
        return x * f


    def make_adder(n):
        def add(x):
            return x + n

        return add


    ADD_TEN = make_adder(10)


    class Color(enum.Enum):
        RED = 1


    @dataclass
    class Settings:
        level: int = 1


    SETTINGS = Settings()


    def is_even(n):
        return n == 0 or is_odd(n - 1)


    def is_odd(n):
        return n != 0 and is_even(n - 1)
"""

FLOWS = """
    import os

    import coflux as cf
    import helpers
    import pkg.sub
    import shared
    import fakepkg
    from helpers import SCALE
    from pkg.consts import BASE


    @cf.task()
    def t_scale(x: int) -> int:
        return x * SCALE


    @cf.task()
    def t_scale_attr(x: int) -> int:
        return x * helpers.SCALE


    @cf.workflow()
    def t_outer(x: int) -> int:
        return t_scale(x) + 1


    @cf.task()
    def t_limits(x: int) -> int:
        return min(x, helpers.LIMITS["max"])


    @cf.task()
    def t_instance(x: int) -> int:
        return helpers.SCALER.apply(x)


    @cf.task()
    def t_dict_fn(x: int) -> int:
        return helpers.OPS["double"](x)


    @cf.task()
    def t_list_fn(x: int) -> int:
        return helpers.PIPE[0](x)


    @cf.task()
    def t_lambda(x: int) -> int:
        return helpers.LAMBDAS["inc"](x)


    @cf.task()
    def t_pkgsub(x: int) -> int:
        return pkg.sub.f(x)


    @cf.task()
    def t_pkgconst(x: int) -> int:
        return x + BASE


    @cf.task()
    @helpers.shout
    def t_wraps(x: int) -> int:
        return x


    @cf.task()
    def t_lru(x: int) -> int:
        return helpers.cached_inc(x)


    @cf.task()
    def t_partial(x: int) -> int:
        return helpers.SQUARE(x)


    @cf.task()
    def t_closure(x: int) -> int:
        return helpers.ADD_TEN(x)


    @cf.task()
    def t_default(x: int) -> int:
        return helpers.with_default(x)


    @cf.task()
    def t_inherit(x: int) -> int:
        return x + helpers.Child().offset()


    @cf.task()
    def t_tools(x: int) -> int:
        return helpers.Tools.s(x) + helpers.Tools.c(x) + helpers.Tools().p


    @cf.task()
    def t_deep(x: int) -> int:
        return x + helpers.Outer.Inner.value()


    @cf.task()
    def t_enum(x: int) -> int:
        return x + helpers.Color.RED.value


    @cf.task()
    def t_dataclass(x: int) -> int:
        return x + helpers.SETTINGS.level


    @cf.task()
    def t_frozenset(x: str) -> bool:
        return x in helpers.KEYS


    @cf.task()
    def t_local_import(x: int) -> int:
        from helpers import quad

        return quad(x)


    @cf.task()
    def t_recursion(x: int) -> bool:
        return helpers.is_even(x)


    @cf.task()
    def t_nested(x: int) -> int:
        def inner(y):
            return y * helpers.FACTOR

        return inner(x)


    @cf.task()
    def t_shared(x: str) -> str:
        return shared.exclaim(x)


    @cf.task()
    def t_dep(x: int) -> int:
        return fakepkg.value() + x


    @cf.task()
    def t_defaults(x: int = 1) -> int:
        return x


    @cf.task()
    def t_plain(x: int) -> int:
        return x + 1


    @cf.task()
    def t_lazy(x: int) -> int:
        from lazyhelper import compute  # loaded only when the task runs

        return compute(x)


    @cf.task()
    def t_paths(x: str) -> str:
        return os.path.join(helpers.HERE, str(helpers.DATA), x)
"""

DYNAMIC = """
    import coflux as cf
    import dyn


    def _impl(x):
        return x + 1


    @cf.task()
    def t_getattr(x: int) -> int:
        return getattr(dyn, "f")(x)


    @cf.task()
    def t_globals(x: int) -> int:
        return globals()["_impl"](x)
"""

DYNAMIC_IMPORT = """
    import importlib

    import coflux as cf


    @cf.task()
    def t_import_module(x: int) -> int:
        return importlib.import_module("plugins.p1").run(x)
"""

FILES = {
    "proj/helpers.py": textwrap.dedent(HELPERS),
    "proj/flows.py": textwrap.dedent(FLOWS),
    "proj/dynflows.py": textwrap.dedent(DYNAMIC),
    "proj/dynimport.py": textwrap.dedent(DYNAMIC_IMPORT),
    "proj/dyn.py": "def f(x):\n    return x + 1\n\n\ndef g(x):\n    return x + 2\n",
    "proj/pkg/__init__.py": "",
    "proj/pkg/sub.py": "def f(x):\n    return x + 100\n",
    "proj/pkg/consts.py": "BASE = 7\n",
    "proj/lazyhelper.py": "def compute(x):\n    return x - 1\n",
    "proj/plugins/__init__.py": "",
    "proj/plugins/p1.py": "def run(x):\n    return x * 10\n",
    "proj/.coflux.toml": 'modules = ["flows", "dynflows", "dynimport"]\n',
    "libs/shared.py": 'def exclaim(s):\n    return s + "!"\n',
}
SITE = "site/site-packages"
INSTALLED = {
    "fakepkg/__init__.py": "def value():\n    return 1\n",
    "fakepkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.0\n",
    "fakepkg-1.0.dist-info/top_level.txt": "fakepkg\n",
    "fakepkg-1.0.dist-info/RECORD": "",
}

MODULES = ("flows", "dynflows", "dynimport")

Edit = Callable[[dict[str, str]], None]


def replace(path: str, old: str, new: str) -> Edit:
    def edit(files: dict[str, str]) -> None:
        assert old in files[path], (path, old)
        files[path] = files[path].replace(old, new, 1)

    return edit


def append(path: str, text: str) -> Edit:
    def edit(files: dict[str, str]) -> None:
        files[path] = files[path] + textwrap.dedent(text)

    return edit


def upgrade(files: dict[str, str]) -> None:
    for name in list(files):
        if "/fakepkg-1.0.dist-info/" in name:
            files[name.replace("1.0", "1.1")] = files.pop(name).replace("1.0", "1.1")


H, F, D = "proj/helpers.py", "proj/flows.py", "proj/dynflows.py"

#: (kind of change, the edit, the targets whose hash must change: exactly these).
CORPUS: list[tuple[str, Edit, set[str]]] = [
    (
        "module constant",
        replace(H, "SCALE = 3", "SCALE = 4"),
        {"t_scale", "t_scale_attr", "t_outer"},
    ),
    ("constant, same value", replace(H, "SCALE = 3", "SCALE = 2 + 1"), set()),
    ("dict constant", replace(H, '"max": 10', '"max": 11'), {"t_limits"}),
    ("instance's state", replace(H, "Scaler(2)", "Scaler(5)"), {"t_instance"}),
    ("instance's method", replace(H, "x * self.k", "x * self.k + 1"), {"t_instance"}),
    ("function in a dict", replace(H, "x * 2", "x * 20"), {"t_dict_fn"}),
    ("function in a list", replace(H, "x * 3", "x * 30"), {"t_list_fn"}),
    ("lambda in a dict", replace(H, "lambda x: x + 1", "lambda x: x + 2"), {"t_lambda"}),
    ("submodule via package", replace("proj/pkg/sub.py", "100", "200"), {"t_pkgsub"}),
    ("constant in a helper module", replace("proj/pkg/consts.py", "7", "8"), {"t_pkgconst"}),
    ("wraps decorator's body", replace(H, '+ "!"', '+ "?"'), {"t_wraps"}),
    ("wrapped target's body", replace(F, "    return x\n", "    return x * 2\n"), {"t_wraps"}),
    (
        "lru_cache helper",
        replace(H, "return x + 1\n\n\ndef power", "return x + 2\n\n\ndef power"),
        {"t_lru"},
    ),
    ("partial's function", replace(H, "x**p", "x**p + 1"), {"t_partial"}),
    ("partial's argument", replace(H, "p=2", "p=3"), {"t_partial"}),
    ("closure value", replace(H, "make_adder(10)", "make_adder(11)"), {"t_closure"}),
    ("default captured", replace(H, "FACTOR = 5", "FACTOR = 6"), {"t_default", "t_nested"}),
    ("base class attribute", replace(H, "OFFSET = 1", "OFFSET = 2"), {"t_inherit"}),
    (
        "staticmethod",
        replace(H, "return x + 1\n\n    @classmethod", "return x + 5\n\n    @classmethod"),
        {"t_tools"},
    ),
    ("property", replace(H, "return 3", "return 4"), {"t_tools"}),
    (
        "nested class, deep chain",
        replace(H, "return 1\n\n\ndef with", "return 9\n\n\ndef with"),
        {"t_deep"},
    ),
    ("enum member", replace(H, "RED = 1", "RED = 2"), {"t_enum"}),
    ("dataclass default", replace(H, "level: int = 1", "level: int = 2"), {"t_dataclass"}),
    ("frozenset constant", replace(H, '{"a", "b"}', '{"a", "b", "c"}'), {"t_frozenset"}),
    ("import inside the body", replace(H, "x * 4", "x * 40"), {"t_local_import"}),
    ("mutual recursion", replace(H, "n != 0 and", "n > 0 and"), {"t_recursion"}),
    (
        "helper parameter renamed",
        replace(H, "def double(x):\n    return x * 2", "def double(y):\n    return y * 2"),
        {"t_dict_fn"},
    ),
    ("target's own body", replace(F, "return x + 1\n", "return x + 2\n"), {"t_plain"}),
    ("target's default", replace(F, "x: int = 1", "x: int = 2"), {"t_defaults"}),
    ("helper outside the project folder", replace("libs/shared.py", '"!"', '"!!"'), {"t_shared"}),
    ("installed package upgraded", upgrade, {"t_dep"}),
    (
        "installed package's code, same version",
        replace(f"{SITE}/fakepkg/__init__.py", "1", "2"),
        set(),
    ),
    ("getattr on a module", replace("proj/dyn.py", "x + 2", "x + 3"), {"t_getattr", "t_globals"}),
    (
        "globals() lookup",
        replace(D, "return x + 1\n\n\n@cf", "return x + 5\n\n\n@cf"),
        {"t_globals"},
    ),
    (
        "import_module of an unloaded module",
        replace("proj/plugins/p1.py", "10", "11"),
        {"t_import_module"},
    ),
    (
        "comments and blank lines",
        lambda files: files.update(
            {
                H: "# a comment\n\n" + files[H].replace("SCALE = 3", "SCALE = 3  # the scale"),
                F: files[F].replace("return x + 1\n", "# why\n    return   x  +  1\n\n"),
            }
        ),
        set(),
    ),
    ("lazily imported module", replace("proj/lazyhelper.py", "x - 1", "x - 2"), {"t_lazy"}),
    ("data folder renamed", replace(H, '/ "data"', '/ "inputs"'), {"t_paths"}),
    ("a new, unused helper", append(H, "\n\ndef unused():\n    return 0\n"), set()),
    (
        "formatting of a helper module",
        replace("proj/pkg/sub.py", "x + 100", "(x\n        + 100)"),
        set(),
    ),
]


#: Edits after which every file parses to the same syntax tree.
SAME_SYNTAX = {"comments and blank lines", "formatting of a helper module"}


def snapshot(root: Path, files: dict[str, str]) -> dict[str, str]:
    """Write the repository to ``root``, import its modules fresh, and return target → hash."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    paths = [str(root / "proj"), str(root / "libs"), str(root / SITE)]
    before = set(sys.modules)
    sys.path[:0] = paths
    importlib.invalidate_caches()
    distributions.version_of.cache_clear()
    try:
        hashes = {}
        for name in MODULES:
            for target in manifest(importlib.import_module(name)):
                hashes[target["name"]] = target["code_hash"]
        return hashes
    finally:
        for name in set(sys.modules) - before:
            del sys.modules[name]
        del sys.path[:3]
        distributions.version_of.cache_clear()


def files_of() -> dict[str, str]:
    files = dict(FILES)
    files.update({f"{SITE}/{k}": v for k, v in INSTALLED.items()})
    return files


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    sys.dont_write_bytecode = True  # every snapshot is read from its source
    yield snapshot(tmp_path_factory.mktemp("base"), files_of())
    sys.dont_write_bytecode = False


def test_the_corpus_has_at_least_30_kinds_of_change() -> None:
    assert len(CORPUS) >= 30
    assert len({kind for kind, _, _ in CORPUS}) == len(CORPUS)


def test_hashes_are_the_same_in_another_process(tmp_path: Path, baseline: dict[str, str]) -> None:
    assert snapshot(tmp_path, files_of()) == baseline
    # A new interpreter: a different string hash seed, different addresses.
    script = (
        "import importlib, json, sys\n"
        f"sys.path[:0] = {[str(tmp_path / p) for p in ('proj', 'libs', SITE)]!r}\n"
        "from coflux.execution.loader import manifest\n"
        "print(json.dumps({t['name']: t['code_hash'] for m in " + repr(MODULES) + ""
        " for t in manifest(importlib.import_module(m))}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"},
    )
    assert json.loads(out.stdout) == baseline


@pytest.mark.parametrize(("kind", "edit", "changed"), CORPUS, ids=[c[0] for c in CORPUS])
def test_edit_changes_exactly_the_hashes_of_the_targets_that_use_it(
    tmp_path: Path, baseline: dict[str, str], kind: str, edit: Edit, changed: set[str]
) -> None:
    files = files_of()
    edit(files)
    after = snapshot(tmp_path, files)
    assert set(after) == set(baseline)
    differ = {name for name in after if after[name] != baseline[name]}
    # A computed import may load any module: every Python file of the repository counts.
    syntax_changed = kind not in SAME_SYNTAX and kind != "installed package's code, same version"
    assert ("t_import_module" in differ) == syntax_changed
    assert differ - {"t_import_module"} == changed - {"t_import_module"}


def test_installed_versions_can_be_left_out(
    tmp_path: Path, baseline: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COFLUX_HASH_PACKAGES", "0")
    without = snapshot(tmp_path / "a", files_of())
    upgraded = files_of()
    upgrade(upgraded)
    assert snapshot(tmp_path / "b", upgraded) == without
    # Without versions, only what reaches an installed package hashes differently:
    # `t_dep`, and the two that count whole modules (which import coflux, and fakepkg).
    differ = {n for n in without if without[n] != baseline[n]}
    assert differ == {"t_dep", "t_globals", "t_import_module"}
