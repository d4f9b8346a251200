"""The compiled Pub/Sub API descriptors against the spec's table (../shared/spec/pubsub-api.md section 1),
and the committed descriptor set against what grpcio-tools compiles from the ``.proto`` today.

A wrong field number would be invisible end to end: the emulator and the client share the ``.proto``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FieldDescriptor

from airflow_provider_sfint import pubsub_proto

SPEC = Path(__file__).resolve().parents[1].parent / "shared" / "spec" / "pubsub-api.md"
PROTO_DIR = Path(pubsub_proto.__file__).parent

SCALARS = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BYTES: "bytes",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_INT64: "int64",
}


@pytest.fixture(scope="module")
def spec_text() -> str:
    if not SPEC.is_file():
        message = f"the Pub/Sub spec was not found at {SPEC} (it lives outside the repository)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must provide it")
        pytest.skip(message)
    return SPEC.read_text(encoding="utf-8")


def _table(spec_text: str) -> dict[str, list[str]]:
    """``message -> ['name = 1 : type', ...]`` from the spec's message table (enums included)."""
    rows: dict[str, list[str]] = {}
    for line in spec_text.splitlines():
        match = re.match(r"^\| `(\w+)`(?: \(enum\))? \| (.+) \|$", line)
        if match and "=" in match.group(2):
            rows[match.group(1)] = [part.strip() for part in match.group(2).split(";")]
    return rows


def _describe(field: FieldDescriptor) -> str:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        kind = field.message_type.name
    elif field.type == FieldDescriptor.TYPE_ENUM:
        kind = field.enum_type.name
    else:
        kind = SCALARS[field.type]
    # protobuf 7 has ``is_repeated`` and no ``label``; older releases the reverse
    is_repeated = getattr(field, "is_repeated", None)
    if is_repeated is None:
        is_repeated = field.label == FieldDescriptor.LABEL_REPEATED
    repeated = "repeated " if is_repeated else ""
    return f"{field.name} = {field.number} : {repeated}{kind}"


def test_every_message_and_enum_matches_the_spec_table(spec_text: str) -> None:
    table = _table(spec_text)
    assert len(table) == 19, sorted(table)  # 17 messages and 2 enums
    compiled_messages = set(pubsub_proto.FILE.message_types_by_name)
    compiled_enums = set(pubsub_proto.FILE.enum_types_by_name)
    assert compiled_messages | compiled_enums == set(table)
    for name, fields in table.items():
        if name in compiled_enums:
            values = pubsub_proto.FILE.enum_types_by_name[name].values
            assert [f"{v.name} = {v.number}" for v in values] == fields, name
            continue
        message = pubsub_proto.FILE.message_types_by_name[name]
        # the spec notes "(reserved for future use)" after a type: compare the declaration only
        expected = [re.sub(r"\s*\(.*\)$", "", f) for f in fields]
        assert [_describe(f) for f in message.fields] == expected, name


def test_the_service_matches_the_spec_table(spec_text: str) -> None:
    rpcs = {}
    for line in spec_text.splitlines():
        match = re.match(r"^\| `(\w+)`(?: \(marked open beta\))? \| (stream )?`(\w+)` \| (stream )?`(\w+)` \|$", line)
        if match:
            rpcs[match.group(1)] = (bool(match.group(2)), match.group(3), bool(match.group(4)), match.group(5))
    assert len(rpcs) == 6
    assert pubsub_proto.FILE.package == "eventbus.v1"
    service = pubsub_proto.FILE.services_by_name["PubSub"]
    compiled = {
        m.name: (m.client_streaming, m.input_type.name, m.server_streaming, m.output_type.name) for m in service.methods
    }
    assert compiled == rpcs
    for name, (req_stream, resp_stream, req, resp) in pubsub_proto.METHODS.items():
        assert compiled[name] == (req_stream, req.DESCRIPTOR.name, resp_stream, resp.DESCRIPTOR.name)


def test_the_committed_descriptor_set_is_what_the_proto_compiles_to(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools is a dev dependency")
    out = tmp_path / "fresh.desc"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"--descriptor_set_out={out}",
            "pubsub_api.proto",
        ],
        check=True,
    )
    fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    committed = descriptor_pb2.FileDescriptorSet.FromString(pubsub_proto.descriptor_set_bytes())
    assert fresh == committed, "pubsub_api.desc is stale: run `make proto` and commit the result"
