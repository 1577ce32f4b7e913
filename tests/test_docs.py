"""The documentation ships and holds: every page is in the site's nav, every relative link
(README included) resolves, the README cites no document the repository lacks, every page's
code runs as written, and the site builds with mkdocs --strict where mkdocs is installed."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```(\w*)([^\n]*)\n(.*?)^```", re.S | re.M)
_TITLE = re.compile(r'title="([^"]+)"')


def test_every_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    nav = re.findall(r":\s*(\S+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert sorted(nav) == sorted(p.relative_to(DOCS).as_posix() for p in PAGES)


@pytest.mark.parametrize("page", [ROOT / "README.md", *PAGES], ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    text = _FENCE.sub("", page.read_text())
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"


def test_readme_cites_only_documents_that_ship() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docs/index.md" in readme
    for phrase in ("the guide", "the DESIGN", "the seed", "DESIGN.md"):
        assert phrase not in readme, f"README cites {phrase!r}, which a reader does not have"


def _driver(page: Path) -> str | None:
    """The page's code as one script: python blocks as they are, `$ ringgen ...` lines as
    commands, blocks titled with a file name written to that file; None if it has none."""
    steps: list[str] = []
    for lang, info, body in _FENCE.findall(page.read_text()):
        title = _TITLE.search(info)
        if lang == "python" and title:
            steps.append(f"Path({title.group(1)!r}).write_text({body!r})")
        elif lang == "python":
            steps.append(body)
        elif lang == "console":
            for line in body.splitlines():
                if line.startswith("$ ringgen "):
                    args = shlex.split(line[2:], comments=True)[1:]
                    steps.append(f"subprocess.run([sys.executable, '-m', 'ringgen', *{args!r}], "
                                 "check=True)")
    if not steps:
        return None
    return "import subprocess, sys\nfrom pathlib import Path\n" + "\n".join(steps) + "\n"


RUNNABLE = [p for p in PAGES if _driver(p) is not None]


@pytest.fixture
def page_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh folder for one page's code, at the same path for every page of this session (of
    this test worker): the compile cache keys a package on its folder's absolute path, so a
    package that several pages build in the same place is compiled once, not once a page."""
    folder = tmp_path_factory.getbasetemp() / "docs-page"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    return folder


@pytest.mark.slow
@pytest.mark.xdist_group("docs-pages")  # on one test worker, so that page_dir is one folder
@pytest.mark.parametrize("page", RUNNABLE, ids=lambda p: p.relative_to(DOCS).as_posix())
def test_the_code_of_each_page_runs(page: Path, page_dir: Path) -> None:
    shutil.copytree(ROOT / "examples", page_dir / "examples")
    script = page_dir / "page_code.py"
    script.write_text(_driver(page) or "")
    result = subprocess.run([sys.executable, str(script)], cwd=page_dir, capture_output=True,
                            text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(page_dir)})
    assert result.returncode == 0, f"{page.name}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
    pytest.importorskip("material", reason="the docs extra is not installed (pip install -e '.[docs]')")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d",
                             str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "handler-api" / "index.html").is_file()
