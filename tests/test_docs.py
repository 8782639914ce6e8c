"""The documentation stays true: the CLI reference matches the parser, links resolve inside the
repository, and nothing points at files outside it.

`mkdocs build --strict` (scripts/docs build, run in CI) checks links, anchors, snippets and the
API reference in the built site; these tests need no docs extra, so `pytest` catches the common
breaks on any developer machine.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SNIPPET_BASE = ROOT  # mkdocs.yml: pymdownx.snippets base_path ["."], mkdocs runs from the root
GENERATOR = ROOT / "scripts" / "cli_reference.py"
REGENERATE = "python scripts/cli_reference.py"

# What the project must never point at: the files it was planned from live outside it.
# Spelt in pieces, so that this file does not itself name the folder it guards against.
OUTSIDE = "/".join(("..", "shared"))
FORBIDDEN = (OUTSIDE, "DESIGN.md", "STYLE.md")
SCANNED = ("README.md", "mkdocs.yml", "docs", "examples", "firmware_bridge")


@functools.cache
def _generator() -> ModuleType:
    """scripts/cli_reference.py, imported from its file (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("_cli_reference", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


# -- the CLI reference ------------------------------------------------------------------------


def test_cli_reference_matches_the_parser() -> None:
    committed = (DOCS / "cli.md").read_text(encoding="utf-8")
    made_with = re.search(r"with Python (\d+\.\d+)'s argparse", committed)
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if made_with is not None and made_with.group(1) != running:
        pytest.skip(
            f"docs/cli.md was generated with Python {made_with.group(1)}; argparse lays out help "
            f"differently on {running} (regenerate with Python {made_with.group(1)}: {REGENERATE})"
        )
    expected: str = _generator().render()
    if committed != expected:
        diff = "".join(
            list(
                difflib.unified_diff(
                    committed.splitlines(keepends=True),
                    expected.splitlines(keepends=True),
                    "docs/cli.md (committed)",
                    "docs/cli.md (from the parser)",
                )
            )[:60]
        )
        pytest.fail(
            f"docs/cli.md is out of date with the parser: run `{REGENERATE}` and commit "
            f"docs/cli.md.\n{diff}",
            pytrace=False,
        )


def test_cli_reference_has_a_section_for_every_command() -> None:
    generator = _generator()
    from firmware_bridge.cli import build_parser  # noqa: PLC0415 - only this test needs it

    names = [command.name for command in generator.commands(build_parser())]
    assert "massager run" in names
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    headings = re.findall(r"^#{2,6} (massager.*)$", text, re.MULTILINE)
    assert headings == names, f"run `{REGENERATE}`"


def test_cli_reference_does_not_depend_on_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    generator = _generator()
    monkeypatch.setenv("COLUMNS", "40")
    narrow = generator.render()
    monkeypatch.setenv("COLUMNS", "250")
    assert generator.render() == narrow


# -- links and references ---------------------------------------------------------------------

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
_INLINE_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(][^)]*)?\)")
_REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
_HTML_LINK = re.compile(r"""<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*["']([^"']+)["']""")
_SNIPPET = re.compile(r"""^\s*(;?)--8<--\s+(["'])(.+?)\2\s*$""")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


@dataclass(frozen=True)
class Link:
    source: str  # the file the link is written in, relative to the repository
    line: int
    target: str


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """Lines outside fenced code blocks, code spans blanked."""
    kept: list[tuple[int, str]] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        opened = _FENCE.match(line)
        if fence is None and opened:
            fence = opened.group(1)
            continue
        if fence is not None:
            if line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
                fence = None
            continue
        kept.append((number, _CODE_SPAN.sub("", line)))
    return kept


def links(text: str, source: str) -> list[Link]:
    """Every relative link in Markdown `text` (inline, reference definitions, HTML)."""
    found = []
    for number, line in _prose_lines(text):
        targets = _INLINE_LINK.findall(line) + _HTML_LINK.findall(line)
        definition = _REFERENCE_DEFINITION.match(line)
        if definition:
            targets.append(definition.group(1))
        for target in targets:
            path = target.split("#", 1)[0]
            if path and not _SCHEME.match(target) and not target.startswith("//"):
                found.append(Link(source, number, target))
    return found


def snippets(text: str) -> list[tuple[int, str]]:
    """`--8<-- "path"` includes (pymdownx.snippets) outside code blocks, with their lines."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        match = _SNIPPET.match(line)
        if match and not match.group(1):  # `;--8<--` is an escaped, literal one
            found.append((number, match.group(3)))
    return found


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if _inside(path, root) else str(path)


def problems_in_page(page: Path, root: Path, docs: Path, snippet_base: Path) -> list[str]:
    """A docs page's links must reach files inside docs/ (what the site can serve), its
    snippets files inside the snippet base; included text is checked as part of the page."""
    found = []
    text = page.read_text(encoding="utf-8")
    name = _relative(page, root)
    for number, included in snippets(text):
        snippet = (snippet_base / included).resolve()
        if not _inside(snippet, root.resolve()) or not snippet.is_file():
            found.append(f"{name}:{number}: snippet {included!r} is not a file in the repository")
            continue
        for link in links(snippet.read_text(encoding="utf-8"), included):
            found += _page_link_problem(link, page, docs, f"{name}:{number} (from {included})")
    for link in links(text, name):
        found += _page_link_problem(link, page, docs, f"{name}:{link.line}")
    return found


def _page_link_problem(link: Link, page: Path, docs: Path, where: str) -> list[str]:
    target = (page.parent / link.target.split("#", 1)[0]).resolve()
    if not _inside(target, docs.resolve()):
        return [
            f"{where}: link {link.target!r} leaves docs/ (the site cannot serve it): link a "
            "docs page, include the file with a snippet, or name it in a code span"
        ]
    if not target.exists():
        return [f"{where}: link {link.target!r} does not exist"]
    return []


def problems_in_readme(readme: Path, root: Path) -> list[str]:
    """The README's links must reach files inside the repository."""
    found = []
    for link in links(readme.read_text(encoding="utf-8"), readme.name):
        target = (readme.parent / link.target.split("#", 1)[0]).resolve()
        if not _inside(target, root.resolve()):
            found.append(f"{readme.name}:{link.line}: link {link.target!r} leaves the repository")
        elif not target.exists():
            found.append(f"{readme.name}:{link.line}: link {link.target!r} does not exist")
    return found


def test_every_relative_link_in_the_readme_resolves_inside_the_repository() -> None:
    problems = problems_in_readme(ROOT / "README.md", ROOT)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda page: page.name)
def test_every_relative_link_in_the_docs_resolves_inside_docs(page: Path) -> None:
    problems = problems_in_page(page, ROOT, DOCS, SNIPPET_BASE)
    assert not problems, "\n".join(problems)


def test_every_docs_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = re.findall(r"^\s*-\s*[^:\n]+:\s*(\S+\.md)\s*$", config, re.MULTILINE)
    pages = sorted(page.name for page in DOCS.glob("*.md"))
    assert sorted(nav) == pages
    assert "cli.md" in nav


def test_the_link_checks_catch_what_they_must(tmp_path: Path) -> None:
    """The checks above would pass vacuously if they found no links: prove they bite."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "data.toml").write_text("", encoding="utf-8")
    (tmp_path / "NOTES.md").write_text("[bad](docs/gone.md)\n", encoding="utf-8")
    (docs / "other.md").write_text("# Other\n", encoding="utf-8")
    (docs / "page.md").write_text(
        "[ok](other.md#other) [web](https://example.com) [anchor](#here) `[code](../x.md)`\n"
        "[outside](../tests/data.toml)\n"
        "![missing image](img/none.png)\n"
        "```md\n[in a fence](../nowhere.md)\n```\n"
        '--8<-- "NOTES.md"\n'
        '--8<-- "absent.md"\n'
        ';--8<-- "escaped.md"\n'
        "[ref]: ../tests/data.toml\n"
        '<a href="../README.md">html</a>\n',
        encoding="utf-8",
    )
    (tmp_path / "README.md").write_text(
        "[fine](docs/other.md) [gone](docs/none.md) [out](../elsewhere/x.md)\n", encoding="utf-8"
    )
    page = problems_in_page(docs / "page.md", tmp_path, docs, tmp_path)
    assert [problem.split(": ", 1)[0] for problem in page] == [
        "docs/page.md:7 (from NOTES.md)",  # a link in included text, resolved from the page
        "docs/page.md:8",  # the snippet that does not exist
        "docs/page.md:2",  # leaves docs/
        "docs/page.md:3",  # does not exist
        "docs/page.md:10",  # a reference definition leaving docs/
        "docs/page.md:11",  # HTML
    ]
    readme = problems_in_readme(tmp_path / "README.md", tmp_path)
    assert [problem.split(": ", 2)[1] for problem in readme] == [
        "link 'docs/none.md' does not exist",
        "link '../elsewhere/x.md' leaves the repository",
    ]


# -- the project stands alone -----------------------------------------------------------------


def _scanned_files(root: Path) -> list[Path]:
    files = []
    for name in SCANNED:
        path = root / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += [
                file
                for file in sorted(path.rglob("*"))
                if file.is_file() and "__pycache__" not in file.parts
            ]
    return files


def outside_references(root: Path) -> list[str]:
    found = []
    for file in _scanned_files(root):
        text = file.read_bytes().decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            found += [
                f"{file.relative_to(root).as_posix()}:{number}: mentions {word!r}"
                for word in FORBIDDEN
                if word in line
            ]
    return found


def test_nothing_points_outside_the_repository() -> None:
    """README, docs, mkdocs.yml, examples and the package say what users need themselves."""
    problems = outside_references(ROOT)
    assert not problems, "\n".join(problems)


def test_the_outside_reference_check_bites(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text(f"ok\nsee {OUTSIDE}/notes\n", encoding="utf-8")
    (tmp_path / "firmware_bridge").mkdir()
    (tmp_path / "firmware_bridge" / "x.py").write_text('"""As DESIGN.md says."""\n', "utf-8")
    (tmp_path / "tests").mkdir()  # not scanned: this very file names the words
    (tmp_path / "tests" / "t.py").write_text("STYLE.md\n", encoding="utf-8")
    assert outside_references(tmp_path) == [
        f"docs/a.md:2: mentions {OUTSIDE!r}",
        "firmware_bridge/x.py:1: mentions 'DESIGN.md'",
    ]
