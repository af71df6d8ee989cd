// JSON and JSONL reading and writing with errors that name file, line and column.
// JSONL is streamed line by line (constant memory); a top-level JSON array can be streamed element
// by element. nlohmann::json is only forward-declared here; include <nlohmann/json.hpp> to use
// values.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace seqit {

// Parses a whole JSON document held in memory; `source` names it in errors (a path or "<stdin>").
nlohmann::json parse_json(std::string_view text, const std::string& source);

// How deep JSON read through these functions may nest (Python's json module stops near 1000 too):
// deeper input is an error naming the place, not a stack overflow.
inline constexpr int kMaxJsonDepth = 1000;
// The byte offset where `text` first nests deeper than `max_depth` ([ and { outside strings), or
// nullopt. Linear, no recursion.
std::optional<size_t> json_too_deep(std::string_view text, int max_depth = kMaxJsonDepth);
// Reads and parses a whole JSON file.
nlohmann::json read_json_file(const std::filesystem::path& path);

// Calls `visit(element, index)` for each element of the top-level JSON array in `path`, parsing
// one element at a time, so memory stays bounded by the largest element. Throws if the document
// is not an array, with the position of the first problem.
void for_each_json_array_element(
    const std::filesystem::path& path,
    const std::function<void(nlohmann::json&& element, int64_t index)>& visit);
// The same, keeping each object's keys in file order (for readers that must write records back
// unchanged).
void for_each_ordered_json_array_element(
    const std::filesystem::path& path,
    const std::function<void(nlohmann::ordered_json&& element, int64_t index)>& visit);

// Reads a JSONL file one record at a time. Blank lines are skipped. A line that is not valid JSON
// throws seqit::Error with file, line and column, and the reader stays usable: the next call to
// next() continues with the following line (for --on-error skip).
class JsonlReader {
 public:
  explicit JsonlReader(const std::filesystem::path& path);
  ~JsonlReader();
  JsonlReader(const JsonlReader&) = delete;
  JsonlReader& operator=(const JsonlReader&) = delete;

  // Parses the next record into `out`; returns false at the end of the file.
  bool next(nlohmann::json& out);
  // The same, keeping object keys in file order.
  bool next(nlohmann::ordered_json& out);
  // 1-based line number of the record last returned (or that failed).
  int64_t line() const { return line_; }
  // 0-based index of the record last returned among non-blank lines.
  int64_t record() const { return record_; }
  const std::string& path() const { return path_; }
  // The raw text of the last line read (without its newline).
  std::string_view raw_line() const;

 private:
  template <typename Json>
  bool next_impl(Json& out);
  std::string path_;
  FILE* file_ = nullptr;
  char* buf_ = nullptr;
  size_t cap_ = 0;
  ssize_t len_ = 0;
  int64_t line_ = 0, record_ = -1;
};

// One compact JSON line (no trailing newline), UTF-8 kept as is (no \u escapes).
std::string to_json_line(const nlohmann::json& value);
// Human-readable JSON with 2-space indentation and a trailing newline.
std::string to_pretty_json(const nlohmann::json& value);

// Appends `s` as a JSON string literal exactly as Python's json.dumps writes it (the format chat
// templates' `tojson` and the Python-made dataset files use): \" \\ \n \r \t \b \f, other control
// characters as \u00XX, and with ensure_ascii every non-ASCII code point as \uXXXX (surrogate pairs
// above U+FFFF) and DEL as \u007f. A byte that does not start a valid UTF-8 sequence is copied as
// is
// (\u00XX with ensure_ascii); callers that must not write invalid text check first.
void append_python_json_string(std::string& out, std::string_view s, bool ensure_ascii);

// nlohmann's exception text without its "[json.exception...] parse error at ...:" preamble.
std::string clean_json_error(std::string_view what);

}  // namespace seqit
