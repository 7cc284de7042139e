"""The committed diffqc/v1 code is what `make proto` generates, and every part of the protos is documented."""

from __future__ import annotations

from diffqc.contracts.codegen import PACKAGE_DIR, REPO_ROOT, descriptor_set, generate, generated_files, main


def test_committed_generated_code_matches_a_fresh_generation(tmp_path):
    generate(tmp_path)
    fresh = {path.name: path.read_bytes() for path in generated_files(tmp_path / PACKAGE_DIR)}
    committed = {path.name: path.read_bytes() for path in generated_files(REPO_ROOT / PACKAGE_DIR)}
    assert sorted(committed) == sorted(fresh), "diffqc/v1 is out of date with protos/: run `make proto`"
    differing = sorted(name for name in fresh if fresh[name] != committed[name])
    assert not differing, f"{differing} differ from what protos/ generates: run `make proto`"
    assert {"frame_pb2.py", "frame_pb2.pyi", "scoring_pb2_grpc.py", "__init__.py"} <= set(fresh)


def test_the_command_line_writes_where_it_is_told(tmp_path, capsys):
    assert main(["--out", str(tmp_path)]) == 0
    assert (tmp_path / PACKAGE_DIR / "ingestion_pb2_grpc.py").is_file()
    assert str(tmp_path / PACKAGE_DIR / "frame_pb2.py") in capsys.readouterr().out


def _undocumented(file) -> list[str]:
    """Every message, field, enum, enum value, service and rpc of ``file`` that has no comment."""
    documented = {
        tuple(location.path)
        for location in file.source_code_info.location
        if location.leading_comments.strip() or location.trailing_comments.strip()
    }
    missing: list[str] = []

    def need(path: tuple[int, ...], name: str) -> None:
        if path not in documented:
            missing.append(f"{file.name}: {name}")

    def enum(path, descriptor, prefix):
        need(path, prefix + descriptor.name)
        for i, value in enumerate(descriptor.value):
            need((*path, 2, i), f"{prefix}{descriptor.name}.{value.name}")

    def message(path, descriptor, prefix=""):
        if descriptor.options.map_entry:  # synthesised for map<,> fields; the field itself is documented
            return
        name = prefix + descriptor.name
        need(path, name)
        for i, field in enumerate(descriptor.field):
            need((*path, 2, i), f"{name}.{field.name}")
        for i, nested in enumerate(descriptor.nested_type):
            message((*path, 3, i), nested, name + ".")
        for i, nested in enumerate(descriptor.enum_type):
            enum((*path, 4, i), nested, name + ".")

    # Field numbers of FileDescriptorProto: message_type 4, enum_type 5, service 6; method 2.
    for i, descriptor in enumerate(file.message_type):
        message((4, i), descriptor)
    for i, descriptor in enumerate(file.enum_type):
        enum((5, i), descriptor, "")
    for i, service in enumerate(file.service):
        need((6, i), service.name)
        for j, method in enumerate(service.method):
            need((6, i, 2, j), f"{service.name}.{method.name}")
    return missing


def test_every_message_field_enum_and_rpc_has_a_comment():
    files = [file for file in descriptor_set().file if file.package == "diffqc.v1"]
    assert len(files) >= 7
    missing = [item for file in files for item in _undocumented(file)]
    assert not missing, "undocumented in protos/:\n" + "\n".join(missing)


def test_enums_follow_the_buf_style():
    """Zero value <ENUM>_UNSPECIFIED, every value prefixed by the enum name (buf STANDARD lint)."""
    files = [file for file in descriptor_set().file if file.package == "diffqc.v1"]
    enums = [
        *(e for file in files for e in file.enum_type),
        *(e for file in files for message in file.message_type for e in message.enum_type),
    ]
    assert enums
    problems = []
    for enum in enums:
        prefix = "".join(f"_{c}" if c.isupper() else c.upper() for c in enum.name).lstrip("_") + "_"
        if (enum.value[0].name, enum.value[0].number) != (prefix + "UNSPECIFIED", 0):
            problems.append(f"{enum.name}: the zero value must be {prefix}UNSPECIFIED")
        problems += [f"{enum.name}.{value.name}" for value in enum.value if not value.name.startswith(prefix)]
    assert not problems
