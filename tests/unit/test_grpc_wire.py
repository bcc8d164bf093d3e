"""server/grpc's protocol definition is wire-compatible with the published one: every message and
field hyperserve defines has the name, number, type and label of tritonclient's own descriptors,
the service has the same method paths, and the checked-in modules are what the .proto generates."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Prints {message: {field: [number, type, label, type_name]}} and {method: [in, out]} for a module's
# file descriptor and the files it imports, each set read in a fresh process so that what one
# import registers cannot stand in for the other.
_DUMP = """
import importlib, json, sys
from google.protobuf import descriptor_pb2
messages, methods = {}, {}
for module_name in sys.argv[1:]:
    descriptor = importlib.import_module(module_name).DESCRIPTOR
    proto = descriptor_pb2.FileDescriptorProto()
    descriptor.CopyToProto(proto)
    def walk(prefix, types):
        for m in types:
            messages[prefix + m.name] = {f.name: [f.number, f.type, f.label, f.type_name] for f in m.field}
            walk(prefix + m.name + ".", m.nested_type)
    walk("", proto.message_type)
    for e in proto.enum_type:
        messages["enum " + e.name] = {v.name: [v.number] for v in e.value}
    for service in proto.service:
        for m in service.method:
            methods[service.name + "/" + m.name] = [m.input_type, m.output_type]
print(json.dumps({"package": proto.package, "messages": messages, "methods": methods}))
"""


def dump(*modules: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _DUMP, *modules], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    return json.loads(out.stdout)


def test_every_message_and_field_matches_tritonclients_descriptors():
    ours = dump("hyperserve.server.grpc.grpc_service_pb2")
    theirs = dump("tritonclient.grpc.model_config_pb2", "tritonclient.grpc.service_pb2")
    assert ours["package"] == "inference"
    assert ours["messages"], "nothing was read"
    for message, fields in ours["messages"].items():
        assert message in theirs["messages"], f"{message} is not in the published protocol"
        for name, spec in fields.items():
            assert theirs["messages"][message].get(name) == spec, f"{message}.{name}: ours {spec}, " \
                f"published {theirs['messages'][message].get(name)}"
    for method, types in ours["methods"].items():
        assert theirs["methods"].get(method) == types, method
    assert {"GRPCInferenceService/ModelInfer", "GRPCInferenceService/ModelConfig",
            "GRPCInferenceService/ModelStatistics", "GRPCInferenceService/RepositoryIndex"} <= set(ours["methods"])


def test_the_checked_in_modules_are_what_the_proto_generates(tmp_path):
    work = tmp_path / "server" / "grpc"
    work.mkdir(parents=True)
    shutil.copy(ROOT / "server" / "grpc" / "grpc_service.proto", work)
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "gen-grpc.sh", tmp_path / "scripts")
    subprocess.run(["bash", str(tmp_path / "scripts" / "gen-grpc.sh")], check=True, env={"PYTHON": sys.executable})
    for name in ("grpc_service_pb2.py", "grpc_service_pb2_grpc.py"):
        assert (work / name).read_text() == (ROOT / "server" / "grpc" / name).read_text(), \
            f"server/grpc/{name} is stale: run scripts/gen-grpc.sh"
