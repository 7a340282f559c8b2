"""What can be checked of the Binder set-up without building the image.

Binder (repo2docker) reads ``binder/``: ``runtime.txt`` picks the Python,
``requirements.txt`` is installed with pip from the repository root. It must
install this package (``.``, with the dependencies ``pyproject.toml``
declares) and nothing else, so there is no second dependency list to drift,
with torch from PyTorch's CPU wheel index. The launch link opens
``notebooks/10_dashboard.ipynb`` in JupyterLab; that notebook must exist and be
among those ``make test`` validates with nbval.
"""

import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
BINDER = REPO / "binder"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
LAUNCH_PATH = "lab/tree/notebooks/10_dashboard.ipynb"   # the urlpath of the launch link
# files that would make repo2docker install something beside `pip install .`
OTHER_ENVIRONMENTS = ("environment.yml", "Pipfile", "Pipfile.lock", "setup.py", "install.R", "apt.txt",
                      "postBuild", "requirements3.txt", "Project.toml", "Dockerfile")


def _requirement_lines():
    lines = []
    for raw in (BINDER / "requirements.txt").read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")   # Python >= 3.11
    with open(REPO / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)


def test_binder_installs_this_package_and_nothing_else():
    lines = _requirement_lines()
    requirements = [line for line in lines if not line.startswith("-")]
    assert requirements == ["."], f"binder/requirements.txt must install only the repository (.), found {requirements}"
    assert (REPO / "pyproject.toml").is_file()   # `.` is pip install of the repository root
    assert _pyproject()["project"]["name"] == "curvwidgets"
    present = sorted(name for name in OTHER_ENVIRONMENTS if (BINDER / name).exists())
    assert not present, f"binder/ holds other environment files that repo2docker would also use: {present}"


def test_binder_takes_torch_from_the_cpu_wheel_index():
    options = [line.split() for line in _requirement_lines() if line.startswith("-")]
    for option in options:
        assert option[0] in ("--extra-index-url", "--index-url") and len(option) == 2, f"unexpected option {option}"
    assert ["--extra-index-url", CPU_INDEX] in options or ["--index-url", CPU_INDEX] in options
    dependencies = " ".join(_pyproject()["project"]["dependencies"])
    assert "torch" in dependencies, "torch comes in through the package's own dependencies"


def test_binder_python_is_one_the_package_supports():
    runtime = (BINDER / "runtime.txt").read_text().strip()
    match = re.fullmatch(r"python-(3\.\d+)", runtime)
    assert match, f"binder/runtime.txt should read python-3.X, not {runtime!r}"
    supported = SpecifierSet(_pyproject()["project"]["requires-python"])
    assert Version(match.group(1)) in supported


def test_the_launched_notebook_exists_and_is_validated_by_make_test():
    notebook_path = REPO / LAUNCH_PATH.removeprefix("lab/tree/")
    assert notebook_path.is_file()
    notebook = json.loads(notebook_path.read_text())
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert "parameters" in code[0]["metadata"].get("tags", []), "the first code cell is tagged parameters"
    makefile = (REPO / "Makefile").read_text()
    nbval = [line for line in makefile.splitlines() if "--nbval" in line]
    assert any(re.search(r"--nbval\s+notebooks/?(\s|$)", line) for line in nbval), \
        "make test no longer runs nbval over notebooks/"


def test_binder_links_in_the_readme_open_notebooks_that_exist():
    readme = (REPO / "README.md").read_text()
    for link in re.findall(r"https://mybinder\.org/v2/[^\s)\]\"']+", readme):
        query = parse_qs(urlparse(link).query)
        assert "urlpath" in query, f"the Binder link opens no notebook: {link}"
        urlpath = query["urlpath"][0]
        assert urlpath.startswith("lab/tree/"), f"the Binder link should open JupyterLab: {link}"
        assert (REPO / urlpath.removeprefix("lab/tree/")).is_file(), f"the Binder link opens a missing file: {link}"
