#include "util/json_io.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/file_io.h"
#include "util/utf8.h"

namespace seqit {
namespace fs = std::filesystem;
using nlohmann::json;

std::string clean_json_error(std::string_view what) {
  // "[json.exception.parse_error.101] parse error at line 1, column 5: syntax error while ..."
  std::string_view s = what;
  if (s.starts_with("[json.exception.")) {
    auto close = s.find("] ");
    if (close != std::string_view::npos) s.remove_prefix(close + 2);
  }
  if (s.starts_with("parse error")) {
    auto colon = s.find(": ");
    if (colon != std::string_view::npos) s.remove_prefix(colon + 2);
  }
  return std::string(s);
}

namespace {
// Position of byte `offset` (0-based) in a file, computed by streaming it (for errors only).
TextPosition position_in_file(const fs::path& path, size_t offset) {
  std::ifstream in(path, std::ios::binary);
  TextPosition pos;
  size_t i = 0;
  char c;
  while (i < offset && in.get(c)) {
    if (c == '\n') {
      ++pos.line;
      pos.column = 1;
    } else {
      ++pos.column;
    }
    ++i;
  }
  return pos;
}
}  // namespace

std::optional<size_t> json_too_deep(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"')
      in_string = true;
    else if (c == '[' || c == '{') {
      if (++depth > max_depth) return i;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return std::nullopt;
}

json parse_json(std::string_view text, const std::string& source) {
  if (auto at = json_too_deep(text)) {
    TextPosition p = position_of_offset(text, *at);
    throw Error(fmt::format("JSON nested deeper than {} levels", kMaxJsonDepth))
        .in_file(source)
        .at_line(p.line, p.column);
  }
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::out_of_range& e) {
    throw Error("invalid JSON: " + clean_json_error(e.what())).in_file(source);
  } catch (const json::parse_error& e) {
    size_t off = e.byte > 0 ? e.byte - 1 : 0;
    TextPosition p = position_of_offset(text, off);
    throw Error("invalid JSON: " + clean_json_error(e.what()))
        .in_file(source)
        .at_line(p.line, p.column);
  }
}

json read_json_file(const fs::path& path) {
  return parse_json(read_file(path), path.string());
}

namespace {
template <typename Json>
void for_each_array_element(const fs::path& path,
                            const std::function<void(Json&&, int64_t)>& visit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("cannot open: {}", std::strerror(errno))).in_file(path.string());
  // `index` is the element being parsed or visited; it advances only after visit() returns, so an
  // error thrown by visit() is reported against the element it was given.
  int64_t index = 0;
  bool top_is_array = false;
  typename Json::parser_callback_t cb = [&](int depth, typename Json::parse_event_t event,
                                            Json& parsed) -> bool {
    using Event = typename Json::parse_event_t;
    if (depth > kMaxJsonDepth)
      throw Error(fmt::format("JSON nested deeper than {} levels", kMaxJsonDepth));
    if (depth == 0 && event == Event::array_start) top_is_array = true;
    if (depth == 0 && (event == Event::object_start || event == Event::value)) {
      return true;  // not an array: reported after parsing
    }
    // Elements of the top-level array end at depth 1: hand them over and drop them from the tree.
    if (depth == 1 && top_is_array &&
        (event == Event::object_end || event == Event::array_end || event == Event::value)) {
      visit(std::move(parsed), index);
      ++index;
      return false;
    }
    return true;
  };
  try {
    Json rest = Json::parse(in, cb);
    if (!top_is_array) {
      throw Error(fmt::format("expected a JSON array of records at the top level, found {}",
                              rest.type_name()))
          .in_file(path.string())
          .at_line(1, 1);
    }
  } catch (const typename Json::out_of_range& e) {
    throw Error("invalid JSON: " + clean_json_error(e.what()))
        .in_file(path.string())
        .at_record(index);
  } catch (const typename Json::parse_error& e) {
    TextPosition p = position_in_file(path, e.byte > 0 ? e.byte - 1 : 0);
    throw Error("invalid JSON: " + clean_json_error(e.what()))
        .in_file(path.string())
        .at_line(p.line, p.column)
        .at_record(index);
  } catch (Error& e) {
    // Errors raised by `visit` get the file and record index if they lack them.
    e.add_context(ErrorContext{path.string(), 0, 0, index, ""});
    throw;
  }
}
}  // namespace

void for_each_json_array_element(const fs::path& path,
                                 const std::function<void(json&&, int64_t)>& visit) {
  for_each_array_element<json>(path, visit);
}

void for_each_ordered_json_array_element(
    const fs::path& path, const std::function<void(nlohmann::ordered_json&&, int64_t)>& visit) {
  for_each_array_element<nlohmann::ordered_json>(path, visit);
}

JsonlReader::JsonlReader(const fs::path& path) : path_(path.string()) {
  file_ = std::fopen(path.c_str(), "rb");
  if (!file_) throw Error(fmt::format("cannot open: {}", std::strerror(errno))).in_file(path_);
}

JsonlReader::~JsonlReader() {
  if (file_) std::fclose(file_);
  std::free(buf_);
}

std::string_view JsonlReader::raw_line() const {
  if (len_ <= 0) return {};
  size_t n = static_cast<size_t>(len_);
  if (n > 0 && buf_[n - 1] == '\n') --n;
  if (n > 0 && buf_[n - 1] == '\r') --n;
  return {buf_, n};
}

bool JsonlReader::next(json& out) {
  return next_impl(out);
}
bool JsonlReader::next(nlohmann::ordered_json& out) {
  return next_impl(out);
}

template <typename Json>
bool JsonlReader::next_impl(Json& out) {
  for (;;) {
    len_ = ::getline(&buf_, &cap_, file_);
    if (len_ < 0) {
      if (std::ferror(file_)) throw Error("read error").in_file(path_).at_line(line_ + 1);
      return false;
    }
    ++line_;
    std::string_view text = raw_line();
    if (text.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    ++record_;
    bool has_newline = buf_[len_ - 1] == '\n';
    if (auto at = json_too_deep(text))
      throw Error(fmt::format("JSON nested deeper than {} levels", kMaxJsonDepth))
          .in_file(path_)
          .at_line(line_, static_cast<int64_t>(*at) + 1)
          .at_record(record_);
    try {
      out = Json::parse(text.begin(), text.end());
      return true;
    } catch (const typename Json::out_of_range& e) {
      throw Error("invalid JSON: " + clean_json_error(e.what()))
          .in_file(path_)
          .at_line(line_)
          .at_record(record_);
    } catch (const typename Json::parse_error& e) {
      std::string msg = "invalid JSON: " + clean_json_error(e.what());
      if (!has_newline) msg += " (the last line is incomplete: the file looks truncated)";
      throw Error(msg)
          .in_file(path_)
          .at_line(line_, e.byte > 0 ? static_cast<int64_t>(e.byte) : 0)
          .at_record(record_);
    }
  }
}

std::string to_json_line(const json& value) {
  try {
    return value.dump(-1, ' ', false, json::error_handler_t::strict);
  } catch (const json::type_error& e) {
    throw Error("cannot write JSON: " + clean_json_error(e.what()));
  }
}

std::string to_pretty_json(const json& value) {
  try {
    return value.dump(2, ' ', false, json::error_handler_t::strict) + "\n";
  } catch (const json::type_error& e) {
    throw Error("cannot write JSON: " + clean_json_error(e.what()));
  }
}

void append_python_json_string(std::string& out, std::string_view s, bool ensure_ascii) {
  static constexpr char kHex[] = "0123456789abcdef";
  auto put_u = [&](uint32_t unit) {
    out += "\\u";
    for (int shift = 12; shift >= 0; shift -= 4) out.push_back(kHex[(unit >> shift) & 0xF]);
  };
  out.push_back('"');
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        case '\b':
          out += "\\b";
          break;
        case '\f':
          out += "\\f";
          break;
        default:
          // Python escapes other control characters, and with ensure_ascii also DEL.
          if (c < 0x20 || (ensure_ascii && c == 0x7F)) {
            put_u(c);
          } else {
            out.push_back(static_cast<char>(c));
          }
      }
      ++i;
      continue;
    }
    size_t len = utf8::sequence_length(c);
    if (i + len > s.size() || !utf8::is_valid(s.substr(i, len))) len = 1;  // a stray byte
    if (!ensure_ascii) {
      out.append(s, i, len);
    } else if (len == 1) {
      put_u(c);
    } else {
      uint32_t cp = c & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
      for (size_t k = 1; k < len; ++k)
        cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
      if (cp > 0xFFFF) {
        cp -= 0x10000;
        put_u(0xD800 + (cp >> 10));
        put_u(0xDC00 + (cp & 0x3FF));
      } else {
        put_u(cp);
      }
    }
    i += len;
  }
  out.push_back('"');
}

}  // namespace seqit
