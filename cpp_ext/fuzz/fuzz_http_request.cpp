// libFuzzer target for the whole-request HTTP parser: every span it reports lies inside the input,
// in order, and an accepted request ends where its body ends; pipelined requests parse on from there.
#include <cstdlib>

#include "../http_request.h"

static void check(const hyperserve::Span& span, size_t lo, size_t hi) {
  if (span.start < lo || span.len > hi - span.start || span.start > hi) abort();
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  size_t offset = 0;
  for (int n = 0; n < 8 && offset < size; ++n) {
    auto r = hyperserve::parse_http_request(data, size, offset, 512, 4096);
    if (!r.accepted) return 0;
    if (r.method < 0 || static_cast<size_t>(r.method) >= hyperserve::kHttpMethodCount) abort();
    check(r.path, offset, size);
    if (r.query.len) check(r.query, r.path.start + r.path.len, size);
    for (const auto& h : r.headers) {
      check(h.name, offset, r.body.start);
      check(h.value, h.name.start + h.name.len, r.body.start);
    }
    check(r.body, offset, size);
    if (r.end != r.body.start + r.body.len || r.end <= offset || r.body.len > 4096) abort();
    offset = r.end;
  }
  return 0;
}
