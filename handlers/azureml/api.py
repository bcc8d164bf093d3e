"""What Azure ML scoring scripts import from Microsoft's server: ``rawhttp``, ``AMLRequest`` and
``AMLResponse``, under both of their import paths (``azureml.contrib.services.aml_request`` /
``aml_response`` and ``azureml_inference_server_http.api.aml_request`` / ``aml_response``).

Ours, not the real package: Microsoft's are Flask's Request and Response, and the package pulls
Flask, gunicorn, pydantic and OpenTelemetry into every image for two classes. These keep the
interface scripts use (method, headers, args, data, get_data, get_json; a response's body,
status, headers and mimetype) and nothing of WSGI.
"""

from __future__ import annotations

import json
import sys
import types
from typing import Any, Iterable, Iterator
from urllib.parse import quote

from hyperserve.server.codecs.azureml import FORM_TYPES

# Set by @rawhttp, read after the script is imported: Microsoft's server keeps it module-wide too.
_rawHttpRequested = False


def rawhttp(func):
    """Marks ``run`` as taking the request object itself."""
    global _rawHttpRequested
    _rawHttpRequested = True
    return func


class Headers:
    """Case-insensitive headers that may repeat (werkzeug's Headers, the part scripts use)."""

    def __init__(self, items: Iterable[tuple[str, str]] | dict[str, str] | None = None):
        self._items: list[tuple[str, str]] = []
        if isinstance(items, dict):
            items = items.items()
        for name, value in items or ():
            self.add(name, value)

    def get(self, name: str, default: Any = None, type: Any = None) -> Any:
        lower = name.lower()
        for key, value in self._items:
            if key.lower() == lower:
                return type(value) if type is not None else value
        return default

    def getlist(self, name: str) -> list[str]:
        lower = name.lower()
        return [value for key, value in self._items if key.lower() == lower]

    def add(self, name: str, value: Any) -> None:
        self._items.append((str(name), str(value)))

    add_header = add

    def set(self, name: str, value: Any) -> None:
        self.remove(name)
        self.add(name, value)

    def remove(self, name: str) -> None:
        lower = name.lower()
        self._items = [(k, v) for k, v in self._items if k.lower() != lower]

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __setitem__(self, name: str, value: Any) -> None:
        self.set(name, value)

    def __delitem__(self, name: str) -> None:
        self.remove(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def keys(self) -> list[str]:
        return [k for k, _ in self._items]

    def values(self) -> list[str]:
        return [v for _, v in self._items]

    def to_wsgi_list(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class Args(dict):
    """A query's arguments: ``args[k]`` and ``get`` give the first value, ``getlist`` every one
    (werkzeug's MultiDict, the part scripts use)."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()):
        super().__init__()
        self._lists: dict[str, list[str]] = {}
        for key, value in pairs:
            self._lists.setdefault(key, []).append(value)
            if key not in self:
                dict.__setitem__(self, key, value)

    def get(self, key: str, default: Any = None, type: Any = None) -> Any:
        if key not in self:
            return default
        value = self[key]
        if type is None:
            return value
        try:
            return type(value)
        except ValueError:
            return default

    def getlist(self, key: str, type: Any = None) -> list:
        values = list(self._lists.get(key, ()))
        return [type(v) for v in values] if type is not None else values

    def to_dict(self, flat: bool = True) -> dict:
        return dict(self) if flat else {k: list(v) for k, v in self._lists.items()}

    def lists(self):
        return iter((k, list(v)) for k, v in self._lists.items())


class AMLRequest:
    """The request a ``@rawhttp`` run() gets."""

    def __init__(self, method: str, path: str, query: str, headers: Iterable[tuple[str, str]], body: bytes,
                 args: Iterable[tuple[str, str]] = (), host: str = "", remote_addr: str | None = None):
        self.method = method
        self.path = path
        self.query_string = query.encode("latin-1", "replace")
        self.headers = Headers(headers)
        self.args = Args(args)
        self._data = body
        self.host = host or self.headers.get("host", "")
        self.remote_addr = remote_addr
        self._json_cache: Any = _MISSING

    # -- what Flask's request offers ---------------------------------------------------------

    @property
    def data(self) -> bytes:
        """Flask's: empty for a form body, which it parses into ``form`` instead."""
        return self.get_data(parse_form_data=True)

    def get_data(self, cache: bool = True, as_text: bool = False, parse_form_data: bool = False) -> bytes | str:
        data = b"" if parse_form_data and self.mimetype in FORM_TYPES else self._data
        return data.decode("utf-8", "replace") if as_text else data

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")

    @property
    def mimetype(self) -> str:
        return (self.content_type or "").split(";", 1)[0].strip().lower()

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length")
        return int(value) if value and value.isdigit() else None

    @property
    def is_json(self) -> bool:
        mimetype = self.mimetype
        return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))

    @property
    def json(self) -> Any:
        return self.get_json()

    def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        """The body as JSON; like Flask, an error when the body is not JSON or (unless ``force``)
        the request does not say it is, None instead when ``silent``."""
        if cache and self._json_cache is not _MISSING:
            return self._json_cache
        if not (force or self.is_json):
            if silent:
                return None
            raise BadRequest("Did not attempt to load JSON data because the request Content-Type was not "
                             "'application/json'.", status=415)
        try:
            value = json.loads(self._data)
        except ValueError as err:
            if silent:
                return None
            raise BadRequest(f"Failed to decode JSON object: {err}") from None
        if cache:
            self._json_cache = value
        return value

    @property
    def full_path(self) -> str:
        return f"{quote(self.path)}?{self.query_string.decode('latin-1')}"

    @property
    def url(self) -> str:
        query = self.query_string.decode("latin-1")
        return f"http://{self.host}{quote(self.path)}" + (f"?{query}" if query else "")

    @property
    def base_url(self) -> str:
        return f"http://{self.host}{quote(self.path)}"

    @property
    def url_root(self) -> str:
        return f"http://{self.host}/"

    @property
    def scheme(self) -> str:
        return "http"

    @property
    def form(self) -> Args:
        if self.mimetype != "application/x-www-form-urlencoded":
            return Args()
        from urllib.parse import parse_qsl

        return Args(parse_qsl(self._data.decode("latin-1"), keep_blank_values=True))

    @property
    def values(self) -> Args:
        return Args([*((k, v) for k, vs in self.args.lists() for v in vs),
                     *((k, v) for k, vs in self.form.lists() for v in vs)])

    def __repr__(self) -> str:
        return f"<AMLRequest '{self.path}' [{self.method}]>"


class BadRequest(Exception):
    """What get_json raises (Flask raises werkzeug's BadRequest / UnsupportedMediaType)."""

    def __init__(self, description: str, status: int = 400):
        super().__init__(description)
        self.description = description
        self.code = status


_MISSING = object()
_DEFAULT_MIMETYPE = "text/html"


class AMLResponse:
    """A reply run() gives as it is: ``AMLResponse(message, status_code, response_headers={},
    json_str=False, run_function_failed=False)``. ``json_str`` encodes ``message`` as JSON; a
    ``None`` message is ``{}``; a header value with commas becomes that header repeated."""

    def __init__(self, message: Any, status_code: int, response_headers: dict[str, str] | None = None,
                 json_str: bool = False, run_function_failed: bool = False):
        response_headers = response_headers or {}
        self.status_code = int(status_code)
        self.headers = Headers()
        if message is None or json_str:
            self.response: Any = [json.dumps({} if message is None else message).encode()]
            self.mimetype = "application/json"
        else:
            self.response = message  # str, bytes or an iterable of them (a generator streams)
            self.mimetype = None if "Content-Type" in response_headers else _DEFAULT_MIMETYPE
        self.headers["x-ms-run-function-failed"] = run_function_failed
        for name, value in response_headers.items():
            for part in str(value).split(","):
                self.headers.add(name, part.strip())

    @property
    def status(self) -> str:
        from http import HTTPStatus

        try:
            return f"{self.status_code} {HTTPStatus(self.status_code).phrase.upper()}"
        except ValueError:
            return f"{self.status_code} UNKNOWN"

    @property
    def content_type(self) -> str | None:
        given = self.headers.get("content-type")
        if given is not None:
            return given
        if self.mimetype is None:
            return None
        if self.mimetype.startswith("text/"):
            return f"{self.mimetype}; charset=utf-8"
        return self.mimetype

    @property
    def is_streamed(self) -> bool:
        return not isinstance(self.response, (str, bytes, bytearray, list, tuple))

    def iter_encoded(self) -> Iterator[bytes]:
        body = self.response
        if isinstance(body, (str, bytes, bytearray)):
            body = [body]
        for chunk in body:
            yield chunk.encode() if isinstance(chunk, str) else bytes(chunk)

    def get_data(self, as_text: bool = False) -> bytes | str:
        data = b"".join(self.iter_encoded())
        if self.is_streamed:  # read once, as Flask buffers a consumed generator
            self.response = [data]
        return data.decode() if as_text else data

    @property
    def data(self) -> bytes:
        return self.get_data()

    def set_data(self, value: str | bytes) -> None:
        self.response = [value.encode() if isinstance(value, str) else bytes(value)]

    def __repr__(self) -> str:
        return f"<AMLResponse [{self.status_code}]>"


# -- both import paths ----------------------------------------------------------------------------

_PACKAGES = ("azureml", "azureml.contrib", "azureml.contrib.services",
             "azureml_inference_server_http", "azureml_inference_server_http.api")
REQUEST_MODULES = ("azureml.contrib.services.aml_request", "azureml_inference_server_http.api.aml_request")
RESPONSE_MODULES = ("azureml.contrib.services.aml_response", "azureml_inference_server_http.api.aml_response")


def install() -> types.ModuleType:
    """Make both import paths resolve to this module (so @rawhttp sets one flag, whichever the
    script imports); a real ``azureml`` namespace package already imported keeps its other parts."""
    this = sys.modules[__name__]
    for name in _PACKAGES:
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = []  # a package: its submodules are the ones set here
            sys.modules[name] = package
    for name in (*REQUEST_MODULES, *RESPONSE_MODULES):
        sys.modules[name] = this
        parent, _, leaf = name.rpartition(".")
        setattr(sys.modules[parent], leaf, this)
    for name in _PACKAGES[1:]:
        parent, _, leaf = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], leaf, sys.modules[name])
    return this


def reset() -> None:
    global _rawHttpRequested
    _rawHttpRequested = False
