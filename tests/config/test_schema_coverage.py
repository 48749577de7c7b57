"""Every schema key is honoured (read by the code) or refused (``REFUSED_KEYS``): none is silently ignored.

The scan parses the package, tools/ and demo/ (not config/defaults.py, which declares the keys, nor
config/validation.py: checking a value does not honour it) and collects the keys they read: attribute chains
``cfg.SECTION.KEY``, top-level ``cfg.KEY``, ``.get("KEY")`` / ``["KEY"]`` / ``getattr(.., "KEY")`` on a section, and
the same on an alias (``s = cfg.SOLVER`` then ``s.KEY`` or ``s.get("KEY")``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mvit_video.config import ConfigError, get_cfg, load_config
from mvit_video.config.defaults import REFUSED_KEYS
from mvit_video.config.validation import iter_leaves
from tests.conftest import ROOT

PACKAGE = ROOT / "mvit_video"
NOT_READERS = {PACKAGE / "config" / "defaults.py", PACKAGE / "config" / "validation.py"}
SOURCES = sorted(p for d in (PACKAGE, ROOT / "tools", ROOT / "demo") for p in d.rglob("*.py") if p not in NOT_READERS)
# Keys another branch implements; each entry goes once the code that reads it is merged (a test below says when).
PENDING: dict[str, str] = {}

DEFAULTS = dict(iter_leaves(get_cfg()))
SECTIONS: dict[str, set[str]] = {}
for _key in DEFAULTS:
    if "." in _key:  # nested sections (MVIT.REV) are sections of their own: "MVIT.REV" -> {"ENABLE", ...}
        _section, _name = _key.rsplit(".", 1)
        SECTIONS.setdefault(_section, set()).add(_name)
TOP_LEVEL = {k for k in DEFAULTS if "." not in k}


def _string(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _section_of(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """The schema section an expression denotes: ``<anything>.SECTION`` or an alias of one."""
    if isinstance(node, ast.Attribute):
        parent = _section_of(node.value, aliases)
        if parent is not None and f"{parent}.{node.attr}" in SECTIONS:
            return f"{parent}.{node.attr}"
        if node.attr in SECTIONS:
            return node.attr
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    return None


def _aliases(statements: list[ast.AST]) -> dict[str, str]:
    """Names bound to a section (``s = cfg.SOLVER``, ``m, d = cfg.MVIT, cfg.DATA``) anywhere in ``statements``."""
    found: dict[str, str] = {}
    for statement in statements:
        for node in ast.walk(statement):
            if isinstance(node, ast.Assign):
                pairs = [(t, node.value) for t in node.targets]
            elif isinstance(node, (ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
                pairs = [(node.target, node.value)]
            else:
                continue
            for target, value in pairs:
                if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
                    pairs.extend(zip(target.elts, value.elts))
                elif isinstance(target, ast.Name) and _section_of(value, {}) is not None:
                    found[target.id] = _section_of(value, {})
    return found


def _read(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """The full key one AST node reads, if it reads one."""
    if isinstance(node, ast.Attribute):
        section = _section_of(node.value, aliases)
        if section is not None and node.attr in SECTIONS[section]:
            return f"{section}.{node.attr}"
        return node.attr if node.attr in TOP_LEVEL else None
    if isinstance(node, ast.Subscript):
        section, name = _section_of(node.value, aliases), _string(node.slice)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" and node.args:
        section, name = _section_of(node.func.value, aliases), _string(node.args[0])
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr":
        section, name = _section_of(node.args[0], aliases), _string(node.args[1]) if len(node.args) > 1 else None
    else:
        return None
    return f"{section}.{name}" if section is not None and name in SECTIONS[section] else None


def keys_read(source: str) -> set[str]:
    """Schema keys a module's source reads (aliases are resolved per function, then module-wide)."""
    tree = ast.parse(source)
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    module_aliases = _aliases([s for s in tree.body if not isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                            ast.ClassDef))])  # fmt: skip
    keys = {_read(node, module_aliases) for node in ast.walk(tree)}
    for function in functions:
        aliases = {**module_aliases, **_aliases(function.body)}
        keys |= {_read(node, aliases) for node in ast.walk(function)}
    return keys - {None}


def read_by_code() -> dict[str, list[str]]:
    """Each key read somewhere, with the files that read it."""
    readers: dict[str, list[str]] = {}
    for path in SOURCES:
        for key in keys_read(path.read_text(encoding="utf-8")):
            readers.setdefault(key, []).append(str(path.relative_to(ROOT)))
    return readers


# --------------------------------------------------------------------------------------------------------- the scan


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("x = cfg.SOLVER.BASE_LR + run.cfg.NUM_GPUS", {"SOLVER.BASE_LR", "NUM_GPUS"}),
        ("def f(cfg):\n    s = cfg.SOLVER\n    return s.get('LAYER_DECAY', 1.0), s['BETAS'], s.MOMENTUM",
         {"SOLVER.LAYER_DECAY", "SOLVER.BETAS", "SOLVER.MOMENTUM"}),
        ("def f(cfg):\n    m, d = cfg.MVIT, cfg.DATA\n    return m.DEPTH, d.MEAN, getattr(cfg.AUG, 'RE_PROB')",
         {"MVIT.DEPTH", "DATA.MEAN", "AUG.RE_PROB"}),
        ("def f(cfg):\n    s = cfg.SOLVER\ndef g(s):\n    return s.DEPTH, cfg.MVIT.NOT_A_KEY, cfg.DATA['NORM']",
         set()),
        ("def f(cfg):\n    return cfg.SOLVER.get(name), cfg.get('MVIT')", set()),
        ("def f(cfg):\n    rev = cfg.MVIT.REV\n    return cfg.MVIT.REV.ENABLE, rev.BUFFER_LAYERS, cfg.REV.ENABLE",
         {"MVIT.REV.ENABLE", "MVIT.REV.BUFFER_LAYERS"}),
    ],
)  # fmt: skip
def test_scan_finds_reads_through_chains_aliases_get_and_subscripts(source, expected):
    """The scanner itself: a missed read would make a key look unused, a false one would hide an unused key."""
    assert keys_read(source) == expected


def test_scan_sees_known_readers():
    readers = read_by_code()
    assert "mvit_video/engine/optim.py" in readers["SOLVER.LAYER_DECAY"]  # solver.get("LAYER_DECAY", ...)
    assert "mvit_video/config/loader.py" in readers["TRAIN.MIXED_PRECISION"]  # alias of TRAIN.PRECISION


def derived_keys() -> set[str]:
    """Keys of the sections derived from a family's config dataclass: the family's builder reads every one of them
    (``models.families.derived_family`` through ``config.sections.dataclass_kwargs``)."""
    from mvit_video.config.sections import derived_sections

    return {f"{s.name}.{s.key(f.name)}" for s in derived_sections().values() for f in s.fields()}


def test_every_schema_key_is_read_or_refused():
    read = set(read_by_code()) | derived_keys()
    neither = sorted(set(DEFAULTS) - read - set(REFUSED_KEYS) - set(PENDING))
    assert not neither, f"read by no code and not in config/defaults.py REFUSED_KEYS: {neither}"


def test_no_key_is_both_read_and_refused():
    readers = read_by_code()
    both = {key: readers[key] for key in REFUSED_KEYS if key in readers}
    assert not both, f"refused in REFUSED_KEYS but read by the code (drop one of the two): {both}"


def test_refused_and_pending_keys_are_schema_keys():
    assert set(REFUSED_KEYS) <= set(DEFAULTS) and set(PENDING) <= set(DEFAULTS)
    assert not set(PENDING) & set(REFUSED_KEYS)


def test_pending_keys_are_still_unread():
    """Once the branch implementing a PENDING key is merged, its entry must go (so the scan covers it again)."""
    now_read = {key: files for key, files in read_by_code().items() if key in PENDING}
    assert not now_read, f"remove these from PENDING in {Path(__file__).name}: {now_read}"


# --------------------------------------------------------------------------------------------------- the refusal


def non_default(key: str):
    """A value of the key's type that differs from its default."""
    default = DEFAULTS[key]
    if isinstance(default, bool):
        return not default
    if isinstance(default, (int, float)):
        return default + 3
    if isinstance(default, str):
        return default + "_other"
    if isinstance(default, list):
        return [*default, *default] if default else ["other"]
    raise AssertionError(f"{key}: no non-default value for {default!r}")


@pytest.mark.parametrize("key", sorted(REFUSED_KEYS))
def test_refused_key_with_another_value_is_one_line_naming_it(tmp_path, key):
    path = tmp_path / "x.yaml"
    path.write_text("")
    value = non_default(key)
    with pytest.raises(ConfigError) as info:
        load_config(path, [key, repr(value) if not isinstance(value, str) else value])
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path} + opts: {key}=") and "is not supported by mvit_video: " in message
    assert message.endswith(REFUSED_KEYS[key])


@pytest.mark.parametrize("key", sorted(REFUSED_KEYS))
def test_refused_key_at_its_default_loads(tmp_path, key):
    """Setting a refused key to its default (as PySlowFast's dumped configs do) is fine."""
    path = tmp_path / "x.yaml"
    section, name = key.split(".")
    path.write_text(f"{section}:\n  {name}: {DEFAULTS[key]!r}\n".replace("'", '"'))
    assert load_config(path)[section][name] == DEFAULTS[key]


def test_readme_lists_every_refused_key():
    """README's list of refused keys is complete (``BN.*`` stands for the batch-norm section)."""
    readme = (ROOT / "README.md").read_text()
    for key in REFUSED_KEYS:
        assert f"`{key}`" in readme or (key.startswith("BN.") and "`BN.*`" in readme), key
