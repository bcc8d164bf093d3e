"""Batch prediction's readers and instance rules as pure functions: records, shards, the request
bodies Vertex AI sends for each format and instanceConfig, and the output lines."""

from __future__ import annotations

import gzip
import io

import numpy as np
import orjson
import pytest
from hypothesis import given, settings, strategies as st

from hyperserve.server.batch import records
from hyperserve.server.batch.engines import SHARDS_PER_CALL, calls
from hyperserve.server.batch.errors import JobFailed
from hyperserve.server.batch.job import Shard
from hyperserve.server.batch.instances import (InstanceConfig, converter, error_line, read_header, request_body,
                                               result_lines, result_lines_py)
from hyperserve.server.batch.records import (CSV, FILE_LIST, JSONL, TF_RECORD, TF_RECORD_GZIP, Batch, index,
                                             masked_crc32c, read, write_tfrecord)
from hyperserve.server.codecs.vertex_json import encode_predictions_each
from hyperserve.server.native import native
from hyperserve.server.types import InferResponse


def body_for(fmt, lines, config=InstanceConfig(), wrap=False, header=None, parameters=None):
    items = converter(fmt, config, wrap, header)(Batch(lines, "in", first_line=1))
    return orjson.loads(request_body(items.sent, parameters)), items


# -- jsonl -----------------------------------------------------------------------------------

def test_jsonl_lines_are_sent_as_written_and_no_parameters_key_unless_given():
    doc, items = body_for(JSONL, [b"[1, 2.5]", b'{"a": [1, 2]}', b'"text"'])
    assert doc == {"instances": [[1, 2.5], {"a": [1, 2]}, "text"]}
    assert items.shown == [b"[1, 2.5]", b'{"a": [1, 2]}', b'"text"']
    doc, _ = body_for(JSONL, [b"1"], parameters=b'{"k":1}')
    assert doc == {"instances": [1], "parameters": {"k": 1}}


def test_a_line_that_closes_brackets_it_did_not_open_is_refused_not_sent():
    # Joined into one request, it would end the instances array and add a key of its own.
    doc, items = body_for(JSONL, [b"[1, 2]", b'3]], "parameters": {"x": [4', b"[5]"])
    assert doc == {"instances": [[1, 2], [5]]}
    assert items.positions == [0, 2]
    (position, shown, err), = items.failed
    assert position == 1 and err.code == 400 and orjson.loads(shown) == '3]], "parameters": {"x": [4'


def test_jsonl_instance_config_object_to_array_in_included_fields_order_with_key():
    config = InstanceConfig.of("array", ["b", "a"], None, "id")
    doc, items = body_for(JSONL, [b'{"id": "r1", "a": 1, "b": 2, "c": 3}'], config)
    assert doc == {"instances": [[2, 1]]}
    assert items.keys == [b'"r1"']
    config = InstanceConfig.of(None, None, ["c"], "id")
    doc, _ = body_for(JSONL, [b'{"id": 7, "a": 1, "b": 2, "c": 3}'], config)
    assert doc == {"instances": [{"a": 1, "b": 2}]}


def test_key_field_on_an_array_line_fails_that_row_only():
    doc, items = body_for(JSONL, [b"[1, 2]", b'{"id": 1, "x": 2}'], InstanceConfig.of(None, None, None, "id"))
    assert doc == {"instances": [{"x": 2}]}
    assert items.failed[0][0] == 0 and "need JSON objects" in items.failed[0][2].message


def test_wrap_data_wraps_everything_but_objects():
    doc, _ = body_for(JSONL, [b"[1, 2]", b'{"data": [3]}', b"4"], wrap=True)
    assert doc == {"instances": [{"data": [1, 2]}, {"data": [3]}, {"data": 4}]}


@pytest.mark.parametrize("text,error", [
    ('{"instanceType": "table"}', "instanceType takes object or array"),
    ('{"includedFields": ["a"], "excludedFields": ["b"]}', "cannot both be set"),
    ('{"keyfield": "a"}', "unknown keys"),
    ('[1]', "must be a JSON object"),
])
def test_instance_config_json_is_checked(text, error):
    with pytest.raises(JobFailed, match=error):
        InstanceConfig.from_json(text)


def test_instance_config_applies_only_to_jsonl_and_csv():
    with pytest.raises(JobFailed, match="not tf-record"):
        InstanceConfig.of(None, None, None, "k").check(TF_RECORD)


# -- csv -------------------------------------------------------------------------------------

HEADER = read_header(b'id,"sepal length",species\n', "in:1")


def test_csv_rows_are_arrays_unquoted_values_floats_quoted_strings():
    assert HEADER == ["id", "sepal length", "species"]
    doc, _ = body_for(CSV, [b'1,5.1,"setosa"', b'2,4.9,"12"'], header=HEADER)
    assert doc == {"instances": [[1.0, 5.1, "setosa"], [2.0, 4.9, "12"]]}


def test_csv_instance_type_object_and_fields_and_key():
    doc, _ = body_for(CSV, [b'1,5.1,"setosa"'], InstanceConfig.of("object", None, None, None), header=HEADER)
    assert doc == {"instances": [{"id": 1.0, "sepal length": 5.1, "species": "setosa"}]}
    doc, items = body_for(CSV, [b'1,5.1,"setosa"'], InstanceConfig.of(None, ["species", "sepal length"], None, "id"),
                          header=HEADER)
    assert doc == {"instances": [["setosa", 5.1]]} and items.keys == [b"1.0"]
    doc, _ = body_for(CSV, [b'1,5.1,"setosa"'], InstanceConfig.of("object", None, ["id"], None), header=HEADER)
    assert doc == {"instances": [{"sepal length": 5.1, "species": "setosa"}]}


def test_csv_bad_rows_fail_alone():
    doc, items = body_for(CSV, [b"1,abc,2", b'1,2', b'3,4.5,"x"'], header=HEADER)
    assert doc == {"instances": [[3.0, 4.5, "x"]]}
    messages = [err.message for _, _, err in items.failed]
    assert "must be a number" in messages[0] and "2 values for 3 header columns" in messages[1]


def test_csv_fields_the_header_lacks_fail_the_job():
    with pytest.raises(JobFailed, match="not a column"):
        body_for(CSV, [b"1,2,3"], InstanceConfig.of(None, ["nope"], None, None), header=HEADER)


# -- TFRecord --------------------------------------------------------------------------------

def tfrecord_file(path, records, compress=False):
    buffer = io.BytesIO()
    for record in records:
        write_tfrecord(buffer, record)
    data = gzip.compress(buffer.getvalue()) if compress else buffer.getvalue()
    path.write_bytes(data)
    return path


def test_masked_crc32c_is_tfrecords():
    # CRC-32C's check value for "123456789" is 0xE3069283; TFRecord masks it (rotate 15, add a constant).
    crc = 0xE3069283
    assert masked_crc32c(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@pytest.mark.parametrize("fmt", [TF_RECORD, TF_RECORD_GZIP])
def test_tfrecords_are_indexed_into_shards_and_read_back(tmp_path, fmt):
    records = [bytes([i]) * i for i in range(1, 12)]
    path = tfrecord_file(tmp_path / "data.tfrecord", records, compress=fmt == TF_RECORD_GZIP)
    count, starts = index(str(path), fmt, every=4)
    assert count == 11 and len(starts) == 3
    got = [r for start, lines in starts for b in read(str(path), fmt, start, 4 if start != starts[-1][0] else 3,
                                                     lines, 2) for r in b.data]
    assert got == records
    doc, _ = body_for(fmt, [b"\x00\xffab"])
    assert doc == {"instances": [{"b64": "AP9hYg=="}]}
    doc, _ = body_for(fmt, [b"ab"], wrap=True)
    assert doc == {"instances": [{"data": {"b64": "YWI="}}]}


def test_a_corrupt_tfrecord_names_the_file_and_byte(tmp_path):
    path = tfrecord_file(tmp_path / "bad.tfrecord", [b"first", b"second", b"third"])
    data = bytearray(path.read_bytes())
    second = 12 + 5 + 4  # the second record's framing starts here
    data[second + 12] ^= 0x01  # one bit of its data
    path.write_bytes(bytes(data))
    count, starts = index(str(path), TF_RECORD, every=10)  # framing intact: indexing checks lengths only
    with pytest.raises(JobFailed, match=rf"bad.tfrecord: the record at byte {second} fails its CRC-32C check"):
        list(read(str(path), TF_RECORD, 0, count, 0, 10))
    data[second + 2] ^= 0x01  # now its length
    path.write_bytes(bytes(data))
    with pytest.raises(JobFailed, match=rf"the length at byte {second} fails its CRC-32C check"):
        index(str(path), TF_RECORD, every=10)
    path.write_bytes(bytes(data[:second + 8]))
    with pytest.raises(JobFailed, match=rf"the record at byte {second} is truncated"):
        index(str(path), TF_RECORD, every=10)


def test_tfrecords_match_tensorflows_own_reader_and_writer(tmp_path):
    tf = pytest.importorskip("tensorflow", reason="needs tensorflow (pip install 'hyperserve[tensorflow]')")
    records = [b"", b"a", b"\x00" * 1000, "é".encode()]
    with tf.io.TFRecordWriter(str(tmp_path / "tf.tfrecord")) as writer:
        for record in records:
            writer.write(record)
    count, starts = index(str(tmp_path / "tf.tfrecord"), TF_RECORD, every=100)
    assert [r for b in read(str(tmp_path / "tf.tfrecord"), TF_RECORD, 0, count, 0, 10) for r in b.data] == records
    ours = tfrecord_file(tmp_path / "ours.tfrecord", records)
    assert [bytes(r.numpy()) for r in tf.data.TFRecordDataset(str(ours))] == records


# -- text files and shards --------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(lines=st.lists(st.one_of(st.just(b""), st.just(b"  "), st.binary(min_size=1, max_size=8).map(
    lambda b: b"[" + b.hex().encode() + b"]")), max_size=40), every=st.integers(1, 7), size=st.integers(1, 5),
    header=st.booleans(), block=st.sampled_from([3, 7, 1 << 20]))
def test_every_shard_reads_exactly_its_own_records_in_order(tmp_path_factory, lines, every, size, header, block):
    path = tmp_path_factory.mktemp("lines") / "in.txt"
    path.write_bytes((b"h\n" if header else b"") + b"".join(line + b"\n" for line in lines))
    fmt = CSV if header else JSONL
    count, starts = index(str(path), fmt, every)
    expected = [line.strip() for line in lines if line.strip()]
    assert count == len(expected)
    got, numbers = [], []
    saved, records.READ_BYTES = records.READ_BYTES, block  # blocks that end mid-line, and mid-shard
    try:
        for k, (start, before) in enumerate(starts):
            # A shard reads up to where the next begins, no further: its end is where its records end.
            end = starts[k + 1][0] if k + 1 < len(starts) else -1
            for batch in read(str(path), fmt, start, min(every, count - k * every), before, size, end):
                assert 1 <= len(batch.data) <= size
                got.extend(batch.data)
                numbers.extend(batch.line(i) for i in range(len(batch.data)))
    finally:
        records.READ_BYTES = saved
    assert got == expected
    file_lines = path.read_bytes().split(b"\n")
    assert [file_lines[n - 1].strip() for n in numbers] == expected  # line numbers name the right lines


_LINE_BYTES = st.binary(max_size=24) | st.lists(st.sampled_from(b" \t\n\r\x0b\x0cab[]1"), max_size=24).map(bytes)


@pytest.mark.skipif(native is None, reason="needs the compiled extension (pip install -e .)")
@settings(max_examples=500, deadline=None)
@given(tail=_LINE_BYTES.map(lambda b: b.replace(b"\n", b"")), block=_LINE_BYTES)  # a tail ends no line
def test_the_native_line_splitter_agrees_with_its_python_twin(tail, block):
    lines, rest = native.split_lines(tail, block)
    assert (lines, rest) == records.split_lines_py(tail, block)
    assert all(type(line) is bytes for line in lines) and type(rest) is bytes


@pytest.mark.skipif(native is None, reason="needs the compiled extension (pip install -e .)")
@settings(max_examples=500, deadline=None)
@given(data=_LINE_BYTES, cuts=st.lists(st.integers(0, 24), max_size=4), every=st.integers(1, 4),
       header=st.integers(0, 3))
def test_the_native_line_indexer_agrees_with_its_python_twin(data, cuts, every, header):
    # The same bytes cut into blocks anywhere (mid-line, mid-whitespace), after a header's bytes.
    state_native = state_py = (header, 0, min(header, 1), header, False)
    starts_native, starts_py = [], []
    edges = sorted({0, len(data), *(min(c, len(data)) for c in cuts)})
    for begin, end in zip(edges, edges[1:]):
        found, state_native = native.index_lines(data[begin:end], every, state_native)
        starts_native += found
        found, state_py = records.index_lines_py(data[begin:end], every, state_py)
        starts_py += found
    assert (starts_native, state_native) == (starts_py, state_py)
    assert state_py[1] == sum(1 for line in data.split(b"\n") if line.strip())  # records: non-blank lines


def test_index_lines_finds_every_nth_records_start_and_lines_before_it():
    block = b"[1]\n \n\t[2] \n\n[3]\n[4"
    for index_lines in (records.index_lines, records.index_lines_py):
        # records [1], [2], [3] and [4] (unfinished) begin at bytes 0, 6, 13 and 17, on lines 0, 2, 4 and 5
        assert index_lines(block, 2, (0, 0, 0, 0, False)) == ([(0, 0), (13, 4)], (19, 4, 5, 17, True))
        assert index_lines(b"]\n", 2, (19, 4, 5, 17, True)) == ([], (21, 4, 6, 21, False))


def test_split_lines_strips_each_line_and_keeps_what_no_newline_ends():
    assert records.split_lines(b" [1", b"] \r\n\n\t[2]\n[3") == ([b"[1]", b"", b"[2]"], b"[3")
    assert records.split_lines(b"[1", b", 2") == ([], b"[1, 2")


@given(count=st.integers(1, 400), workers=st.integers(1, 16))
def test_worker_calls_take_every_shard_once_in_order_in_runs_that_shrink(count, workers):
    shards = [Shard(i, count, "in", "in", 0, -1, 0, 1) for i in range(count)]
    runs = calls(shards, workers)
    assert [shard for run in runs for shard in run] == shards
    sizes = [len(run) for run in runs]
    assert all(1 <= size <= SHARDS_PER_CALL for size in sizes)
    assert sizes == sorted(sizes, reverse=True)  # the last calls are the shortest: no long tail on one worker
    assert sizes[-min(len(sizes), 2 * workers):] == [1] * min(len(sizes), 2 * workers)


def test_file_list_sends_each_files_bytes_and_names_it_by_uri(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"\x01\x02")
    doc, items = body_for(FILE_LIST, [str(tmp_path / "a.bin").encode(), str(tmp_path / "missing").encode()])
    assert doc == {"instances": [{"b64": "AQI="}]}
    assert items.shown == [orjson.dumps(str(tmp_path / "a.bin"))]
    (position, shown, err), = items.failed
    assert position == 1 and orjson.loads(shown) == str(tmp_path / "missing") and "cannot read" in err.message


# -- output lines ------------------------------------------------------------------------------

@pytest.mark.skipif(native is None, reason="needs the compiled extension (pip install -e .)")
@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=20), st.binary(max_size=20)), max_size=70), st.booleans())
def test_the_native_output_lines_agree_with_their_python_twin(pairs, keyed):
    names, predictions = [n for n, _ in pairs], [p for _, p in pairs]
    assert native.result_lines(names, predictions, keyed) == result_lines_py(names, predictions, keyed)


@pytest.mark.skipif(native is None, reason="needs the compiled extension (pip install -e .)")
def test_the_native_output_lines_refuse_what_is_not_two_lists_of_bytes():
    with pytest.raises(ValueError):
        native.result_lines([b"1", b"2"], [b"0"], False)
    with pytest.raises(TypeError):
        native.result_lines([b"1"], ["0"], False)
    with pytest.raises(TypeError):
        native.result_lines((b"1",), [b"0"], False)


def test_output_lines_are_json_with_instance_or_key():
    text = result_lines([b"[1]", b'{"a":2}', b"3"], [b"0", b'"x"', b"[1,2]"], False)
    assert text.endswith(b"\n") and [orjson.loads(x) for x in text.splitlines()] == \
        [{"instance": [1], "prediction": 0}, {"instance": {"a": 2}, "prediction": "x"},
         {"instance": 3, "prediction": [1, 2]}]
    assert orjson.loads(result_lines([b'"k1"'], [b"1.5"], True)) == {"key": "k1", "prediction": 1.5}
    assert result_lines([], [], False) == b""
    # An instance the model refused that is not JSON is named by its text, so the line stays JSON.
    assert orjson.loads(error_line(b"nope", None, 400, "bad")) == \
        {"instance": "nope", "error": {"code": 400, "message": "bad"}}


def test_predictions_each_agrees_with_the_generic_path():
    labels = np.array([0, 2, 1, 1], dtype=np.int64)
    assert encode_predictions_each(InferResponse({"y": labels}), 4) == [b"0", b"2", b"1", b"1"]
    assert encode_predictions_each(InferResponse({"y": labels[::2]}), 2) == [b"0", b"1"]  # a strided view
    scores = np.array([[0.5, np.nan], [1.0, 2.0]])
    assert encode_predictions_each(InferResponse({"y": scores}), 2) == [b"[0.5,null]", b"[1.0,2.0]"]
    two = InferResponse({"a": np.array([1, 2]), "b": np.array([[1.0], [2.0]])})
    assert encode_predictions_each(two, 2) == [b'{"a":1,"b":[1.0]}', b'{"a":2,"b":[2.0]}']
