// Reading any supported instruction-data file as a stream of records, with format detection and a
// policy for bad records (docs/data.md, "Detection" and "Bad records").
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "data/format.h"
#include "data/record.h"
#include "util/error.h"

namespace seqit::data {

enum class OnError {
  stop,  // the first bad record throws its seqit::Error; nothing after it is read
  skip,  // bad records are counted, the first few kept for the report, and reading goes on
};
// "stop" or "skip"; throws seqit::Error otherwise.
OnError parse_on_error(std::string_view name);

// Bad records met while reading or writing, for --on-error skip reports.
struct BadRecords {
  int64_t count = 0;
  std::vector<Error> first;  // the first few, with their locations
  size_t keep = 5;
  void add(const Error& error);
  // "3 bad records skipped; first: <location>: <message>; ..." (empty when there were none).
  std::string summary() const;
};

struct ReadOptions {
  // --from: the schema (and, if named, the container). nullopt: detect both from the content.
  std::optional<FormatRequest> from;
  OnError on_error = OnError::stop;
  size_t report_errors = 5;  // how many bad-record errors BadRecords keeps
  // Label of the progress bar drawn for inputs of at least progress_min_bytes; empty = none.
  std::string progress_label;
  int64_t progress_min_bytes = 8 << 20;
};

struct ReadReport {
  Format format;
  int64_t records = 0;  // good records handed to the visitor
  BadRecords bad;
};

// `where` gives the file, the 0-based record index and (for line formats) the 1-based line.
using RecordVisitor = std::function<void(Record&& record, const ErrorContext& where)>;

// Streams the records of `path` to `visit` (constant memory for JSONL and TSV; one element at a
// time for JSON arrays). The format is `options.from` or detected: the container from the first
// byte ('[' JSON array, '{' JSON lines; TSV by the .tsv extension or a tab on the first line), the
// schema from the fields of the first record that parses. A later record that does not fit the
// schema is a bad record; its error says so, and names the schema it seems to have instead.
// Always fatal, whatever the policy: an unreadable file, a first record of unknown format, and a
// syntax error inside a JSON array (nothing after it can be located). Errors thrown by `visit`
// propagate unchanged.
ReadReport read_records(const std::filesystem::path& path, const ReadOptions& options,
                        const RecordVisitor& visit);

// All records of a file (stops at the first bad record unless options say skip).
std::vector<Record> read_all(const std::filesystem::path& path, const ReadOptions& options = {});

// The format of `path` as read_records() would detect it (reads until the first parsable record).
Format detect_format(const std::filesystem::path& path,
                     const std::optional<FormatRequest>& from = std::nullopt);

}  // namespace seqit::data
