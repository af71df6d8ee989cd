#include "util/error.h"

#include <fmt/format.h>

namespace seqit {

void ErrorContext::fill_from(const ErrorContext& outer) {
  if (file.empty()) file = outer.file;
  if (line == 0) {
    line = outer.line;
    if (column == 0) column = outer.column;
  }
  if (record < 0) record = outer.record;
  if (field.empty()) field = outer.field;
}

std::string ErrorContext::location() const {
  std::string out = file;
  if (line > 0) {
    out += fmt::format("{}{}", out.empty() ? "line " : ":", line);
    if (column > 0) out += fmt::format(":{}", column);
  }
  std::string detail;
  if (record >= 0) detail = fmt::format("record {}", record);
  if (!field.empty()) {
    if (!detail.empty()) detail += ", ";
    detail += fmt::format("field '{}'", field);
  }
  if (!detail.empty()) out += out.empty() ? detail : ": " + detail;
  return out;
}

Error::Error(std::string message, ErrorContext context)
    : message_(std::move(message)), context_(std::move(context)) {
  refresh();
}

Error& Error::in_file(std::string file) {
  context_.file = std::move(file);
  refresh();
  return *this;
}

Error& Error::at_line(int64_t line, int64_t column) {
  context_.line = line;
  context_.column = column;
  refresh();
  return *this;
}

Error& Error::at_record(int64_t record) {
  context_.record = record;
  refresh();
  return *this;
}

Error& Error::in_field(std::string field) {
  context_.field = std::move(field);
  refresh();
  return *this;
}

Error& Error::add_context(const ErrorContext& outer) {
  context_.fill_from(outer);
  refresh();
  return *this;
}

void Error::refresh() {
  std::string where = context_.location();
  text_ = where.empty() ? message_ : where + ": " + message_;
}

}  // namespace seqit
