"""The install story: pyproject, constraints, environment.yml and CI agree with each other and with the README."""

from __future__ import annotations

import json
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
    extras = project["optional-dependencies"]
    for dep in project["dependencies"] + extras["dev"] + extras["tutorial"]:
        assert _name(dep) in pins, f"constraints.txt does not pin {_name(dep)}"
    assert pins["torch"] == "2.13.0"


def test_console_script_and_ci_run_the_readme_commands():
    assert _pyproject()["project"]["scripts"]["deepfill-min"] == "deepfill_min.cli:console"
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make demo" in readme
    assert re.search(r"^make test$", ci, flags=re.M)


def test_every_tutorial_notebook_is_linked_from_the_readme_and_executed_by_the_test_command():
    readme = (ROOT / "README.md").read_text()
    notebooks = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "tutorial").glob("*.ipynb"))
    assert len(notebooks) == 7, notebooks
    linked = re.findall(r"\]\((tutorial/[^)]+\.ipynb)\)", readme)
    assert linked == notebooks  # every notebook, in reading order, and no dead link
    makefile = (ROOT / "Makefile").read_text()
    test_recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert re.search(r"pytest .*--nbmake .*\btutorial\b", test_recipe)
    assert re.search(r"^tutorial:", makefile, flags=re.M) and "make tutorial" in readme


def test_tutorial_notebooks_are_committed_small_with_outputs_and_no_machine_paths():
    for path in sorted((ROOT / "tutorial").glob("*.ipynb")):
        text = path.read_text()
        assert path.stat().st_size < 2_000_000, f"{path.name} is over 2 MB"
        nb = json.loads(text)
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(c.get("execution_count") for c in code), f"{path.name} is not committed executed"
        assert any("image/png" in o.get("data", {}) for c in code for o in c["outputs"]), f"{path.name} has no figure"
        assert "SCALE KNOB" in text, f"{path.name} lacks the marked scale-up cell"
        for root in ("/work/", "/home/", "/Users/", "/tmp/"):
            assert root not in text, f"{path.name} mentions a path of the machine it ran on ({root})"


def test_every_spec_reference_resolves_to_a_heading_of_docs_spec():
    """Code, tests, notebooks and docs cite the spec as "§N" or "§N.M": each must be a heading of docs/spec.md."""
    headings = set(re.findall(r"^#+ (\d+(?:\.\d+)?)[. ]", (ROOT / "docs" / "spec.md").read_text(), re.MULTILINE))
    sources = [*ROOT.glob("deepfill_min/*.py"), *ROOT.glob("reference/*.py"), *ROOT.glob("tests/*.py"),
               *ROOT.glob("tutorial/*.ipynb"), *ROOT.glob("benchmarks/*.py"), ROOT / "README.md",
               *(p for p in ROOT.glob("docs/*.md") if p.name != "spec.md")]  # fmt: skip
    cited = {(m, p.name) for p in sources for m in re.findall(r"§ ?(\d+(?:\.\d+)?)", p.read_text())}
    assert cited, "no § references found: the pattern is wrong"
    missing = sorted(f"§{number} ({name})" for number, name in cited if number.rstrip(".") not in headings)
    assert not missing, f"references without a heading in docs/spec.md: {missing}"
