// jinja2's builtin filters, tests and globals, Python's str/list/dict methods, and transformers'
// additions (raise_exception, strftime_now, tojson), all with Python semantics. Strings keep their
// provenance through the operations that copy bytes (strip, split, slicing, replace, join, ...).
#include <utf8proc.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <unordered_map>

#include "chat/jinja_interpreter.h"
#include "chat/jinja_lexer.h"
#include "util/utf8.h"

namespace seqit::chat::jinja {
namespace {

// ---------------------------------------------------------------------------------------------
// string helpers

std::string require_string(const Value& v, const char* what) {
  if (v.is_string()) return v.str();
  throw EvalError(std::string(what) + " must be str, not " + v.type_name());
}

// soft_str: jinja2's str() for filters (Undefined -> "").
Value soft_str(const Value& v) {
  return to_string_value(v);
}

char32_t decode(std::string_view s, size_t i, size_t* n) {
  utf8proc_int32_t cp = -1;
  auto len = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                              utf8proc_ssize_t(s.size() - i), &cp);
  if (len <= 0 || cp < 0) {
    *n = 1;
    return char32_t(static_cast<unsigned char>(s[i]));
  }
  *n = size_t(len);
  return char32_t(cp);
}

template <typename F>
std::string map_code_points(std::string_view s, F f) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t n;
    char32_t cp = decode(s, i, &n);
    utf8::append(out, f(cp));
    i += n;
  }
  return out;
}

char32_t upper_cp(char32_t c) {
  return char32_t(utf8proc_toupper(utf8proc_int32_t(c)));
}
char32_t lower_cp(char32_t c) {
  return char32_t(utf8proc_tolower(utf8proc_int32_t(c)));
}
char32_t title_cp(char32_t c) {
  return char32_t(utf8proc_totitle(utf8proc_int32_t(c)));
}

std::string str_upper(std::string_view s) {
  return map_code_points(s, upper_cp);
}
std::string str_lower(std::string_view s) {
  return map_code_points(s, lower_cp);
}

bool is_cased_upper(char32_t c) {
  return utf8proc_category(utf8proc_int32_t(c)) == UTF8PROC_CATEGORY_LU ||
         utf8proc_category(utf8proc_int32_t(c)) == UTF8PROC_CATEGORY_LT;
}
bool is_cased_lower(char32_t c) {
  return utf8proc_category(utf8proc_int32_t(c)) == UTF8PROC_CATEGORY_LL;
}
bool is_alpha(char32_t c) {
  auto cat = utf8proc_category(utf8proc_int32_t(c));
  return cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
}
bool is_digit(char32_t c) {
  return utf8proc_category(utf8proc_int32_t(c)) == UTF8PROC_CATEGORY_ND;
}
bool is_numeric(char32_t c) {
  auto cat = utf8proc_category(utf8proc_int32_t(c));
  return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
}
bool is_word(char32_t c) {
  return is_alpha(c) || is_numeric(c) || c == '_';
}

std::string str_capitalize(std::string_view s) {
  std::string out;
  bool first = true;
  for (size_t i = 0; i < s.size();) {
    size_t n;
    char32_t cp = decode(s, i, &n);
    utf8::append(out, first ? title_cp(cp) : lower_cp(cp));
    first = false;
    i += n;
  }
  return out;
}

// Python str.title(): a cased letter after an uncased character starts a word.
std::string str_title(std::string_view s) {
  std::string out;
  bool previous_cased = false;
  for (size_t i = 0; i < s.size();) {
    size_t n;
    char32_t cp = decode(s, i, &n);
    bool cased =
        is_cased_upper(cp) || is_cased_lower(cp) || cp != lower_cp(cp) || cp != upper_cp(cp);
    utf8::append(out, previous_cased ? lower_cp(cp) : title_cp(cp));
    previous_cased = cased;
    i += n;
  }
  return out;
}

// Byte ranges [begin, end) of `s` after Python strip/lstrip/rstrip with optional `chars`.
std::pair<size_t, size_t> strip_range(std::string_view s, const Value* chars, bool left,
                                      bool right) {
  std::vector<char32_t> set;
  bool use_set = chars && !chars->is_none() && !chars->is_undefined();
  if (use_set) {
    std::string c = require_string(*chars, "strip arg");
    for (size_t i = 0; i < c.size();) {
      size_t n;
      set.push_back(decode(c, i, &n));
      i += n;
    }
  }
  auto strippable = [&](char32_t cp) {
    return use_set ? std::find(set.begin(), set.end(), cp) != set.end() : python_isspace(cp);
  };
  auto offsets = code_point_offsets(s);
  size_t b = 0, e = offsets.size() - 1;  // code point indices
  if (left) {
    while (b < e) {
      size_t n;
      if (!strippable(decode(s, offsets[b], &n))) break;
      ++b;
    }
  }
  if (right) {
    while (e > b) {
      size_t n;
      if (!strippable(decode(s, offsets[e - 1], &n))) break;
      --e;
    }
  }
  return {offsets[b], offsets[e]};
}

Value strip_value(const Value& v, const Value* chars, bool left, bool right) {
  auto [b, e] = strip_range(v.str(), chars, left, right);
  return substring(v, b, e);
}

// Python str.split / rsplit.
std::vector<Value> split_value(const Value& v, const Value* sep_v, int64_t maxsplit,
                               bool from_right) {
  const std::string& s = v.str();
  std::vector<std::pair<size_t, size_t>> parts;
  bool whitespace = !sep_v || sep_v->is_none();
  if (whitespace) {
    auto offsets = code_point_offsets(s);
    size_t n = offsets.size() - 1;
    auto space = [&](size_t i) {
      size_t len;
      return python_isspace(decode(s, offsets[i], &len));
    };
    if (!from_right) {
      size_t i = 0;
      while (true) {
        while (i < n && space(i)) ++i;
        if (i >= n) break;
        if (maxsplit >= 0 && int64_t(parts.size()) == maxsplit) {
          size_t e = n;
          while (e > i && space(e - 1)) --e;
          parts.emplace_back(offsets[i], offsets[e]);
          break;
        }
        size_t j = i;
        while (j < n && !space(j)) ++j;
        parts.emplace_back(offsets[i], offsets[j]);
        i = j;
      }
    } else {
      size_t i = n;
      while (true) {
        while (i > 0 && space(i - 1)) --i;
        if (i == 0) break;
        if (maxsplit >= 0 && int64_t(parts.size()) == maxsplit) {
          size_t b = 0;
          while (b < i && space(b)) ++b;
          parts.emplace_back(offsets[b], offsets[i]);
          break;
        }
        size_t j = i;
        while (j > 0 && !space(j - 1)) --j;
        parts.emplace_back(offsets[j], offsets[i]);
        i = j;
      }
      std::reverse(parts.begin(), parts.end());
    }
  } else {
    std::string sep = require_string(*sep_v, "separator");
    if (sep.empty()) throw EvalError("empty separator");
    if (!from_right) {
      size_t start = 0;
      while (true) {
        size_t p = (maxsplit < 0 || int64_t(parts.size()) < maxsplit) ? s.find(sep, start)
                                                                      : std::string::npos;
        if (p == std::string::npos) {
          parts.emplace_back(start, s.size());
          break;
        }
        parts.emplace_back(start, p);
        start = p + sep.size();
      }
    } else {
      size_t end = s.size();
      while (true) {
        size_t p = std::string::npos;
        if ((maxsplit < 0 || int64_t(parts.size()) < maxsplit) && end >= sep.size()) {
          p = s.rfind(sep, end - sep.size());
        }
        if (p == std::string::npos) {
          parts.emplace_back(0, end);
          break;
        }
        parts.emplace_back(p + sep.size(), end);
        end = p;
      }
      std::reverse(parts.begin(), parts.end());
    }
  }
  std::vector<Value> out;
  out.reserve(parts.size());
  for (auto [b, e] : parts) out.push_back(substring(v, b, e));
  return out;
}

// Python str.splitlines(keepends=False) line boundaries.
std::vector<std::pair<size_t, size_t>> splitlines_ranges(std::string_view s, bool keepends) {
  std::vector<std::pair<size_t, size_t>> lines;
  size_t start = 0, i = 0;
  while (i < s.size()) {
    size_t n;
    char32_t cp = decode(s, i, &n);
    bool boundary = cp == '\n' || cp == '\r' || cp == 0x0b || cp == 0x0c || cp == 0x1c ||
                    cp == 0x1d || cp == 0x1e || cp == 0x85 || cp == 0x2028 || cp == 0x2029;
    if (boundary) {
      size_t eol = i + n;
      if (cp == '\r' && eol < s.size() && s[eol] == '\n') ++eol;
      lines.emplace_back(start, keepends ? eol : i);
      start = i = eol;
    } else {
      i += n;
    }
  }
  if (start < s.size()) lines.emplace_back(start, s.size());
  return lines;
}

// Python str.replace with provenance kept on the unchanged pieces.
Value replace_value(const Value& v, const std::string& old_s, const Value& replacement,
                    int64_t count) {
  const std::string& s = v.str();
  StringData out;
  if (old_s.empty()) {
    auto offsets = code_point_offsets(s);
    int64_t done = 0;
    for (size_t i = 0; i + 1 < offsets.size(); ++i) {
      if (count < 0 || done < count) {
        append_string(out, replacement.string_data());
        ++done;
      }
      append_string(out, substring(v, offsets[i], offsets[i + 1]).string_data());
    }
    if (count < 0 || done < count) append_string(out, replacement.string_data());
    return Value(std::move(out));
  }
  size_t start = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t p = s.find(old_s, start);
    if (p == std::string::npos) break;
    append_string(out, substring(v, start, p).string_data());
    append_string(out, replacement.string_data());
    start = p + old_s.size();
    ++done;
  }
  if (done == 0) return v;
  append_string(out, substring(v, start, s.size()).string_data());
  return Value(std::move(out));
}

Value join_values(const std::vector<Value>& items, const Value& sep, bool require_strings) {
  StringData out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) append_string(out, sep.string_data());
    if (items[i].is_string()) {
      append_string(out, items[i].string_data());
    } else if (require_strings) {
      throw EvalError("sequence item " + std::to_string(i) + ": expected str instance, " +
                      items[i].type_name() + " found");
    } else {
      out.text += to_str(items[i]);
    }
  }
  return Value(std::move(out));
}

std::string pad_string(const std::string& s, int64_t width, char32_t fill, char align) {
  int64_t len = int64_t(code_point_count(s));
  if (width <= len) return s;
  int64_t total = width - len;
  int64_t left = align == '<' ? 0 : align == '>' ? total : total / 2;
  if (align == '^') left = total / 2;
  int64_t right = total - left;
  std::string fill_s;
  utf8::append(fill_s, fill);
  std::string out;
  for (int64_t i = 0; i < left; ++i) out += fill_s;
  out += s;
  for (int64_t i = 0; i < right; ++i) out += fill_s;
  return out;
}

// Python str.center: extra fill goes to the right when the padding is odd... and to the left when
// the string length is odd (CPython's rule: left = pad/2 + (pad & width & 1)).
std::string str_center(const std::string& s, int64_t width, char32_t fill) {
  int64_t len = int64_t(code_point_count(s));
  if (width <= len) return s;
  int64_t pad = width - len;
  int64_t left = pad / 2 + (pad & width & 1);
  std::string fill_s;
  utf8::append(fill_s, fill);
  std::string out;
  for (int64_t i = 0; i < left; ++i) out += fill_s;
  out += s;
  for (int64_t i = 0; i < pad - left; ++i) out += fill_s;
  return out;
}

int64_t to_int_arg(const Value& v, const char* what) {
  if (v.is_int() || v.is_bool()) return v.as_int();
  throw EvalError(std::string(what) + " must be an integer, not " + v.type_name());
}

// Code point index -> byte offset with Python's negative/clamped start/end semantics.
std::pair<size_t, size_t> search_window(std::string_view s, const Value* start_v,
                                        const Value* end_v) {
  auto offsets = code_point_offsets(s);
  int64_t n = int64_t(offsets.size()) - 1;
  auto clamp = [&](const Value* v, int64_t fallback) {
    if (!v || v->is_none()) return fallback;
    int64_t i = to_int_arg(*v, "slice index");
    if (i < 0) i = std::max<int64_t>(0, i + n);
    return std::min(i, n);
  };
  int64_t b = clamp(start_v, 0), e = clamp(end_v, n);
  if (e < b) e = b;
  return {offsets[size_t(b)], offsets[size_t(e)]};
}

int64_t byte_to_cp_index(std::string_view s, size_t byte) {
  return int64_t(code_point_count(s.substr(0, byte)));
}

// ---------------------------------------------------------------------------------------------
// attribute paths for map/selectattr/sort/...: "a.b.0" (jinja2's make_attrgetter)

Value get_path(Interpreter& in, const Value& item, const std::string& path) {
  Value v = item;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    bool digits = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
    v = in.get_item(v, digits ? Value(int64_t(std::stoll(part))) : Value(part));
    if (dot == std::string::npos) return v;
    if (v.is_undefined()) return v;
    start = dot + 1;
  }
}

Value get_path(Interpreter& in, const Value& item, const Value& attribute) {
  if (attribute.is_int()) return in.get_item(item, attribute);
  return get_path(in, item, require_string(attribute, "attribute"));
}

// Sort key: lower-cased strings unless case_sensitive.
Value sort_key(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value(str_lower(v.str()));
  return v;
}

// ---------------------------------------------------------------------------------------------
// filters

Value f_abs(Interpreter&, const Value& v, CallArgs& a) {
  a.check("abs", 0, {});
  if (v.is_float()) return Value(std::fabs(v.as_double()));
  if (v.is_number()) return Value(std::abs(v.as_int()));
  throw EvalError("bad operand type for abs(): '" + v.type_name() + "'");
}

Value f_attr(Interpreter&, const Value& v, CallArgs& a) {
  a.check("attr", 1, {"name"});
  const Value* name = a.get(0, "name");
  if (!name) throw EvalError("attr() missing required argument 'name'");
  std::string n = require_string(*name, "attribute name");
  if (v.is_object()) {
    if (const Value* x = v.object_data().find(n)) return *x;
  }
  if (auto m = find_method(v, n)) return *m;
  return Value::undefined("'" + v.type_name() + " object' has no attribute '" + n + "'");
}

Value f_batch(Interpreter&, const Value& v, CallArgs& a) {
  a.check("batch", 2, {"linecount", "fill_with"});
  const Value* count_v = a.get(0, "linecount");
  if (!count_v) throw EvalError("batch() missing required argument 'linecount'");
  int64_t count = to_int_arg(*count_v, "linecount");
  if (count <= 0) throw EvalError("batch() linecount must be positive");
  const Value* fill = a.get(1, "fill_with");
  std::vector<Value> out, tmp;
  for (auto& item : iterate(v)) {
    if (int64_t(tmp.size()) == count) {
      out.push_back(Value::list(std::move(tmp)));
      tmp.clear();
    }
    tmp.push_back(item);
  }
  if (!tmp.empty()) {
    if (fill && !fill->is_none()) {
      while (int64_t(tmp.size()) < count) tmp.push_back(*fill);
    }
    out.push_back(Value::list(std::move(tmp)));
  }
  return Value::list(std::move(out));
}

// Filters that go through soft_str() keep a Markup input Markup (its str methods return Markup).
Value like(const Value& source, std::string text) {
  Value out(std::move(text));
  return source.is_markup() ? with_markup(out, true) : out;
}

Value f_capitalize(Interpreter&, const Value& v, CallArgs& a) {
  a.check("capitalize", 0, {});
  return like(v, str_capitalize(to_str(v)));
}

Value f_center(Interpreter&, const Value& v, CallArgs& a) {
  a.check("center", 1, {"width"});
  return like(
      v, str_center(to_str(v), to_int_arg(a.get_or(0, "width", Value(int64_t(80))), "width"), ' '));
}

Value f_default(Interpreter&, const Value& v, CallArgs& a) {
  a.check("default", 2, {"default_value", "boolean"});
  Value fallback = a.get_or(0, "default_value", Value(std::string()));
  bool boolean = a.get_or(1, "boolean", Value(false)).truthy();
  if (v.is_undefined() || (boolean && !v.truthy())) return fallback;
  return v;
}

Value f_dictsort(Interpreter&, const Value& v, CallArgs& a) {
  a.check("dictsort", 3, {"case_sensitive", "by", "reverse"});
  if (!v.is_dict()) throw EvalError("dictsort requires a mapping, not " + v.type_name());
  bool case_sensitive = a.get_or(0, "case_sensitive", Value(false)).truthy();
  std::string by = require_string(a.get_or(1, "by", Value("key")), "by");
  bool reverse = a.get_or(2, "reverse", Value(false)).truthy();
  if (by != "key" && by != "value") throw EvalError("You can only sort by either 'key' or 'value'");
  size_t index = by == "key" ? 0 : 1;
  std::vector<Value> items;
  for (const auto& [k, val] : v.dict_data().items) items.push_back(Value::list({k, val}, true));
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    Value kx = sort_key(x.items()[index], case_sensitive),
          ky = sort_key(y.items()[index], case_sensitive);
    return reverse ? less_than(ky, kx) : less_than(kx, ky);
  });
  return Value::list(std::move(items));
}

Value f_escape(Interpreter&, const Value& v, CallArgs& a) {
  a.check("escape", 0, {});
  return html_escape(v);
}

Value f_forceescape(Interpreter&, const Value& v, CallArgs& a) {
  a.check("forceescape", 0, {});
  return html_escape(v.is_string() ? with_markup(v, false) : Value(to_str(v)));
}

Value f_first(Interpreter&, const Value& v, CallArgs& a) {
  a.check("first", 0, {});
  if (v.is_list()) {
    if (v.items().empty()) return Value::undefined("No first item, sequence was empty.");
    return v.items().front();
  }
  auto items = iterate(v);
  if (items.empty()) return Value::undefined("No first item, sequence was empty.");
  return items.front();
}

Value f_last(Interpreter&, const Value& v, CallArgs& a) {
  a.check("last", 0, {});
  auto items = iterate(v);
  if (items.empty()) return Value::undefined("No last item, sequence was empty.");
  return items.back();
}

// Python float(str): optional whitespace, sign, digits, '.', exponent, inf/nan, underscores.
std::optional<double> parse_python_float(std::string_view s) {
  auto [b, e] = strip_range(s, nullptr, true, true);
  std::string t;
  for (size_t i = b; i < e; ++i) {
    if (s[i] == '_') {
      if (i == b || i + 1 == e || !std::isdigit(static_cast<unsigned char>(s[i - 1])) ||
          !std::isdigit(static_cast<unsigned char>(s[i + 1])))
        return std::nullopt;
      continue;
    }
    t += s[i];
  }
  if (t.empty()) return std::nullopt;
  std::string lower = str_lower(t);
  std::string body = lower[0] == '+' || lower[0] == '-' ? lower.substr(1) : lower;
  double sign = lower[0] == '-' ? -1.0 : 1.0;
  if (body == "inf" || body == "infinity") return sign * INFINITY;
  if (body == "nan") return NAN;
  for (char c : body) {
    if (!std::isdigit(static_cast<unsigned char>(c)) && c != '.' && c != 'e' && c != '+' &&
        c != '-')
      return std::nullopt;
  }
  char* end = nullptr;
  double d = std::strtod(t.c_str(), &end);
  if (end != t.c_str() + t.size()) return std::nullopt;
  return d;
}

// Python int(str, base).
std::optional<int64_t> parse_python_int(std::string_view s, int base) {
  auto [b, e] = strip_range(s, nullptr, true, true);
  std::string t;
  for (size_t i = b; i < e; ++i) {
    if (s[i] != '_') t += s[i];
  }
  if (t.empty()) return std::nullopt;
  size_t i = 0;
  bool negative = false;
  if (t[0] == '+' || t[0] == '-') {
    negative = t[0] == '-';
    i = 1;
  }
  if (base == 0) base = 10;
  if (base == 16 && t.size() > i + 1 && t[i] == '0' && (t[i + 1] == 'x' || t[i + 1] == 'X')) i += 2;
  if (i >= t.size()) return std::nullopt;
  int64_t value = 0;
  for (; i < t.size(); ++i) {
    int d;
    char c = char(std::tolower(static_cast<unsigned char>(t[i])));
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (c >= 'a' && c <= 'z')
      d = c - 'a' + 10;
    else
      return std::nullopt;
    if (d >= base) return std::nullopt;
    value = value * base + d;
  }
  return negative ? -value : value;
}

Value f_float(Interpreter&, const Value& v, CallArgs& a) {
  a.check("float", 1, {"default"});
  Value fallback = a.get_or(0, "default", Value(0.0));
  if (v.is_number()) return Value(v.as_double());
  if (v.is_string()) {
    if (auto d = parse_python_float(v.str())) return Value(*d);
  }
  return fallback;
}

Value f_int(Interpreter&, const Value& v, CallArgs& a) {
  a.check("int", 2, {"default", "base"});
  Value fallback = a.get_or(0, "default", Value(int64_t(0)));
  int base = int(to_int_arg(a.get_or(1, "base", Value(int64_t(10))), "base"));
  if (v.is_float()) return Value(int64_t(std::trunc(v.as_double())));
  if (v.is_number()) return Value(v.as_int());
  if (v.is_string()) {
    if (auto i = parse_python_int(v.str(), base)) return Value(*i);
    if (auto d = parse_python_float(v.str())) {
      if (std::isfinite(*d)) return Value(int64_t(std::trunc(*d)));
    }
  }
  return fallback;
}

Value f_format(Interpreter&, const Value& v, CallArgs& a) {
  std::string fmt = to_str(v);
  if (v.is_markup()) {  // Markup % args escapes the arguments
    for (auto& x : a.positional) x = x.is_string() ? html_escape(x) : x;
    for (auto& [k, x] : a.kwargs) x = x.is_string() ? html_escape(x) : x;
  }
  if (!a.kwargs.empty() && !a.positional.empty()) {
    throw EvalError("can't handle positional and keyword arguments at the same time");
  }
  if (!a.kwargs.empty()) {
    std::vector<std::pair<Value, Value>> items;
    for (auto& [k, x] : a.kwargs) items.emplace_back(Value(k), x);
    return Value(percent_format(fmt, Value::dict(std::move(items))));
  }
  return Value(percent_format(fmt, Value::list(a.positional, true)));
}

Value f_groupby(Interpreter& in, const Value& v, CallArgs& a) {
  a.check("groupby", 3, {"attribute", "default", "case_sensitive"});
  const Value* attribute = a.get(0, "attribute");
  if (!attribute) throw EvalError("groupby() missing required argument 'attribute'");
  const Value* fallback = a.get(1, "default");
  bool case_sensitive = a.get_or(2, "case_sensitive", Value(false)).truthy();
  std::vector<std::pair<Value, Value>> keyed;
  for (auto& item : iterate(v)) {
    Value k = get_path(in, item, *attribute);
    if (k.is_undefined() && fallback) k = *fallback;
    keyed.emplace_back(sort_key(k, case_sensitive), item);
  }
  std::stable_sort(keyed.begin(), keyed.end(),
                   [](auto& x, auto& y) { return less_than(x.first, y.first); });
  std::vector<Value> groups;
  for (size_t i = 0; i < keyed.size();) {
    size_t j = i;
    std::vector<Value> members;
    while (j < keyed.size() && equals(keyed[j].first, keyed[i].first))
      members.push_back(keyed[j++].second);
    Value grouper = keyed[i].first;
    if (!case_sensitive) {
      Value original = get_path(in, members.front(), *attribute);
      if (!original.is_undefined()) grouper = original;
    }
    groups.push_back(Value::list({grouper, Value::list(std::move(members))}, true));
    i = j;
  }
  return Value::list(std::move(groups));
}

Value f_indent(Interpreter&, const Value& v, CallArgs& a) {
  a.check("indent", 3, {"width", "first", "blank"});
  Value width = a.get_or(0, "width", Value(int64_t(4)));
  std::string indention =
      width.is_string()
          ? width.str()
          : std::string(size_t(std::max<int64_t>(0, to_int_arg(width, "width"))), ' ');
  bool first = a.get_or(1, "first", Value(false)).truthy();
  bool blank = a.get_or(2, "blank", Value(false)).truthy();
  std::string s = to_str(v) + "\n";
  auto lines = splitlines_ranges(s, false);
  std::string rv;
  if (blank) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i) rv += "\n" + indention;
      rv += s.substr(lines[i].first, lines[i].second - lines[i].first);
    }
  } else {
    for (size_t i = 0; i < lines.size(); ++i) {
      std::string line = s.substr(lines[i].first, lines[i].second - lines[i].first);
      if (i == 0) {
        rv = line;
      } else {
        rv += "\n";
        if (!line.empty()) rv += indention;
        rv += line;
      }
    }
  }
  if (first) rv = indention + rv;
  return like(v, rv);
}

Value f_items(Interpreter&, const Value& v, CallArgs& a) {
  a.check("items", 0, {});
  if (v.is_undefined()) return Value::list();
  if (!v.is_dict()) throw EvalError("Can only get item pairs from a mapping.");
  std::vector<Value> out;
  for (const auto& [k, val] : v.dict_data().items) out.push_back(Value::list({k, val}, true));
  return Value::list(std::move(out));
}

Value f_join(Interpreter& in, const Value& v, CallArgs& a) {
  a.check("join", 2, {"d", "attribute"});
  Value sep = soft_str(a.get_or(0, "d", Value(std::string())));
  std::vector<Value> items = iterate(v);
  if (const Value* attr = a.get(1, "attribute"); attr && !attr->is_none()) {
    for (auto& item : items) item = get_path(in, item, *attr);
  }
  // autoescape off: jinja2 joins str(d) with str(item): plain, nothing escaped
  return with_markup(join_values(items, with_markup(sep, false), false), false);
}

Value f_length(Interpreter&, const Value& v, CallArgs& a) {
  a.check("length", 0, {});
  return Value(length_of(v));
}

Value f_list(Interpreter&, const Value& v, CallArgs& a) {
  a.check("list", 0, {});
  return Value::list(iterate(v));
}

Value f_lower(Interpreter&, const Value& v, CallArgs& a) {
  a.check("lower", 0, {});
  return like(v, str_lower(to_str(v)));
}

Value f_upper(Interpreter&, const Value& v, CallArgs& a) {
  a.check("upper", 0, {});
  return like(v, str_upper(to_str(v)));
}

Value f_map(Interpreter& in, const Value& v, CallArgs& a) {
  std::vector<Value> out;
  if (!v.truthy()) return Value::list();  // jinja2 skips falsy inputs
  if (const Value* attr = a.kwarg("attribute")) {
    if (!a.positional.empty())
      throw EvalError("map() with attribute= takes no positional arguments");
    const Value* fallback = a.kwarg("default");
    for (auto& item : iterate(v)) {
      Value x = get_path(in, item, *attr);
      if (x.is_undefined() && fallback) x = *fallback;
      out.push_back(std::move(x));
    }
    return Value::list(std::move(out));
  }
  if (a.positional.empty()) throw EvalError("map requires a filter argument");
  std::string name = require_string(a.positional[0], "filter name");
  CallArgs rest;
  rest.positional.assign(a.positional.begin() + 1, a.positional.end());
  rest.kwargs = a.kwargs;
  for (auto& item : iterate(v)) {
    CallArgs copy = rest;
    out.push_back(in.apply_filter(name, item, copy));
  }
  return Value::list(std::move(out));
}

Value min_max(Interpreter& in, const Value& v, CallArgs& a, bool want_max) {
  a.check(want_max ? "max" : "min", 2, {"case_sensitive", "attribute"});
  bool case_sensitive = a.get_or(0, "case_sensitive", Value(false)).truthy();
  const Value* attr = a.get(1, "attribute");
  auto items = iterate(v);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  auto key = [&](const Value& x) {
    Value k = attr && !attr->is_none() ? get_path(in, x, *attr) : x;
    return sort_key(k, case_sensitive);
  };
  for (size_t i = 1; i < items.size(); ++i) {
    bool better = want_max ? less_than(key(items[best]), key(items[i]))
                           : less_than(key(items[i]), key(items[best]));
    if (better) best = i;
  }
  return items[best];
}

Value f_max(Interpreter& in, const Value& v, CallArgs& a) {
  return min_max(in, v, a, true);
}
Value f_min(Interpreter& in, const Value& v, CallArgs& a) {
  return min_max(in, v, a, false);
}

// select/reject/selectattr/rejectattr (jinja2's select_or_reject).
Value select_or_reject(Interpreter& in, const Value& v, CallArgs& a, bool by_attribute,
                       bool select) {
  size_t next = 0;
  Value attribute;
  if (by_attribute) {
    if (a.positional.empty()) throw EvalError("Missing parameter for attribute name");
    attribute = a.positional[next++];
  }
  std::string test_name;
  CallArgs test_args;
  if (next < a.positional.size()) {
    test_name = require_string(a.positional[next++], "test name");
    test_args.positional.assign(a.positional.begin() + long(next), a.positional.end());
    test_args.kwargs = a.kwargs;
    if (!in.has_test(test_name)) throw EvalError("no test named '" + test_name + "'");
  }
  std::vector<Value> out;
  if (!v.truthy()) return Value::list();  // jinja2 skips falsy inputs (e.g. tools=None)
  for (auto& item : iterate(v)) {
    Value x = by_attribute ? get_path(in, item, attribute) : item;
    bool passed;
    if (test_name.empty()) {
      passed = x.truthy();
    } else {
      CallArgs copy = test_args;
      passed = in.apply_test(test_name, x, copy);
    }
    if (passed == select) out.push_back(item);
  }
  return Value::list(std::move(out));
}

Value f_select(Interpreter& in, const Value& v, CallArgs& a) {
  return select_or_reject(in, v, a, false, true);
}
Value f_reject(Interpreter& in, const Value& v, CallArgs& a) {
  return select_or_reject(in, v, a, false, false);
}
Value f_selectattr(Interpreter& in, const Value& v, CallArgs& a) {
  return select_or_reject(in, v, a, true, true);
}
Value f_rejectattr(Interpreter& in, const Value& v, CallArgs& a) {
  return select_or_reject(in, v, a, true, false);
}

Value f_replace(Interpreter&, const Value& v, CallArgs& a) {
  a.check("replace", 3, {"old", "new", "count"});
  const Value* old_v = a.get(0, "old");
  const Value* new_v = a.get(1, "new");
  if (!old_v || !new_v) throw EvalError("replace() missing required arguments 'old' and 'new'");
  Value count_v = a.get_or(2, "count", Value::none());
  int64_t count = count_v.is_none() ? -1 : to_int_arg(count_v, "count");
  // autoescape off: jinja2 replaces on str(value), so the result is never Markup
  return with_markup(replace_value(soft_str(v), to_str(*old_v), soft_str(*new_v), count), false);
}

Value f_reverse(Interpreter&, const Value& v, CallArgs& a) {
  a.check("reverse", 0, {});
  if (v.is_string()) return slice_value(v, Value::none(), Value::none(), Value(int64_t(-1)));
  auto items = iterate(v);
  std::reverse(items.begin(), items.end());
  return Value::list(std::move(items));
}

// Python round(): halves go to the even neighbour.
double python_round(double x, int64_t digits) {
  double scale = std::pow(10.0, double(digits));
  double y = x * scale;
  double r = std::nearbyint(y);  // FE_TONEAREST: ties to even
  return r / scale;
}

Value f_round(Interpreter&, const Value& v, CallArgs& a) {
  a.check("round", 2, {"precision", "method"});
  int64_t precision = to_int_arg(a.get_or(0, "precision", Value(int64_t(0))), "precision");
  std::string method = require_string(a.get_or(1, "method", Value("common")), "method");
  if (!v.is_number()) throw EvalError("round() requires a number, not " + v.type_name());
  if (method == "common") {
    if (!v.is_float()) return Value(v.as_int());
    return Value(python_round(v.as_double(), precision));
  }
  double scale = std::pow(10.0, double(precision));
  if (method == "ceil") return Value(std::ceil(v.as_double() * scale) / scale);
  if (method == "floor") return Value(std::floor(v.as_double() * scale) / scale);
  throw EvalError("method must be common, ceil or floor");
}

Value f_safe(Interpreter&, const Value& v, CallArgs& a) {
  a.check("safe", 0, {});
  return with_markup(soft_str(v), true);
}

Value f_slice(Interpreter&, const Value& v, CallArgs& a) {
  a.check("slice", 2, {"slices", "fill_with"});
  const Value* slices_v = a.get(0, "slices");
  if (!slices_v) throw EvalError("slice() missing required argument 'slices'");
  int64_t slices = to_int_arg(*slices_v, "slices");
  const Value* fill = a.get(1, "fill_with");
  auto seq = iterate(v);
  int64_t length = int64_t(seq.size());
  int64_t per = slices > 0 ? length / slices : 0;
  int64_t extra = slices > 0 ? length % slices : 0;
  int64_t offset = 0;
  std::vector<Value> out;
  for (int64_t i = 0; i < slices; ++i) {
    int64_t start = offset + i * per;
    if (i < extra) ++offset;
    int64_t end = offset + (i + 1) * per;
    std::vector<Value> part(seq.begin() + start, seq.begin() + end);
    if (fill && !fill->is_none() && i >= extra) part.push_back(*fill);
    out.push_back(Value::list(std::move(part)));
  }
  return Value::list(std::move(out));
}

Value f_sort(Interpreter& in, const Value& v, CallArgs& a) {
  a.check("sort", 3, {"reverse", "case_sensitive", "attribute"});
  bool reverse = a.get_or(0, "reverse", Value(false)).truthy();
  bool case_sensitive = a.get_or(1, "case_sensitive", Value(false)).truthy();
  const Value* attr = a.get(2, "attribute");
  auto items = iterate(v);
  auto key = [&](const Value& x) {
    Value k = attr && !attr->is_none() ? get_path(in, x, *attr) : x;
    return sort_key(k, case_sensitive);
  };
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    return reverse ? less_than(key(y), key(x)) : less_than(key(x), key(y));
  });
  return Value::list(std::move(items));
}

Value f_string(Interpreter&, const Value& v, CallArgs& a) {
  a.check("string", 0, {});
  return soft_str(v);
}

Value f_striptags(Interpreter&, const Value& v, CallArgs& a) {
  a.check("striptags", 0, {});
  std::string s = to_str(v), no_tags;
  // Drop comments and tags, then collapse whitespace runs to single spaces (jinja2's
  // Markup.striptags).
  for (size_t i = 0; i < s.size();) {
    if (s.compare(i, 4, "<!--") == 0) {
      size_t e = s.find("-->", i + 4);
      if (e == std::string::npos) break;
      i = e + 3;
    } else if (s[i] == '<' && s.find('>', i + 1) != std::string::npos) {
      i = s.find('>', i + 1) + 1;
    } else {
      no_tags += s[i++];
    }
  }
  Value words = Value(no_tags);
  auto parts = split_value(words, nullptr, -1, false);
  return join_values(parts, Value(" "), true);
}

Value f_sum(Interpreter& in, const Value& v, CallArgs& a) {
  a.check("sum", 2, {"attribute", "start"});
  const Value* attr = a.get(0, "attribute");
  Value total = a.get_or(1, "start", Value(int64_t(0)));
  for (auto& item : iterate(v)) {
    Value x = attr && !attr->is_none() ? get_path(in, item, *attr) : item;
    if (!x.is_number() || !total.is_number()) {
      throw EvalError("unsupported operand type(s) for +: '" + total.type_name() + "' and '" +
                      x.type_name() + "'");
    }
    total = (total.is_float() || x.is_float()) ? Value(total.as_double() + x.as_double())
                                               : Value(total.as_int() + x.as_int());
  }
  return total;
}

Value f_title(Interpreter&, const Value& v, CallArgs& a) {
  a.check("title", 0, {});
  // jinja2 splits on runs of [-\s({[<] and capitalises each remaining chunk.
  std::string s = to_str(v), out;
  auto is_sep = [](char32_t c) {
    return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || python_isspace(c);
  };
  bool at_chunk_start = true;
  for (size_t i = 0; i < s.size();) {
    size_t n;
    char32_t cp = decode(s, i, &n);
    if (is_sep(cp)) {
      utf8::append(out, cp);
      at_chunk_start = true;
    } else {
      utf8::append(out, at_chunk_start ? upper_cp(cp) : lower_cp(cp));
      at_chunk_start = false;
    }
    i += n;
  }
  return like(v, out);
}

Value f_tojson(Interpreter&, const Value& v, CallArgs& a) {
  a.check("tojson", 4, {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonOptions o;
  o.ensure_ascii = a.get_or(0, "ensure_ascii", Value(false)).truthy();
  Value indent = a.get_or(1, "indent", Value::none());
  if (indent.is_string())
    o.indent_string = indent.str();
  else if (!indent.is_none())
    o.indent = int(to_int_arg(indent, "indent"));
  Value separators = a.get_or(2, "separators", Value::none());
  if (!separators.is_none()) {
    if (!separators.is_list() || separators.items().size() != 2 ||
        !separators.items()[0].is_string() || !separators.items()[1].is_string())
      throw EvalError("separators must be a (item_separator, key_separator) pair of strings");
    o.separators_given = true;
    o.item_separator = separators.items()[0].str();
    o.key_separator = separators.items()[1].str();
  }
  o.sort_keys = a.get_or(3, "sort_keys", Value(false)).truthy();
  try {
    return Value(to_json(v, o));
  } catch (const std::runtime_error& e) {
    throw EvalError(e.what());
  }
}

Value f_trim(Interpreter&, const Value& v, CallArgs& a) {
  a.check("trim", 1, {"chars"});
  return strip_value(soft_str(v), a.get(0, "chars"), true, true);
}

Value f_truncate(Interpreter&, const Value& v, CallArgs& a) {
  a.check("truncate", 4, {"length", "killwords", "end", "leeway"});
  std::string s = to_str(v);
  int64_t length = to_int_arg(a.get_or(0, "length", Value(int64_t(255))), "length");
  bool killwords = a.get_or(1, "killwords", Value(false)).truthy();
  std::string end = to_str(a.get_or(2, "end", Value("...")));
  Value leeway_v = a.get_or(3, "leeway", Value::none());
  int64_t leeway = leeway_v.is_none() ? 5 : to_int_arg(leeway_v, "leeway");
  int64_t end_len = int64_t(code_point_count(end));
  if (length < end_len)
    throw EvalError("expected length >= " + std::to_string(end_len) + ", got " +
                    std::to_string(length));
  if (leeway < 0) throw EvalError("expected leeway >= 0, got " + std::to_string(leeway));
  auto offsets = code_point_offsets(s);
  int64_t n = int64_t(offsets.size()) - 1;
  if (n <= length + leeway) return Value(s);
  std::string head = s.substr(0, offsets[size_t(length - end_len)]);
  if (killwords) return Value(head + end);
  size_t space = head.rfind(' ');
  if (space != std::string::npos) head = head.substr(0, space);
  return Value(head + end);
}

Value f_unique(Interpreter& in, const Value& v, CallArgs& a) {
  a.check("unique", 2, {"case_sensitive", "attribute"});
  bool case_sensitive = a.get_or(0, "case_sensitive", Value(false)).truthy();
  const Value* attr = a.get(1, "attribute");
  std::vector<Value> out, seen;
  for (auto& item : iterate(v)) {
    Value k = sort_key(attr && !attr->is_none() ? get_path(in, item, *attr) : item, case_sensitive);
    if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return equals(s, k); })) {
      seen.push_back(k);
      out.push_back(item);
    }
  }
  return Value::list(std::move(out));
}

Value f_wordcount(Interpreter&, const Value& v, CallArgs& a) {
  a.check("wordcount", 0, {});
  std::string s = to_str(v);
  int64_t count = 0;
  bool in_word = false;
  for (size_t i = 0; i < s.size();) {
    size_t n;
    bool w = is_word(decode(s, i, &n));
    if (w && !in_word) ++count;
    in_word = w;
    i += n;
  }
  return Value(count);
}

const std::unordered_map<std::string_view, FilterFn>& filters() {
  static const std::unordered_map<std::string_view, FilterFn> table = {
      {"abs", f_abs},
      {"attr", f_attr},
      {"batch", f_batch},
      {"capitalize", f_capitalize},
      {"center", f_center},
      {"count", f_length},
      {"d", f_default},
      {"default", f_default},
      {"dictsort", f_dictsort},
      {"e", f_escape},
      {"escape", f_escape},
      {"first", f_first},
      {"float", f_float},
      {"forceescape", f_forceescape},
      {"format", f_format},
      {"groupby", f_groupby},
      {"indent", f_indent},
      {"int", f_int},
      {"items", f_items},
      {"join", f_join},
      {"last", f_last},
      {"length", f_length},
      {"list", f_list},
      {"lower", f_lower},
      {"map", f_map},
      {"max", f_max},
      {"min", f_min},
      {"reject", f_reject},
      {"rejectattr", f_rejectattr},
      {"replace", f_replace},
      {"reverse", f_reverse},
      {"round", f_round},
      {"safe", f_safe},
      {"select", f_select},
      {"selectattr", f_selectattr},
      {"slice", f_slice},
      {"sort", f_sort},
      {"string", f_string},
      {"striptags", f_striptags},
      {"sum", f_sum},
      {"title", f_title},
      {"tojson", f_tojson},
      {"trim", f_trim},
      {"truncate", f_truncate},
      {"unique", f_unique},
      {"upper", f_upper},
      {"wordcount", f_wordcount},
  };
  return table;
}

// ---------------------------------------------------------------------------------------------
// tests

bool t_boolean(Interpreter&, const Value& v, CallArgs&) {
  return v.is_bool();
}
bool t_callable(Interpreter&, const Value& v, CallArgs&) {
  return v.is_function() || (v.is_object() && v.object_data().find("__call__"));
}
bool t_defined(Interpreter&, const Value& v, CallArgs&) {
  return !v.is_undefined();
}
bool t_undefined(Interpreter&, const Value& v, CallArgs&) {
  return v.is_undefined();
}
bool t_none(Interpreter&, const Value& v, CallArgs&) {
  return v.is_none();
}
bool t_true(Interpreter&, const Value& v, CallArgs&) {
  return v.is_bool() && v.as_bool();
}
bool t_false(Interpreter&, const Value& v, CallArgs&) {
  return v.is_bool() && !v.as_bool();
}
bool t_integer(Interpreter&, const Value& v, CallArgs&) {
  return v.is_int();
}
bool t_float(Interpreter&, const Value& v, CallArgs&) {
  return v.is_float();
}
bool t_number(Interpreter&, const Value& v, CallArgs&) {
  return v.is_number();
}
bool t_string(Interpreter&, const Value& v, CallArgs&) {
  return v.is_string();
}
bool t_mapping(Interpreter&, const Value& v, CallArgs&) {
  return v.is_dict();
}
// iter() works on strings, lists, dicts and jinja2's Undefined.
bool t_iterable(Interpreter&, const Value& v, CallArgs&) {
  return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
}
bool t_sequence(Interpreter&, const Value& v, CallArgs&) {
  return v.is_string() || v.is_list() || v.is_dict();
}
bool t_escaped(Interpreter&, const Value&, CallArgs&) {
  return false;
}

const Value& test_arg(CallArgs& a, const char* test) {
  if (a.positional.empty())
    throw EvalError(std::string("test '") + test + "' requires an argument");
  return a.positional[0];
}

bool t_eq(Interpreter&, const Value& v, CallArgs& a) {
  return equals(v, test_arg(a, "eq"));
}
bool t_ne(Interpreter&, const Value& v, CallArgs& a) {
  return !equals(v, test_arg(a, "ne"));
}
bool t_lt(Interpreter&, const Value& v, CallArgs& a) {
  return less_than(v, test_arg(a, "lt"));
}
bool t_gt(Interpreter&, const Value& v, CallArgs& a) {
  return less_than(test_arg(a, "gt"), v);
}
bool t_le(Interpreter&, const Value& v, CallArgs& a) {
  return !less_than(test_arg(a, "le"), v);
}
bool t_ge(Interpreter&, const Value& v, CallArgs& a) {
  return !less_than(v, test_arg(a, "ge"));
}
bool t_in(Interpreter&, const Value& v, CallArgs& a) {
  return contains(test_arg(a, "in"), v);
}
bool t_sameas(Interpreter&, const Value& v, CallArgs& a) {
  return v.same_as(test_arg(a, "sameas"));
}
bool t_odd(Interpreter&, const Value& v, CallArgs&) {
  if (!v.is_int() && !v.is_bool()) throw EvalError("odd test requires an integer");
  return (v.as_int() % 2) != 0;
}
bool t_even(Interpreter&, const Value& v, CallArgs&) {
  if (!v.is_int() && !v.is_bool()) throw EvalError("even test requires an integer");
  return (v.as_int() % 2) == 0;
}
bool t_divisibleby(Interpreter&, const Value& v, CallArgs& a) {
  const Value& n = test_arg(a, "divisibleby");
  if (!v.is_number() || !n.is_number()) throw EvalError("divisibleby requires numbers");
  if (n.as_double() == 0) throw EvalError("integer division or modulo by zero");
  if (v.is_float() || n.is_float()) return std::fmod(v.as_double(), n.as_double()) == 0;
  return v.as_int() % n.as_int() == 0;
}
bool t_lower(Interpreter&, const Value& v, CallArgs&) {
  std::string s = to_str(v);
  bool cased = false;
  for (size_t i = 0; i < s.size();) {
    size_t n;
    char32_t cp = decode(s, i, &n);
    if (is_cased_upper(cp)) return false;
    cased |= is_cased_lower(cp);
    i += n;
  }
  return cased;
}
bool t_upper(Interpreter&, const Value& v, CallArgs&) {
  std::string s = to_str(v);
  bool cased = false;
  for (size_t i = 0; i < s.size();) {
    size_t n;
    char32_t cp = decode(s, i, &n);
    if (is_cased_lower(cp)) return false;
    cased |= is_cased_upper(cp);
    i += n;
  }
  return cased;
}
bool t_filter(Interpreter& in, const Value& v, CallArgs&) {
  return v.is_string() && in.has_filter(v.str());
}
bool t_test(Interpreter& in, const Value& v, CallArgs&) {
  return v.is_string() && in.has_test(v.str());
}

const std::unordered_map<std::string_view, TestFn>& tests() {
  static const std::unordered_map<std::string_view, TestFn> table = {
      {"boolean", t_boolean},
      {"callable", t_callable},
      {"defined", t_defined},
      {"divisibleby", t_divisibleby},
      {"eq", t_eq},
      {"equalto", t_eq},
      {"==", t_eq},
      {"escaped", t_escaped},
      {"even", t_even},
      {"false", t_false},
      {"filter", t_filter},
      {"float", t_float},
      {"ge", t_ge},
      {">=", t_ge},
      {"gt", t_gt},
      {"greaterthan", t_gt},
      {">", t_gt},
      {"in", t_in},
      {"integer", t_integer},
      {"iterable", t_iterable},
      {"le", t_le},
      {"<=", t_le},
      {"lower", t_lower},
      {"lt", t_lt},
      {"lessthan", t_lt},
      {"<", t_lt},
      {"mapping", t_mapping},
      {"ne", t_ne},
      {"!=", t_ne},
      {"none", t_none},
      {"number", t_number},
      {"odd", t_odd},
      {"sameas", t_sameas},
      {"sequence", t_sequence},
      {"string", t_string},
      {"test", t_test},
      {"true", t_true},
      {"undefined", t_undefined},
      {"upper", t_upper},
  };
  return table;
}

// ---------------------------------------------------------------------------------------------
// methods of str, list and dict

using Method = Value (*)(Interpreter&, const Value& self, CallArgs& args);

Value m_strip(Interpreter&, const Value& s, CallArgs& a) {
  a.check("strip", 1, {});
  return strip_value(s, a.get(0, ""), true, true);
}
Value m_lstrip(Interpreter&, const Value& s, CallArgs& a) {
  a.check("lstrip", 1, {});
  return strip_value(s, a.get(0, ""), true, false);
}
Value m_rstrip(Interpreter&, const Value& s, CallArgs& a) {
  a.check("rstrip", 1, {});
  return strip_value(s, a.get(0, ""), false, true);
}

Value split_method(const Value& s, CallArgs& a, bool right) {
  a.check(right ? "rsplit" : "split", 2, {"sep", "maxsplit"});
  const Value* sep = a.get(0, "sep");
  int64_t maxsplit = to_int_arg(a.get_or(1, "maxsplit", Value(int64_t(-1))), "maxsplit");
  return Value::list(split_value(s, sep, maxsplit, right));
}
Value m_split(Interpreter&, const Value& s, CallArgs& a) {
  return split_method(s, a, false);
}
Value m_rsplit(Interpreter&, const Value& s, CallArgs& a) {
  return split_method(s, a, true);
}

Value m_splitlines(Interpreter&, const Value& s, CallArgs& a) {
  a.check("splitlines", 1, {"keepends"});
  bool keepends = a.get_or(0, "keepends", Value(false)).truthy();
  std::vector<Value> out;
  for (auto [b, e] : splitlines_ranges(s.str(), keepends)) out.push_back(substring(s, b, e));
  return Value::list(std::move(out));
}

bool affix_match(const Value& s, CallArgs& a, bool prefix) {
  a.check(prefix ? "startswith" : "endswith", 3, {});
  if (a.positional.empty())
    throw EvalError(std::string(prefix ? "startswith" : "endswith") +
                    "() takes at least 1 argument (0 given)");
  auto [b, e] = search_window(s.str(), a.get(1, ""), a.get(2, ""));
  std::string_view window = std::string_view(s.str()).substr(b, e - b);
  std::vector<Value> candidates;
  if (a.positional[0].is_tuple())
    candidates = a.positional[0].items();
  else if (a.positional[0].is_string())
    candidates = {a.positional[0]};
  else
    throw EvalError(std::string(prefix ? "startswith" : "endswith") +
                    " first arg must be str or a tuple of str, not " + a.positional[0].type_name());
  for (const auto& c : candidates) {
    std::string x = require_string(c, "tuple item");
    if (x.size() > window.size()) continue;
    if (prefix ? window.substr(0, x.size()) == x : window.substr(window.size() - x.size()) == x)
      return true;
  }
  return false;
}
Value m_startswith(Interpreter&, const Value& s, CallArgs& a) {
  return Value(affix_match(s, a, true));
}
Value m_endswith(Interpreter&, const Value& s, CallArgs& a) {
  return Value(affix_match(s, a, false));
}

Value m_replace(Interpreter&, const Value& s, CallArgs& a) {
  a.check("replace", 3, {"count"});
  if (a.positional.size() < 2) throw EvalError("replace() expected at least 2 arguments");
  int64_t count = to_int_arg(a.get_or(2, "count", Value(int64_t(-1))), "count");
  require_string(a.positional[1], "replace() argument 2");
  require_string(a.positional[0], "replace() argument 1");
  if (s.is_markup()) {  // Markup.replace escapes its arguments
    return replace_value(s, html_escape(a.positional[0]).str(), html_escape(a.positional[1]),
                         count);
  }
  return replace_value(s, a.positional[0].str(), a.positional[1], count);
}

Value m_upper(Interpreter&, const Value& s, CallArgs& a) {
  a.check("upper", 0, {});
  return like(s, str_upper(s.str()));
}
Value m_lower(Interpreter&, const Value& s, CallArgs& a) {
  a.check("lower", 0, {});
  return like(s, str_lower(s.str()));
}
Value m_casefold(Interpreter&, const Value& s, CallArgs& a) {
  a.check("casefold", 0, {});
  return like(s, str_lower(s.str()));
}
Value m_title(Interpreter&, const Value& s, CallArgs& a) {
  a.check("title", 0, {});
  return like(s, str_title(s.str()));
}
Value m_capitalize(Interpreter&, const Value& s, CallArgs& a) {
  a.check("capitalize", 0, {});
  return like(s, str_capitalize(s.str()));
}
Value m_swapcase(Interpreter&, const Value& s, CallArgs& a) {
  a.check("swapcase", 0, {});
  return like(s, map_code_points(s.str(), [](char32_t c) {
                return is_cased_upper(c) ? lower_cp(c) : is_cased_lower(c) ? upper_cp(c) : c;
              }));
}

Value find_method_impl(const Value& s, CallArgs& a, bool reverse, bool raise, const char* name) {
  a.check(name, 3, {});
  if (a.positional.empty())
    throw EvalError(std::string(name) + "() takes at least 1 argument (0 given)");
  std::string sub = require_string(a.positional[0], "substring");
  auto [b, e] = search_window(s.str(), a.get(1, ""), a.get(2, ""));
  std::string_view window = std::string_view(s.str()).substr(b, e - b);
  size_t p = reverse ? window.rfind(sub) : window.find(sub);
  if (p == std::string_view::npos) {
    if (raise) throw EvalError("substring not found");
    return Value(int64_t(-1));
  }
  return Value(byte_to_cp_index(s.str(), b + p));
}
Value m_find(Interpreter&, const Value& s, CallArgs& a) {
  return find_method_impl(s, a, false, false, "find");
}
Value m_rfind(Interpreter&, const Value& s, CallArgs& a) {
  return find_method_impl(s, a, true, false, "rfind");
}
Value m_index(Interpreter&, const Value& s, CallArgs& a) {
  return find_method_impl(s, a, false, true, "index");
}
Value m_rindex(Interpreter&, const Value& s, CallArgs& a) {
  return find_method_impl(s, a, true, true, "rindex");
}

Value m_count(Interpreter&, const Value& s, CallArgs& a) {
  a.check("count", 3, {});
  if (a.positional.empty()) throw EvalError("count() takes at least 1 argument (0 given)");
  std::string sub = require_string(a.positional[0], "substring");
  auto [b, e] = search_window(s.str(), a.get(1, ""), a.get(2, ""));
  std::string_view window = std::string_view(s.str()).substr(b, e - b);
  if (sub.empty()) return Value(int64_t(code_point_count(window) + 1));
  int64_t n = 0;
  for (size_t p = window.find(sub); p != std::string_view::npos;
       p = window.find(sub, p + sub.size()))
    ++n;
  return Value(n);
}

Value m_join(Interpreter&, const Value& s, CallArgs& a) {
  a.check("join", 1, {});
  if (a.positional.empty()) throw EvalError("join() takes exactly one argument (0 given)");
  if (s.is_markup()) {
    std::vector<Value> items = iterate(a.positional[0]);
    for (auto& item : items) item = html_escape(item);
    return with_markup(join_values(items, s, true), true);
  }
  return join_values(iterate(a.positional[0]), s, true);
}

Value m_format(Interpreter& in, const Value& s, CallArgs& a) {
  if (s.is_markup()) {  // Markup.format escapes the arguments
    for (auto& v : a.positional) v = v.is_string() ? html_escape(v) : v;
    for (auto& [k, v] : a.kwargs) v = v.is_string() ? html_escape(v) : v;
  }
  return like(s, brace_format(in, s.str(), a));
}

template <bool (*Pred)(char32_t)>
Value char_class(Interpreter&, const Value& s, CallArgs& a) {
  a.check("is...", 0, {});
  const std::string& str = s.str();
  if (str.empty()) return Value(false);
  for (size_t i = 0; i < str.size();) {
    size_t n;
    if (!Pred(decode(str, i, &n))) return Value(false);
    i += n;
  }
  return Value(true);
}
bool is_alnum(char32_t c) {
  return is_alpha(c) || is_numeric(c);
}
bool is_space_cp(char32_t c) {
  return python_isspace(c);
}

Value m_islower(Interpreter& in, const Value& s, CallArgs& a) {
  return Value(t_lower(in, s, a));
}
Value m_isupper(Interpreter& in, const Value& s, CallArgs& a) {
  return Value(t_upper(in, s, a));
}
Value m_istitle(Interpreter&, const Value& s, CallArgs& a) {
  a.check("istitle", 0, {});
  return Value(!s.str().empty() && str_title(s.str()) == s.str() && s.str() != str_lower(s.str()));
}

Value justify(const Value& s, CallArgs& a, char align, const char* name) {
  a.check(name, 2, {});
  if (a.positional.empty())
    throw EvalError(std::string(name) + "() takes at least 1 argument (0 given)");
  int64_t width = to_int_arg(a.positional[0], "width");
  char32_t fill = ' ';
  if (a.positional.size() > 1) {
    std::string f = require_string(a.positional[1], "fill character");
    if (code_point_count(f) != 1)
      throw EvalError("The fill character must be exactly one character long");
    size_t n;
    fill = decode(f, 0, &n);
  }
  if (align == '^') return like(s, str_center(s.str(), width, fill));
  return like(s, pad_string(s.str(), width, fill, align == '<' ? '<' : '>'));
}
Value m_center(Interpreter&, const Value& s, CallArgs& a) {
  return justify(s, a, '^', "center");
}
Value m_ljust(Interpreter&, const Value& s, CallArgs& a) {
  return justify(s, a, '<', "ljust");
}
Value m_rjust(Interpreter&, const Value& s, CallArgs& a) {
  return justify(s, a, '>', "rjust");
}

Value m_zfill(Interpreter&, const Value& s, CallArgs& a) {
  a.check("zfill", 1, {});
  if (a.positional.empty()) throw EvalError("zfill() takes exactly one argument (0 given)");
  int64_t width = to_int_arg(a.positional[0], "width");
  std::string str = s.str();
  int64_t len = int64_t(code_point_count(str));
  if (width <= len) return s;
  std::string zeros(size_t(width - len), '0');
  if (!str.empty() && (str[0] == '+' || str[0] == '-'))
    return like(s, str.substr(0, 1) + zeros + str.substr(1));
  return like(s, zeros + str);
}

Value partition_impl(const Value& s, CallArgs& a, bool right) {
  a.check(right ? "rpartition" : "partition", 1, {});
  if (a.positional.empty()) throw EvalError("partition() takes exactly one argument (0 given)");
  std::string sep = require_string(a.positional[0], "separator");
  if (sep.empty()) throw EvalError("empty separator");
  const std::string& str = s.str();
  size_t p = right ? str.rfind(sep) : str.find(sep);
  if (p == std::string::npos) {
    if (right) return Value::list({Value(std::string()), Value(std::string()), s}, true);
    return Value::list({s, Value(std::string()), Value(std::string())}, true);
  }
  return Value::list({substring(s, 0, p), substring(s, p, p + sep.size()),
                      substring(s, p + sep.size(), str.size())},
                     true);
}
Value m_partition(Interpreter&, const Value& s, CallArgs& a) {
  return partition_impl(s, a, false);
}
Value m_rpartition(Interpreter&, const Value& s, CallArgs& a) {
  return partition_impl(s, a, true);
}

Value m_removeprefix(Interpreter&, const Value& s, CallArgs& a) {
  a.check("removeprefix", 1, {});
  if (a.positional.empty()) throw EvalError("removeprefix() takes exactly one argument (0 given)");
  std::string p = require_string(a.positional[0], "prefix");
  if (s.str().compare(0, p.size(), p) == 0) return substring(s, p.size(), s.str().size());
  return s;
}
Value m_removesuffix(Interpreter&, const Value& s, CallArgs& a) {
  a.check("removesuffix", 1, {});
  if (a.positional.empty()) throw EvalError("removesuffix() takes exactly one argument (0 given)");
  std::string p = require_string(a.positional[0], "suffix");
  const std::string& str = s.str();
  if (!p.empty() && str.size() >= p.size() &&
      str.compare(str.size() - p.size(), p.size(), p) == 0) {
    return substring(s, 0, str.size() - p.size());
  }
  return s;
}

// list methods
Value m_list_index(Interpreter&, const Value& l, CallArgs& a) {
  a.check("index", 3, {});
  if (a.positional.empty()) throw EvalError("index() takes at least 1 argument (0 given)");
  const auto& items = l.items();
  for (size_t i = 0; i < items.size(); ++i) {
    if (equals(items[i], a.positional[0])) return Value(int64_t(i));
  }
  throw EvalError(to_repr(a.positional[0]) + " is not in list");
}
Value m_list_count(Interpreter&, const Value& l, CallArgs& a) {
  a.check("count", 1, {});
  if (a.positional.empty()) throw EvalError("count() takes exactly one argument (0 given)");
  int64_t n = 0;
  for (const auto& x : l.items()) n += equals(x, a.positional[0]);
  return Value(n);
}
Value m_list_copy(Interpreter&, const Value& l, CallArgs& a) {
  a.check("copy", 0, {});
  return Value::list(l.items(), l.is_tuple());
}

// dict methods
Value m_dict_get(Interpreter&, const Value& d, CallArgs& a) {
  a.check("get", 2, {});
  if (a.positional.empty()) throw EvalError("get expected at least 1 argument, got 0");
  if (const Value* v = d.dict_data().find(a.positional[0])) return *v;
  return a.positional.size() > 1 ? a.positional[1] : Value::none();
}
Value m_dict_items(Interpreter&, const Value& d, CallArgs& a) {
  a.check("items", 0, {});
  std::vector<Value> out;
  for (const auto& [k, v] : d.dict_data().items) out.push_back(Value::list({k, v}, true));
  return Value::list(std::move(out));
}
Value m_dict_keys(Interpreter&, const Value& d, CallArgs& a) {
  a.check("keys", 0, {});
  std::vector<Value> out;
  for (const auto& [k, v] : d.dict_data().items) out.push_back(k);
  return Value::list(std::move(out));
}
Value m_dict_values(Interpreter&, const Value& d, CallArgs& a) {
  a.check("values", 0, {});
  std::vector<Value> out;
  for (const auto& [k, v] : d.dict_data().items) out.push_back(v);
  return Value::list(std::move(out));
}
Value m_dict_copy(Interpreter&, const Value& d, CallArgs& a) {
  a.check("copy", 0, {});
  return Value::dict(d.dict_data().items);
}

const std::unordered_map<std::string_view, Method>& string_methods() {
  static const std::unordered_map<std::string_view, Method> table = {
      {"strip", m_strip},
      {"lstrip", m_lstrip},
      {"rstrip", m_rstrip},
      {"split", m_split},
      {"rsplit", m_rsplit},
      {"splitlines", m_splitlines},
      {"startswith", m_startswith},
      {"endswith", m_endswith},
      {"replace", m_replace},
      {"upper", m_upper},
      {"lower", m_lower},
      {"casefold", m_casefold},
      {"title", m_title},
      {"capitalize", m_capitalize},
      {"swapcase", m_swapcase},
      {"find", m_find},
      {"rfind", m_rfind},
      {"index", m_index},
      {"rindex", m_rindex},
      {"count", m_count},
      {"join", m_join},
      {"format", m_format},
      {"isalpha", char_class<is_alpha>},
      {"isdigit", char_class<is_digit>},
      {"isdecimal", char_class<is_digit>},
      {"isnumeric", char_class<is_numeric>},
      {"isalnum", char_class<is_alnum>},
      {"isspace", char_class<is_space_cp>},
      {"islower", m_islower},
      {"isupper", m_isupper},
      {"istitle", m_istitle},
      {"center", m_center},
      {"ljust", m_ljust},
      {"rjust", m_rjust},
      {"zfill", m_zfill},
      {"partition", m_partition},
      {"rpartition", m_rpartition},
      {"removeprefix", m_removeprefix},
      {"removesuffix", m_removesuffix},
  };
  return table;
}

const std::unordered_map<std::string_view, Method>& list_methods() {
  static const std::unordered_map<std::string_view, Method> table = {
      {"index", m_list_index}, {"count", m_list_count}, {"copy", m_list_copy}};
  return table;
}

const std::unordered_map<std::string_view, Method>& dict_methods() {
  static const std::unordered_map<std::string_view, Method> table = {{"get", m_dict_get},
                                                                     {"items", m_dict_items},
                                                                     {"keys", m_dict_keys},
                                                                     {"values", m_dict_values},
                                                                     {"copy", m_dict_copy}};
  return table;
}

// The sandbox refuses methods that modify lists and dicts (transformers renders with jinja2's
// ImmutableSandboxedEnvironment).
bool is_mutating_method(const Value& object, std::string_view name) {
  static const char* const list_mutators[] = {"append", "clear",  "extend",  "insert",
                                              "pop",    "remove", "reverse", "sort"};
  static const char* const dict_mutators[] = {"clear", "pop", "popitem", "setdefault", "update"};
  if (object.is_list() && !object.is_tuple()) {
    for (const char* m : list_mutators) {
      if (name == m) return true;
    }
  }
  if (object.is_dict()) {
    for (const char* m : dict_mutators) {
      if (name == m) return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// globals

Value g_range(Interpreter&, CallArgs& a) {
  a.check("range", 3, {});
  int64_t start = 0, stop, step = 1;
  if (a.positional.empty()) throw EvalError("range expected at least 1 argument, got 0");
  if (a.positional.size() == 1) {
    stop = to_int_arg(a.positional[0], "range() argument");
  } else {
    start = to_int_arg(a.positional[0], "range() argument");
    stop = to_int_arg(a.positional[1], "range() argument");
    if (a.positional.size() > 2) step = to_int_arg(a.positional[2], "range() argument");
  }
  if (step == 0) throw EvalError("range() arg 3 must not be zero");
  int64_t count = step > 0 ? (stop > start ? (stop - start + step - 1) / step : 0)
                           : (start > stop ? (start - stop - step - 1) / -step : 0);
  if (count > 100000) {
    throw EvalError("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
  }
  std::vector<Value> out;
  out.reserve(size_t(count));
  for (int64_t i = 0; i < count; ++i) out.push_back(Value(start + i * step));
  return Value::list(std::move(out));
}

// dict(mapping or pairs, **kwargs) / namespace(...): the initial entries.
std::vector<std::pair<Value, Value>> dict_entries(CallArgs& a, const char* name) {
  if (a.positional.size() > 1)
    throw EvalError(std::string(name) + " expected at most 1 argument, got " +
                    std::to_string(a.positional.size()));
  std::vector<std::pair<Value, Value>> out;
  Value d = Value::dict();
  if (!a.positional.empty()) {
    const Value& src = a.positional[0];
    if (src.is_dict()) {
      for (const auto& kv : src.dict_data().items) d.dict_data().set(kv.first, kv.second);
    } else {
      for (auto& pair : iterate(src)) {
        auto kv = iterate(pair);
        if (kv.size() != 2)
          throw EvalError("dictionary update sequence element has length " +
                          std::to_string(kv.size()) + "; 2 is required");
        d.dict_data().set(kv[0], kv[1]);
      }
    }
  }
  for (auto& [k, v] : a.kwargs) d.dict_data().set(Value(k), v);
  return d.dict_data().items;
}

Value g_dict(Interpreter&, CallArgs& a) {
  return Value::dict(dict_entries(a, "dict"));
}

Value g_namespace(Interpreter&, CallArgs& a) {
  std::vector<std::pair<std::string, Value>> attrs;
  for (auto& [k, v] : dict_entries(a, "namespace")) {
    if (!k.is_string()) throw EvalError("namespace keys must be strings");
    attrs.emplace_back(k.str(), v);
  }
  return Value::object("Namespace", std::move(attrs), true);
}

Value g_cycler(Interpreter&, CallArgs& a) {
  if (a.positional.empty()) throw EvalError("at least one item has to be provided");
  auto items = std::make_shared<std::vector<Value>>(a.positional);
  auto pos = std::make_shared<size_t>(0);
  Value c = Value::object("Cycler", {}, false);
  c.object_data().set("items", Value::list(*items));
  c.object_data().set("current", (*items)[0]);
  // `current` is refreshed by next()/reset(); the functions live inside the object they update.
  ObjectData* raw = &c.object_data();
  c.object_data().set("next", Value::function("next", [items, pos, raw](Interpreter&, CallArgs&) {
                        Value v = (*items)[*pos];
                        *pos = (*pos + 1) % items->size();
                        raw->set("current", (*items)[*pos]);
                        return v;
                      }));
  c.object_data().set("reset", Value::function("reset", [items, pos, raw](Interpreter&, CallArgs&) {
                        *pos = 0;
                        raw->set("current", (*items)[0]);
                        return Value::none();
                      }));
  return c;
}

Value g_joiner(Interpreter&, CallArgs& a) {
  a.check("joiner", 1, {"sep"});
  Value sep = a.get_or(0, "sep", Value(", "));
  auto used = std::make_shared<bool>(false);
  return Value::function("joiner", [sep, used](Interpreter&, CallArgs&) {
    if (!*used) {
      *used = true;
      return Value(std::string());
    }
    return sep;
  });
}

Value g_raise_exception(Interpreter&, CallArgs& a) {
  throw RaisedByTemplate{a.positional.empty() ? std::string() : to_str(a.positional[0])};
}

Value g_strftime_now(Interpreter& in, CallArgs& a) {
  a.check("strftime_now", 1, {});
  if (a.positional.empty()) throw EvalError("strftime_now() missing required argument 'format'");
  std::string format = require_string(a.positional[0], "format");
  std::tm tm{};
  if (in.settings().now_unix) {
    std::time_t t = std::time_t(*in.settings().now_unix);
    gmtime_r(&t, &tm);
  } else {
    std::time_t t = std::time(nullptr);
    localtime_r(&t, &tm);
  }
  if (format.empty()) return Value(std::string());
  std::vector<char> buf(format.size() * 8 + 64);
  size_t n = std::strftime(buf.data(), buf.size(), format.c_str(), &tm);
  return Value(std::string(buf.data(), n));
}

}  // namespace

FilterFn find_filter(std::string_view name) {
  auto& t = filters();
  auto it = t.find(name);
  return it == t.end() ? nullptr : it->second;
}

TestFn find_test(std::string_view name) {
  auto& t = tests();
  auto it = t.find(name);
  return it == t.end() ? nullptr : it->second;
}

std::optional<Value> find_method(const Value& object, std::string_view name) {
  const std::unordered_map<std::string_view, Method>* table = nullptr;
  if (object.is_string())
    table = &string_methods();
  else if (object.is_list())
    table = &list_methods();
  else if (object.is_dict())
    table = &dict_methods();
  if (!table) return std::nullopt;
  auto it = table->find(name);
  if (it == table->end()) {
    if (is_mutating_method(object, name)) {
      // What the sandbox returns: an Undefined that fails, with this message, when used.
      return Value::undefined("access to attribute '" + std::string(name) + "' of '" +
                              object.type_name() + "' object is unsafe.");
    }
    return std::nullopt;
  }
  Method m = it->second;
  Value self = object;
  return Value::function(std::string(name),
                         [m, self](Interpreter& in, CallArgs& args) { return m(in, self, args); });
}

std::vector<std::pair<std::string, Value>> builtin_globals() {
  auto fn = [](const char* name, Value (*f)(Interpreter&, CallArgs&)) {
    return std::pair<std::string, Value>(name, Value::function(name, f));
  };
  return {fn("range", g_range),
          fn("dict", g_dict),
          fn("namespace", g_namespace),
          fn("cycler", g_cycler),
          fn("joiner", g_joiner),
          fn("raise_exception", g_raise_exception),
          fn("strftime_now", g_strftime_now)};
}

// ---------------------------------------------------------------------------------------------
// printf-style and str.format formatting

namespace {

struct Spec {
  char32_t fill = ' ';
  char align = '\0';  // < > ^ =
  char sign = '-';
  bool alternate = false, zero = false, grouping = false;
  int64_t width = -1, precision = -1;
  char type = '\0';
};

std::string group_thousands(const std::string& digits) {
  std::string out;
  int count = 0;
  for (size_t i = digits.size(); i > 0; --i) {
    out.insert(out.begin(), digits[i - 1]);
    if (++count % 3 == 0 && i > 1) out.insert(out.begin(), ',');
  }
  return out;
}

std::string apply_width(std::string body, const Spec& spec, char default_align, bool numeric) {
  int64_t len = int64_t(code_point_count(body));
  if (spec.width <= len) return body;
  char align = spec.align ? spec.align : (spec.zero && numeric ? '=' : default_align);
  char32_t fill = spec.align ? spec.fill : (spec.zero && numeric ? U'0' : spec.fill);
  if (align == '=') {
    size_t sign_len =
        (!body.empty() && (body[0] == '-' || body[0] == '+' || body[0] == ' ')) ? 1 : 0;
    std::string fill_s;
    utf8::append(fill_s, fill);
    std::string pad;
    for (int64_t i = 0; i < spec.width - len; ++i) pad += fill_s;
    return body.substr(0, sign_len) + pad + body.substr(sign_len);
  }
  return pad_string(body, spec.width, fill, align);
}

std::string format_number(const Value& v, const Spec& spec) {
  char type = spec.type;
  if (v.is_int() || v.is_bool()) {
    if (type == '\0' || type == 'd' || type == 'n' || type == 'x' || type == 'X' || type == 'o' ||
        type == 'b' || type == 'c') {
      int64_t i = v.as_int();
      if (type == 'c') {
        std::string s;
        utf8::append(s, char32_t(i));
        return apply_width(s, spec, '<', false);
      }
      uint64_t mag = i < 0 ? uint64_t(-(i + 1)) + 1 : uint64_t(i);
      std::string digits;
      int base = type == 'x' || type == 'X' ? 16 : type == 'o' ? 8 : type == 'b' ? 2 : 10;
      do {
        int d = int(mag % uint64_t(base));
        digits.insert(digits.begin(), char(d < 10 ? '0' + d : (type == 'X' ? 'A' : 'a') + d - 10));
        mag /= uint64_t(base);
      } while (mag);
      if (spec.grouping && base == 10) digits = group_thousands(digits);
      std::string prefix;
      if (spec.alternate && base != 10)
        prefix = type == 'x' ? "0x" : type == 'X' ? "0X" : type == 'o' ? "0o" : "0b";
      std::string sign = i < 0 ? "-" : spec.sign == '+' ? "+" : spec.sign == ' ' ? " " : "";
      return apply_width(sign + prefix + digits, spec, '>', true);
    }
  }
  double d = v.as_double();
  if (type == '\0' && v.is_float() && spec.precision < 0) {
    std::string s = float_repr(d);
    if (d >= 0 && spec.sign == '+') s = "+" + s;
    if (d >= 0 && spec.sign == ' ') s = " " + s;
    return apply_width(s, spec, '>', true);
  }
  if (type == '\0') type = 'g';
  int64_t precision = spec.precision < 0 ? 6 : spec.precision;
  std::string fmt = "%";
  if (spec.sign == '+') fmt += '+';
  if (spec.sign == ' ') fmt += ' ';
  if (spec.alternate) fmt += '#';
  double value = d;
  bool percent = type == '%';
  if (percent) {
    value *= 100;
    type = 'f';
  }
  fmt += "." + std::to_string(precision) + (type == 'n' ? 'g' : type);
  char buf[512];
  std::snprintf(buf, sizeof buf, fmt.c_str(), value);
  std::string s = buf;
  if (percent) s += '%';
  if (spec.grouping) {
    size_t start = (s[0] == '-' || s[0] == '+' || s[0] == ' ') ? 1 : 0;
    size_t end = s.find_first_not_of("0123456789", start);
    if (end == std::string::npos) end = s.size();
    s = s.substr(0, start) + group_thousands(s.substr(start, end - start)) + s.substr(end);
  }
  return apply_width(s, spec, '>', true);
}

// Parses a str.format() spec: [[fill]align][sign][#][0][width][,][.precision][type]
Spec parse_format_spec(std::string_view s) {
  Spec spec;
  size_t i = 0;
  auto is_align = [](char c) { return c == '<' || c == '>' || c == '^' || c == '='; };
  if (!s.empty()) {
    size_t n;
    char32_t first = decode(s, 0, &n);
    if (n < s.size() && is_align(s[n])) {
      spec.fill = first;
      spec.align = s[n];
      i = n + 1;
    } else if (is_align(s[0])) {
      spec.align = s[0];
      i = 1;
    }
  }
  if (i < s.size() && (s[i] == '+' || s[i] == '-' || s[i] == ' ')) spec.sign = s[i++];
  if (i < s.size() && s[i] == '#') {
    spec.alternate = true;
    ++i;
  }
  if (i < s.size() && s[i] == '0') {
    spec.zero = true;
    ++i;
  }
  size_t w = i;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  if (i > w) spec.width = std::stoll(std::string(s.substr(w, i - w)));
  if (i < s.size() && s[i] == ',') {
    spec.grouping = true;
    ++i;
  }
  if (i < s.size() && s[i] == '.') {
    size_t p = ++i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    if (i == p) throw EvalError("Format specifier missing precision");
    spec.precision = std::stoll(std::string(s.substr(p, i - p)));
  }
  if (i < s.size()) spec.type = s[i++];
  if (i != s.size()) throw EvalError("Invalid format specifier");
  return spec;
}

std::string format_value(const Value& v, const Spec& spec) {
  if (v.is_number() && !(v.is_bool() && spec.type == '\0')) return format_number(v, spec);
  if (spec.type != '\0' && spec.type != 's') {
    throw EvalError(std::string("Unknown format code '") + spec.type + "' for object of type '" +
                    v.type_name() + "'");
  }
  std::string s = to_str(v);
  if (spec.precision >= 0) {
    auto offsets = code_point_offsets(s);
    if (int64_t(offsets.size()) - 1 > spec.precision)
      s = s.substr(0, offsets[size_t(spec.precision)]);
  }
  return apply_width(s, spec, '<', false);
}

}  // namespace

std::string percent_format(const std::string& format, const Value& args) {
  std::vector<Value> positional;
  const Value* mapping = nullptr;
  if (args.is_tuple())
    positional = args.items();
  else if (args.is_dict())
    mapping = &args;
  else
    positional = {args};
  size_t next = 0;
  std::string out;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%') {
      out += format[i];
      continue;
    }
    if (++i >= format.size()) throw EvalError("incomplete format");
    Value arg;
    bool have_arg = false;
    if (format[i] == '(') {
      size_t close = format.find(')', i);
      if (close == std::string::npos) throw EvalError("incomplete format key");
      if (!mapping) throw EvalError("format requires a mapping");
      std::string key = format.substr(i + 1, close - i - 1);
      const Value* v = mapping->dict_data().find(std::string_view(key));
      if (!v) throw EvalError("KeyError: '" + key + "'");
      arg = *v;
      have_arg = true;
      i = close + 1;
    }
    Spec spec;
    while (i < format.size() && std::strchr("-+ #0", format[i])) {
      char f = format[i++];
      if (f == '-')
        spec.align = '<';
      else if (f == '+')
        spec.sign = '+';
      else if (f == ' ') {
        if (spec.sign != '+') spec.sign = ' ';
      } else if (f == '#')
        spec.alternate = true;
      else
        spec.zero = true;
    }
    size_t w = i;
    while (i < format.size() && std::isdigit(static_cast<unsigned char>(format[i]))) ++i;
    if (i > w) spec.width = std::stoll(format.substr(w, i - w));
    if (i < format.size() && format[i] == '.') {
      size_t p = ++i;
      while (i < format.size() && std::isdigit(static_cast<unsigned char>(format[i]))) ++i;
      spec.precision = i > p ? std::stoll(format.substr(p, i - p)) : 0;
    }
    if (i >= format.size()) throw EvalError("incomplete format");
    char conv = format[i];
    if (conv == '%') {
      out += '%';
      continue;
    }
    if (!have_arg) {
      if (mapping) {
        arg = *mapping;
      } else {
        if (next >= positional.size()) throw EvalError("not enough arguments for format string");
        arg = positional[next++];
      }
    }
    if (spec.align != '<' && spec.zero)
      spec.align = '\0';
    else if (spec.align != '<')
      spec.align = '>';
    switch (conv) {
      case 's': {
        std::string text = to_str(arg);
        if (spec.precision >= 0) {
          auto offsets = code_point_offsets(text);
          if (int64_t(offsets.size()) - 1 > spec.precision)
            text = text.substr(0, offsets[size_t(spec.precision)]);
        }
        out += pad_string(text, spec.width, ' ', spec.align == '<' ? '<' : '>');
        break;
      }
      case 'r':
      case 'a':
        out += pad_string(to_repr(arg), spec.width, ' ', spec.align == '<' ? '<' : '>');
        break;
      case 'd':
      case 'i':
      case 'u': {
        if (!arg.is_number())
          throw EvalError("%d format: a real number is required, not " + arg.type_name());
        Spec s = spec;
        s.type = 'd';
        s.precision = -1;
        out += format_number(
            Value(arg.is_float() ? int64_t(std::trunc(arg.as_double())) : arg.as_int()), s);
        break;
      }
      case 'f':
      case 'F':
      case 'e':
      case 'E':
      case 'g':
      case 'G': {
        if (!arg.is_number())
          throw EvalError(std::string("must be real number, not ") + arg.type_name());
        Spec s = spec;
        s.type = conv;
        out += format_number(Value(arg.as_double()), s);
        break;
      }
      case 'x':
      case 'X':
      case 'o':
      case 'c': {
        Spec s = spec;
        s.type = conv;
        out += format_number(arg, s);
        break;
      }
      default:
        throw EvalError(std::string("unsupported format character '") + conv + "'");
    }
  }
  if (!mapping && next < positional.size() && args.is_tuple()) {
    throw EvalError("not all arguments converted during string formatting");
  }
  return out;
}

std::string brace_format(Interpreter& in, const std::string& format, CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < format.size(); ++i) {
    char c = format[i];
    if (c == '}') {
      if (i + 1 < format.size() && format[i + 1] == '}') {
        out += '}';
        ++i;
        continue;
      }
      throw EvalError("Single '}' encountered in format string");
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < format.size() && format[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    size_t close = format.find('}', i);
    if (close == std::string::npos) throw EvalError("Single '{' encountered in format string");
    std::string field = format.substr(i + 1, close - i - 1);
    i = close;
    std::string spec_text, conversion;
    if (size_t colon = field.find(':'); colon != std::string::npos) {
      spec_text = field.substr(colon + 1);
      field = field.substr(0, colon);
    }
    if (size_t bang = field.find('!'); bang != std::string::npos) {
      conversion = field.substr(bang + 1);
      field = field.substr(0, bang);
    }
    size_t name_end = field.find_first_of(".[");
    std::string name = field.substr(0, name_end);
    Value v;
    if (name.empty()) {
      if (auto_index >= args.positional.size())
        throw EvalError("Replacement index " + std::to_string(auto_index) +
                        " out of range for positional args tuple");
      v = args.positional[auto_index++];
    } else if (std::all_of(name.begin(), name.end(), ::isdigit)) {
      size_t k = std::stoul(name);
      if (k >= args.positional.size())
        throw EvalError("Replacement index " + name + " out of range for positional args tuple");
      v = args.positional[k];
    } else {
      const Value* kv = args.kwarg(name);
      if (!kv) throw EvalError("KeyError: '" + name + "'");
      v = *kv;
    }
    // .attr and [key] accessors
    for (size_t p = name_end; p != std::string::npos && p < field.size();) {
      if (field[p] == '.') {
        size_t e = field.find_first_of(".[", p + 1);
        v = in.get_attribute(
            v, field.substr(p + 1, e == std::string::npos ? std::string::npos : e - p - 1));
        p = e;
      } else {
        size_t e = field.find(']', p);
        if (e == std::string::npos) throw EvalError("Missing ']' in format string");
        std::string key = field.substr(p + 1, e - p - 1);
        bool digits = !key.empty() && std::all_of(key.begin(), key.end(), ::isdigit);
        v = in.get_item(v, digits ? Value(int64_t(std::stoll(key))) : Value(key));
        p = e + 1;
      }
    }
    if (conversion == "r" || conversion == "a")
      v = Value(to_repr(v));
    else if (conversion == "s")
      v = Value(to_str(v));
    else if (!conversion.empty())
      throw EvalError("Unknown conversion specifier " + conversion);
    out += format_value(v, parse_format_spec(spec_text));
  }
  return out;
}

}  // namespace seqit::chat::jinja
