"""The documentation cannot drift from the code: the generated reference is current, the site
builds strictly, the README is a short door whose commands are the tested ones."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cmle import config, docgen
from cmle.stages import Param, Stage

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 300


def assert_current(src: docgen.Sources | None = None) -> None:
    """What the drift test asserts: no generated page differs from what the generator writes."""
    stale = docgen.stale(ROOT, src)
    assert not stale, (f"the docs' generated reference is stale: {', '.join(p.as_posix() for p in stale)}; "
                       f"run `{docgen.COMMAND}`")


def with_stage_param(src: docgen.Sources, stage: str, param: Param) -> docgen.Sources:
    stages = tuple(dataclasses.replace(s, params=(*s.params, param)) if s.name == stage else s for s in src.stages)
    return dataclasses.replace(src, stages=stages)


# --- the generated reference -------------------------------------------------------------------


def test_generated_reference_is_current():
    assert_current()


def test_a_parameter_added_without_regenerating_fails_the_drift_test():
    """A registry with one more parameter than the checked-in pages were generated from: the
    drift test fails, names the pages and the command, and the generator writes the parameter."""
    src = with_stage_param(docgen.current(), "train", Param("extra_knob", int, 3, "a knob the docs have not seen",
                                                            min=1))
    with pytest.raises(AssertionError) as failed:
        assert_current(src)
    message = str(failed.value)
    assert "docs/reference/parameters.md" in message and "docs/stages/train.md" in message
    assert "run `python -m cmle.docgen --write`" in message
    pages = docgen.generated(ROOT, src)
    row = "| `extra_knob` | int | `3` | a knob the docs have not seen. Allowed: at least 1 |"
    assert row in pages[docgen.PARAMETERS_PAGE] and row in pages[docgen.STAGES_DIR / "train.md"]
    assert "extra_knob" not in pages[docgen.STAGES_DIR / "score.md"]


def test_a_new_stage_gets_its_page_its_nav_entry_and_its_row_without_a_list_to_edit():
    """A stage added to the registry is picked up from the registry alone."""
    src = docgen.current()
    uplift = Stage(name="uplift", func=lambda ctx, **kw: {}, help="Drift of features and score; realised "
                    "conversion per bucket.", params=(Param("window_days", int, 28, "days of scores to compare",
                                                            min=1),))
    src = dataclasses.replace(src, stages=(*src.stages, uplift), pipeline=(*src.pipeline, "uplift"))
    pages = docgen.generated(ROOT, src)
    page = pages[docgen.STAGES_DIR / "uplift.md"]
    assert page.startswith("# `uplift`\n\nDrift of features and score")
    assert "| `window_days` | int | `28` |" in page
    assert "      - uplift: stages/uplift.md\n      # stages:end" in pages[docgen.MKDOCS]
    assert "| [`uplift`](../stages/uplift.md) | Drift of features" in pages[docgen.STAGES_PAGE]
    assert "## `uplift`" in pages[docgen.PARAMETERS_PAGE]
    assert {docgen.STAGES_DIR / "uplift.md", docgen.MKDOCS, docgen.STAGES_PAGE} <= set(docgen.stale(ROOT, src))


def test_a_config_key_added_without_regenerating_fails_the_drift_test():
    extra = dataclasses.make_dataclass("ExtraSettings", [
        ("knob", float, config._meta(default=2.5, kind=float, help="a key the docs have not seen"))])
    src = dataclasses.replace(docgen.current(), sections={**config.SECTIONS, "Extra": extra})
    with pytest.raises(AssertionError, match=r"docs/reference/configuration\.md.*python -m cmle\.docgen --write"):
        assert_current(src)
    assert ("| `knob` | `CMLE_EXTRA_KNOB` | float | `2.5` | a key the docs have not seen. Allowed: a positive number |"
            in docgen.generated(ROOT, src)[docgen.CONFIGURATION_PAGE])


def test_a_stage_page_keeps_its_prose_around_the_generated_block():
    src = docgen.current()
    stage = src.stage("score")
    text = "# score\n\nHand-written intro.\n\n" + docgen.BLOCK_BEGIN + "\nold table\n" + docgen.BLOCK_END + "\n\nMore prose.\n"
    updated = docgen.update_stage_page(text, stage, src)
    assert updated.startswith("# score\n\nHand-written intro.\n\n") and updated.endswith("\n\nMore prose.\n")
    assert "old table" not in updated and "| `batch_rows` | int | `100000` |" in updated
    assert docgen.update_stage_page(updated, stage, src) == updated  # stable


def test_cells_escape_what_markdown_would_eat():
    assert docgen._cell("a | b <local_root>/x `<kept>`") == "a \\| b &lt;local_root&gt;/x `<kept>`"


def test_the_generator_runs_as_a_module():
    res = subprocess.run([sys.executable, "-m", "cmle.docgen", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_other_environment_variable_is_documented():
    page = (ROOT / "docs" / "configuration.md").read_text()
    for name in sorted(config.OTHER_ENV):
        assert f"`{name}`" in page, f"docs/configuration.md does not say what {name} does"


# --- the site ------------------------------------------------------------------------------------


def test_ci_builds_the_site_strictly_with_the_docs_extra():
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r'-e "\.\[[^\]]*\bdocs\b[^\]]*\]"', ci), "CI must pip install the docs extra"
    assert re.search(r"mkdocs build --strict", ci)
    assert "python -m cmle.docgen --check" in ci


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
                    reason="the docs extra is not installed (pip install -e '.[docs]'; CI installs it)")
def test_site_builds_strictly(tmp_path):
    """Broken links and anchors, missing images and pages left out of the nav fail the build."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    for page in ("index.html", "getting-started/index.html", "reference/parameters/index.html",
                 "stages/train/index.html", "img/mlflow_registry.png"):
        assert (tmp_path / "site" / page).is_file(), page


# --- the README: a door --------------------------------------------------------------------------


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; the details belong in docs/"


def test_readme_links_lead_somewhere():
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if not target.startswith(("http://", "https://")):
            assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


def test_readme_commands_are_the_tested_ones():
    """The README's set-up, run and test commands are the getting-started page's, which
    tests/test_getting_started.py runs; the test command is what CI runs."""
    readme_lines = {line.strip() for block in _bash_blocks((ROOT / "README.md").read_text())
                    for line in block.splitlines()}
    page = (ROOT / "docs" / "getting-started.md").read_text()
    tested = dict(re.findall(r"<!-- test: (\w+) -->\n```bash\n(.*?)```", page, flags=re.S))
    for kind in ("setup", "run", "ci"):
        for line in tested[kind].splitlines():
            assert line.strip() in readme_lines, f"README lacks the getting-started command {line!r}"
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.rstrip().splitlines()[-1] == "python -m pytest"
    install = re.search(r'pip install[^\n]*-e "\.\[([^\]]*)\]"', ci).group(1)
    assert f'pip install -e ".[{install}]" && python -m pytest' in tested["ci"]
