"""The docs work: every relative link and #anchor in README.md and docs/*.md resolves, and every command they name
answers.

Links: each ``[text](target)`` / ``![alt](target)`` outside code must name a file or folder that exists (relative
to the page), and a ``#anchor`` must be the GitHub slug of a heading of the page it points to. Commands: every
``python -m MODULE`` a page shows is run once as ``python -m MODULE --help`` (exit 0, usage text; no real run),
every ``make TARGET`` must be a Makefile target, every ``configs/*.yaml`` and ``python SCRIPT.py`` path must exist.
The checker itself is tested on a small synthetic page, so a broken link is known to fail the test.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"`[^`]*`")
MODULE = re.compile(r"\bpython3? -m ([A-Za-z_][\w.]*)")
MAKE = re.compile(r"(?:^|[`\n]\s*|&&\s*)make ([a-z][\w-]*)")
CONFIG = re.compile(r"(?<![\w./])(configs/[\w.-]+\.ya?ml)\b")
SCRIPT = re.compile(r"\bpython3? ((?:experiments|nst|doodle|studio)/[\w/.-]+\.py)\b")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its rendered text lowercased, punctuation dropped, each space a '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text, not its target
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)  # \w is Unicode: letters such as ü stay, as on GitHub
    return text.replace(" ", "-")


def prose_lines(text: str):
    """(line number, line, inside a code fence) for every line of a page."""
    fenced = False
    for n, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            yield n, line, True
            continue
        yield n, line, fenced


def anchors(text: str) -> set[str]:
    """Every anchor a page has: its headings' slugs (repeats get -1, -2, ... as on GitHub) and explicit ids."""
    seen: dict[str, int] = {}
    out = set()
    for _, line, fenced in prose_lines(text):
        if fenced:
            continue
        m = HEADING.match(line)
        if m:
            s = slug(m.group(2))
            k = seen.get(s, 0)
            out.add(s if k == 0 else f"{s}-{k}")
            seen[s] = k + 1
        out.update(re.findall(r"<a\s+(?:name|id)=\"([^\"]+)\"", line))
    return out


def links(text: str):
    """(line number, target) of every markdown link and image outside code."""
    for n, line, fenced in prose_lines(text):
        if fenced:
            continue
        for m in LINK.finditer(INLINE_CODE.sub("", line)):
            yield n, m.group(1)


def broken_links(pages: list[Path]) -> list[str]:
    """One line per link that does not resolve: a missing file or an anchor that is no heading there."""
    problems = []
    cache: dict[Path, set[str]] = {}
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for n, target in links(text):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:: not ours to check
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(page.parents[1]) if page.parent.name == 'docs' else page.name}:{n}"
            if not dest.exists():
                problems.append(f"{where}: {target}: no such file {dest}")
                continue
            if anchor:
                if dest.suffix.lower() != ".md" or not dest.is_file():
                    problems.append(f"{where}: {target}: an anchor into a file that is not markdown")
                    continue
                if dest not in cache:
                    cache[dest] = anchors(dest.read_text(encoding="utf-8"))
                if anchor not in cache[dest]:
                    problems.append(f"{where}: {target}: no heading '#{anchor}' in {dest.name}")
    return problems


def code_text(text: str) -> str:
    """The parts of a page that are code: fenced blocks and inline code spans."""
    parts = []
    for _, line, fenced in prose_lines(text):
        parts.append(line if fenced else " ".join(INLINE_CODE.findall(line)))
    return "\n".join(parts)


def named(pattern: re.Pattern, pages=PAGES) -> dict[str, str]:
    """What the pages name in their code, each with the first page that names it."""
    out: dict[str, str] = {}
    for page in pages:
        for m in pattern.finditer(code_text(page.read_text(encoding="utf-8"))):
            out.setdefault(m.group(1), page.name)
    return out


# ------------------------------------------------------------------ the checker itself


@pytest.mark.parametrize("heading, want", [
    ("Quick start", "quick-start"),
    ("Automatic maps (no hand painting)", "automatic-maps-no-hand-painting"),
    ("Where the loss curve flattens (Fig 3.1)", "where-the-loss-curve-flattens-fig-31"),
    ("Token authentication (Ray 2.59 and later)", "token-authentication-ray-259-and-later"),
    ("What it writes, and resuming", "what-it-writes-and-resuming"),
    ("Measured: the weight-ratio sweep", "measured-the-weight-ratio-sweep"),
    ("The `nst_run` CLI, **bold**", "the-nst_run-cli-bold"),
    ("Tübingen & friends", "tübingen--friends"),
    ("See [the page](other.md#x)", "see-the-page"),
])
def test_slug_is_githubs(heading, want):
    assert slug(heading) == want


def test_checker_finds_each_broken_link_and_only_those(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "pic.png").write_bytes(b"\x89PNG")
    (tmp_path / "docs" / "other.md").write_text("# Other page\n\n## A section: with (punctuation)\n\n## A section: with (punctuation)\n")
    page = tmp_path / "README.md"
    page.write_text("\n".join([
        "# Title",
        "## Quick start",
        "[ok file](docs/other.md) [ok anchor](docs/other.md#a-section-with-punctuation)",
        "[ok repeat](docs/other.md#a-section-with-punctuation-1) [ok here](#quick-start) ![ok](pic.png)",
        "[web](https://example.org/#whatever) [mail](mailto:a@b.c)",
        "[bad file](docs/missing.md) ![bad image](docs/pic.png)",
        "[bad anchor](docs/other.md#no-such-heading) [bad here](#quickstart)",
        "`[in code](nowhere.md)`",
        "```",
        "[in a fence](nowhere.md)",
        "## Not a heading inside a fence",
        "```",
        "[fenced heading](#not-a-heading-inside-a-fence)",
    ]) + "\n")
    problems = broken_links([page, tmp_path / "docs" / "other.md"])
    bad = sorted(re.search(r": (\S+): ", p).group(1) for p in problems)
    assert bad == sorted(["docs/missing.md", "docs/pic.png", "docs/other.md#no-such-heading", "#quickstart",
                          "#not-a-heading-inside-a-fence"]), problems
    assert all(p.startswith("README.md:") for p in problems), problems


def test_collectors_find_commands_in_code_only(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("Prose: python -m not.this and make nothing.\n\n```bash\npython -m nst.run configs/quick.yaml"
                    " && make figures\nmake docs-figures   # x\n```\n\nInline `python -m doodle.segment IMG` and "
                    "`python experiments/automap_iou.py`.\n")
    assert set(named(MODULE, [page])) == {"nst.run", "doodle.segment"}
    assert set(named(MAKE, [page])) == {"figures", "docs-figures"}
    assert set(named(CONFIG, [page])) == {"configs/quick.yaml"}
    assert set(named(SCRIPT, [page])) == {"experiments/automap_iou.py"}


# ------------------------------------------------------------------ the real pages


def test_pages_exist_and_readme_is_a_front_page():
    assert len(PAGES) > 5, PAGES
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250


def test_every_relative_link_and_anchor_resolves():
    problems = broken_links(PAGES)
    assert not problems, "\n".join(problems)


def test_every_make_target_config_and_script_named_exists():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
    missing = [f"make {t} ({p})" for t, p in named(MAKE).items() if t not in targets]
    missing += [f"{c} ({p})" for c, p in named(CONFIG).items() if not (ROOT / c).is_file()]
    missing += [f"{s} ({p})" for s, p in named(SCRIPT).items() if not (ROOT / s).is_file()]
    assert named(MAKE) and named(CONFIG)
    assert not missing, missing


MODULES = named(MODULE)


def test_the_pages_name_the_main_commands():
    assert {"nst.run", "doodle.run", "studio", "nst.score", "experiments.sweep", "nst.video", "pytest"} <= set(MODULES)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "MODULE"))
def test_every_module_a_page_runs_answers_help(module):
    res = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, f"python -m {module} --help (named in {MODULES[module]}): {res.stderr[-2000:]}"
    assert "usage" in (res.stdout + res.stderr).lower(), res.stdout[:500]
