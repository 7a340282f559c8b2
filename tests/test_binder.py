"""What can be checked of the Binder set-up without building the image.

Binder (repo2docker) reads ``binder/``: ``runtime.txt`` picks the Python,
``requirements.txt`` is installed with pip from the repository root. It must
install this package (``.``, with the dependencies ``pyproject.toml``
declares, Voila among them) and nothing else, so there is no second
dependency list to drift, with torch from PyTorch's CPU wheel index.

The README's badge opens the Voila app ``app/dashboard.ipynb`` (live widgets,
no code); a second link opens ``notebooks/10_dashboard.ipynb`` in JupyterLab,
and that notebook must be among those ``make test`` validates with nbval. The
app may import only what Binder installs and only the package's public names.
"""

import ast
import importlib
import json
import re
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
BINDER = REPO / "binder"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
APP_URLPATH = "voila/render/app/dashboard.ipynb"          # the badge: the app, rendered by Voila
LAB_URLPATH = "lab/tree/notebooks/10_dashboard.ipynb"     # the second link: the notebook in JupyterLab
# how a Binder urlpath names a file of the repository
URLPATH_PREFIXES = ("voila/render/", "lab/tree/")
BADGE_LINK = re.compile(r"\[!\[[^\]]*\]\(https://mybinder\.org/badge[^)]*\)\]\((https://mybinder\.org/v2/[^)\s]+)\)")
BINDER_LINK = re.compile(r"https://mybinder\.org/v2/[^\s)\]\"']+")
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


def _repository_file(urlpath: str) -> Path:
    prefix = next((prefix for prefix in URLPATH_PREFIXES if urlpath.startswith(prefix)), None)
    assert prefix, f"the Binder link should open the Voila app or JupyterLab ({URLPATH_PREFIXES}), not {urlpath!r}"
    return REPO / urlpath.removeprefix(prefix)


def _urlpath(link: str) -> str:
    query = parse_qs(urlparse(link).query)
    assert "urlpath" in query, f"the Binder link opens no notebook: {link}"
    return query["urlpath"][0]


def _notebook(path: Path) -> dict:
    notebook = json.loads(path.read_text())
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    return notebook


def _code(notebook: dict) -> list:
    return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]


def test_the_lab_notebook_exists_and_is_validated_by_make_test():
    notebook = _notebook(_repository_file(LAB_URLPATH))
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert "parameters" in code[0]["metadata"].get("tags", []), "the first code cell is tagged parameters"
    makefile = (REPO / "Makefile").read_text()
    nbval = [line for line in makefile.splitlines() if "--nbval" in line]
    assert any(re.search(r"--nbval\s+notebooks/?(\s|$)", line) for line in nbval), \
        "make test no longer runs nbval over notebooks/"


def test_binder_links_in_the_readme_open_the_app_and_the_notebook():
    readme = (REPO / "README.md").read_text()
    badges = [_urlpath(link) for link in BADGE_LINK.findall(readme)]
    assert badges and set(badges) == {APP_URLPATH}, f"the Binder badge should open the Voila app: {badges}"
    urlpaths = {_urlpath(link) for link in BINDER_LINK.findall(readme)}
    assert urlpaths >= {APP_URLPATH, LAB_URLPATH}, f"the README should link both {APP_URLPATH} and {LAB_URLPATH}"
    for urlpath in urlpaths:
        assert _repository_file(urlpath).is_file(), f"a Binder link opens a missing file: {urlpath}"


def _dependency_names() -> set:
    """The distributions ``pyproject.toml`` depends on, as import names (``jupyter-server`` -> ``jupyter_server``)."""
    return {re.split(r"[\s<>=!~\[;]", requirement, maxsplit=1)[0].lower().replace("-", "_")
            for requirement in _pyproject()["project"]["dependencies"]}


def test_voila_comes_with_the_package():
    assert "voila" in _dependency_names(), "Binder installs only `.`: voila must be one of the package's dependencies"


def _imports(tree: ast.AST):
    """``(module, names)`` of every import statement; ``names`` is empty for ``import module``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            yield node.module, [alias.name for alias in node.names]


def _package_aliases(tree: ast.AST) -> set:
    """Names the code binds to a curvwidgets module (``import curvwidgets as cw``: ``{"cw"}``)."""
    return {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
            for alias in node.names if alias.name.split(".")[0] == "curvwidgets"}


def _attribute_chain(node: ast.Attribute):
    """``cw.data.load`` -> ``("cw", ["data", "load"])``; None when the chain does not start at a name."""
    names = []
    while isinstance(node, ast.Attribute):
        names.insert(0, node.attr)
        node = node.value
    return (node.id, names) if isinstance(node, ast.Name) else None


def test_the_app_exists_and_uses_only_what_binder_installs_and_public_names():
    notebook = _notebook(_repository_file(APP_URLPATH))
    assert notebook["cells"][0]["cell_type"] == "markdown", "the app opens with a short introduction"
    assert not any(cell.get("outputs") for cell in notebook["cells"]), "the app is stored without outputs"
    tree = ast.parse("\n".join(_code(notebook)))
    dependencies = _dependency_names()
    for module, names in _imports(tree):
        top = module.split(".")[0]
        assert top in sys.stdlib_module_names or top == "curvwidgets" or top in dependencies, \
            f"the app imports {module}, which Binder does not install (not a dependency of the package)"
        if top != "curvwidgets":
            continue
        assert not any(part.startswith("_") for part in module.split(".")), f"the app imports private {module}"
        public = importlib.import_module(module).__all__
        private = [name for name in names if name not in public]
        assert not private, f"the app imports {private} from {module}, not in its __all__"
    aliases = _package_aliases(tree)
    chains = [_attribute_chain(node) for node in ast.walk(tree) if isinstance(node, ast.Attribute)]
    for root, names in filter(None, chains):
        if root in aliases:
            assert not any(name.startswith("_") for name in names), f"the app uses private {root}.{'.'.join(names)}"
            assert names[0] in importlib.import_module("curvwidgets").__all__, f"{root}.{names[0]} is not public"
