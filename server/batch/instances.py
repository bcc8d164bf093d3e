"""Records → the instances Vertex AI would send, and the lines written back for them.

The rules (../shared/CONTRACTS.md §6): a JSON line is sent as written; a CSV row becomes an array
(unquoted values as numbers, quoted ones as strings); a TFRecord, or a file a file list names,
becomes ``{"b64": ...}``. ``instanceConfig`` reshapes instances (``instanceType``,
``includedFields`` / ``excludedFields``, ``keyField``). For TorchServe-style models every instance
that is not a JSON object is wrapped as ``{"data": ...}``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import Any, Callable

import orjson
import pybase64

from ..codecs.json_scan import unbalanced_lines
from ..native import native
from .errors import JobFailed
from .records import CSV, FILE_LIST, JSONL, TF_RECORD, TF_RECORD_GZIP, Batch
from .sources import read_listed

OBJECT, ARRAY = "object", "array"


@dataclass(frozen=True)
class InstanceConfig:
    """Vertex's ``instanceConfig``."""

    instance_type: str | None = None  # None: the format's own (an array for CSV rows)
    included_fields: tuple[str, ...] = ()
    excluded_fields: tuple[str, ...] = ()
    key_field: str | None = None

    @property
    def reshapes(self) -> bool:
        return bool(self.instance_type or self.included_fields or self.excluded_fields or self.key_field)

    @classmethod
    def from_json(cls, text: str) -> InstanceConfig:
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError as err:
            raise JobFailed(f"--instance-config is not JSON: {err}") from None
        if type(doc) is not dict:
            raise JobFailed("--instance-config must be a JSON object (Vertex's instanceConfig)")
        known = {"instanceType", "includedFields", "excludedFields", "keyField"}
        unknown = set(doc) - known
        if unknown:
            raise JobFailed(f"--instance-config has unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
        return cls.of(doc.get("instanceType"), doc.get("includedFields"), doc.get("excludedFields"),
                      doc.get("keyField"))

    @classmethod
    def of(cls, instance_type, included, excluded, key_field) -> InstanceConfig:
        if instance_type not in (None, "", OBJECT, ARRAY):
            raise JobFailed(f"instanceType takes object or array, got {instance_type!r}")
        for name, fields in (("includedFields", included), ("excludedFields", excluded)):
            if fields is not None and (type(fields) is not list or not all(type(f) is str for f in fields)):
                raise JobFailed(f"{name} must be a list of field names, got {fields!r}")
        if included and excluded:
            raise JobFailed("includedFields and excludedFields cannot both be set")
        if key_field is not None and type(key_field) is not str:
            raise JobFailed(f"keyField must be a field name, got {key_field!r}")
        return cls(instance_type or None, tuple(included or ()), tuple(excluded or ()), key_field or None)

    def check(self, fmt: str) -> None:
        if fmt in (TF_RECORD, TF_RECORD_GZIP, FILE_LIST) and self.reshapes:
            raise JobFailed(f"instanceConfig applies to jsonl and csv inputs, not {fmt}")


class RowError(Exception):
    """One instance that cannot be sent or was refused: its line carries the error."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(slots=True)
class Instance:
    sent: bytes  # the instance's JSON, as sent to the model
    shown: bytes  # what its output line names it by: the instance, or a listed file's URI
    key: bytes | None = None  # the keyField's value (JSON), which then replaces "instance"


@dataclass(slots=True)
class Items:
    """A batch of records as instances: those to send, in order, and those that already failed."""

    sent: list[bytes]
    shown: list[bytes]  # how each sent instance's output line names it
    keys: list[bytes] | None  # the keyField's values, when there is one
    positions: list[int] | None  # each sent instance's record in the batch (None: record i is sent[i])
    failed: list[tuple[int, bytes, RowError]]  # (record, how its line names it, why)
    size: int  # records in the batch


Converter = Callable[[Batch], Items]


def converter(fmt: str, config: InstanceConfig, wrap: bool, header: list[str] | None = None,
              lines_checked: bool = False) -> Converter:
    """The function from a batch of ``fmt`` records to its instances (CSV needs its file's ``header``).
    ``lines_checked``: the predictor itself checks that a request decodes to one instance per line
    and to nothing else, so JSON lines need no scan of their own."""
    if fmt == JSONL:
        if not config.reshapes:
            if lines_checked:
                return _wrapped_lines_as_sent if wrap else _lines_as_sent
            return _wrapped_lines if wrap else _lines
        return _each(lambda data: _reshaped(_loads(data), config, wrap), config.key_field is not None)
    if fmt == CSV:
        return _each(lambda data: _csv_row(data, header or [], config, wrap), config.key_field is not None)
    if fmt in (TF_RECORD, TF_RECORD_GZIP):
        return _each(lambda data: _b64(data, wrap, None), False)
    if fmt == FILE_LIST:
        return _each(lambda data: _listed(data, wrap), False)
    raise JobFailed(f"unknown input format {fmt!r}")


def _each(one: Callable[[bytes], Instance], keyed: bool) -> Converter:
    def convert(batch: Batch) -> Items:
        sent, shown, keys, positions, failed = [], [], [], [], []
        for i, data in enumerate(batch.data):
            try:
                instance = one(data)
            except RowError as err:
                failed.append((i, shown_of(data, err), err))
                continue
            sent.append(instance.sent)
            shown.append(instance.shown)
            keys.append(instance.key)
            positions.append(i)
        return Items(sent, shown, keys if keyed else None, positions if failed else None, failed, len(batch.data))
    return convert


def _lines(batch: Batch) -> Items:
    data = batch.data
    # Each line must stand alone: a line that closes a bracket it did not open could reshape the request.
    bad = unbalanced_lines(data)
    if not bad:
        return Items(data, data, None, None, [], len(data))
    skip = set(bad)
    sent = [line for i, line in enumerate(data) if i not in skip]
    return Items(sent, sent, None, [i for i in range(len(data)) if i not in skip],
                 [(i, _as_json(data[i]), RowError(400, "not a JSON value")) for i in bad], len(data))


def _lines_as_sent(batch: Batch) -> Items:
    return Items(batch.data, batch.data, None, None, [], len(batch.data))


def _wrap(items: Items) -> Items:
    items.sent = items.shown = [line if line.startswith(b"{") else b'{"data":' + line + b"}" for line in items.sent]
    return items


def _wrapped_lines(batch: Batch) -> Items:
    return _wrap(_lines(batch))


def _wrapped_lines_as_sent(batch: Batch) -> Items:
    return _wrap(_lines_as_sent(batch))


def _loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise RowError(400, f"not a JSON value ({err})") from None


def _reshaped(value: Any, config: InstanceConfig, wrap: bool) -> Instance:
    key = None
    if type(value) is dict:
        if config.key_field is not None:
            if config.key_field not in value:
                raise RowError(400, f"no field '{config.key_field}' (the keyField)")
            key = orjson.dumps(value[config.key_field])
        value = _fields(value, config)
    elif config.key_field or config.included_fields or config.excluded_fields:
        raise RowError(400, f"keyField, includedFields and excludedFields need JSON objects, "
                            f"got a {type(value).__name__}")
    return _instance(value, wrap, key)


def _fields(value: dict, config: InstanceConfig) -> Any:
    if config.included_fields:
        missing = [f for f in config.included_fields if f not in value]
        if missing:
            raise RowError(400, f"no field {missing[0]!r} (in includedFields)")
        names = list(config.included_fields)
    else:
        excluded = set(config.excluded_fields)
        names = [f for f in value if f not in excluded]
    if config.key_field is not None and config.key_field in names:
        names.remove(config.key_field)
    if config.instance_type == ARRAY:
        return [value[f] for f in names]
    return {f: value[f] for f in names}


def _instance(value: Any, wrap: bool, key: bytes | None) -> Instance:
    if wrap and type(value) is not dict:
        value = {"data": value}
    sent = orjson.dumps(value)
    return Instance(sent, sent, key)


def read_header(line: bytes, where: str) -> list[str]:
    try:
        return next(csv.reader([line.decode("utf-8").rstrip("\r\n")]))
    except (UnicodeDecodeError, StopIteration, csv.Error) as err:
        raise JobFailed(f"{where}: cannot read the CSV header row: {err}") from None


def _csv_row(data: bytes, header: list[str], config: InstanceConfig, wrap: bool) -> Instance:
    try:
        text = data.decode("utf-8")
        # Vertex's rule is the csv module's QUOTE_NONNUMERIC: unquoted values are floats.
        cells = next(csv.reader([text], quoting=csv.QUOTE_NONNUMERIC))
    except UnicodeDecodeError as err:
        raise RowError(400, f"not UTF-8 ({err.reason} at byte {err.start})") from None
    except ValueError as err:
        raise RowError(400, f"an unquoted CSV value must be a number ({err})") from None
    except csv.Error as err:
        raise RowError(400, f"malformed CSV row ({err})") from None
    if len(cells) != len(header):
        raise RowError(400, f"{len(cells)} values for {len(header)} header columns")
    row = dict(zip(header, cells))
    key = None
    if config.key_field is not None:
        if config.key_field not in row:
            raise JobFailed(f"keyField '{config.key_field}' is not a column of the CSV header {header}")
        key = orjson.dumps(row[config.key_field])
    if not (config.included_fields or config.excluded_fields or config.key_field):
        value: Any = row if config.instance_type == OBJECT else cells
    else:
        missing = [f for f in config.included_fields if f not in row]
        if missing:
            raise JobFailed(f"includedFields names {missing[0]!r}, which is not a column of the CSV header {header}")
        value = _fields(row, InstanceConfig(config.instance_type or ARRAY, config.included_fields,
                                            config.excluded_fields, config.key_field))
    return _instance(value, wrap, key)


def _b64(data: bytes, wrap: bool, shown: bytes | None) -> Instance:
    sent = b'{"b64":"' + pybase64.b64encode(data) + b'"}'
    if wrap:
        sent = b'{"data":' + sent + b"}"
    return Instance(sent, shown or sent)


def _listed(data: bytes, wrap: bool) -> Instance:
    try:
        uri = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RowError(400, "the file list's line is not UTF-8") from None
    shown = orjson.dumps(uri)
    try:
        data = read_listed(uri)
    except Exception as err:  # noqa: BLE001 - a missing or unreadable file fails only its row
        raise _Unreadable(shown, f"cannot read {uri}: {err}") from None
    return _b64(data, wrap, shown)


class _Unreadable(RowError):
    """A listed file that cannot be read: its line names the file by its URI."""

    def __init__(self, shown: bytes, message: str):
        super().__init__(400, message)
        self.shown = shown


def request_body(instances: list[bytes], parameters: bytes | None) -> bytes:
    """The predict request Vertex sends for these instances: no "parameters" unless the job has some."""
    body = b'{"instances":[' + b",".join(instances) + b"]"
    if parameters is not None:
        body += b',"parameters":' + parameters
    return body + b"}"


def result_lines(names: list[bytes], predictions: list[bytes], keyed: bool) -> bytes:
    """``{"instance": ..., "prediction": ...}`` lines (``"key"`` when ``keyed``), written in one
    native pass when the extension is built: the Python join was 80 ns of an iris row's 590."""
    if native is not None:
        return native.result_lines(names, predictions, keyed)
    return result_lines_py(names, predictions, keyed)


def result_lines_py(names: list[bytes], predictions: list[bytes], keyed: bool) -> bytes:
    """The Python twin: the pieces laid out by slice assignment, one join, no bytes per line."""
    head = b'{"key":' if keyed else b'{"instance":'
    count = len(names)
    if not count:
        return b""
    parts = [b',"prediction":'] * (4 * count + 1)
    parts[0::4] = [head] + [b"}\n" + head] * (count - 1) + [b"}\n"]
    parts[1::4] = names
    parts[3::4] = predictions
    return b"".join(parts)


def error_line(shown: bytes, key: bytes | None, code: int, message: str) -> bytes:
    """A failed instance's line; an instance that is not JSON (a line the model refused) is named
    by its text, so that every output line stays JSON."""
    error = orjson.dumps({"code": code, "message": message})
    shown = _as_json(shown)
    if key is not None:
        return b'{"key":' + key + b',"error":' + error + b"}\n"
    return b'{"instance":' + shown + b',"error":' + error + b"}\n"


def shown_of(data: bytes, err: RowError) -> bytes:
    """How a record that failed before it became an instance is named in its error line."""
    if isinstance(err, _Unreadable):
        return err.shown
    return _as_json(data)


def _as_json(data: bytes) -> bytes:
    try:
        orjson.loads(data)
        return data
    except orjson.JSONDecodeError:
        pass
    try:
        return orjson.dumps(data.decode("utf-8"))
    except UnicodeDecodeError:
        return orjson.dumps({"b64": pybase64.b64encode(data).decode()})
