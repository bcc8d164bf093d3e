// Fast path for the common predict body: {"instances": [[n, n, ...], ...], ...other keys}.
//
// It only *accepts*: numbers in regular nested arrays, a top-level object, ASCII-only text, no
// duplicate "instances". Anything else (booleans, nulls, strings among the numbers, ragged
// arrays, escapes in keys, non-ASCII bytes, integers beyond ±2^53) makes it decline, and the
// caller runs the pure-Python path, which then produces the result or the error. So both paths
// agree by construction on everything this one accepts. A shape the signature does not take is
// accepted and flagged: the caller answers the error the Python path would, from the shape.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace hyperserve {

enum class Target { Infer = 0, Float32 = 1, Float64 = 2, Int64 = 3, Int32 = 4 };

struct InstancesResult {
  bool accepted = false;
  bool any_float = false;             // some number had a fraction or exponent
  bool shape_mismatch = false;        // accepted, but not in the signature's per-instance shape
  size_t count = 0;                   // numbers read
  std::vector<int64_t> shape;         // batch first
  std::vector<double> doubles;        // every number, as a double (not kept for an integer target)
  std::vector<int64_t> ints;          // every number, while all are integers (not for a float target)
  std::vector<std::pair<std::string, std::pair<size_t, size_t>>> other_keys;  // key → value span
  std::vector<std::pair<size_t, size_t>> b64_spans;  // parse_b64_instances: each instance's base64 text
};

// inner_shape: the signature's per-instance dims (-1: any); has_inner_shape false: any shape.
InstancesResult parse_instances(const char* data, size_t size, Target target,
                                const std::vector<int64_t>& inner_shape, bool has_inner_shape);

// {"instances": [{"b64": "..."}, ...]}: the span of each base64 string (no escapes, ASCII only),
// so the caller decodes straight from the request bytes. Declines anything else.
InstancesResult parse_b64_instances(const char* data, size_t size);

}  // namespace hyperserve
