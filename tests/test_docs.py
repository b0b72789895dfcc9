"""The documentation runs as written: every command in README.md and docs/*.md parses with its
script's own argparse parser, every `--set` names a real config key, and every relative link
and image points at a file that exists (and, for a Markdown file, at a heading it has).

Fast and offline: nothing is trained or sampled; only the scripts' parsers and
`keras_ncsn.config.override` (which validates `--set`) run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import importlib
import io
import os
import re
import shlex
import sys
from typing import Callable, Iterator

import pytest

from conftest import REPO, load_script

# Console entry points (pyproject's [project.scripts], added as the script bodies move into the
# package) and the scripts/ file each one stands for.
ENTRY_POINTS = {"ncsn-fit": "fit", "ncsn-sample": "sample", "ncsn-inpaint": "inpaint",
                "ncsn-export": "export", "ncsn-evaluate": "evaluate",
                "ncsn-onnx-sample": "onnx_sample", "ncsn-toy": "toy", "ncsn-bench": "bench",
                "ncsn-train-classifier": "train_classifier"}
# Scripts whose --set takes only sample.KEY=VALUE (keras_ncsn.config.override_sample).
SAMPLE_ONLY_SET = {"sample", "inpaint", "evaluate"}
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console", "zsh"}
OPERATORS = {"&&", "||", ";", "|", "&"}
# A --set value or positional that only stands for one (`train.precision=P`, `KEY=VALUE`).
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*$|<[^>]*>")


def doc_files() -> list[str]:
    return [os.path.join(REPO, "README.md"),
            *sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))]


def rel(path: str) -> str:
    return os.path.relpath(path, REPO)


@dataclasses.dataclass
class Command:
    file: str      # doc file, relative to the repository
    line: int      # 1-based line where the command starts
    text: str      # the command as written (continuations joined)
    script: str    # scripts/<script>.py
    argv: list[str]

    def where(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"


# ---------------------------------------------------------------- extraction

def _tokens(text: str) -> list[str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def _script_of(program: str, arg: str | None) -> tuple[str | None, int]:
    """(script name, index of its first argument) for one command's first two tokens."""
    name = os.path.basename(program)
    if name in ENTRY_POINTS:
        return ENTRY_POINTS[name], 1
    if name in console_scripts():
        return name, 1
    match = re.fullmatch(r"(?:.*/)?scripts/(\w+)\.py", program)
    if match and arg is not None:  # `scripts/sample.py RUN ...`; a bare name is no command
        return match.group(1), 1
    if re.fullmatch(r"python(3(\.\d+)?)?", name) and arg:
        match = re.fullmatch(r"(?:.*/)?scripts/(\w+)\.py", arg)
        if match:
            return match.group(1), 2
    return None, 0


def commands_in_text(text: str, file: str, first_line: int = 1) -> list[Command]:
    """Each `python scripts/X.py ...` / `ncsn-X ...` in one shell line (several joined by
    `&&`, `;` or pipes; leading VAR=value assignments skipped)."""
    try:
        tokens = _tokens(text)
    except ValueError as e:  # unbalanced quotes
        raise AssertionError(f"{file}:{first_line}: cannot split {text!r}: {e}") from None
    found, segment = [], []
    for token in [*tokens, ";"]:
        if token not in OPERATORS:
            segment.append(token)
            continue
        while segment and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", segment[0]):
            segment.pop(0)
        if segment:
            script, start = _script_of(segment[0], segment[1] if len(segment) > 1 else None)
            if script:
                found.append(Command(file, first_line, text.strip(), script, segment[start:]))
        segment = []
    return found


def _shell_lines(lines: list[str]) -> Iterator[tuple[int, str]]:
    """(line number, text) of the shell lines of fenced blocks: `$ ` prompts stripped,
    backslash continuations joined."""
    fence, language, pending, start = None, "", "", 0
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        marker = re.match(r"^(`{3,}|~{3,})\s*([\w+-]*)", stripped)
        if fence is None:
            if marker:
                fence, language = marker.group(1), marker.group(2).lower()
            continue
        if marker and stripped.startswith(fence) and not marker.group(2):
            fence = None
            continue
        if language not in SHELL_LANGUAGES:
            continue
        if not pending:
            start = number
            if stripped.startswith("$ "):
                stripped = stripped[2:]
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        yield start, pending + stripped
        pending = ""


def _inline_spans(lines: list[str]) -> Iterator[tuple[int, str]]:
    """(line number, text) of inline code spans outside fences that hold a command
    (`python scripts/X.py ...` or `ncsn-X ...`); a span may wrap over lines of a paragraph."""
    in_fence, paragraph = False, []

    def spans(paragraph: list[tuple[int, str]]) -> Iterator[tuple[int, str]]:
        text, starts = "", []
        for number, line in paragraph:
            starts.append((len(text), number))
            text += line + " "
        for match in re.finditer(r"`([^`]+)`", text):
            body = " ".join(match.group(1).split())
            if re.match(r"^(\$ )?(python3? )?(\S*scripts/\w+\.py|ncsn-[\w-]+)(\s|$)", body):
                line = max(n for offset, n in starts if offset <= match.start())
                yield line, body.removeprefix("$ ")

    for number, line in enumerate(lines, 1):
        if re.match(r"^\s*(`{3,}|~{3,})", line):
            in_fence = not in_fence
            yield from spans(paragraph)
            paragraph = []
            continue
        if in_fence:
            continue
        if line.strip():
            paragraph.append((number, line))
        else:
            yield from spans(paragraph)
            paragraph = []
    yield from spans(paragraph)


def extract_commands(markdown: str, file: str) -> list[Command]:
    lines = markdown.split("\n")
    found = []
    for number, text in [*_shell_lines(lines), *_inline_spans(lines)]:
        found += commands_in_text(text, file, number)
    return sorted(found, key=lambda c: c.line)


# ---------------------------------------------------------------- checking

_PARSERS: dict[str, Callable[[list[str]], argparse.Namespace]] = {}


def _parse_function(module) -> Callable | None:
    if hasattr(module, "parse_args"):
        return module.parse_args
    for name in ("build_parser", "make_parser", "get_parser", "create_parser"):
        if hasattr(module, name):
            return lambda argv, build=getattr(module, name): build().parse_args(argv)
    return None


def console_scripts() -> dict[str, str]:
    """pyproject's [project.scripts]: entry point name -> "module:function"."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        return {}
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f).get("project", {}).get("scripts", {})


def _forwards(module) -> bool:
    """Whether a scripts/ file only forwards to a package module's `main`."""
    return getattr(getattr(module, "main", None), "__module__", module.__name__) != module.__name__


def parser_for(script: str) -> Callable[[list[str]], argparse.Namespace]:
    """The script's `parse_args(argv)`: from scripts/<script>.py, or, when that file only
    forwards to a package module's `main` (the console entry point), from that module; an
    entry point with no scripts/ file, from pyproject's module."""
    if script not in _PARSERS and script in console_scripts():
        module = importlib.import_module(console_scripts()[script].partition(":")[0])
        function = _parse_function(module)
        assert function is not None, f"{script}: {module.__name__} has no parse_args or parser"
        _PARSERS[script] = function
    if script not in _PARSERS:
        path = os.path.join(REPO, "scripts", f"{script}.py")
        assert os.path.exists(path), f"no script scripts/{script}.py"
        module = load_script(script)
        function = _parse_function(module)
        if function is None and _forwards(module):
            function = _parse_function(importlib.import_module(module.main.__module__))
        assert function is not None, f"scripts/{script}.py has no parse_args or parser to check"
        _PARSERS[script] = function
    return _PARSERS[script]


def unused_settings(script: str) -> dict[str, str]:
    """The --set keys a sampling script refuses as having no effect there (its
    `UNUSED_SETTINGS`, passed to `override_sample`), wherever its code now lives."""
    path = os.path.join(REPO, "scripts", f"{script}.py")
    if not os.path.exists(path):
        return {}
    module = load_script(script)
    if not hasattr(module, "UNUSED_SETTINGS") and _forwards(module):
        module = importlib.import_module(module.main.__module__)
    return dict(getattr(module, "UNUSED_SETTINGS", {}))


def set_items(argv: list[str]) -> list[str]:
    items = []
    for i, arg in enumerate(argv):
        if arg == "--set" and i + 1 < len(argv):
            items.append(argv[i + 1])
        elif arg.startswith("--set="):
            items.append(arg[len("--set="):])
    return items


def _option(argv: list[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg[len(flag) + 1:]
    return None


def check_set_items(command: Command) -> str | None:
    """Why the command's `--set` assignments are not valid config keys (and values), or None.
    Validated by `keras_ncsn.config.override`, the function behind every script's --set."""
    from keras_ncsn.config import PRESETS, get_config, override
    from keras_ncsn.errors import ConfigError

    items = set_items(command.argv)
    if not items:
        return None
    preset = _option(command.argv, "--config")
    base = get_config(preset if preset in PRESETS else "quick")
    if command.script in SAMPLE_ONLY_SET:
        other = [item for item in items if not item.strip().startswith("sample.")]
        if other:
            return f"{command.script}.py's --set takes only sample.KEY=VALUE, got {other}"
        unused = unused_settings(command.script)
        refused = [item for item in items if item.partition("=")[0].strip() in unused]
        if refused:
            return f"--set {refused[0]}: no effect in {command.script}.py: " \
                   f"{unused[refused[0].partition('=')[0].strip()]}"
    placeholders = [item for item in items if PLACEHOLDER.search(item.partition("=")[2])]
    try:
        if not placeholders:
            override(base, items)
            return None
        for item in items:  # a value is a placeholder: check the keys alone
            key = item.partition("=")[0].strip()
            section, _, name = key.partition(".")
            if PLACEHOLDER.search(name):  # sample.KEY=VALUE
                continue
            current = getattr(getattr(base, section, None), name, "0")
            override(base, [f"{key}={current}"])
    except ConfigError as e:
        return f"--set: {e}"
    return None


def _parse_error(script: str, argv: list[str]) -> str | None:
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            parser_for(script)(argv)
    except SystemExit as e:
        if e.code not in (0, None):
            message = stderr.getvalue().strip().splitlines()
            return message[-1] if message else f"exit {e.code}"
    return None


def check_command(command: Command) -> str | None:
    """Why the command does not run as written (its parser's or --set's error), or None.
    Optional parts in brackets (`[--seed S]`) count as written; a placeholder value (`N`,
    `RUN`) that the parser refuses for its type is tried as 1, and for a choice accepted."""
    argv = [arg for arg in (a.strip("[]") for a in command.argv) if arg]
    tried: set[str] = set()
    while True:
        error = _parse_error(command.script, argv)
        value = re.search(r"invalid .*?: '([^']*)'", error or "")
        if not value or not PLACEHOLDER.search(value.group(1)):
            break
        if value.group(1) in tried:
            error = None
            break
        tried.add(value.group(1))
        argv = ["1" if arg == value.group(1) else arg for arg in argv]
    return error or check_set_items(dataclasses.replace(command, argv=argv))


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: str) -> set[str]:
    found, in_fence = set(), False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if re.match(r"^\s*(`{3,}|~{3,})", line):
                in_fence = not in_fence
            elif not in_fence and re.match(r"^#{1,6} ", line):
                found.add(slug(line.lstrip("#")))
    return found


def broken_links(markdown: str, path: str) -> list[str]:
    """`file:line: target (why)` for each relative link or image, Markdown or <img src>,
    that points at no file (or at no heading of a Markdown file)."""
    folder, problems, in_fence = os.path.dirname(path), [], False
    for number, line in enumerate(markdown.split("\n"), 1):
        if re.match(r"^\s*(`{3,}|~{3,})", line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        line = re.sub(r"`[^`]*`", "", line)
        targets = re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", line)
        targets += re.findall(r"<img[^>]*\bsrc=\"([^\"]+)\"", line)
        for target in targets:
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
                continue
            file, _, anchor = target.partition("#")
            resolved = os.path.normpath(os.path.join(folder, file)) if file else path
            if not os.path.exists(resolved):
                problems.append(f"{rel(path)}:{number}: {target} (no such file)")
            elif anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
                problems.append(f"{rel(path)}:{number}: {target} (no heading #{anchor} in "
                                f"{rel(resolved)})")
    return problems


# ---------------------------------------------------------------- the documentation

def all_commands() -> list[Command]:
    commands = []
    for path in doc_files():
        with open(path, encoding="utf-8") as f:
            commands += extract_commands(f.read(), rel(path))
    return commands


def test_the_docs_hold_commands_of_every_main_script():
    scripts = {command.script for command in all_commands()}
    assert {"fit", "sample", "inpaint", "export", "evaluate", "onnx_sample", "toy",
            "bench"} <= scripts, scripts


def test_every_documented_command_parses_with_its_scripts_parser():
    failures = []
    for command in all_commands():
        error = check_command(command)
        if error:
            failures.append(f"{command.where()}\n    -> {error}")
    assert not failures, "documented commands that do not run as written:\n" + "\n".join(failures)


def test_every_relative_link_and_image_exists():
    problems = []
    for path in doc_files():
        with open(path, encoding="utf-8") as f:
            problems += broken_links(f.read(), path)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_readme_quickstart_runs_the_ci_command_exactly():
    with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as f:
        ci = [line for line in f.read().splitlines() if line.startswith("python3 -m venv")]
    assert len(ci) == 1, ci
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read().splitlines()
    assert ci[0] in readme, f"README.md lacks the CI command, byte for byte: {ci[0]}"
    assert any(line.startswith("python3 -m venv") and line.endswith("scripts/fit.py")
               for line in readme), "README.md lacks the set-up command that runs scripts/fit.py"


def test_readme_stays_short():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        assert len(f.read().splitlines()) <= 300


# ---------------------------------------------------------------- the checker itself

FAKE_DOC = """# Fake

Run `python scripts/sample.py RUN --num-images 4
--no-such-inline-flag` to see; `scripts/export.py RUN_DIR --out FOLDER` exports.

```bash
# a comment
$ python scripts/fit.py --steps 20 \\
    --no-such-flag --out runs/x
.venv/bin/python scripts/fit.py --set train.no_such_key=1 && echo done
TF_ENABLE_ONEDNN_OPTS=0 ncsn-fit --config mnist --set train.precision=P
python scripts/fit.py --set noise.sigma_begin=0.01 --set noise.sigma_end=0.01 --set noise.num_levels=1
python scripts/sample.py runs/quick --set train.steps=3
python -c "print(1)"
```

```python
python scripts/fit.py --not-shell
```
"""


def test_extractor_finds_prompts_continuations_chains_entry_points_and_inline_spans():
    commands = extract_commands(FAKE_DOC, "fake.md")
    assert [(c.line, c.script, c.argv) for c in commands] == [
        (3, "sample", ["RUN", "--num-images", "4", "--no-such-inline-flag"]),
        (4, "export", ["RUN_DIR", "--out", "FOLDER"]),
        (8, "fit", ["--steps", "20", "--no-such-flag", "--out", "runs/x"]),
        (10, "fit", ["--set", "train.no_such_key=1"]),
        (11, "fit", ["--config", "mnist", "--set", "train.precision=P"]),
        (12, "fit", ["--set", "noise.sigma_begin=0.01", "--set", "noise.sigma_end=0.01",
                     "--set", "noise.num_levels=1"]),
        (13, "sample", ["runs/quick", "--set", "train.steps=3"]),
    ]


def test_checker_fails_on_a_made_up_flag_and_names_file_line_and_command():
    commands = extract_commands(FAKE_DOC, "fake.md")
    errors = {c.line: check_command(c) for c in commands}
    assert "--no-such-flag" in errors[8] and "unrecognized arguments" in errors[8]
    assert "--no-such-inline-flag" in errors[3]
    assert errors[4] is None
    assert commands[2].where() == ("fake.md:8: python scripts/fit.py --steps 20 "
                                   "--no-such-flag --out runs/x")
    with pytest.raises(AssertionError, match=r"fake\.md:8: .*--no-such-flag"):
        failures = [f"{c.where()} -> {errors[c.line]}" for c in commands if errors[c.line]]
        assert not failures, "\n".join(failures)


def test_checker_validates_set_keys_with_the_configs_own_override():
    commands = {c.line: c for c in extract_commands(FAKE_DOC, "fake.md")}
    assert "unknown config key 'train.no_such_key'" in check_command(commands[10])
    assert check_command(commands[11]) is None          # placeholder value: the key is real
    assert check_command(commands[12]) is None          # checked together, not one by one
    assert "only sample.KEY=VALUE" in check_command(commands[13])
    grid_every = Command("f.md", 1, "", "sample", ["RUN", "--set", "sample.grid_every=5"])
    assert "no effect in sample.py" in check_command(grid_every)
    bad_placeholder = Command("f.md", 1, "", "fit", ["--set", "train.no_such=P"])
    assert "unknown config key" in check_set_items(bad_placeholder)


def test_link_checker_reports_missing_files_and_headings(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "x.png").write_bytes(b"")
    (tmp_path / "other.md").write_text("# Other\n\n## The quick preset: what it trades away\n")
    doc = tmp_path / "doc.md"
    text = ("![ok](images/x.png) [ok](other.md#the-quick-preset-what-it-trades-away)\n"
            "![gone](images/y.png) [web](https://example.com/z.png)\n"
            "[bad anchor](other.md#nowhere) `[not a link](nope.md)`\n"
            "```\n[in code](nope.md)\n```\n<img src=\"images/z.png\">\n")
    doc.write_text(text)
    problems = broken_links(text, str(doc))
    assert len(problems) == 3, problems
    assert problems[0].endswith(":2: images/y.png (no such file)")
    assert ":3: other.md#nowhere (no heading #nowhere" in problems[1]
    assert problems[2].endswith(":7: images/z.png (no such file)")


def test_parser_is_found_when_the_script_only_forwards_to_a_package_main(monkeypatch):
    """After the script bodies move into the package, scripts/X.py keeps only
    `from keras_ncsn.<module> import main`: the parser is looked up in that module."""
    import types

    package_module = types.ModuleType("fake_ncsn_fit_module")
    exec("import argparse\n"
         "def build_parser():\n"
         "    parser = argparse.ArgumentParser()\n"
         "    parser.add_argument('--steps', type=int)\n"
         "    return parser\n"
         "def main(argv=None):\n"
         "    return 0\n"
         "UNUSED_SETTINGS = {'sample.grid_every': 'why'}\n", package_module.__dict__)
    monkeypatch.setitem(sys.modules, "fake_ncsn_fit_module", package_module)
    wrapper = types.ModuleType("script_forwarding")
    wrapper.main = package_module.main
    monkeypatch.setattr(sys.modules[__name__], "load_script", lambda name: wrapper)
    monkeypatch.setattr(sys.modules[__name__], "_PARSERS", {})
    ok = Command("f.md", 1, "python scripts/fit.py --steps 3", "fit", ["--steps", "3"])
    bad = Command("f.md", 2, "python scripts/fit.py --no-such-flag", "fit", ["--no-such-flag"])
    assert check_command(ok) is None
    assert "unrecognized arguments: --no-such-flag" in check_command(bad)
    assert unused_settings("sample") == {"sample.grid_every": "why"}
