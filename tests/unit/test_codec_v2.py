"""The OIP v2 codecs as pure functions: JSON and binary tensors, BYTES, FP16, shapes and errors;
the same tensors through JSON, the binary extension and gRPC's raw and typed contents."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hyperserve.server.codecs import v2, v2_grpc
from hyperserve.server.errors import InvalidInput
from hyperserve.server.grpc import grpc_service_pb2 as pb
from hyperserve.server.types import InferResponse, Signature, TensorSpec

NUMERIC = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64"]


def untyped(*names: str) -> Signature:
    return Signature(tuple(TensorSpec(n) for n in names), (TensorSpec("y"),))


def binary_body(doc: dict, *chunks: bytes) -> tuple[bytes, int]:
    header = orjson.dumps(doc)
    return header + b"".join(chunks), len(header)


def error(body: bytes, signature: Signature, header_length=None) -> str:
    with pytest.raises(InvalidInput) as info:
        v2.decode_infer_request(body, header_length, signature, "m")
    return info.value.message


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(NUMERIC).flatmap(lambda name: hnp.arrays(
    v2.DATATYPES[name], hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4),
    elements={"allow_nan": False, "allow_infinity": False} if name.startswith("FP") else None)))  # JSON has neither
def test_json_and_binary_inputs_decode_to_the_same_array(array):
    name = v2.datatype(array.dtype)
    signature = untyped("x")
    tensor = {"name": "x", "shape": list(array.shape), "datatype": name}
    from_json, _ = v2.decode_infer_request(orjson.dumps({"inputs": [{**tensor, "data": array.ravel().tolist()}]}),
                                           None, signature, "m")
    body, length = binary_body({"inputs": [{**tensor, "parameters": {"binary_data_size": array.nbytes}}]},
                               array.tobytes())
    from_binary, _ = v2.decode_infer_request(body, length, signature, "m")
    for decoded in (from_json, from_binary):
        got = decoded.inputs["x"]
        assert got.dtype == array.dtype and got.shape == array.shape
        np.testing.assert_array_equal(got, array)
    assert from_binary.batch_size == array.shape[0] and not from_binary.unbatched
    # gRPC: raw contents decode the same way
    request = pb.ModelInferRequest(model_name="m", raw_input_contents=[array.tobytes()])
    request.inputs.add(name="x", datatype=name, shape=array.shape)
    np.testing.assert_array_equal(v2_grpc.decode_model_infer(request, signature, "m")[0].inputs["x"], array)


def test_a_binary_input_is_a_view_over_the_request_bytes():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    body, length = binary_body({"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP32",
                                            "parameters": {"binary_data_size": 48}}]}, x.tobytes())
    request, _ = v2.decode_infer_request(body, length, untyped("x"), "m")
    assert np.shares_memory(request.inputs["x"], np.frombuffer(body, dtype=np.uint8))


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=8))
def test_bytes_round_trip_through_length_prefixes(values):
    array = np.empty(len(values), dtype=object)
    array[:] = values
    serialized = v2.serialize_bytes(array)
    assert serialized == b"".join(struct.pack("<I", len(v)) + v for v in values)
    assert v2.deserialize_bytes(serialized).tolist() == values


def test_bytes_inputs_from_json_strings_and_from_binary():
    signature = Signature((TensorSpec("text", np.dtype(object), (-1,)),), (TensorSpec("y"),))
    doc = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["ab", "w\u00f6"]}]}
    request, _ = v2.decode_infer_request(orjson.dumps(doc), None, signature, "m")
    assert request.inputs["text"].tolist() == [b"ab", "w\u00f6".encode()]
    chunk = v2.serialize_bytes(np.array([b"\x00\xff", b""], dtype=object))
    body, length = binary_body({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                                            "parameters": {"binary_data_size": len(chunk)}}]}, chunk)
    assert v2.decode_infer_request(body, length, signature, "m")[0].inputs["text"].tolist() == [b"\x00\xff", b""]
    assert "runs past the data's end" in error(body[:-2] + b"\x05\x00", signature, length)


def test_nested_data_shapes_casts_and_their_errors():
    signature = Signature((TensorSpec("x", np.dtype(np.float64), (-1, 2)),), (TensorSpec("y"),))
    nested = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4]]}]}
    request, _ = v2.decode_infer_request(orjson.dumps(nested), None, signature, "m")
    assert request.inputs["x"].dtype == np.float64 and request.inputs["x"].tolist() == [[1, 2], [3, 4]]

    def body(**changes):
        return orjson.dumps({"inputs": [{**nested["inputs"][0], **changes}]})

    assert "has 4 elements, but shape [3, 2] needs 6" in error(body(shape=[3, 2]), signature)
    assert "expected [-1, 2], got [1, 4]" in error(body(shape=[1, 4]), signature)
    int32 = Signature((TensorSpec("x", np.dtype(np.int32), (-1, 2)),), ())
    assert "is INT32, got FP32" in error(body(), int32)  # no float → integer cast
    assert "'data' must hold integers" in error(body(datatype="INT32", data=[1.5, 2, 3, 4]), untyped("x"))
    assert "unknown datatype 'FP8'" in error(body(datatype="FP8"), signature)
    assert "must be a list of non-negative integers" in error(body(shape=[2, -1]), signature)
    assert "out of range for UINT8" in error(body(datatype="UINT8", data=[1, 2, 3, 300]), untyped("x"))
    two = Signature((TensorSpec("a"), TensorSpec("b")), ())
    assert "unexpected inference input 'x'" in error(body(), two)
    assert "missing ['b']" in error(orjson.dumps({"inputs": [{**nested["inputs"][0], "name": "a"}]}), two)
    assert "non-empty 'inputs'" in error(b'{"inputs": []}', signature)
    assert "invalid JSON" in error(b'{"inputs": [', signature)


def test_one_input_models_take_any_input_name_and_inputs_without_a_shared_batch_run_alone():
    request, _ = v2.decode_infer_request(orjson.dumps({"inputs": [
        {"name": "input-0", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}), None, untyped("instances"), "m")
    assert list(request.inputs) == ["instances"]
    both, _ = v2.decode_infer_request(orjson.dumps({"inputs": [
        {"name": "a", "shape": [2], "datatype": "INT64", "data": [1, 2]},
        {"name": "b", "shape": [], "datatype": "FP32", "data": [0.5]}]}), None, untyped("a", "b"), "m")
    assert both.unbatched and both.batch_size == 1 and both.inputs["b"].shape == ()


def test_protocol_parameters_stay_out_of_the_models_parameters():
    doc = {"id": 42, "parameters": {"binary_data_output": True, "priority": 1, "timeout": 2_500_000, "top_k": 3},
           "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],
           "outputs": [{"name": "y", "parameters": {"binary_data": False}}, {"name": "z"}]}
    request, wanted = v2.decode_infer_request(orjson.dumps(doc), None, untyped("x"), "m")
    assert request.parameters == {"timeout": 2.5, "top_k": 3}  # Triton's microseconds, as seconds
    assert wanted.id == "42" and wanted.names == ["y", "z"]
    assert not wanted.is_binary("y") and wanted.is_binary("z")
    assert "sequence batching" in error(orjson.dumps({**doc, "parameters": {"sequence_id": 7}}), untyped("x"))


def test_responses_json_and_binary():
    response = InferResponse({"scores": np.array([[0.5, 1.5]], dtype=np.float16),
                              "label": np.array([1], dtype=np.int64), "name": np.array(["cat"], dtype=object)})
    body, length = v2.encode_infer_response(response, v2.RequestedOutputs(id="r"), "m", "2")
    assert length is None
    assert orjson.loads(body) == {"model_name": "m", "model_version": "2", "id": "r", "outputs": [
        {"name": "scores", "datatype": "FP16", "shape": [1, 2], "data": [0.5, 1.5]},
        {"name": "label", "datatype": "INT64", "shape": [1], "data": [1]},
        {"name": "name", "datatype": "BYTES", "shape": [1], "data": ["cat"]}]}
    wanted = v2.RequestedOutputs(names=["name", "scores"], binary_default=True)
    body, length = v2.encode_infer_response(response, wanted, "m", "2")
    header = orjson.loads(body[:length])
    assert [o["name"] for o in header["outputs"]] == ["name", "scores"]
    sizes = [o["parameters"]["binary_data_size"] for o in header["outputs"]]
    name_bytes, scores_bytes = body[length:length + sizes[0]], body[length + sizes[0]:]
    assert v2.deserialize_bytes(name_bytes).tolist() == [b"cat"]
    assert np.frombuffer(scores_bytes, dtype=np.float16).tolist() == [0.5, 1.5]
    with pytest.raises(InvalidInput, match="unexpected inference output 'nope'"):
        v2.encode_infer_response(response, v2.RequestedOutputs(names=["nope"]), "m", "1")


def test_grpc_typed_contents_and_raw_outputs():
    request = pb.ModelInferRequest(model_name="m", id="g1")
    tensor = request.inputs.add(name="x", datatype="INT64", shape=[2, 2])
    tensor.contents.int64_contents.extend([1, 2, 3, 2**40])
    request.outputs.add(name="y")
    decoded, wanted = v2_grpc.decode_model_infer(request, untyped("x"), "m")
    assert decoded.inputs["x"].tolist() == [[1, 2], [3, 2**40]] and wanted.names == ["y"] and wanted.id == "g1"
    fp16 = pb.ModelInferRequest()
    fp16.inputs.add(name="x", datatype="FP16", shape=[1])
    with pytest.raises(InvalidInput, match="FP16 data must be sent in raw_input_contents"):
        v2_grpc.decode_model_infer(fp16, untyped("x"), "m")
    reply = v2_grpc.encode_model_infer(InferResponse({"y": np.array([[1.5, 2.5]], dtype=np.float32)}), wanted, "m", "1")
    assert reply.outputs[0].datatype == "FP32" and list(reply.outputs[0].shape) == [1, 2] and reply.id == "g1"
    assert np.frombuffer(reply.raw_output_contents[0], dtype="<f4").tolist() == [1.5, 2.5]


def test_a_shape_no_array_can_have_is_a_400_even_when_empty():
    """Found by the fuzz target: an empty tensor whose other dimensions overflow numpy's size
    arithmetic made numpy raise (a 500) instead of a 400."""
    body = orjson.dumps({"inputs": [{"name": "x", "shape": [0, 1_518_494_220, 1_518_506_280], "datatype": "FP32",
                                     "data": []}]})
    assert "is larger than any tensor this server takes" in error(body, untyped("x"))
    deep = orjson.dumps({"inputs": [{"name": "x", "shape": [1] * 65, "datatype": "FP32", "data": [1]}]})
    assert "a tensor has at most 64" in error(deep, untyped("x"))
