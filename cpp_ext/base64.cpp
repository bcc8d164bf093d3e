#include "base64.h"

#include <array>
#include <cstring>

namespace hyperserve {
namespace {

constexpr uint32_t kBad = 0xFFFFFFFFu;

// Four tables, one per position in a quantum, so a quantum is four loads and three ORs.
struct Tables {
  std::array<uint32_t, 256> t[4];
  constexpr Tables() : t{} {
    const char* alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (auto& table : t)
      for (auto& v : table) v = kBad;
    for (uint32_t i = 0; i < 64; ++i) {
      auto c = static_cast<unsigned char>(alpha[i]);
      t[0][c] = i << 18;
      t[1][c] = i << 12;
      t[2][c] = i << 6;
      t[3][c] = i;
    }
  }
};
constexpr Tables kTables;

inline uint32_t quantum(const uint8_t* s) {
  uint32_t a = kTables.t[0][s[0]], b = kTables.t[1][s[1]];
  uint32_t c = kTables.t[2][s[2]], d = kTables.t[3][s[3]];
  // Valid entries use 24 bits, so the OR is all ones exactly when one character was bad.
  return a | b | c | d;
}

}  // namespace

B64Span b64_layout(const uint8_t* src, size_t n) {
  size_t pad = 0;
  while (pad < 2 && n > pad && src[n - 1 - pad] == '=') ++pad;
  size_t body = n - pad;
  size_t rem = body % 4;
  if (rem == 1) return {body, 0, "invalid base64: length leaves a single dangling character"};
  if (pad && (n % 4 != 0)) return {body, 0, "invalid base64: padding does not complete a quantum"};
  size_t decoded = body / 4 * 3 + (rem == 2 ? 1 : rem == 3 ? 2 : 0);
  return {body, decoded, nullptr};
}

bool b64_decode(const uint8_t* src, const B64Span& span, uint8_t* dst) {
  size_t full = span.body / 4;
  for (size_t q = 0; q < full; ++q, src += 4, dst += 3) {
    uint32_t v = quantum(src);
    if (v == kBad) return false;
    dst[0] = static_cast<uint8_t>(v >> 16);
    dst[1] = static_cast<uint8_t>(v >> 8);
    dst[2] = static_cast<uint8_t>(v);
  }
  size_t rem = span.body % 4;
  if (rem) {
    uint8_t tail[4] = {'A', 'A', 'A', 'A'};
    std::memcpy(tail, src, rem);
    uint32_t v = quantum(tail);
    if (v == kBad) return false;
    dst[0] = static_cast<uint8_t>(v >> 16);
    if (rem == 3) dst[1] = static_cast<uint8_t>(v >> 8);
  }
  return true;
}

}  // namespace hyperserve
