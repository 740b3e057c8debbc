"""MLproject, entry points and pins stay true to the code (the docs: tests/test_docs.py)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from cmle import projectfile
from cmle.stages import ALL_STAGES, STAGE_ORDER, get_stage

ROOT = Path(__file__).resolve().parents[1]


def test_mlproject_and_entrypoints_are_generated_from_the_registry():
    assert (ROOT / "MLproject").read_text() == projectfile.render_mlproject(), \
        "MLproject is stale: run `python -m cmle.projectfile --write`"
    for name in ALL_STAGES:
        assert (ROOT / "entrypoints" / f"{name}.py").read_text() == projectfile.render_entrypoint(name)


def test_mlproject_is_valid_and_complete():
    spec = yaml.safe_load((ROOT / "MLproject").read_text())
    assert spec["conda_env"] == "conda.yaml"
    assert set(spec["entry_points"]) == set(ALL_STAGES)
    for name, ep in spec["entry_points"].items():
        declared = {p.name for p in get_stage(name).params} | {"config"}
        assert set(ep["parameters"]) == declared
        for pname in declared:
            assert "{" + pname + "}" in ep["command"]


def test_a_parameter_means_the_same_in_every_stage():
    """`main` forwards parameters by name, so a shared name must share type and default."""
    seen = {}
    for name in STAGE_ORDER:
        for p in get_stage(name).params:
            if p.name in seen:
                other_stage, other = seen[p.name]
                assert (p.type, p.default) == (other.type, other.default), \
                    f"{p.name}: {name} and {other_stage} disagree"
            seen[p.name] = (name, p)


def _pins(reqs: list[str]) -> dict[str, str]:
    pins = {}
    for req in reqs:
        name, version = req.split("==")
        pins[name.split("[")[0].lower()] = version
    return pins


def _pins_pyproject(*extras: str) -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = list(data["project"]["dependencies"])
    for extra in extras:
        reqs += data["project"]["optional-dependencies"][extra]
    return _pins(reqs)


def test_conda_yaml_pins_match_pyproject():
    """conda.yaml = the dependencies + the s3 extra (a conda run reaches a remote server and S3)
    + the docs extra (the site builds there too)."""
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    conda_pins = dict(req.lower().split("==") for req in pip if "==" in req)
    assert conda_pins == _pins_pyproject("s3", "docs")


def test_every_requirement_is_pinned_and_extras_agree():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = [data["dependencies"], *data["optional-dependencies"].values()]
    for reqs in groups:
        assert all("==" in r for r in reqs), reqs
    seen: dict[str, str] = {}
    for reqs in groups:
        for name, version in _pins(reqs).items():
            assert seen.setdefault(name, version) == version, f"{name} pinned to two versions"


def test_ci_installs_the_s3_extra():
    """The remote MLflow + S3 tests skip without it: CI must install it so they run."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r'-e "\.\[[^\]]*\bs3\b[^\]]*\]"', ci), "CI must pip install -e '.[test,s3]'"
