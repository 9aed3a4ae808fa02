"""mkdocs hook: the committed benchmark runs, kept where segbench wrote them, as pages of the site.

The runs stay in benchmarks/results/, beside the code that made them, so a run is committed in one place.
This hook adds every file there to the site under results/ (README.md and report.md pages, their plots,
results.json), as if docs/results/ held them, and writes results/index.md: a list of the run folders made
from the folders themselves, so a new run appears without editing mkdocs.yml. A page linking a result that
is not there fails `mkdocs build --strict` like any other broken link, with one exception: a plot a report
names but its run did not commit (benchmarks/results/cpu-2core-uint8-cast/*/ kept only report.md and
results.json) is shown as a line saying so, not as a broken image. Chosen over a symlink (not kept by every
checkout) and over a plugin (one more dependency for a few lines). tests/gpu/README.md is added the same
way, as gpu-tests.md.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.livereload import LiveReloadServer
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
PLOT = re.compile(r"^!\[[^\]]*\]\(([^)/]+\.png)\)$", re.MULTILINE)  # a report's own plot: ![latency](latency.png)
PAGES = {"gpu-tests.md": ROOT / "tests" / "gpu" / "README.md"}  # single files: site path -> file


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for path in sorted(RESULTS.rglob("*")):
        if path.is_file():
            uri = f"results/{path.relative_to(RESULTS).as_posix()}"
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    for uri, path in PAGES.items():
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    files.append(File.generated(config, "results/index.md", content=index_page()))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """In a committed run's page, a plot the run did not commit becomes a line saying so."""
    source = Path(page.file.abs_src_path or "")
    if not source.is_relative_to(RESULTS):
        return markdown

    def plot_or_note(match: re.Match[str]) -> str:
        name = match.group(1)
        return match.group(0) if (source.parent / name).is_file() else f"*{name}: not committed with this run.*"

    return PLOT.sub(plot_or_note, markdown)


def on_serve(server: LiveReloadServer, config: MkDocsConfig, builder: object) -> LiveReloadServer:
    """`mkdocs serve` rebuilds when a run changes, as it does for docs/."""
    server.watch(str(RESULTS))
    return server


def index_page() -> str:
    lines = [
        "# Result folders",
        "",
        "Every run committed under `benchmarks/results/`, listed from the folders themselves when the site is",
        "built: each folder's README (how it was run, what it shows) or its `report.md` (segbench's tables and",
        "definitions). A run folder also holds `results.json`, every raw sample and the environment.",
        "",
    ]
    for folder in sorted(p for p in [RESULTS, *RESULTS.rglob("*")] if p.is_dir()):
        pages = sorted(folder.glob("*.md"), key=lambda p: (p.name not in ("README.md", "report.md"), p.name))
        if not pages or folder == RESULTS:
            continue
        rel = folder.relative_to(RESULTS)
        indent = "    " * (len(rel.parts) - 1)
        lines.append(f"{indent}- [{rel.as_posix()}/]({(rel / pages[0].name).as_posix()}): {title(pages[0])}")
        lines += [f"{indent}    - [{p.name}]({(rel / p.name).as_posix()}): {title(p)}" for p in pages[1:]]
    return "\n".join(lines) + "\n"


def title(page: Path) -> str:
    """The page's first heading, else its file name."""
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return page.name
