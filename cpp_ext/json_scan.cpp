#include "json_scan.h"

#include <cstdint>
#include <cstring>
#include <deque>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace hyperserve {
namespace {

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool read_u16(const char* p, const char* end, uint32_t& out) {
  if (end - p < 4) return false;
  out = 0;
  for (int i = 0; i < 4; ++i) {
    int h = hex(p[i]);
    if (h < 0) return false;
    out = out * 16 + static_cast<uint32_t>(h);
  }
  return true;
}

void put_utf8(std::string& s, uint32_t cp) {
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// The text between the quotes, escapes resolved; false when an escape is malformed.
bool unescape(const char* p, const char* end, std::string& out) {
  out.clear();
  while (p < end) {
    if (*p != '\\') {
      out += *p++;
      continue;
    }
    if (++p >= end) return false;
    char c = *p++;
    switch (c) {
      case '"': case '\\': case '/': out += c; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'u': {
        uint32_t cp;
        if (!read_u16(p, end, cp)) return false;
        p += 4;
        if (cp >= 0xD800 && cp < 0xDC00 && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
          uint32_t low;
          if (read_u16(p + 2, end, low) && low >= 0xDC00 && low < 0xE000) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            p += 6;
          }
        }
        put_utf8(out, cp);
        break;
      }
      default: return false;
    }
  }
  return true;
}

struct Frame {
  bool object;
  bool expect_key;
  std::unordered_set<std::string_view> keys;
};

}  // namespace

JsonScan scan_json(const char* data, size_t size) {
  JsonScan result;
  const char* p = data;
  const char* end = data + size;
  std::vector<Frame> stack;  // the open containers; a vector, so nesting costs no C++ recursion
  std::deque<std::string> unescaped;  // keys with escapes, kept alive for the sets' views
  std::string scratch;
  while (p < end) {
    char c = *p;
    switch (c) {
      case '{': case '[':
        stack.push_back(Frame{c == '{', c == '{', {}});
        if (static_cast<int>(stack.size()) > result.depth) result.depth = static_cast<int>(stack.size());
        ++p;
        break;
      case '}': case ']':
        if (stack.empty() || stack.back().object != (c == '}')) {
          result.valid = false;
          return result;
        }
        stack.pop_back();
        ++p;
        break;
      case ',':
        if (!stack.empty() && stack.back().object) stack.back().expect_key = true;
        ++p;
        break;
      case '"': {
        const char* start = ++p;
        bool escaped = false;
        // memchr to each quote; a quote preceded by an odd run of backslashes is inside the string.
        for (;;) {
          const void* q = std::memchr(p, '"', static_cast<size_t>(end - p));
          if (q == nullptr) {
            result.valid = false;
            return result;
          }
          const char* quote = static_cast<const char*>(q);
          const char* b = quote;
          while (b > start && b[-1] == '\\') --b;
          if (quote != start && std::memchr(start, '\\', static_cast<size_t>(quote - start))) escaped = true;
          p = quote + 1;
          if ((quote - b) % 2 == 0) break;
        }
        const char* stop = p - 1;
        if (!stack.empty() && stack.back().expect_key) {
          Frame& frame = stack.back();
          frame.expect_key = false;
          std::string_view key(start, static_cast<size_t>(stop - start));
          if (escaped) {
            if (!unescape(start, stop, scratch)) {
              result.valid = false;
              return result;
            }
            unescaped.push_back(scratch);
            key = unescaped.back();
          }
          if (!frame.keys.insert(key).second) {
            result.duplicate = true;
            result.key.assign(key.data(), key.size());
            return result;
          }
        }
        break;
      }
      default:
        ++p;  // ':', whitespace, numbers and literals
    }
  }
  if (!stack.empty()) result.valid = false;
  return result;
}

bool balanced_json(const char* data, size_t size) {
  size_t depth = 0;
  for (size_t i = 0; i < size; ++i) {
    char c = data[i];
    if (c == '[') {
      ++depth;
    } else if (c == ']') {
      if (depth == 0) return false;
      --depth;
    } else if (c == '"' || c == '{' || c == '}') {
      return scan_json(data, size).valid;
    }
  }
  return depth == 0;
}

}  // namespace hyperserve
