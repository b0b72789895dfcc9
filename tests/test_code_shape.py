"""Code shape: no function over 60 lines and no class over 150 lines in keras_ncsn/.

A unit may be longer only with an argued exception: a comment on the line right above it
(above its decorators), `# long-unit: <why it reads best as one piece>`, of at least a few
words. Lines count from the first decorator to the last line, docstring included.
"""

from __future__ import annotations

import ast
import os

from conftest import REPO

PACKAGE = os.path.join(REPO, "keras_ncsn")
MAX_LINES = {"function": 60, "class": 150}
EXCEPTION_MARKER = "# long-unit:"
MIN_REASON_WORDS = 4


def _kind(node: ast.AST) -> str | None:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return "function"
    return "class" if isinstance(node, ast.ClassDef) else None


def _argued(lines: list[str], first: int) -> bool:
    """Whether the line above line `first` (1-based) argues an exception."""
    above = lines[first - 2].strip() if first >= 2 else ""
    reason = above[len(EXCEPTION_MARKER):].split() if above.startswith(EXCEPTION_MARKER) else []
    return len(reason) >= MIN_REASON_WORDS


def long_units(source: str, name: str = "<source>") -> list[str]:
    """'file:line kind name (N lines)' for each over-long unit without an argued exception."""
    lines = source.splitlines()
    found = []
    for node in sorted(ast.walk(ast.parse(source)), key=lambda n: getattr(n, "lineno", 0)):
        kind = _kind(node)
        if kind is None:
            continue
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        length = node.end_lineno - first + 1
        if length > MAX_LINES[kind] and not _argued(lines, first):
            found.append(f"{name}:{node.lineno} {kind} {node.name} ({length} lines)")
    return found


def package_long_units() -> list[str]:
    found = []
    for folder, _, files in os.walk(PACKAGE):
        for file in sorted(files):
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                with open(path, encoding="utf-8") as f:
                    found += long_units(f.read(), os.path.relpath(path, REPO))
    return found


def test_the_checker_counts_lines_and_honours_only_argued_exceptions():
    body = "\n".join(["    x = 1"] * 60)
    source = (f"def short():\n{body[:-10]}\n\n"
              f"@decorated\ndef long():\n{body}\n\n"
              f"# long-unit: one table of cases, clearer whole\ndef argued():\n{body}\n\n"
              f"# long-unit: because\ndef unargued():\n{body}\n")
    assert [unit.split(" ", 1)[1] for unit in long_units(source)] == [
        "function long (62 lines)", "function unargued (61 lines)"]
    cls = "class Big:\n" + "\n".join(f"    a{i} = {i}" for i in range(150))
    assert long_units(cls) == ["<source>:1 class Big (151 lines)"]


def test_no_over_long_function_or_class_in_the_package():
    found = package_long_units()
    assert not found, ("split these, or argue an exception with a '# long-unit: why' "
                       "comment above them:\n" + "\n".join(found))
