// libFuzzer target for the strict base64 decoder: layout, decode, and a re-encode round trip.
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../base64.h"

static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto span = hyperserve::b64_layout(data, size);
  if (span.error) return 0;
  if (span.body > size || span.decoded > size) abort();
  std::vector<uint8_t> out(span.decoded + 1, 0xAB);
  if (!hyperserve::b64_decode(data, span, out.data())) return 0;
  if (out[span.decoded] != 0xAB) abort();  // wrote past the promised length
  // Re-encode full quanta: they must give back the input characters.
  for (size_t q = 0; q + 4 <= span.body; q += 4) {
    const uint8_t* b = out.data() + q / 4 * 3;
    uint32_t v = (b[0] << 16) | (b[1] << 8) | b[2];
    char enc[4] = {kAlphabet[(v >> 18) & 63], kAlphabet[(v >> 12) & 63], kAlphabet[(v >> 6) & 63], kAlphabet[v & 63]};
    if (std::memcmp(enc, data + q, 4) != 0) abort();
  }
  return 0;
}
