"""The install story: pyproject, constraints, environment.yml and CI agree with each other and with the README."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch"}  # the same package under conda's name


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].strip().lower()


def test_environment_yml_names_the_same_core_dependencies():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)}
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip_section  # the package itself
    for dep in _pyproject()["project"]["dependencies"]:
        name = _name(dep)
        assert CONDA_NAMES.get(name, name) in conda, f"environment.yml lacks {name}"
    assert {"jupyter", "hypothesis", "pytest"} <= conda


def test_constraints_pin_every_runtime_and_dev_dependency():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    project = _pyproject()["project"]
    for dep in project["dependencies"] + project["optional-dependencies"]["dev"]:
        assert _name(dep) in pins, f"constraints.txt does not pin {_name(dep)}"
    assert pins["torch"] == "2.13.0"


def test_console_script_and_ci_run_the_readme_commands():
    assert _pyproject()["project"]["scripts"]["deepfill-min"] == "deepfill_min.cli:main"
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make demo" in readme
    assert re.search(r"^make test$", ci, flags=re.M)
