"""The documentation reads on its own: every file it names is in the repository, no path of someone's machine."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".venv", "node_modules", ".git", ".pytest_cache", ".ruff_cache", "build", "dist", ".flowrunner"}


def _walk() -> list[Path]:
    """Every file of the repository, without virtualenvs, caches, build output or runtime state."""
    found = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [name for name in dirs if name not in SKIP_DIRS and not name.endswith(".egg-info")]
        found.extend(Path(root) / name for name in files)
    return found


DOCS = sorted(path for path in _walk() if path.suffix == ".md")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\n]+)`")
# A repository path as the docs write one: directories and a file with a source-like extension.
REPO_PATH = re.compile(
    r"^\.?[\w.-]+(?:/[\w.-]+)*/(?:[\w.-]+\.(?:py|md|yaml|yml|toml|sh|html|js|css|cfg|ini))?$"
)
TOP_LEVEL = re.compile(r"^[\w.-]+\.(?:py|md|yaml|yml|toml|sh)$")
# Generated at run time, never committed (git-ignored state, build output).
RUNTIME = (".flowrunner/", ".venv/", "bench/results/", "staticfiles/", "static/")
MACHINE_PATH = re.compile(r"(?<![\w.$])(?:/(?:work|home|Users|root|mnt)/[\w.-]+|[A-Z]:\\\\[\w])")
ABSENT_DOCUMENTS = re.compile(r"\bDESIGN\b|\bthe seed's\b|\bthe seed\b(?! is printed)")


@functools.cache
def _file_names() -> frozenset[str]:
    return frozenset(path.name for path in _walk())


def _ids() -> list[str]:
    return [str(path.relative_to(REPO)) for path in DOCS]


def test_docs_are_found():
    # given the repository / when its markdown is collected / then the main documents are among them
    names = set(_ids())
    assert {"README.md", "examples/README.md", "docs/reliability.md", "docs/security.md"} <= names


@pytest.mark.parametrize("doc", DOCS, ids=_ids())
def test_docs_links_point_at_files_of_the_repository(doc: Path):
    # given a document's relative links / when each is resolved / then the file or directory exists
    missing = []
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # a URL or an anchor of the same page
        if not (doc.parent / target.split("#", 1)[0]).exists():
            missing.append(target)
    assert missing == []


@pytest.mark.parametrize("doc", DOCS, ids=_ids())
def test_docs_name_only_files_of_the_repository(doc: Path):
    # given every `path/like/this.py` a document names in code spans
    missing = []
    for span in CODE.findall(doc.read_text(encoding="utf-8")):
        for word in span.split():
            word = word.strip("(),;:'\"").split("::", 1)[0]
            if not (REPO_PATH.match(word) or TOP_LEVEL.match(word)) or word.startswith(RUNTIME):
                continue
            # when it is looked up from the repository's root or the document's own directory (a bare file name,
            # as in a table of tests, anywhere in the repository)
            found = (REPO / word).exists() or (doc.parent / word).exists()
            if not found and "/" not in word:
                found = word in _file_names()
            if not found:
                missing.append(word)
    # then it exists
    assert missing == []


@pytest.mark.parametrize("doc", DOCS, ids=_ids())
def test_docs_have_no_machine_paths_or_documents_the_reader_lacks(doc: Path):
    # given a document / when it is read / then no absolute path of the author's machine, no `cd` to one, and
    # no reference to a design document or seed that is not in the repository
    text = doc.read_text(encoding="utf-8")
    assert MACHINE_PATH.findall(text) == []
    assert re.findall(r"\bcd\s+/\S*", text) == []
    assert ABSENT_DOCUMENTS.findall(text) == []
