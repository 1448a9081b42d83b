"""Every link and example path in the docs and in every ``--help`` resolves in a fresh clone.

"Resolves" means: the path is a file or folder tracked by git (what a clone gets), relative to
the document or to the repository root. Checked are
* markdown links and images, ``[text](path)``, in README.md, docs/, cluster/README.md,
  proto/README.md, traces/README.md and CHANGELOG.md;
* repository paths in their text (``cluster/aws.yaml``, ``gcode/data/...csv``, globs such as
  ``traces/lambda-*.csv``): any path whose first folder is one of the repository's own;
* documents named in passing (``SCHEMES.md``): beside the document, at the root or in docs/;
* the value of every ``--trace``, ``--inject-trace``, ``--config`` and ``--traces`` in an
  example, wherever it points (an example that names ``run.toml`` must ship it);
* the same in the output of ``gcode --help``, of every subcommand's ``--help`` and of
  ``cluster/local.sh --help``;
* every anchor (``#section``) of a link to a markdown document, or within one: the heading it
  names exists, slugged as GitHub does.
Absolute paths, ``~/...``, ``$VAR``, ``<placeholder>`` and upper-case metavariables (PATH,
DIR) are left alone: they name the reader's own files or other machines.
"""

import argparse
import fnmatch
import re
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = ["README.md", "CHANGELOG.md", "cluster/README.md", "proto/README.md", "traces/README.md",
        *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]
TOP = ("cluster", "docs", "gcode", "tests", "benchmarks", "proto", "traces", "examples", ".ci")

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
REPO_PATH = re.compile(r"(?<![\w./$~<-])((?:" + "|".join(map(re.escape, TOP)) + r")/[\w.*/-]*[\w*/])")
DOC_NAME = re.compile(r"(?<![\w./-])([A-Z][A-Z_]*\.md)\b")  # SCHEMES.md: named, not linked
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$")
FENCE = re.compile(r"^\s*(```|~~~)")
FLAG_VALUE = re.compile(r"--(?:inject-trace|trace|traces|config)[ =]([^\s`'\"|)\]]+)")


@lru_cache(maxsize=1)
def tracked() -> frozenset[str]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                             timeout=60, check=True).stdout
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: what is on disk
        return frozenset(str(p.relative_to(REPO)) for p in REPO.rglob("*") if p.is_file()
                         and ".venv" not in p.parts)
    return frozenset(out.splitlines())


def resolves(path: str, base: Path) -> bool:
    """Whether ``path`` (relative to the folder ``base`` or to the repository) names a tracked
    file, a folder holding tracked files, or a glob matching some."""
    path = path.split("#", 1)[0].rstrip(".,;:")
    for root in {base, REPO, REPO / "docs"}:
        full = (root / path).resolve()
        try:
            rel = str(full.relative_to(REPO))
        except ValueError:
            continue
        if any(ch in rel for ch in "*?["):
            if fnmatch.filter(tracked(), rel):
                return True
        elif rel in tracked() or any(f.startswith(rel.rstrip("/") + "/") for f in tracked()):
            return True
    return False


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a markdown document's headings (outside code blocks); a repeated
    heading's anchors get -1, -2, … as on GitHub."""
    seen: dict[str, int] = {}
    out, fenced = set(), False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and (m := HEADING.match(line)):
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_anchors(doc: Path) -> list[str]:
    """Links of ``doc`` whose ``#anchor`` names no heading of the markdown file they point at."""
    bad = []
    for link in LINK.findall(doc.read_text(encoding="utf-8")):
        if link.startswith(("http://", "https://", "mailto:")) or "#" not in link:
            continue
        target, anchor = link.split("#", 1)
        path = (doc.parent / target).resolve() if target else doc
        if (path.suffix == ".md" and path.is_file()
                and anchor not in anchors(path.read_text(encoding="utf-8"))):
            bad.append(link)
    return bad


def _placeholder(value: str) -> bool:
    return (value.startswith(("/", "~", "$", "<", "http")) or value.isupper() or "…" in value
            or "..." in value)


def references(text: str) -> list[tuple[str, str]]:
    """(kind, path) of every link, repository path and example flag value in ``text``."""
    refs = [("link", m) for m in LINK.findall(text)
            if not m.startswith(("http://", "https://", "mailto:", "#"))]
    refs += [("path", m) for m in REPO_PATH.findall(text)]
    refs += [("flag", m) for m in FLAG_VALUE.findall(text) if not _placeholder(m)]
    refs += [("doc", m) for m in DOC_NAME.findall(text)]
    return refs


def helps() -> dict[str, str]:
    """``--help`` text of gcode and of every (sub)subcommand, and of cluster/local.sh."""
    from gcode.cli import build_parser
    out = {}

    def walk(parser, name):
        out[name] = parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, child in action.choices.items():
                    walk(child, f"{name} {sub}")
    walk(build_parser(), "gcode")
    out["cluster/local.sh"] = subprocess.run(["bash", str(REPO / "cluster" / "local.sh"), "--help"],
                                             capture_output=True, text=True, timeout=60, check=False).stdout
    return out


def test_the_reference_finder_finds_what_it_should():
    text = ("see [the design](docs/DESIGN.md), `cluster/aws.yaml`, ![x](a.png), "
            "gcode tune --trace traces/t.csv --config run.toml --trace PATH and "
            "`traces/lambda-*.csv`, https://example.org/x/y and /home/ray/cluster/x.toml; "
            "as SCHEMES.md says")
    assert references(text) == [("link", "docs/DESIGN.md"), ("link", "a.png"),
                                ("path", "docs/DESIGN.md"), ("path", "cluster/aws.yaml"),
                                ("path", "traces/t.csv"), ("path", "traces/lambda-*.csv"),
                                ("flag", "traces/t.csv"), ("flag", "run.toml"),
                                ("doc", "SCHEMES.md")]
    assert resolves("docs/DESIGN.md", REPO) and not resolves("docs/NOPE.md", REPO)
    assert resolves("traces/lambda-*.csv", REPO) and resolves("gcode/data/", REPO)
    assert not resolves("../shared/traces/x.csv", REPO) and not resolves("PLATFORM.md", REPO)


@pytest.mark.parametrize("doc", DOCS)
def test_every_link_and_path_in_the_docs_resolves(doc):
    path = REPO / doc
    assert doc in tracked(), f"{doc} is not in the repository"
    broken = [(kind, ref) for kind, ref in references(path.read_text(encoding="utf-8"))
              if not resolves(ref, path.parent)]
    assert not broken, f"{doc}: {broken}"


def test_anchors_are_found_as_github_makes_them():
    text = ("# Results\n```\n# not a heading\n```\n## Scale: 10,000 workers (`gcode bench scale`)\n"
            "## Results\n")
    assert anchors(text) == {"results", "scale-10000-workers-gcode-bench-scale", "results-1"}


@pytest.mark.parametrize("doc", DOCS)
def test_every_anchor_in_the_docs_names_a_heading(doc):
    bad = broken_anchors(REPO / doc)
    assert not bad, f"{doc}: links to missing headings: {bad}"


def test_every_path_in_every_help_resolves():
    broken = {name: bad for name, text in helps().items()
              if (bad := [r for r in references(text) if not resolves(r[1], REPO)])}
    assert not broken, broken
