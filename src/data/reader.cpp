#include "data/reader.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>

#include "data/codec.h"
#include "util/json_io.h"
#include "util/progress.h"

namespace seqit::data {
namespace fs = std::filesystem;
using codec::Json;

OnError parse_on_error(std::string_view name) {
  if (name == "stop") return OnError::stop;
  if (name == "skip") return OnError::skip;
  throw Error(fmt::format("unknown --on-error policy '{}' (expected stop or skip)", name));
}

void BadRecords::add(const Error& error) {
  ++count;
  if (first.size() < keep) first.push_back(error);
}

std::string BadRecords::summary() const {
  if (count == 0) return {};
  std::string out = fmt::format("{} bad record{} skipped", count, count == 1 ? "" : "s");
  for (size_t i = 0; i < first.size(); ++i) {
    out += fmt::format("\n  {}", first[i].what());
  }
  if (count > static_cast<int64_t>(first.size())) {
    out += fmt::format("\n  ... and {} more", count - static_cast<int64_t>(first.size()));
  }
  return out;
}

namespace {

struct StopAfterDetection {};

// Detects the container from the first bytes (see read_records). nullopt for an empty file.
std::optional<Container> sniff_container(const fs::path& path) {
  if (path.extension() == ".tsv") return Container::tsv;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("cannot open: {}", std::strerror(errno))).in_file(path.string());
  std::string head(64 << 10, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(in.gcount()));
  size_t i = head.starts_with("\xEF\xBB\xBF") ? 3 : 0;
  while (i < head.size() &&
         (head[i] == ' ' || head[i] == '\n' || head[i] == '\r' || head[i] == '\t')) {
    ++i;
  }
  if (i == head.size()) return std::nullopt;
  if (head[i] == '[') return Container::json;
  if (head[i] == '{') return Container::jsonl;
  std::string_view first_line = std::string_view(head).substr(0, head.find('\n'));
  if (first_line.find('\t') != std::string_view::npos) return Container::tsv;
  throw Error(
      "cannot tell the format: the file starts with neither '[' (a JSON array) nor '{' (JSON "
      "lines), "
      "and its first line has no tab (FlanCoT TSV)")
      .in_file(path.string())
      .at_line(1, 1);
}

class RecordStream {
 public:
  RecordStream(const fs::path& path, const ReadOptions& options, const RecordVisitor& visit,
               bool detect_only)
      : path_(path), options_(options), visit_(visit), detect_only_(detect_only) {
    report_.bad.keep = options.report_errors;
  }

  ReadReport run() {
    std::optional<Container> container;
    if (options_.from && options_.from->container) {
      container = options_.from->container;
    } else {
      container = sniff_container(path_);
    }
    if (options_.from) {
      schema_ = options_.from->schema;
      if (!container)
        container = options_.from->schema == Schema::flancot && path_.extension() == ".tsv"
                        ? Container::tsv
                        : Container::jsonl;
      if (!schema_supports(*schema_, *container)) {
        throw Error(fmt::format("{} records cannot be read from a {} file", schema_name(*schema_),
                                container_name(*container)))
            .in_file(path_.string());
      }
    }
    if (!container) {
      throw Error("the file is empty: there is no record to detect the format from (give --from)")
          .in_file(path_.string());
    }
    container_ = *container;
    if (container_ == Container::tsv) schema_ = Schema::flancot;
    if (detect_only_ && schema_) {
      report_.format = {*schema_, container_};
      return std::move(report_);
    }

    std::error_code ec;
    auto size = fs::file_size(path_, ec);
    if (!options_.progress_label.empty() && !ec &&
        static_cast<int64_t>(size) >= options_.progress_min_bytes) {
      progress_ = std::make_unique<Progress>(options_.progress_label, -1, "records");
    }
    try {
      switch (container_) {
        case Container::jsonl:
          read_jsonl();
          break;
        case Container::json:
          read_json_array();
          break;
        case Container::tsv:
          read_tsv();
          break;
      }
    } catch (const StopAfterDetection&) {
    }
    if (progress_) progress_->finish();
    if (!schema_) {
      throw Error("no record to detect the format from (give --from)").in_file(path_.string());
    }
    report_.format = {*schema_, container_};
    return std::move(report_);
  }

 private:
  void handle_bad(Error error) {
    if (options_.on_error == OnError::stop) throw error;
    report_.bad.add(error);
    if (progress_) progress_->add();
  }

  void deliver(Record&& record, const ErrorContext& where) {
    ++report_.records;
    if (progress_) progress_->add();
    visit_(std::move(record), where);
  }

  std::string expected() const {
    return fmt::format("expected {} records {}", format_name({*schema_, container_}),
                       codec::expected_fields(*schema_, container_));
  }

  void process(Json&& object, const ErrorContext& where) {
    if (!schema_) {
      std::optional<Schema> guess = codec::guess_schema(object);
      if (!guess) {
        std::string what;
        if (object.is_object()) {
          std::vector<std::string> keys;
          for (auto it = object.begin(); it != object.end(); ++it) keys.push_back(it.key());
          what = fmt::format("a record with fields {{{}}}", fmt::join(keys, ", "));
        } else {
          what = fmt::format("a JSON {} instead of an object", object.type_name());
        }
        throw Error(
            fmt::format("unknown format: found {}; expected one of these (or give --from):\n{}",
                        what, formats_help()))
            .add_context(where);
      }
      if (!schema_supports(*guess, container_)) {
        throw Error(fmt::format("{} records cannot be read from a {} file", schema_name(*guess),
                                container_name(container_)))
            .add_context(where);
      }
      schema_ = guess;
      detected_from_ = where.record;
      if (detect_only_) throw StopAfterDetection{};
    }
    std::optional<Schema> looks_like = codec::guess_schema(object);
    Record record;
    try {
      record = codec::decode(*schema_, std::move(object));
    } catch (const Error& e) {
      std::string message = fmt::format("{}; {}", e.message(), expected());
      if (looks_like && *looks_like != *schema_) {
        message += fmt::format(
            " (this record looks like {} instead: mixed formats? {}; --from chooses one)",
            schema_name(*looks_like),
            detected_from_ >= 0
                ? fmt::format("the format was detected from record {}", detected_from_)
                : std::string("the format was given with --from"));
      }
      Error error(message, e.context());
      error.add_context(where);
      handle_bad(std::move(error));
      return;
    }
    deliver(std::move(record), where);
  }

  void read_jsonl() {
    JsonlReader reader(path_);
    for (;;) {
      Json object;
      try {
        if (!reader.next(object)) break;
      } catch (const Error& e) {
        handle_bad(e);  // a line that is not JSON; the reader goes on with the next line
        continue;
      }
      process(std::move(object),
              ErrorContext{path_.string(), reader.line(), 0, reader.record(), ""});
    }
  }

  void read_json_array() {
    for_each_ordered_json_array_element(path_, [&](Json&& element, int64_t index) {
      process(std::move(element), ErrorContext{path_.string(), 0, 0, index, ""});
    });
  }

  // One example per line, as FLAN's TextLineDataset reads it; blank lines are skipped and a
  // trailing carriage return (CRLF files) is dropped.
  void read_tsv() {
    std::ifstream in(path_, std::ios::binary);
    if (!in)
      throw Error(fmt::format("cannot open: {}", std::strerror(errno))).in_file(path_.string());
    std::string line;
    int64_t line_number = 0, record = -1;
    while (std::getline(in, line)) {
      ++line_number;
      bool ended_with_newline = !in.eof();
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) continue;
      ++record;
      ErrorContext where{path_.string(), line_number, 0, record, ""};
      Record decoded;
      try {
        decoded = codec::decode_flancot_tsv(line);
      } catch (const Error& e) {
        std::string message = fmt::format("{}; {}", e.message(), expected());
        if (!ended_with_newline)
          message += " (the last line has no newline: the file may be truncated)";
        Error error(message, e.context());
        error.add_context(where);
        handle_bad(std::move(error));
        continue;
      }
      deliver(std::move(decoded), where);
    }
    if (in.bad()) throw Error("read error").in_file(path_.string()).at_line(line_number + 1);
  }

  fs::path path_;
  const ReadOptions& options_;
  const RecordVisitor& visit_;
  bool detect_only_;
  Container container_ = Container::jsonl;
  std::optional<Schema> schema_;
  int64_t detected_from_ = -1;
  ReadReport report_;
  std::unique_ptr<Progress> progress_;
};

}  // namespace

ReadReport read_records(const fs::path& path, const ReadOptions& options,
                        const RecordVisitor& visit) {
  return RecordStream(path, options, visit, false).run();
}

std::vector<Record> read_all(const fs::path& path, const ReadOptions& options) {
  std::vector<Record> records;
  read_records(path, options,
               [&](Record&& r, const ErrorContext&) { records.push_back(std::move(r)); });
  return records;
}

Format detect_format(const fs::path& path, const std::optional<FormatRequest>& from) {
  ReadOptions options;
  options.from = from;
  options.on_error = OnError::skip;
  RecordVisitor ignore = [](Record&&, const ErrorContext&) {};
  return RecordStream(path, options, ignore, true).run().format;
}

}  // namespace seqit::data
