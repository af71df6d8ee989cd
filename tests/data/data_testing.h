// Helpers shared by the data tests.
#pragma once

#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

#include "data/reader.h"
#include "data/record.h"
#include "util/error.h"

namespace seqit::data {
// Readable gtest failure messages.
inline void PrintTo(const Message& m, std::ostream* os) {
  *os << "{" << m.role << ": \"" << m.content << "\""
      << (m.meta.empty() ? "" : " meta " + m.meta.dump()) << "}";
}
inline void PrintTo(const Instruction& r, std::ostream* os) {
  *os << "{id \"" << r.id << "\", system \"" << r.system << "\", instruction \"" << r.instruction
      << "\", input \"" << r.input << "\", output \"" << r.output << "\", meta " << r.meta.dump()
      << "}";
}
}  // namespace seqit::data

namespace seqit::data::test {

inline const Instruction& as_instruction(const Record& r) {
  return std::get<Instruction>(r);
}
inline const Conversation& as_conversation(const Record& r) {
  return std::get<Conversation>(r);
}

// The error read_all() throws for `path` (fails the test when there is none).
inline Error read_error(const std::filesystem::path& path, const ReadOptions& options = {}) {
  try {
    read_all(path, options);
  } catch (const Error& e) {
    return e;
  }
  throw std::runtime_error("expected a seqit::Error reading " + path.string());
}

// ReadOptions with --from set / with --on-error skip.
inline ReadOptions from(std::string_view format) {
  ReadOptions options;
  options.from = parse_format_request(format);
  return options;
}
inline ReadOptions skipping() {
  ReadOptions options;
  options.on_error = OnError::skip;
  return options;
}

inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace seqit::data::test
