"""Words live in ``arcgap.cli``: no module below it spells a command-line option (``--x``) or one of arcgap's
environment variables (SOURCE_/TARGET_DOCKER_*, ARCGAP_*); they name the setting as data
(:func:`arcgap.errors.option` / :func:`arcgap.errors.variable`) and :func:`arcgap.cli.hints.words` spells it.

The scan reads the AST: every string constant and every f-string (its placeholders read as ``x``, so
``f"--{role}-{key}"`` is caught too). Docstrings are left out: they speak to developers, never reach a user, and
going stale there breaks nothing. What remains allowed is listed below, module by module, with the reason.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.main

from arcgap.bundle.signing import PASSPHRASE_ENV
from arcgap.cli import app, run
from arcgap.cli.hints import OPTIONS, SIDE_OPTIONS, SIDE_VARIABLES, VARIABLES, word, words
from arcgap.commands.settings import env_name
from arcgap.errors import UsageError, option, settings_in, variable

PACKAGE = Path(__file__).resolve().parent.parent / "arcgap"
FLAG = re.compile(r"(?<![\w-])--[a-z][\w-]*")
VARIABLE = re.compile(r"\b(?:SOURCE|TARGET)_DOCKER\b|_DOCKER_[A-Za-z]|\bARCGAP_[A-Z]\w*")

# Other programs' command lines, which arcgap runs or writes for the operator: their options, not arcgap's.
_PIP = {"--no-deps", "--only-binary", "--disable-pip-version-check", "--no-input", "--dest", "--python-version",
        "--implementation", "--platform", "--wheel-dir", "--no-index", "--find-links", "--isolated", "--quiet"}
_AZ = {"--config-protected-file", "--source", "--path", "--patch-file", "--name", "--resource-group",
       "--custom-location", "--connectivity-mode", "--k8s-namespace", "--use-k8s", "--json-values",
       "--cluster-name", "--cluster-type", "--extension-type", "--scope", "--release-namespace", "--config-file"}
FOREIGN: dict[str, set[str]] = {
    "installer/build.py": _PIP,  # pip wheel's argv
    "installer/wheelhouse.py": _PIP,  # pip download's argv
    "bundle/reader.py": {"--long"},  # zstd --long=27: how to recompress a bundle
    "bundle/zstdframes.py": {"--long"},
    "arc/handoff.py": _AZ,  # the az commands of the hand-off's scripts
}
# Files arcgap writes whose fixed text names the arcgap command that reads them: the bytes are the file's own
# (pinned by their tests) and are read where no arcgap CLI runs, so the CLI cannot word them at print time.
DOCUMENTS: dict[str, set[str]] = {
    "installer/script.py": _PIP | {"--installer-python", "--installer-platform", "--with-installer", "--version"},
    "transfer/receipt.py": {"--since"},  # the receipt's header comment
    "arc/listgen.py": {"--source-", "SOURCE_DOCKER_"},  # the image list's header comment
    "arc/handoff.py": {"--no-secret"},  # the hand-off README
}
# The environment lookups themselves (behaviour, not words): one function builds the side's names, one constant
# names the passphrase; tests below tie both to the CLI's spelling.
LOOKUPS: dict[str, set[str]] = {"commands/settings.py": {"_DOCKER_x"}, "bundle/signing.py": {"ARCGAP_KEY_PASSPHRASE"}}


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _texts(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, text) of every string below: constants, and f-strings with ``x`` for each placeholder."""
    skip = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            skip.update(id(v) for v in node.values)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.JoinedStr):
            yield node.lineno, "".join(v.value if isinstance(v, ast.Constant) else "x" for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def _below_cli(root: Path = PACKAGE) -> Iterator[tuple[str, ast.AST]]:
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if not relative.startswith("cli/"):
            yield relative, ast.parse(path.read_text(), filename=str(path))


def names_below_cli(root: Path = PACKAGE) -> list[str]:
    """Every option or variable name spelled below ``root/cli/`` that no list above allows, as
    ``module:line: name``, sorted."""
    found = []
    for module, tree in _below_cli(root):
        allowed = FOREIGN.get(module, set()) | DOCUMENTS.get(module, set()) | LOOKUPS.get(module, set())
        for line, text in _texts(tree):
            found += [f"{module}:{line}: {name}" for name in FLAG.findall(text) + VARIABLE.findall(text)
                      if name not in allowed]
    return sorted(found)


def test_no_module_below_cli_spells_an_option_or_a_variable() -> None:
    assert names_below_cli() == []


def test_the_scan_sees_what_it_forbids(tmp_path: Path) -> None:
    """A constant, an f-string built from parts, and an environment variable are all caught; a docstring is not."""
    (tmp_path / "cli").mkdir()
    (tmp_path / "cli" / "x.py").write_text('HINT = "pass --force"\n')  # cli/ may spell them
    (tmp_path / "low.py").write_text(
        '"""Docstring: --since is fine here."""\n'
        'A = "pass --force to replace it"\n'
        'def f(role, key):\n    return f"pass --{role}-{key} or set {role.upper()}_DOCKER_{key}"\n'
        'B = "check ARCGAP_KEY_PASSPHRASE"\n'
    )
    assert names_below_cli(tmp_path) == ["low.py:2: --force", "low.py:4: --x-x", "low.py:4: _DOCKER_x",
                                         "low.py:5: ARCGAP_KEY_PASSPHRASE"]


def _keys_below_cli() -> set[tuple[str, str]]:
    """The (kind, key) of every ``option("…")`` / ``variable("…")`` call below ``cli/`` (an f-string key such as
    ``f"{role}.{key}"`` stands for both sides and every side setting)."""
    keys: set[tuple[str, str]] = set()
    for _, tree in _below_cli():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args):
                continue
            kind = {"option": "option", "named": "option", "variable": "variable"}.get(node.func.id)
            argument = node.args[0]
            if kind and isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                keys.add((kind, argument.value))
    return keys


def _cli_options() -> set[str]:
    names: set[str] = set()

    def walk(command: object) -> None:
        for param in getattr(command, "params", []):
            names.update(o for o in (*param.opts, *param.secondary_opts) if o.startswith("--"))
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(app))
    return names | {"--help"}


def test_every_named_setting_has_a_name_and_every_option_name_exists() -> None:
    used = _keys_below_cli()
    assert len(used) > 40  # the scan finds the calls (a broken scan would pass the loop below vacuously)
    for kind, key in used:
        assert word(kind, key), (kind, key)  # KeyError: a key the CLI cannot word
    options = _cli_options()
    every = [*OPTIONS.values(), *(word("option", f"{side}.{k}") for side in ("source", "target") for k in SIDE_OPTIONS)]
    assert sorted(set(every) - options) == []  # a renamed option fails here, not in front of a user


def test_the_lookups_and_the_words_agree() -> None:
    assert word("variable", "sign.passphrase") == PASSPHRASE_ENV == VARIABLES["sign.passphrase"]
    for side in ("source", "target"):
        for key in SIDE_VARIABLES:
            assert word("variable", f"{side}.{key}") == env_name(side, key)


def test_words_spell_settings_and_leave_other_text_alone() -> None:
    text = f"choose another {option('output')} or set {variable('target.tag')}; {option('source.ca_file')}"
    assert words(text) == "choose another --output or set TARGET_DOCKER_TAG; --source-ca-file"
    assert settings_in(text) == (("option", "output"), ("variable", "target.tag"), ("option", "source.ca_file"))
    assert words("a {path} with --dashes and ${HOME}") == "a {path} with --dashes and ${HOME}"
    error = UsageError(f"{option('since')} x: bad", hint=f"check {variable('source.tag')}")
    assert error.settings == (("option", "since"), ("variable", "source.tag"))
    with pytest.raises(KeyError):
        word("option", "no_such_setting")
    assert words(option("no_such_setting")) == "no_such_setting"  # never costs the user the error line


def test_the_cli_prints_the_worded_hint(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """End to end: a lower layer's error (bundle.signing refusing to overwrite a key) reaches stderr worded."""
    (tmp_path / "k.key").write_text("precious")
    code = run(["keygen", "--output", str(tmp_path / "k")])
    err = capsys.readouterr().err
    assert code == 9 and "\x00" not in err
    assert err.splitlines() == [f"error: {tmp_path / 'k.key'} already exists",
                                "hint: choose another --output; arcgap never overwrites a key"]
