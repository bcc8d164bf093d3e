// The reference the numeric decoder is compared with: a bare scan of a JSON body that converts
// every number with std::from_chars into a float and ignores the structure (no validation, no
// shape). Built by bench/micro/test_codec_speed.py into a shared library and timed like the others.
#include <charconv>
#include <cstddef>

extern "C" size_t from_chars_scan(const char* p, size_t size, float* out) {
  const char* end = p + size;
  size_t count = 0;
  while (p < end) {
    char c = *p;
    if ((c >= '0' && c <= '9') || c == '-') {
      auto res = std::from_chars(p, end, out[count]);
      ++count;
      p = res.ptr;
    } else {
      ++p;
    }
  }
  return count;
}
