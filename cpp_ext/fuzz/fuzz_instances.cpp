// libFuzzer target for the instances parser: any bytes, any target dtype and inner shape.
// Beyond ASan/UBSan findings it checks the result's invariants, so a wrong answer is a crash too.
#include <cstdlib>
#include <vector>

#include "../instances.h"

static void check_b64(const char* body, size_t size) {
  auto result = hyperserve::parse_b64_instances(body, size);
  if (!result.accepted) return;
  size_t previous_end = 0;
  for (auto& span : result.b64_spans) {
    if (span.first < previous_end || span.first > span.second || span.second > size) abort();
    for (size_t i = span.first; i < span.second; ++i)
      if (body[i] == '"' || body[i] == '\\') abort();
    previous_end = span.second;
  }
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  if (data[0] >= 250) {  // the {"b64": ...} mode
    check_b64(reinterpret_cast<const char*>(data + 2), size - 2);
    return 0;
  }
  auto target = static_cast<hyperserve::Target>(data[0] % 5);
  bool has_inner = data[1] & 1;
  std::vector<int64_t> inner;
  for (int i = 0; i < ((data[1] >> 1) & 3); ++i) inner.push_back(static_cast<int64_t>((data[1] >> (3 + i)) & 3) - 1);
  const char* body = reinterpret_cast<const char*>(data + 2);
  size_t body_size = size - 2;
  auto result = hyperserve::parse_instances(body, body_size, target, inner, has_inner);
  if (!result.accepted) return 0;
  size_t count = 1;
  for (int64_t d : result.shape) {
    if (d <= 0) abort();
    count *= static_cast<size_t>(d);
  }
  bool int_target = target == hyperserve::Target::Int64 || target == hyperserve::Target::Int32;
  bool float_target = target == hyperserve::Target::Float32 || target == hyperserve::Target::Float64;
  if (count != result.count) abort();
  if (!int_target && count != result.doubles.size()) abort();
  if (!float_target && !result.any_float && result.ints.size() != count) abort();
  if (int_target && result.any_float) abort();
  bool mismatch = has_inner && inner.size() + 1 != result.shape.size();
  for (size_t i = 0; has_inner && !mismatch && i < inner.size(); ++i)
    mismatch = inner[i] != -1 && inner[i] != result.shape[i + 1];
  if (mismatch != result.shape_mismatch) abort();
  for (auto& kv : result.other_keys) {
    if (kv.second.first > kv.second.second || kv.second.second > body_size) abort();
  }
  return 0;
}
