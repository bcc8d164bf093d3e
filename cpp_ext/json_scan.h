// One linear, non-recursive pass over a JSON text that orjson has already accepted: the first
// key repeated within one object (orjson keeps the last silently; TF Serving refuses), and how
// deep the nesting goes. Keys are compared after unescaping, so "a" and "\u0061" are one key.
#pragma once
#include <cstddef>
#include <string>

namespace hyperserve {

struct JsonScan {
  bool valid = true;        // false: not well-formed JSON after all (the caller's parser decides)
  bool duplicate = false;
  std::string key;          // the repeated key, as UTF-8
  int depth = 0;            // most arrays and objects open at once
};

JsonScan scan_json(const char* data, size_t size);

// scan_json(data, size).valid, with no allocation for a text of no strings and no objects (a batch
// job's usual line, an array of numbers): there only the brackets' balance decides.
bool balanced_json(const char* data, size_t size);

}  // namespace hyperserve
