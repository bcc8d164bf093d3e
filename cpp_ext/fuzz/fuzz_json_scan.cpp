// libFuzzer target for the duplicate-key and depth scan: any input, well-formed or not, must be
// scanned in bounds; in an input without escapes, a reported duplicate must occur quoted twice;
// and the allocation-free balance check must judge it as the full scan does.
#include <cstdlib>
#include <string>
#include <string_view>

#include "../json_scan.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* text = reinterpret_cast<const char*>(data);
  auto scanned = hyperserve::scan_json(text, size);
  if (hyperserve::balanced_json(text, size) != scanned.valid) abort();
  if (scanned.depth < 0 || static_cast<size_t>(scanned.depth) > size) abort();
  std::string_view all(text, size);
  if (scanned.duplicate && all.find('\\') == std::string_view::npos) {
    std::string quoted = "\"" + scanned.key + "\"";
    size_t first = all.find(quoted);
    if ((first == std::string_view::npos || all.find(quoted, first + 1) == std::string_view::npos)) abort();
  }
  return 0;
}
