// hyperserve._native: the codec's fast path, and the transport's parser for whole simple requests.
// Every codec function has a pure-Python twin in hyperserve.server.codecs with identical results
// and error messages; parse_request declines what it does not parse exactly as httptools does.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "base64.h"
#include "http_request.h"
#include "instances.h"
#include "json_scan.h"

namespace nb = nanobind;
using hyperserve::B64Span;

namespace {

// Above this many bytes the decode runs with the GIL released.
constexpr size_t kReleaseGilBytes = 64 * 1024;

struct Input {
  const uint8_t* data;
  size_t size;
};

Input as_input(nb::handle obj, Py_buffer& view) {
  if (PyObject_GetBuffer(obj.ptr(), &view, PyBUF_SIMPLE) != 0) throw nb::python_error();
  return {static_cast<const uint8_t*>(view.buf), static_cast<size_t>(view.len)};
}

struct BufferGuard {
  Py_buffer view{};
  ~BufferGuard() { if (view.obj) PyBuffer_Release(&view); }
};

bool decode_maybe_nogil(const uint8_t* src, const B64Span& span, uint8_t* dst) {
  if (span.body < kReleaseGilBytes) return hyperserve::b64_decode(src, span, dst);
  nb::gil_scoped_release release;
  return hyperserve::b64_decode(src, span, dst);
}

constexpr const char* kBadChar = "invalid base64: character outside the base64 alphabet";

nb::object b64decode(nb::handle src_obj) {
  BufferGuard guard;
  Input src = as_input(src_obj, guard.view);
  B64Span span = hyperserve::b64_layout(src.data, src.size);
  if (span.error) throw nb::value_error(span.error);
  PyObject* out = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(span.decoded));
  if (!out) throw nb::python_error();
  nb::object result = nb::steal(out);
  auto* dst = reinterpret_cast<uint8_t*>(PyBytes_AS_STRING(out));
  if (!decode_maybe_nogil(src.data, span, dst)) throw nb::value_error(kBadChar);
  return result;
}

size_t b64decode_into(nb::handle src_obj, nb::ndarray<uint8_t, nb::ndim<1>, nb::c_contig, nb::device::cpu> dst) {
  BufferGuard guard;
  Input src = as_input(src_obj, guard.view);
  B64Span span = hyperserve::b64_layout(src.data, src.size);
  if (span.error) throw nb::value_error(span.error);
  if (dst.shape(0) < span.decoded) throw nb::value_error("destination buffer is too small for the decoded data");
  if (!decode_maybe_nogil(src.data, span, dst.data())) throw nb::value_error(kBadChar);
  return span.decoded;
}

size_t b64decoded_length(nb::handle src_obj) {
  BufferGuard guard;
  Input src = as_input(src_obj, guard.view);
  B64Span span = hyperserve::b64_layout(src.data, src.size);
  if (span.error) throw nb::value_error(span.error);
  return span.decoded;
}

// numpy.empty(shape, dtype) filled with ``values``: one call into numpy, cheaper than exporting a
// buffer through nanobind's ndarray (a one-row decode: 2.3 → 1.9 µs on the benchmark VM).
// numpy and its dtypes are looked up once and kept for the life of the process.
template <typename T> constexpr const char* kDtypeName = nullptr;
template <> constexpr const char* kDtypeName<float> = "float32";
template <> constexpr const char* kDtypeName<double> = "float64";
template <> constexpr const char* kDtypeName<int32_t> = "int32";
template <> constexpr const char* kDtypeName<int64_t> = "int64";

template <typename T, typename Src>
nb::object numpy_filled(const std::vector<Src>& values, const std::vector<int64_t>& shape) {
  static PyObject* empty = nb::object(nb::module_::import_("numpy").attr("empty")).release().ptr();
  static PyObject* dtype = nb::object(nb::module_::import_("numpy").attr("dtype")(kDtypeName<T>)).release().ptr();
  nb::object dims = nb::steal(PyTuple_New(static_cast<Py_ssize_t>(shape.size())));
  if (!dims.is_valid()) throw nb::python_error();
  for (size_t i = 0; i < shape.size(); ++i) {
    PyObject* d = PyLong_FromLongLong(shape[i]);
    if (!d) throw nb::python_error();
    PyTuple_SET_ITEM(dims.ptr(), static_cast<Py_ssize_t>(i), d);
  }
  PyObject* args[] = {dims.ptr(), dtype};
  nb::object array = nb::steal(PyObject_Vectorcall(empty, args, 2, nullptr));
  if (!array.is_valid()) throw nb::python_error();
  Py_buffer view{};
  if (PyObject_GetBuffer(array.ptr(), &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) != 0) throw nb::python_error();
  T* out = static_cast<T*>(view.buf);
  for (size_t i = 0; i < values.size(); ++i) out[i] = static_cast<T>(values[i]);
  PyBuffer_Release(&view);
  return array;
}

// Above this many numbers a decoded array keeps the parser's buffer instead of a copy: the peak
// memory of a large body is then its numbers once, not twice.
constexpr size_t kAdoptNumbers = 64 * 1024;

// The vector's buffer as a numpy array of T (T no wider than Src, converted in place front to
// back, which never overwrites a value not yet read); the array owns the vector.
template <typename T, typename Src>
nb::object numpy_adopted(std::vector<Src>&& values, const std::vector<int64_t>& shape) {
  static_assert(sizeof(T) <= sizeof(Src));
  auto* owned = new std::vector<Src>(std::move(values));
  T* out = reinterpret_cast<T*>(owned->data());
  if constexpr (!std::is_same_v<T, Src>) {
    const Src* in = owned->data();
    for (size_t i = 0; i < owned->size(); ++i) {
      Src v = in[i];
      out[i] = static_cast<T>(v);
    }
  }
  nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<std::vector<Src>*>(p); });
  std::vector<size_t> dims(shape.begin(), shape.end());
  return nb::ndarray<nb::numpy, T>(out, dims.size(), dims.data(), owner).cast();
}

template <typename T, typename Src>
nb::object numpy_array(std::vector<Src>& values, const std::vector<int64_t>& shape) {
  if (values.size() >= kAdoptNumbers) return numpy_adopted<T>(std::move(values), shape);
  return numpy_filled<T>(values, shape);
}

// Returns (array, {key: (start, end)} of the other top-level keys), or None to decline; or, for
// regular numbers in a shape the signature does not take, (shape, spans, True).
nb::object decode_instances(nb::handle body_obj, int target_code, nb::object inner_shape_obj) {
  BufferGuard guard;
  Input body = as_input(body_obj, guard.view);
  std::vector<int64_t> inner;
  bool has_inner = !inner_shape_obj.is_none();
  if (has_inner)
    for (nb::handle d : inner_shape_obj) inner.push_back(nb::cast<int64_t>(d));
  auto target = static_cast<hyperserve::Target>(target_code);
  hyperserve::InstancesResult parsed;
  {
    const char* data = reinterpret_cast<const char*>(body.data);
    if (body.size >= kReleaseGilBytes) {
      nb::gil_scoped_release release;
      parsed = hyperserve::parse_instances(data, body.size, target, inner, has_inner);
    } else {
      parsed = hyperserve::parse_instances(data, body.size, target, inner, has_inner);
    }
  }
  if (!parsed.accepted) return nb::none();
  nb::dict spans;
  for (auto& [key, span] : parsed.other_keys) spans[nb::str(key.c_str())] = nb::make_tuple(span.first, span.second);
  if (parsed.shape_mismatch) {
    nb::list dims;
    for (int64_t d : parsed.shape) dims.append(d);
    return nb::make_tuple(nb::tuple(dims), spans, true);
  }
  nb::object array;
  switch (target) {
    case hyperserve::Target::Float32:
      array = numpy_array<float>(parsed.doubles, parsed.shape);
      break;
    case hyperserve::Target::Float64:
      array = numpy_array<double>(parsed.doubles, parsed.shape);
      break;
    case hyperserve::Target::Int64:
      array = numpy_array<int64_t>(parsed.ints, parsed.shape);
      break;
    case hyperserve::Target::Int32:
      array = numpy_array<int32_t>(parsed.ints, parsed.shape);
      break;
    case hyperserve::Target::Infer:
      array = parsed.any_float ? numpy_array<double>(parsed.doubles, parsed.shape)
                               : numpy_array<int64_t>(parsed.ints, parsed.shape);
      break;
  }
  return nb::make_tuple(array, spans);
}

// Returns ([(start, end) of each instance's base64 text], {key: (start, end)}), or None to decline.
nb::object b64_instance_spans(nb::handle body_obj) {
  BufferGuard guard;
  Input body = as_input(body_obj, guard.view);
  hyperserve::InstancesResult parsed;
  {
    const char* data = reinterpret_cast<const char*>(body.data);
    nb::gil_scoped_release release;
    parsed = hyperserve::parse_b64_instances(data, body.size);
  }
  if (!parsed.accepted) return nb::none();
  nb::list spans;
  for (auto& [start, end] : parsed.b64_spans) spans.append(nb::make_tuple(start, end));
  nb::dict others;
  for (auto& [key, span] : parsed.other_keys) others[nb::str(key.c_str())] = nb::make_tuple(span.first, span.second);
  return nb::make_tuple(spans, others);
}

PyObject* latin1(const uint8_t* data, const hyperserve::Span& span) {
  PyObject* s = PyUnicode_DecodeLatin1(reinterpret_cast<const char*>(data + span.start),
                                       static_cast<Py_ssize_t>(span.len), nullptr);
  if (!s) throw nb::python_error();
  return s;
}

// (method, path, query, headers, body, end, keep_alive) for the whole HTTP/1.1 request at
// ``offset``, or None to hand the bytes to the general parser. Header names are lower-cased and
// repeated headers joined by ", ", as the transport's httptools callbacks do.
nb::object parse_request(nb::handle data_obj, size_t offset, size_t max_header_bytes, size_t max_body_bytes) {
  BufferGuard guard;
  Input in = as_input(data_obj, guard.view);
  if (offset >= in.size) return nb::none();
  hyperserve::ParsedRequest r = hyperserve::parse_http_request(in.data, in.size, offset, max_header_bytes, max_body_bytes);
  if (!r.accepted) return nb::none();
  static PyObject* methods[16] = {};
  if (!methods[0])
    for (size_t m = 0; m < hyperserve::kHttpMethodCount; ++m) methods[m] = PyUnicode_InternFromString(hyperserve::kHttpMethods[m]);
  nb::dict headers;
  std::string name;
  for (const auto& h : r.headers) {
    name.assign(reinterpret_cast<const char*>(in.data + h.name.start), h.name.len);
    for (char& c : name) if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    nb::object key = nb::steal(PyUnicode_DecodeLatin1(name.data(), static_cast<Py_ssize_t>(name.size()), nullptr));
    nb::object value = nb::steal(latin1(in.data, h.value));
    if (!key.is_valid()) throw nb::python_error();
    PyObject* previous = PyDict_GetItemWithError(headers.ptr(), key.ptr());
    if (previous) {
      value = nb::steal(PyUnicode_FromFormat("%U, %U", previous, value.ptr()));
      if (!value.is_valid()) throw nb::python_error();
    } else if (PyErr_Occurred()) {
      throw nb::python_error();
    }
    if (PyDict_SetItem(headers.ptr(), key.ptr(), value.ptr()) != 0) throw nb::python_error();
  }
  nb::object path = nb::steal(latin1(in.data, r.path));
  nb::object query = nb::steal(latin1(in.data, r.query));
  PyObject* body = PyBytes_FromStringAndSize(reinterpret_cast<const char*>(in.data + r.body.start),
                                             static_cast<Py_ssize_t>(r.body.len));
  if (!body) throw nb::python_error();
  return nb::make_tuple(nb::borrow(methods[r.method]), path, query, headers, nb::steal(body), r.end, r.keep_alive);
}

// (duplicate key or None, depth) of a JSON text orjson accepted; None when it is not well-formed.
nb::object scan_json(nb::handle body_obj) {
  BufferGuard guard;
  Input body = as_input(body_obj, guard.view);
  hyperserve::JsonScan scanned;
  {
    const char* data = reinterpret_cast<const char*>(body.data);
    nb::gil_scoped_release release;
    scanned = hyperserve::scan_json(data, body.size);
  }
  if (!scanned.valid) return nb::none();
  nb::object key = nb::none();
  if (scanned.duplicate) {
    key = nb::steal(PyUnicode_DecodeUTF8(scanned.key.data(), static_cast<Py_ssize_t>(scanned.key.size()),
                                         "surrogatepass"));
    if (!key.is_valid()) throw nb::python_error();
  }
  return nb::make_tuple(key, scanned.depth);
}

// The positions of the lines (a list of bytes) that are not each a balanced JSON text: one call
// for a batch, where scan_json per line costs a call, a tuple and a GIL release each.
nb::list unbalanced_lines(nb::handle lines_obj) {
  nb::list bad;
  Py_ssize_t i = 0;
  for (nb::handle line : lines_obj) {
    BufferGuard guard;
    Input body = as_input(line, guard.view);
    if (!hyperserve::balanced_json(reinterpret_cast<const char*>(body.data), body.size)) bad.append(i);
    ++i;
  }
  return bad;
}

// A batch job's output lines, {"instance": name, "prediction": p}\n each ("key" for "instance"
// when keyed), written into one new bytes object: in Python the join of 4 pieces a line was a
// share of an iris job's time (bench/README.md).
nb::object result_lines(nb::handle names, nb::handle predictions, bool keyed) {
  static constexpr std::string_view kInstance = "{\"instance\":", kKey = "{\"key\":",
                                    kPrediction = ",\"prediction\":", kEnd = "}\n";
  const std::string_view head = keyed ? kKey : kInstance;
  if (!PyList_CheckExact(names.ptr()) || !PyList_CheckExact(predictions.ptr()))
    throw nb::type_error("result_lines takes two lists of bytes");
  const Py_ssize_t count = PyList_GET_SIZE(names.ptr());
  if (PyList_GET_SIZE(predictions.ptr()) != count)
    throw nb::value_error("result_lines: as many predictions as names");
  size_t total = static_cast<size_t>(count) * (head.size() + kPrediction.size() + kEnd.size());
  for (Py_ssize_t i = 0; i < count; ++i) {
    PyObject* name = PyList_GET_ITEM(names.ptr(), i);
    PyObject* prediction = PyList_GET_ITEM(predictions.ptr(), i);
    if (!PyBytes_Check(name) || !PyBytes_Check(prediction))
      throw nb::type_error("result_lines takes two lists of bytes");
    total += static_cast<size_t>(PyBytes_GET_SIZE(name) + PyBytes_GET_SIZE(prediction));
  }
  PyObject* out = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(total));
  if (!out) throw nb::python_error();
  char* at = PyBytes_AS_STRING(out);
  auto put = [&at](const char* data, size_t size) {
    std::memcpy(at, data, size);
    at += size;
  };
  for (Py_ssize_t i = 0; i < count; ++i) {
    PyObject* name = PyList_GET_ITEM(names.ptr(), i);
    PyObject* prediction = PyList_GET_ITEM(predictions.ptr(), i);
    put(head.data(), head.size());
    put(PyBytes_AS_STRING(name), static_cast<size_t>(PyBytes_GET_SIZE(name)));
    put(kPrediction.data(), kPrediction.size());
    put(PyBytes_AS_STRING(prediction), static_cast<size_t>(PyBytes_GET_SIZE(prediction)));
    put(kEnd.data(), kEnd.size());
  }
  return nb::steal(out);
}

// A batch job's text input: tail (which holds no '\n') + block split at '\n', each line stripped
// of ASCII white space as bytes.strip() does, and what follows the last '\n' (a line the next
// block ends). One pass, with no concatenation and no unstripped line objects: in Python the
// split and the strips were 14% of an iris job's worker (bench/README.md).
constexpr bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\x0b' || c == '\x0c';
}

PyObject* stripped(const char* begin, const char* end) {
  while (begin < end && is_space(*begin)) ++begin;
  while (end > begin && is_space(end[-1])) --end;
  PyObject* line = PyBytes_FromStringAndSize(begin, end - begin);
  if (!line) throw nb::python_error();
  return line;
}

nb::tuple split_lines(nb::bytes tail, nb::bytes block) {
  const char* at = block.c_str();
  const char* const end = at + block.size();
  nb::list lines;
  const char* newline = static_cast<const char*>(std::memchr(at, '\n', block.size()));
  if (newline == nullptr) {  // no line ends in this block: all of it joins the tail
    std::string rest(tail.c_str(), tail.size());
    rest.append(at, block.size());
    return nb::make_tuple(lines, nb::bytes(rest.data(), rest.size()));
  }
  {
    std::string first(tail.c_str(), tail.size());  // the line the last block began
    first.append(at, newline - at);
    nb::object line = nb::steal(stripped(first.data(), first.data() + first.size()));
    if (PyList_Append(lines.ptr(), line.ptr()) != 0) throw nb::python_error();
  }
  at = newline + 1;
  while ((newline = static_cast<const char*>(std::memchr(at, '\n', end - at))) != nullptr) {
    nb::object line = nb::steal(stripped(at, newline));
    if (PyList_Append(lines.ptr(), line.ptr()) != 0) throw nb::python_error();
    at = newline + 1;
  }
  return nb::make_tuple(lines, nb::bytes(at, end - at));
}

// Where records k * every begin in a file of lines, one block at a time. A record is a line that
// holds more than whitespace. ``state``: (the block's byte offset in the file, records so far, lines
// so far, where the line under way began, whether it is a record). Returns (each start found, as
// (byte, lines before it); the state after the block).
nb::tuple index_lines(nb::bytes block, int64_t every, nb::tuple state) {
  if (every < 1) throw nb::value_error("index_lines: every must be at least 1");
  if (state.size() != 5) throw nb::value_error("index_lines: state is (offset, records, lines, line_start, counted)");
  const int64_t offset = nb::cast<int64_t>(state[0]);
  int64_t count = nb::cast<int64_t>(state[1]), lines = nb::cast<int64_t>(state[2]);
  int64_t line_start = nb::cast<int64_t>(state[3]);
  bool counted = nb::cast<bool>(state[4]);
  const char* const base = block.c_str();
  const size_t size = block.size();
  nb::list starts;
  size_t at = 0;
  while (at < size) {
    if (!counted) {  // the line's first byte that is not whitespace makes it a record
      while (at < size && base[at] != '\n' && is_space(base[at])) ++at;
      if (at == size) break;
      if (base[at] != '\n') {
        if (count % every == 0) starts.append(nb::make_tuple(line_start, lines));
        ++count;
        counted = true;
      }
    }
    const char* newline = static_cast<const char*>(std::memchr(base + at, '\n', size - at));
    if (newline == nullptr) break;
    at = static_cast<size_t>(newline - base) + 1;
    ++lines;
    line_start = offset + static_cast<int64_t>(at);
    counted = false;
  }
  return nb::make_tuple(starts, nb::make_tuple(offset + static_cast<int64_t>(size), count, lines, line_start, counted));
}

// A new bytes object of ``size`` bytes, for the transport to fill chunk by chunk with write_into
// while no one else holds it: a large body is then held once, not as chunks plus their join.
nb::object bytes_of_size(size_t size) {
  PyObject* out = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(size));
  if (!out) throw nb::python_error();
  return nb::steal(out);
}

void write_into(nb::handle target, size_t offset, nb::handle chunk_obj) {
  if (!PyBytes_CheckExact(target.ptr()) || Py_REFCNT(target.ptr()) > 3)
    throw nb::value_error("write_into takes a bytes object from bytes_of_size that nothing else holds");
  BufferGuard guard;
  Input chunk = as_input(chunk_obj, guard.view);
  size_t size = static_cast<size_t>(PyBytes_GET_SIZE(target.ptr()));
  if (offset > size || chunk.size > size - offset) throw nb::value_error("write_into: the chunk does not fit");
  std::memcpy(PyBytes_AS_STRING(target.ptr()) + offset, chunk.data, chunk.size);
}

}  // namespace

NB_MODULE(_native, m) {
  m.doc() = "hyperserve's native codec fast path";
  m.def("b64decode", &b64decode, nb::arg("data"),
        "Decode strict standard base64 from any bytes-like object into new bytes.");
  m.def("b64decode_into", &b64decode_into, nb::arg("data"), nb::arg("out"),
        "Decode strict standard base64 into a writable uint8 array; returns the byte count.");
  m.def("decode_instances", &decode_instances, nb::arg("body"), nb::arg("target"), nb::arg("inner_shape").none(),
        "Fast path for {\"instances\": [[numbers]]}: (array, other key spans), or None to use the Python path.");
  m.def("b64_instance_spans", &b64_instance_spans, nb::arg("body"),
        "Spans of {\"instances\": [{\"b64\": ...}]} strings: (spans, other key spans), or None to decline.");
  m.def("parse_request", &parse_request, nb::arg("data"), nb::arg("offset"), nb::arg("max_header_bytes"),
        nb::arg("max_body_bytes"),
        "One whole HTTP/1.1 request at offset: (method, path, query, headers, body, end, keep_alive), "
        "or None to use the general parser.");
  m.def("scan_json", &scan_json, nb::arg("body"),
        "One pass over JSON orjson accepted: (the first key repeated in an object or None, nesting depth), "
        "or None when it is not well-formed.");
  m.def("unbalanced_lines", &unbalanced_lines, nb::arg("lines"),
        "The positions of the lines that are not each well-formed as scan_json judges.");
  m.def("result_lines", &result_lines, nb::arg("names"), nb::arg("predictions"), nb::arg("keyed"),
        "A batch job's output lines for two lists of bytes: {\"instance\" (or \"key\"): name, \"prediction\": p}\\n each.");
  m.def("split_lines", &split_lines, nb::arg("tail"), nb::arg("block"),
        "(tail + block split at newlines, each line stripped as bytes.strip() does, what follows the last newline).");
  m.def("index_lines", &index_lines, nb::arg("block"), nb::arg("every"), nb::arg("state"),
        "Where records (lines holding more than whitespace) k * every begin in this block of a file, "
        "after state (offset, records, lines, line_start, counted): (starts as (byte, lines before), the state after).");
  m.def("bytes_of_size", &bytes_of_size, nb::arg("size"), "A new bytes object of size bytes, to fill with write_into.");
  m.def("write_into", &write_into, nb::arg("target"), nb::arg("offset"), nb::arg("chunk"),
        "Copy chunk into target (a bytes object from bytes_of_size that nothing else holds) at offset.");
  m.def("b64decoded_length", &b64decoded_length, nb::arg("data"),
        "Length the data decodes to; raises ValueError on a bad length or padding.");
}
