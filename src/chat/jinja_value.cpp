#include "chat/jinja_value.h"

#include <utf8proc.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "util/json_io.h"
#include "util/utf8.h"

namespace seqit::chat::jinja {

// ---------------------------------------------------------------------------------------------
// Containers

const Value* DictData::find(const Value& key) const {
  for (const auto& [k, v] : items) {
    if (equals(k, key)) return &v;
  }
  return nullptr;
}

const Value* DictData::find(std::string_view key) const {
  for (const auto& [k, v] : items) {
    if (k.is_string() && k.str() == key) return &v;
  }
  return nullptr;
}

void DictData::set(Value key, Value value) {
  for (auto& [k, v] : items) {
    if (equals(k, key)) {
      v = std::move(value);
      return;
    }
  }
  items.emplace_back(std::move(key), std::move(value));
}

const Value* ObjectData::find(std::string_view name) const {
  for (const auto& [k, v] : attributes) {
    if (k == name) return &v;
  }
  return nullptr;
}

void ObjectData::set(std::string_view name, Value value) {
  for (auto& [k, v] : attributes) {
    if (k == name) {
      v = std::move(value);
      return;
    }
  }
  attributes.emplace_back(std::string(name), std::move(value));
}

// ---------------------------------------------------------------------------------------------
// Construction

Value Value::undefined(std::string hint) {
  Value v;
  if (!hint.empty()) v.ptr_ = std::make_shared<StringData>(StringData{std::move(hint), {}});
  return v;
}

Value::Value(std::string s) : kind_(Kind::String) {
  ptr_ = std::make_shared<StringData>(StringData{std::move(s), {}});
}

Value::Value(StringData s) : kind_(Kind::String) {
  ptr_ = std::make_shared<StringData>(std::move(s));
}

Value Value::string(std::shared_ptr<const StringData> s) {
  Value v(Kind::String);
  v.ptr_ = std::const_pointer_cast<StringData>(std::move(s));
  return v;
}

Value Value::list(std::vector<Value> items, bool tuple) {
  Value v(Kind::List);
  v.ptr_ = std::make_shared<ListData>(ListData{std::move(items), tuple});
  return v;
}

Value Value::dict(std::vector<std::pair<Value, Value>> items) {
  Value v(Kind::Dict);
  v.ptr_ = std::make_shared<DictData>(DictData{std::move(items)});
  return v;
}

Value Value::function(std::string name, std::function<Value(Interpreter&, CallArgs&)> call) {
  Value v(Kind::Function);
  v.ptr_ = std::make_shared<Function>(Function{std::move(name), std::move(call)});
  return v;
}

Value Value::object(std::string kind, std::vector<std::pair<std::string, Value>> attributes,
                    bool assignable) {
  Value v(Kind::Object);
  v.ptr_ =
      std::make_shared<ObjectData>(ObjectData{std::move(kind), std::move(attributes), assignable});
  return v;
}

std::string Value::undefined_hint() const {
  if (kind_ != Kind::Undefined || !ptr_) return "value is undefined";
  return static_cast<const StringData*>(ptr_.get())->text;
}

double Value::as_double() const {
  switch (kind_) {
    case Kind::Bool:
      return num_.b ? 1.0 : 0.0;
    case Kind::Int:
      return double(num_.i);
    case Kind::Float:
      return num_.f;
    default:
      return 0.0;
  }
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::Undefined:
    case Kind::None:
      return false;
    case Kind::Bool:
      return num_.b;
    case Kind::Int:
      return num_.i != 0;
    case Kind::Float:
      return num_.f != 0.0;
    case Kind::String:
      return !str().empty();
    case Kind::List:
      return !items().empty();
    case Kind::Dict:
      return !dict_data().items.empty();
    case Kind::Function:
    case Kind::Object:
      return true;
  }
  return false;
}

std::string Value::type_name() const {
  switch (kind_) {
    case Kind::Undefined:
      return "Undefined";
    case Kind::None:
      return "NoneType";
    case Kind::Bool:
      return "bool";
    case Kind::Int:
      return "int";
    case Kind::Float:
      return "float";
    case Kind::String:
      return "str";
    case Kind::List:
      return list_data().tuple ? "tuple" : "list";
    case Kind::Dict:
      return "dict";
    case Kind::Function:
      return "function";
    case Kind::Object:
      return object_data().kind;
  }
  return "object";
}

bool Value::same_as(const Value& other) const {
  if (kind_ != other.kind_) return false;
  switch (kind_) {
    case Kind::Undefined:
    case Kind::None:
      return true;
    case Kind::Bool:
      return num_.b == other.num_.b;
    case Kind::Int:
      return num_.i == other.num_.i;
    case Kind::Float:
      return num_.f == other.num_.f;
    default:
      return ptr_ == other.ptr_;
  }
}

// ---------------------------------------------------------------------------------------------
// Comparison

bool equals(const Value& a, const Value& b) {
  using K = Value::Kind;
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() == b.as_double();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case K::Undefined:
    case K::None:
      return true;
    case K::String:
      return a.str() == b.str();
    case K::List: {
      const auto &x = a.list_data(), &y = b.list_data();
      if (x.tuple != y.tuple || x.items.size() != y.items.size()) return false;
      for (size_t i = 0; i < x.items.size(); ++i) {
        if (!equals(x.items[i], y.items[i])) return false;
      }
      return true;
    }
    case K::Dict: {
      const auto &x = a.dict_data(), &y = b.dict_data();
      if (x.items.size() != y.items.size()) return false;
      for (const auto& [k, v] : x.items) {
        const Value* other = y.find(k);
        if (!other || !equals(v, *other)) return false;
      }
      return true;
    }
    default:
      return a.same_as(b);
  }
}

bool less_than(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() < b.as_double();
    return a.as_int() < b.as_int();
  }
  if (a.is_string() && b.is_string())
    return a.str() < b.str();  // UTF-8 byte order = code point order
  if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
    const auto &x = a.items(), &y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (!equals(x[i], y[i])) return less_than(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  throw EvalError("'<' not supported between instances of '" + a.type_name() + "' and '" +
                  b.type_name() + "'");
}

// ---------------------------------------------------------------------------------------------
// Printing

std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  // Shortest round-trip digits in scientific form: "-d.ddde+XX".
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  bool negative = sci[0] == '-';
  if (negative) sci.erase(0, 1);
  size_t e = sci.find('e');
  std::string digits;
  for (size_t i = 0; i < e; ++i) {
    if (sci[i] != '.') digits += sci[i];
  }
  int exponent = std::stoi(sci.substr(e + 1));
  int decpt = exponent + 1;  // position of the decimal point relative to the first digit
  std::string out = negative ? "-" : "";
  // Python's repr switches to exponent notation outside 1e-4 <= |d| < 1e16.
  if (decpt <= -4 || decpt > 16) {
    out += digits[0];
    if (digits.size() > 1) out += "." + digits.substr(1);
    char expbuf[16];
    std::snprintf(expbuf, sizeof expbuf, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    out += expbuf;
  } else if (decpt <= 0) {
    out += "0." + std::string(size_t(-decpt), '0') + digits;
  } else if (size_t(decpt) >= digits.size()) {
    out += digits + std::string(size_t(decpt) - digits.size(), '0') + ".0";
  } else {
    out += digits.substr(0, size_t(decpt)) + "." + digits.substr(size_t(decpt));
  }
  return out;
}

namespace {

// Decodes the code point at s[i] (invalid bytes decode as themselves, one byte each).
char32_t decode_at(std::string_view s, size_t i, size_t* length) {
  utf8proc_int32_t cp = -1;
  auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                            utf8proc_ssize_t(s.size() - i), &cp);
  if (n <= 0 || cp < 0) {
    *length = 1;
    return char32_t(static_cast<unsigned char>(s[i]));
  }
  *length = size_t(n);
  return char32_t(cp);
}

// Python's str.isprintable() for one code point.
bool python_printable(char32_t cp) {
  if (cp == ' ') return true;
  if (cp < 0x20 || cp == 0x7f) return false;
  if (cp < 0x7f) return true;
  switch (utf8proc_category(utf8proc_int32_t(cp))) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
    case UTF8PROC_CATEGORY_ZS:
      return false;
    default:
      return true;
  }
}

std::string string_repr(std::string_view s) {
  bool has_single = s.find('\'') != std::string_view::npos;
  bool has_double = s.find('"') != std::string_view::npos;
  char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, quote);
  for (size_t i = 0; i < s.size();) {
    size_t n;
    char32_t cp = decode_at(s, i, &n);
    if (cp == char32_t(quote) || cp == '\\') {
      out += '\\';
      out += char(cp);
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (!python_printable(cp)) {
      char buf[16];
      if (cp <= 0xff)
        std::snprintf(buf, sizeof buf, "\\x%02x", unsigned(cp));
      else if (cp <= 0xffff)
        std::snprintf(buf, sizeof buf, "\\u%04x", unsigned(cp));
      else
        std::snprintf(buf, sizeof buf, "\\U%08x", unsigned(cp));
      out += buf;
    } else {
      out.append(s.substr(i, n));
    }
    i += n;
  }
  out += quote;
  return out;
}

void repr_into(const Value& v, std::string& out);

void repr_into(const Value& v, std::string& out) {
  using K = Value::Kind;
  switch (v.kind()) {
    case K::String:
      out += string_repr(v.str());
      return;
    case K::List: {
      const auto& d = v.list_data();
      out += d.tuple ? '(' : '[';
      for (size_t i = 0; i < d.items.size(); ++i) {
        if (i) out += ", ";
        repr_into(d.items[i], out);
      }
      if (d.tuple && d.items.size() == 1) out += ',';
      out += d.tuple ? ')' : ']';
      return;
    }
    case K::Dict: {
      out += '{';
      bool first = true;
      for (const auto& [k, val] : v.dict_data().items) {
        if (!first) out += ", ";
        first = false;
        repr_into(k, out);
        out += ": ";
        repr_into(val, out);
      }
      out += '}';
      return;
    }
    case K::Undefined:
      out += "Undefined";
      return;
    default:
      out += to_str(v);
      return;
  }
}

}  // namespace

std::string to_str(const Value& v) {
  using K = Value::Kind;
  switch (v.kind()) {
    case K::Undefined:
      return "";
    case K::None:
      return "None";
    case K::Bool:
      return v.as_bool() ? "True" : "False";
    case K::Int:
      return std::to_string(v.as_int());
    case K::Float:
      return float_repr(v.as_double());
    case K::String:
      return v.str();
    case K::List:
    case K::Dict:
      return to_repr(v);
    case K::Function:
      return "<function " + v.function_data().name + ">";
    case K::Object: {
      const auto& o = v.object_data();
      std::string out = "<" + o.kind + " {";
      bool first = true;
      for (const auto& [k, val] : o.attributes) {
        if (val.is_function()) continue;
        if (!first) out += ", ";
        first = false;
        out += string_repr(k) + ": " + to_repr(val);
      }
      return out + "}>";
    }
  }
  return "";
}

std::string to_repr(const Value& v) {
  std::string out;
  repr_into(v, out);
  return out;
}

// ---------------------------------------------------------------------------------------------
// JSON (Python json.dumps)

namespace {

std::string json_float(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d < 0 ? "-Infinity" : "Infinity";
  return float_repr(d);
}

struct JsonWriter {
  const JsonOptions& o;
  std::string item_sep, key_sep, indent_unit;
  bool indented;

  explicit JsonWriter(const JsonOptions& options) : o(options) {
    indented = o.indent >= 0 || !o.indent_string.empty();
    indent_unit =
        o.indent_string.empty() ? std::string(size_t(std::max(o.indent, 0)), ' ') : o.indent_string;
    if (o.separators_given) {
      item_sep = o.item_separator;
      key_sep = o.key_separator;
    } else {
      item_sep = indented ? "," : ", ";
      key_sep = ": ";
    }
  }

  void newline(int level, std::string& out) const {
    out += '\n';
    for (int i = 0; i < level; ++i) out += indent_unit;
  }

  std::string key_text(const Value& k) const {
    switch (k.kind()) {
      case Value::Kind::String:
        return k.str();
      case Value::Kind::Int:
        return std::to_string(k.as_int());
      case Value::Kind::Bool:
        return k.as_bool() ? "true" : "false";
      case Value::Kind::None:
        return "null";
      case Value::Kind::Float:
        return json_float(k.as_double());
      default:
        throw EvalError("keys must be str, int, float, bool or None, not " + k.type_name());
    }
  }

  void write(const Value& v, int level, std::string& out) const {
    using K = Value::Kind;
    switch (v.kind()) {
      case K::None:
        out += "null";
        return;
      case K::Bool:
        out += v.as_bool() ? "true" : "false";
        return;
      case K::Int:
        out += std::to_string(v.as_int());
        return;
      case K::Float:
        out += json_float(v.as_double());
        return;
      case K::String:
        append_python_json_string(out, v.str(), o.ensure_ascii);
        return;
      case K::List: {
        const auto& items = v.items();
        if (items.empty()) {
          out += "[]";
          return;
        }
        out += '[';
        for (size_t i = 0; i < items.size(); ++i) {
          if (i) out += item_sep;
          if (indented) newline(level + 1, out);
          write(items[i], level + 1, out);
        }
        if (indented) newline(level, out);
        out += ']';
        return;
      }
      case K::Dict: {
        std::vector<const std::pair<Value, Value>*> entries;
        for (const auto& kv : v.dict_data().items) entries.push_back(&kv);
        if (entries.empty()) {
          out += "{}";
          return;
        }
        if (o.sort_keys) {
          std::stable_sort(entries.begin(), entries.end(),
                           [](auto* a, auto* b) { return less_than(a->first, b->first); });
        }
        out += '{';
        for (size_t i = 0; i < entries.size(); ++i) {
          if (i) out += item_sep;
          if (indented) newline(level + 1, out);
          append_python_json_string(out, key_text(entries[i]->first), o.ensure_ascii);
          out += key_sep;
          write(entries[i]->second, level + 1, out);
        }
        if (indented) newline(level, out);
        out += '}';
        return;
      }
      default:
        throw EvalError("Object of type " + v.type_name() + " is not JSON serializable");
    }
  }
};

}  // namespace

std::string to_json(const Value& v, const JsonOptions& options) {
  std::string out;
  JsonWriter(options).write(v, 0, out);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Provenance

std::vector<Provenance> slice_provenance(const StringData& s, size_t begin, size_t end) {
  std::vector<Provenance> out;
  for (const auto& p : s.provenance) {
    size_t b = std::max<size_t>(p.begin, begin), e = std::min<size_t>(p.end, end);
    if (b < e) out.push_back({uint32_t(b - begin), uint32_t(e - begin), p.tag});
  }
  return out;
}

void append_string(StringData& out, const StringData& piece) {
  uint32_t offset = uint32_t(out.text.size());
  out.text += piece.text;
  for (const auto& p : piece.provenance) {
    Provenance shifted{p.begin + offset, p.end + offset, p.tag};
    if (!out.provenance.empty() && out.provenance.back().tag == p.tag &&
        out.provenance.back().end == shifted.begin) {
      out.provenance.back().end = shifted.end;  // keep contiguous copies as one range
    } else {
      out.provenance.push_back(shifted);
    }
  }
}

void append_string(StringData& out, std::string_view text) {
  out.text.append(text);
}

Value substring(const Value& v, size_t begin, size_t end) {
  const StringData& s = v.string_data();
  if (begin == 0 && end == s.text.size()) return v;
  StringData out{s.text.substr(begin, end - begin), {}, s.markup};
  if (!s.provenance.empty()) out.provenance = slice_provenance(s, begin, end);
  return Value(std::move(out));
}

Value html_escape(const Value& v) {
  if (v.is_markup()) return v;
  Value s = v.is_string() ? v : Value(to_str(v));
  const std::string& text = s.str();
  StringData out;
  out.markup = true;
  size_t start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char* entity = nullptr;
    switch (text[i]) {
      case '&':
        entity = "&amp;";
        break;
      case '<':
        entity = "&lt;";
        break;
      case '>':
        entity = "&gt;";
        break;
      case '"':
        entity = "&#34;";
        break;
      case '\'':
        entity = "&#39;";
        break;
      default:
        break;
    }
    if (!entity) continue;
    append_string(out, substring(s, start, i).string_data());
    out.text += entity;
    start = i + 1;
  }
  append_string(out, substring(s, start, text.size()).string_data());
  return Value(std::move(out));
}

Value with_markup(const Value& v, bool markup) {
  if (v.string_data().markup == markup) return v;
  StringData d = v.string_data();
  d.markup = markup;
  return Value(std::move(d));
}

}  // namespace seqit::chat::jinja
