#include "instances.h"

#include <charconv>
#include <cstring>
#include <limits>
#include <utility>

namespace hyperserve {
namespace {

constexpr int kMaxDepth = 32;             // deeper bodies go to the Python path

// Exact powers of ten as doubles (10^0 .. 10^22 are all representable), for Clinger's fast path.
constexpr double kPow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                             1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

constexpr int64_t kExactInt = 1LL << 53;  // beyond this an int's double is not exact

struct Decline {};  // thrown to hand the body to the Python path

constexpr uint64_t kPow10Int[] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000};

// A run of ASCII digits, eight bytes at a time (SWAR, little-endian): one multiply per eight digits
// instead of a dependent multiply-add per digit, which is what bounds a plain digit loop. Adds the
// run's value to `mantissa` (wrapping past 19 digits: callers then use from_chars) and its length
// to `count`; returns the first non-digit.
inline const char* digit_run(const char* p, const char* end, uint64_t& mantissa, int& count) {
  while (end - p >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    // Per byte: a digit has high nibble 3 both as is and plus 6. A carry out of a byte can only
    // come from a non-digit, after which the later bytes do not matter.
    uint64_t not_digit = ((v & 0xF0F0F0F0F0F0F0F0ULL) ^ 0x3030303030303030ULL) |
                         (((v + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) ^ 0x3030303030303030ULL);
    int n = not_digit ? __builtin_ctzll(not_digit) / 8 : 8;
    if (n == 0) return p;
    if (n < 8) {  // keep the n digits in the high bytes, pad the low ones with '0'
      int shift = 8 * (8 - n);
      v = (v << shift) | (0x3030303030303030ULL >> (64 - shift));
    }
    v -= 0x3030303030303030ULL;
    v = (v * 10) + (v >> 8);
    v = (((v & 0x000000FF000000FFULL) * 0x000F424000000064ULL) +
         (((v >> 16) & 0x000000FF000000FFULL) * 0x0000271000000001ULL)) >> 32;
    mantissa = mantissa * kPow10Int[n] + v;
    count += n;
    p += n;
    if (n < 8) return p;
  }
  for (; p < end && static_cast<unsigned char>(*p - '0') < 10; ++p, ++count)
    mantissa = mantissa * 10 + static_cast<uint64_t>(*p - '0');
  return p;
}

class Parser {
 public:
  // keep_doubles / keep_ints: which conversions the target needs (an integer target never uses
  // the doubles, a float target never the ints); each costs 8 bytes a number.
  Parser(const char* data, size_t size, InstancesResult& out, bool b64 = false, bool keep_doubles = true,
         bool keep_ints = true)
      : begin_(data), p_(data), end_(data + size), out_(out), b64_(b64), keep_doubles_(keep_doubles),
        keep_ints_(keep_ints) {
    // At most one number per two bytes; most use 4 or more. Pages never written cost no memory.
    if (!b64 && keep_doubles) out_.doubles.reserve(size / 4);
    if (!b64 && keep_ints) out_.ints.reserve(size / 4);
  }

  void document() {
    ws();
    expect('{');
    ws();
    bool seen_instances = false;
    if (peek() == '}') {
      ++p_;
    } else {
      for (;;) {
        ws();
        std::string key = key_string();
        ws();
        expect(':');
        ws();
        if (key == "instances") {
          if (seen_instances) throw Decline{};  // duplicate keys: the Python path decides
          seen_instances = true;
          if (peek() != '[') throw Decline{};
          if (b64_) {
            b64_array();
          } else {
            array(0);
          }
        } else {
          // A duplicate key declines: the Python path names it in its 400.
          for (const auto& other : out_.other_keys)
            if (other.first == key) throw Decline{};
          const char* start = p_;
          skip_value(0);
          out_.other_keys.push_back({key, {static_cast<size_t>(start - begin_), static_cast<size_t>(p_ - begin_)}});
        }
        if (!more('}')) break;
      }
    }
    ws();
    if (p_ != end_ || !seen_instances) throw Decline{};
  }

 private:
  const char* begin_;
  const char* p_;
  const char* end_;
  InstancesResult& out_;
  bool b64_;
  bool keep_doubles_;
  bool keep_ints_;
  int leaf_depth_ = -1;

  void b64_array() {
    expect('[');
    ws();
    if (peek() == ']') throw Decline{};
    for (;;) {
      ws();
      expect('{');
      ws();
      if (key_string() != "b64") throw Decline{};
      ws();
      expect(':');
      ws();
      expect('"');
      // memchr, not a loop per character: the decoder validates the alphabet itself, so only an
      // escape (which would change the string's bytes) makes this path decline.
      const char* start = p_;
      const void* quote = std::memchr(p_, '"', static_cast<size_t>(end_ - p_));
      if (quote == nullptr) throw Decline{};
      p_ = static_cast<const char*>(quote);
      if (std::memchr(start, '\\', static_cast<size_t>(p_ - start)) != nullptr) throw Decline{};
      out_.b64_spans.push_back({static_cast<size_t>(start - begin_), static_cast<size_t>(p_ - begin_)});
      expect('"');
      ws();
      expect('}');
      if (!more(']')) return;
    }
  }

  char peek() const { return p_ < end_ ? *p_ : '\0'; }
  void expect(char c) {
    if (peek() != c) throw Decline{};
    ++p_;
  }
  void ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }

  // After an item of an array or object: true when a ',' announces another, false once `close` ends it.
  bool more(char close) {
    ws();
    if (peek() == ',') {
      ++p_;
      return true;
    }
    expect(close);
    return false;
  }

  std::string key_string() {
    expect('"');
    const char* start = p_;
    while (p_ < end_ && *p_ != '"') {
      unsigned char c = static_cast<unsigned char>(*p_);
      if (c == '\\' || c < 0x20 || c >= 0x80) throw Decline{};
      ++p_;
    }
    std::string key(start, p_);
    expect('"');
    return key;
  }

  void skip_string() {
    expect('"');
    while (p_ < end_ && *p_ != '"') {
      unsigned char c = static_cast<unsigned char>(*p_);
      if (c < 0x20 || c >= 0x80) throw Decline{};
      if (c == '\\') {
        ++p_;
        if (p_ >= end_) throw Decline{};
      }
      ++p_;
    }
    expect('"');
  }

  void skip_value(int depth) {
    if (depth > kMaxDepth) throw Decline{};
    ws();
    char c = peek();
    if (c == '"') {
      skip_string();
    } else if (c == '{' || c == '[') {
      char close = c == '{' ? '}' : ']';
      ++p_;
      ws();
      if (peek() == close) {
        ++p_;
        return;
      }
      for (;;) {
        ws();
        if (close == '}') {
          skip_string();
          ws();
          expect(':');
        }
        skip_value(depth + 1);
        if (!more(close)) return;
      }
    } else if (c == 't' || c == 'f' || c == 'n') {
      const char* word = c == 't' ? "true" : c == 'f' ? "false" : "null";
      size_t len = std::strlen(word);
      if (static_cast<size_t>(end_ - p_) < len || std::memcmp(p_, word, len) != 0) throw Decline{};
      p_ += len;
    } else {
      number(/*record=*/false);
    }
  }

  // Inner arrays finish before outer ones, so dims are indexed by depth (-2: not seen yet).
  void dim(int depth, int64_t length) {
    auto& shape = out_.shape;
    if (shape.size() <= static_cast<size_t>(depth)) shape.resize(depth + 1, -2);
    if (shape[depth] == -2) {
      shape[depth] = length;
    } else if (shape[depth] != length) {
      throw Decline{};  // ragged: the Python path names where
    }
  }

  void array(int depth) {
    if (depth > kMaxDepth) throw Decline{};
    expect('[');
    ws();
    int64_t count = 0;
    if (peek() == ']') throw Decline{};  // empty arrays: the Python path's rules and errors
    for (;;) {
      ws();
      if (peek() == '[') {
        if (leaf_depth_ != -1 && leaf_depth_ <= depth + 1) throw Decline{};  // a scalar's sibling is an array
        array(depth + 1);
      } else {
        if (leaf_depth_ == -1) leaf_depth_ = depth + 1;
        if (leaf_depth_ != depth + 1) throw Decline{};
        number(/*record=*/true);
      }
      ++count;
      if (!more(']')) break;
    }
    dim(depth, count);
  }

  // Strict JSON number grammar, checked and converted in one pass: the digits build the
  // mantissa for Clinger's fast path; only numbers it cannot take go to std::from_chars.
  // TF Serving's bare tokens, which the Python path reads with the stdlib parser: NaN, Infinity
  // and -Infinity are floats (so an integer target declines).
  bool special_float(bool record) {
    static constexpr std::pair<const char*, double> kTokens[] = {
        {"NaN", std::numeric_limits<double>::quiet_NaN()},
        {"Infinity", std::numeric_limits<double>::infinity()},
        {"-Infinity", -std::numeric_limits<double>::infinity()}};
    for (const auto& [token, value] : kTokens) {
      size_t len = std::strlen(token);
      if (static_cast<size_t>(end_ - p_) >= len && std::memcmp(p_, token, len) == 0) {
        p_ += len;
        if (record) record_float(value);
        return true;
      }
    }
    return false;
  }

  void record_float(double value) {
    if (!out_.any_float) {
      out_.any_float = true;
      out_.ints.clear();
      out_.ints.shrink_to_fit();
      if (!keep_doubles_) throw Decline{};  // a fraction for an integer target: the Python path names it
    }
    ++out_.count;
    out_.doubles.push_back(value);
  }

  void number(bool record) {
    if (p_ < end_ && (*p_ == 'N' || *p_ == 'I' || (*p_ == '-' && end_ - p_ > 1 && p_[1] == 'I'))) {
      if (special_float(record)) return;
      throw Decline{};
    }
    const char* start = p_;
    const char* end = end_;
    const char* p = p_;
    bool negative = false;
    if (p < end && *p == '-') {
      negative = true;
      ++p;
    }
    uint64_t mantissa = 0;
    int digits = 0, exponent = 0;
    if (p < end && *p == '0') {
      ++p;
    } else if (p < end && *p >= '1' && *p <= '9') {
      p = digit_run(p, end, mantissa, digits);
    } else {
      throw Decline{};
    }
    int int_digits = digits;
    bool is_float = false;
    if (p < end && *p == '.') {
      ++p;
      // Leading zeros of "0.000123" count as digits here: that only sends a number to the exact
      // from_chars path sooner (beyond 19 digits), never to a wrong result.
      int fraction_digits = 0;
      p = digit_run(p, end, mantissa, fraction_digits);
      if (fraction_digits == 0) throw Decline{};
      exponent -= fraction_digits;
      digits += fraction_digits;
      is_float = true;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
      ++p;
      bool exp_negative = false;
      if (p < end && (*p == '+' || *p == '-')) exp_negative = *p++ == '-';
      if (!(p < end && *p >= '0' && *p <= '9')) throw Decline{};
      int e = 0;
      for (; p < end && *p >= '0' && *p <= '9'; ++p)
        if (e < 100000) e = e * 10 + (*p - '0');
      exponent += exp_negative ? -e : e;
      is_float = true;
    }
    p_ = p;
    if (!record) return;
    if (!is_float) {
      if (int_digits > 16 || mantissa > static_cast<uint64_t>(kExactInt)) throw Decline{};  // may exceed 2^53
      int64_t value = negative ? -static_cast<int64_t>(mantissa) : static_cast<int64_t>(mantissa);
      ++out_.count;
      if (keep_doubles_) out_.doubles.push_back(static_cast<double>(value));
      if (keep_ints_ && !out_.any_float) out_.ints.push_back(value);
      return;
    }
    double value;
    // Clinger: a mantissa of at most 2^53 and a power of ten of at most 10^22 are both exact
    // doubles, so one IEEE multiply or divide rounds correctly (19 digits cannot have wrapped).
    if (digits <= 19 && mantissa <= static_cast<uint64_t>(kExactInt) && exponent >= -22 && exponent <= 22) {
      value = static_cast<double>(mantissa);
      if (exponent < 0) value /= kPow10[-exponent];
      else if (exponent > 0) value *= kPow10[exponent];
      if (negative) value = -value;
    } else {
      auto res = std::from_chars(start, p, value);
      if (res.ec != std::errc() || res.ptr != p) throw Decline{};  // overflow: the Python path decides
    }
    record_float(value);
  }
};

}  // namespace

InstancesResult parse_instances(const char* data, size_t size, Target target,
                                const std::vector<int64_t>& inner_shape, bool has_inner_shape) {
  InstancesResult out;
  bool int_target = target == Target::Int64 || target == Target::Int32;
  bool float_target = target == Target::Float32 || target == Target::Float64;
  try {
    Parser(data, size, out, /*b64=*/false, /*keep_doubles=*/!int_target, /*keep_ints=*/!float_target).document();
  } catch (const Decline&) {
    return InstancesResult{};
  }
  if (out.shape.empty() || out.shape[0] <= 0) return InstancesResult{};
  for (int64_t d : out.shape)
    if (d < 0) return InstancesResult{};
  if (out.count == 0) return InstancesResult{};
  if ((target == Target::Int64 || target == Target::Int32) && out.any_float) return InstancesResult{};
  if (target == Target::Int32) {
    for (int64_t v : out.ints)
      if (v < INT32_MIN || v > INT32_MAX) return InstancesResult{};
  }
  // A regular array of numbers in a shape the signature does not take: accepted, flagged, so
  // that the caller answers the Python path's error without building the values as objects.
  if (has_inner_shape) {
    if (inner_shape.size() + 1 != out.shape.size()) {
      out.shape_mismatch = true;
    } else {
      for (size_t i = 0; i < inner_shape.size(); ++i)
        if (inner_shape[i] != -1 && inner_shape[i] != out.shape[i + 1]) out.shape_mismatch = true;
    }
  }
  out.accepted = true;
  return out;
}

InstancesResult parse_b64_instances(const char* data, size_t size) {
  InstancesResult out;
  try {
    Parser(data, size, out, /*b64=*/true).document();
  } catch (const Decline&) {
    return InstancesResult{};
  }
  out.accepted = !out.b64_spans.empty();
  return out;
}

}  // namespace hyperserve
