// Errors that carry where they happened (file, line, column, record, field) up to the CLI,
// which prints them once. Libraries throw seqit::Error; they never print or exit.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace seqit {

struct ErrorContext {
  std::string file;     // path of the input or output concerned; empty when none
  int64_t line = 0;     // 1-based; 0 = not known
  int64_t column = 0;   // 1-based byte column; 0 = not known
  int64_t record = -1;  // 0-based record index in its file; -1 = not known
  std::string field;    // JSON key / column name; empty when none

  // Copies every piece of `outer` that this context lacks (inner context wins).
  void fill_from(const ErrorContext& outer);
  // "path:12:5: record 11, field 'output'" (only the known parts); empty when nothing is known.
  std::string location() const;
};

class Error : public std::exception {
 public:
  explicit Error(std::string message, ErrorContext context = {});

  const std::string& message() const noexcept { return message_; }
  const ErrorContext& context() const noexcept { return context_; }
  // The full, printable text: "<location>: <message>".
  const char* what() const noexcept override { return text_.c_str(); }

  // Builders, for `throw Error("...").in_file(p).at_line(3);`.
  Error& in_file(std::string file);
  Error& at_line(int64_t line, int64_t column = 0);
  Error& at_record(int64_t record);
  Error& in_field(std::string field);
  // Adds outer context (e.g. the file name known only to the caller) without overriding inner
  // detail.
  Error& add_context(const ErrorContext& outer);

 private:
  void refresh();
  std::string message_;
  ErrorContext context_;
  std::string text_;
};

}  // namespace seqit
