// Strict standard-alphabet base64 (RFC 4648 §4): padding optional, no whitespace.
// The pure-Python twin is hyperserve.server.codecs.b64; both give the same results and messages.
#pragma once
#include <cstddef>
#include <cstdint>

namespace hyperserve {

struct B64Span {
  size_t body;           // characters before the padding
  size_t decoded;        // bytes the body decodes to
  const char* error;     // nullptr when the layout is valid
};

// Checks length and padding only; the alphabet is checked while decoding.
B64Span b64_layout(const uint8_t* src, size_t n);

// Decodes `span.body` characters of src into dst (span.decoded bytes).
// Returns false on a character outside the alphabet.
bool b64_decode(const uint8_t* src, const B64Span& span, uint8_t* dst);

}  // namespace hyperserve
