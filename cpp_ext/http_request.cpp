#include "http_request.h"

#include <cstring>

namespace hyperserve {

const char* const kHttpMethods[] = {"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"};
const size_t kHttpMethodCount = sizeof(kHttpMethods) / sizeof(kHttpMethods[0]);

namespace {

constexpr size_t kMaxHeaders = 64;
constexpr size_t kMaxLengthDigits = 15;

// RFC 9110 tchar.
bool is_tchar(uint8_t c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::strchr("!#$&'*+-.^_`|~", c) != nullptr && c != 0;
}

// Target characters: RFC 3986 unreserved, sub-delims, ':', '@', '/', '?'. No '%' (the general
// path decodes it) and no '#'.
bool is_target_char(uint8_t c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return c != 0 && std::strchr("-._~!$&'()*+,;=:@/?", c) != nullptr;
}

bool is_value_char(uint8_t c) { return c == '\t' || (c >= 0x20 && c <= 0x7e); }

uint8_t lower(uint8_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

bool name_is(const uint8_t* p, size_t len, const char* lower_name) {
  size_t n = std::strlen(lower_name);
  if (len != n) return false;
  for (size_t i = 0; i < n; ++i)
    if (lower(p[i]) != static_cast<uint8_t>(lower_name[i])) return false;
  return true;
}

bool value_is(const uint8_t* p, size_t len, const char* lower_value) { return name_is(p, len, lower_value); }

}  // namespace

ParsedRequest parse_http_request(const uint8_t* data, size_t size, size_t offset, size_t max_header_bytes,
                                 size_t max_body_bytes) {
  ParsedRequest out;
  const uint8_t* p = data + offset;
  const uint8_t* end = data + size;

  // Request line: METHOD SP target SP HTTP/1.1 CRLF
  int method = -1;
  for (size_t m = 0; m < kHttpMethodCount; ++m) {
    size_t n = std::strlen(kHttpMethods[m]);
    if (static_cast<size_t>(end - p) > n && std::memcmp(p, kHttpMethods[m], n) == 0 && p[n] == ' ') {
      method = static_cast<int>(m);
      p += n + 1;
      break;
    }
  }
  if (method < 0) return out;
  if (p >= end || *p != '/') return out;
  const uint8_t* target = p;
  const uint8_t* question = nullptr;
  while (p < end && *p != ' ') {
    if (!is_target_char(*p)) return out;
    if (*p == '?' && question == nullptr) question = p;
    ++p;
  }
  if (p >= end) return out;
  size_t target_len = static_cast<size_t>(p - target);
  static const char kVersion[] = " HTTP/1.1\r\n";
  if (static_cast<size_t>(end - p) < sizeof(kVersion) - 1 || std::memcmp(p, kVersion, sizeof(kVersion) - 1) != 0)
    return out;
  p += sizeof(kVersion) - 1;
  out.method = method;
  const uint8_t* path_end = question ? question : target + target_len;
  out.path = {static_cast<size_t>(target - data), static_cast<size_t>(path_end - target)};
  if (question) out.query = {static_cast<size_t>(question + 1 - data), static_cast<size_t>(target + target_len - question - 1)};

  size_t header_bytes = target_len;
  bool has_length = false, has_connection = false;
  size_t content_length = 0;
  for (;;) {
    if (p + 1 >= end) return out;  // incomplete head
    if (p[0] == '\r') {
      if (p[1] != '\n') return out;
      p += 2;
      break;
    }
    if (out.headers.size() == kMaxHeaders) return out;
    const uint8_t* name = p;
    while (p < end && is_tchar(*p)) ++p;
    if (p >= end || p == name || *p != ':') return out;
    size_t name_len = static_cast<size_t>(p - name);
    ++p;
    while (p < end && (*p == ' ' || *p == '\t')) ++p;
    const uint8_t* value = p;
    while (p < end && *p != '\r') {
      if (!is_value_char(*p)) return out;
      ++p;
    }
    if (p + 1 >= end || p[1] != '\n') return out;  // incomplete, or a bare CR
    size_t value_len = static_cast<size_t>(p - value);
    if (value_len == 0 || value[value_len - 1] == ' ' || value[value_len - 1] == '\t') return out;
    p += 2;
    if (p < end && (*p == ' ' || *p == '\t')) return out;  // obs-fold
    header_bytes += name_len + value_len + 4;
    if (header_bytes > max_header_bytes) return out;

    if (name_is(name, name_len, "content-length")) {
      if (has_length || value_len > kMaxLengthDigits) return out;
      for (size_t i = 0; i < value_len; ++i) {
        if (value[i] < '0' || value[i] > '9') return out;
        content_length = content_length * 10 + (value[i] - '0');
      }
      has_length = true;
      if (content_length > max_body_bytes) return out;
    } else if (name_is(name, name_len, "transfer-encoding") || name_is(name, name_len, "expect") ||
               name_is(name, name_len, "upgrade")) {
      return out;
    } else if (name_is(name, name_len, "connection")) {
      if (has_connection) return out;
      has_connection = true;
      if (value_is(value, value_len, "close")) {
        out.keep_alive = false;
      } else if (!value_is(value, value_len, "keep-alive")) {
        return out;
      }
    }
    out.headers.push_back({{static_cast<size_t>(name - data), name_len}, {static_cast<size_t>(value - data), value_len}});
  }
  size_t body_start = static_cast<size_t>(p - data);
  if (content_length > size - body_start) return out;  // body not complete yet
  out.body = {body_start, content_length};
  out.end = body_start + content_length;
  out.accepted = true;
  return out;
}

}  // namespace hyperserve
