"""Generate the Python code of the wire contracts: ``make proto`` (``python -m diffqc.contracts.codegen``).

protoc (bundled in grpcio-tools, with the well-known types) compiles every ``protos/**/*.proto``
into messages (``*_pb2.py``), type stubs (``*_pb2.pyi``) and gRPC stubs (``*_pb2_grpc.py``).
Protos live under ``protos/diffqc/v1`` and are compiled with ``-I protos`` into the repository
root, so the modules land in the ``diffqc.v1`` package. The generated code is committed; a test
regenerates it and fails on any difference, so pin grpcio-tools (the output depends on its version).
"""

from __future__ import annotations

import argparse
import importlib.resources
import shutil
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_tools import protoc

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO_ROOT / "protos"
PACKAGE_DIR = Path("diffqc") / "v1"  # where protoc puts the output, relative to the output root
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
INIT_TEXT = '"""Generated wire contracts (protos/diffqc/v1): run `make proto`, do not edit."""\n'


class CodegenError(RuntimeError):
    """protoc failed; its own error message went to stderr."""


def proto_files(proto_root: Path = PROTO_ROOT) -> list[str]:
    """The .proto files, relative to ``proto_root`` and sorted so that the output is deterministic."""
    files = sorted(p.relative_to(proto_root).as_posix() for p in proto_root.rglob("*.proto"))
    if not files:
        raise CodegenError(f"no .proto files under {proto_root}")
    return files


def _protoc(args: list[str], proto_root: Path) -> None:
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    argv = ["grpc_tools.protoc", f"-I{proto_root}", f"-I{well_known}", *args, *proto_files(proto_root)]
    if protoc.main(argv) != 0:
        raise CodegenError("protoc failed: " + " ".join(argv))


def generate(out_root: Path, proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Compile the protos into ``out_root`` (modules in ``out_root/diffqc/v1``); return the files written."""
    out_root.mkdir(parents=True, exist_ok=True)
    out = str(out_root)
    _protoc([f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}"], proto_root)
    package = out_root / PACKAGE_DIR
    (package / "__init__.py").write_text(INIT_TEXT)
    return sorted(generated_files(package))


def generated_files(package: Path) -> list[Path]:
    """The generated files in ``package`` (anything else, such as __pycache__, is not ours)."""
    return [p for p in package.iterdir() if p.name == "__init__.py" or p.name.endswith(GENERATED_SUFFIXES)]


def descriptor_set(proto_root: Path = PROTO_ROOT) -> descriptor_pb2.FileDescriptorSet:
    """The compiled protos with their comments (source info): lets a test check that all is documented."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "descriptors.pb"
        _protoc([f"--descriptor_set_out={path}", "--include_source_info"], proto_root)
        return descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())


def update_tree(repo_root: Path = REPO_ROOT) -> list[Path]:
    """Regenerate ``diffqc/v1`` in the repository, removing generated files whose proto is gone."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp), repo_root / "protos")
        target = repo_root / PACKAGE_DIR
        target.mkdir(parents=True, exist_ok=True)
        for stale in generated_files(target):
            stale.unlink()
        written = []
        for path in fresh:
            written.append(target / path.name)
            shutil.copyfile(path, written[-1])
        return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write into this directory instead of the repository")
    args = parser.parse_args(argv)
    try:
        written = generate(args.out) if args.out else update_tree()
    except CodegenError as exc:
        print(exc, file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
