"""The committed gRPC stubs are exactly what the proto generates, and the proto matches MLServer's wire."""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2
from mlserver.grpc import dataplane_pb2 as ml_pb

from seldon_load.oip import gen_protos
from seldon_load.oip._generated import grpc_predict_v2_pb2 as pb


def test_committed_stubs_equal_a_fresh_generation() -> None:
    fresh = gen_protos.generate_texts()
    committed = gen_protos.committed_texts()
    assert set(fresh) == set(gen_protos.GENERATED_NAMES)
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated files {stale}: run `python -m seldon_load.oip.gen_protos`"


def test_generated_stubs_use_a_private_pool_and_a_relative_import() -> None:
    texts = gen_protos.committed_texts()
    assert "_descriptor_pool.DescriptorPool().AddSerializedFile(" in texts["grpc_predict_v2_pb2.py"]
    assert "from . import grpc_predict_v2_pb2" in texts["grpc_predict_v2_pb2_grpc.py"]


def _fields(descriptor: Any) -> dict[str, Any]:
    proto = descriptor_pb2.DescriptorProto()
    descriptor.CopyToProto(proto)
    out: dict[str, Any] = {}

    def walk(msg: descriptor_pb2.DescriptorProto, prefix: str) -> None:
        for f in msg.field:
            out[f"{prefix}.{f.name}"] = (f.number, f.type, f.label, f.type_name.rsplit(".", 1)[-1])
        for nested in msg.nested_type:
            walk(nested, f"{prefix}.{nested.name}")

    walk(proto, descriptor.name)
    return out


def test_wire_compatible_with_mlserver_dataplane() -> None:
    ours = pb.DESCRIPTOR
    theirs = ml_pb.DESCRIPTOR
    assert ours.package == theirs.package == "inference"
    for name, message in ours.message_types_by_name.items():
        mine, ml = _fields(message), _fields(theirs.message_types_by_name[name])
        for field, spec in ml.items():
            assert mine.get(field) == spec, f"{field}: ours {mine.get(field)} vs MLServer {spec}"
        extra = set(mine) - set(ml)
        assert extra <= {"InferParameter.double_param", "InferParameter.uint64_param"}, extra
    service = ours.services_by_name["GRPCInferenceService"]
    ml_service = theirs.services_by_name["GRPCInferenceService"]
    for method in (
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
    ):
        a, b = service.methods_by_name[method], ml_service.methods_by_name[method]
        assert (a.input_type.full_name, a.output_type.full_name) == (
            b.input_type.full_name,
            b.output_type.full_name,
        )
