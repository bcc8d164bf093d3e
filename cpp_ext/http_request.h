// The transport's fast path: one whole HTTP/1.1 request, complete in a buffer, parsed in one call.
//
// It accepts a strict subset of RFC 9112 and declines everything else, so that the general parser
// (httptools) answers every unusual request exactly as before: it only has to agree with
// httptools on what it accepts, never to reproduce its errors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace hyperserve {

struct Span {
  size_t start = 0;
  size_t len = 0;
};

struct HeaderField {
  Span name;  // as sent; the binding lower-cases it
  Span value;
};

struct ParsedRequest {
  bool accepted = false;
  int method = -1;  // index into kHttpMethods
  Span path;
  Span query;  // after '?', empty when absent
  std::vector<HeaderField> headers;
  Span body;
  size_t end = 0;  // offset just past this request
  bool keep_alive = true;
};

extern const char* const kHttpMethods[];
extern const size_t kHttpMethodCount;

// Parse the request starting at ``offset``. Declines (accepted == false) when the request is
// incomplete, when its head exceeds ``max_header_bytes`` (counted as the transport counts them:
// the target plus name + value + 4 per header), when its Content-Length exceeds ``max_body_bytes``,
// or when it uses anything outside the subset: methods other than GET HEAD POST PUT DELETE OPTIONS
// PATCH, a version other than HTTP/1.1, '%' or '#' in the target, Transfer-Encoding, Expect,
// Upgrade, a Connection other than one keep-alive or close, repeated or non-decimal Content-Length,
// empty values or trailing whitespace, obs-fold, bytes outside visible ASCII, bare CR or LF.
ParsedRequest parse_http_request(const uint8_t* data, size_t size, size_t offset, size_t max_header_bytes,
                                 size_t max_body_bytes);

}  // namespace hyperserve
