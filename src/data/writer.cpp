#include "data/writer.h"

#include <fmt/format.h>

#include "data/codec.h"
#include "util/error.h"
#include "util/file_io.h"
#include "util/jsonl_writer.h"

namespace seqit::data {
namespace fs = std::filesystem;

namespace {
// JSON-lines records are always one line, whatever the indent asked for JSON arrays.
WriteOptions line_style(WriteOptions options) {
  options.indent = -1;
  return options;
}

std::string encode_at_level(const Record& record, Format format, const WriteOptions& options,
                            int level) {
  if (!schema_supports(format.schema, format.container)) {
    throw Error(fmt::format("{} records cannot be written as {}", schema_name(format.schema),
                            container_name(format.container)));
  }
  if (format.container == Container::tsv) return codec::encode_flancot_tsv(record);
  std::string out;
  codec::dump(codec::encode(format.schema, record),
              format.container == Container::jsonl ? line_style(options) : options, level, out);
  return out;
}
}  // namespace

std::string encode_record(const Record& record, Format format, const WriteOptions& options) {
  return encode_at_level(record, format, options, 0);
}

RecordFileWriter::RecordFileWriter(fs::path path, Format format, WriteOptions options)
    : file_(std::make_unique<AtomicFileWriter>(std::move(path))),
      format_(format),
      options_(options) {
  if (!schema_supports(format.schema, format.container)) {
    throw Error(fmt::format("{} records cannot be written as {}", schema_name(format.schema),
                            container_name(format.container)))
        .in_file(file_->path().string());
  }
}

RecordFileWriter::~RecordFileWriter() = default;

std::string RecordFileWriter::encode(const Record& record) const {
  return encode_at_level(record, format_, options_, format_.container == Container::json ? 1 : 0);
}

void RecordFileWriter::write_encoded(std::string_view text) {
  // JSON arrays follow Python's json.dump layout: "[a, b]" on one line, or with indent n
  // "[\n<n spaces>a,\n<n spaces>b\n]". Line formats put the newline before every record but the
  // first, so that commit() decides whether the file ends with one.
  bool array = format_.container == Container::json;
  std::string chunk;
  if (array) {
    chunk = records_ == 0 ? "[" : (options_.indent >= 0 ? "," : ", ");
    if (options_.indent >= 0)
      chunk += "\n" + std::string(static_cast<size_t>(options_.indent), ' ');
  } else if (records_ > 0) {
    chunk = "\n";
  }
  chunk += text;
  file_->write(chunk);
  ++records_;
}

void RecordFileWriter::commit() {
  std::string tail;
  if (format_.container == Container::json)
    tail = records_ == 0 ? "[]" : (options_.indent >= 0 ? "\n]" : "]");
  if (options_.final_newline && (format_.container == Container::json || records_ > 0))
    tail += "\n";
  file_->write(tail);
  file_->commit();
}

RecordAppender::RecordAppender(fs::path path, Format format, WriteOptions options, bool fresh)
    : format_(format), options_(line_style(options)) {
  if (format.container != Container::jsonl) {
    throw Error(fmt::format("a resumable output must be JSON lines, not {}", format_name(format)))
        .in_file(path.string());
  }
  out_ = std::make_unique<ResumableJsonlWriter>(std::move(path), "id", fresh);
}

RecordAppender::~RecordAppender() = default;

bool RecordAppender::contains(const std::string& id) const {
  return out_->has_id(id);
}
int64_t RecordAppender::resumed_records() const {
  return out_->resumed_records();
}
int64_t RecordAppender::dropped_bytes() const {
  return out_->dropped_bytes();
}
int64_t RecordAppender::records() const {
  return out_->records();
}
void RecordAppender::sync() {
  out_->sync();
}

void RecordAppender::append(const Record& record) {
  const std::string& id = record_id(record);
  if (id.empty())
    throw Error("a resumable output needs records with ids").in_file(out_->path().string());
  if (out_->has_id(id)) {
    throw Error(fmt::format("record '{}' is already in the output", id))
        .in_file(out_->path().string());
  }
  out_->append_line(encode_at_level(record, format_, options_, 0), id);
}

}  // namespace seqit::data
