// Writing records in any format: whole files (atomic: the target appears complete or not at all)
// and resumable JSONL outputs for long jobs (a rerun keeps every complete record and skips ids that
// are already there).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "data/format.h"
#include "data/record.h"

namespace seqit {
class AtomicFileWriter;
class ResumableJsonlWriter;
}  // namespace seqit

namespace seqit::data {

// JSON text layout. The defaults write what Python's json.dumps(record, ensure_ascii=False) writes;
// with ascii=true, what json.dumps(record) writes. Files produced by Python can thus be reproduced
// byte for byte.
struct WriteOptions {
  bool ascii = false;  // escape every non-ASCII character as \uXXXX (surrogate pairs above U+FFFF)
  int indent = -1;     // JSON arrays: -1 = the whole array on one line; n >= 0 = indent by n spaces
  bool final_newline = true;  // end the file with a newline (Python's json.dump does not)
};

// The text of one record in `format`: a JSON object (one line unless indent >= 0 in a JSON array)
// or a TSV row, without a trailing newline. Throws seqit::Error (naming the field) when the record
// cannot be represented in the format, e.g. a multi-turn conversation as Alpaca.
std::string encode_record(const Record& record, Format format, const WriteOptions& options = {});

// Writes a whole file of records in `format`. Nothing appears at `path` until commit(); a writer
// destroyed before that (an error, Ctrl-C) leaves any existing file untouched.
class RecordFileWriter {
 public:
  RecordFileWriter(std::filesystem::path path, Format format, WriteOptions options = {});
  ~RecordFileWriter();
  RecordFileWriter(const RecordFileWriter&) = delete;
  RecordFileWriter& operator=(const RecordFileWriter&) = delete;

  // Encodes and writes one record. A record that cannot be represented throws before anything is
  // written, so the caller may skip it and go on.
  void write(const Record& record) { write_encoded(encode(record)); }
  // The two halves of write(): encode() throws only for records the format cannot hold;
  // write_encoded() throws only for I/O errors.
  std::string encode(const Record& record) const;
  void write_encoded(std::string_view text);
  void commit();
  int64_t records() const { return records_; }
  Format format() const { return format_; }

 private:
  std::unique_ptr<AtomicFileWriter> file_;
  Format format_;
  WriteOptions options_;
  int64_t records_ = 0;
};

// An append-only JSON-lines output that survives crashes: reopening keeps every complete record,
// drops a torn last line, and knows which ids are done. Records must have non-empty ids.
class RecordAppender {
 public:
  // `format` must use the jsonl container. fresh=true starts the file over.
  RecordAppender(std::filesystem::path path, Format format, WriteOptions options = {},
                 bool fresh = false);
  ~RecordAppender();
  RecordAppender(const RecordAppender&) = delete;
  RecordAppender& operator=(const RecordAppender&) = delete;

  bool contains(const std::string& id) const;
  int64_t resumed_records() const;
  int64_t dropped_bytes() const;
  int64_t records() const;
  // Appends one record (throws if its id is empty or already written).
  void append(const Record& record);
  void sync();

 private:
  std::unique_ptr<ResumableJsonlWriter> out_;
  Format format_;
  WriteOptions options_;
};

}  // namespace seqit::data
