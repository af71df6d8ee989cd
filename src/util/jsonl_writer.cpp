#include "util/jsonl_writer.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/file_io.h"
#include "util/json_io.h"
#include "util/log.h"

namespace seqit {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {
std::string id_text(const json& v) {
  return v.is_string() ? v.get<std::string>() : v.dump();
}
}  // namespace

std::string ResumableJsonlWriter::id_of(const json& record) const {
  if (id_field_.empty() || !record.is_object()) return {};
  auto it = record.find(id_field_);
  return it == record.end() ? std::string() : id_text(*it);
}

bool ResumableJsonlWriter::has_id_value(const json& id) const {
  return ids_.count(id_text(id)) != 0;
}

ResumableJsonlWriter::ResumableJsonlWriter(fs::path path, std::string id_field, bool fresh)
    : path_(std::move(path)), id_field_(std::move(id_field)) {
  bool exists = fs::exists(path_);
  if (exists && !fresh) {
    // Keep the prefix that ends at the last newline; everything after it is a torn write.
    std::string content = read_file(path_);
    size_t keep = content.rfind('\n');
    keep = keep == std::string::npos ? 0 : keep + 1;
    dropped_bytes_ = static_cast<int64_t>(content.size() - keep);
    int64_t line = 0;
    size_t start = 0;
    while (start < keep) {
      size_t end = content.find('\n', start);
      ++line;
      std::string_view text(content.data() + start, end - start);
      start = end + 1;
      if (text.find_first_not_of(" \t\r") == std::string_view::npos) continue;
      json rec;
      try {
        rec = json::parse(text.begin(), text.end());
      } catch (const json::exception& e) {  // a parse error, or a number out of range (1e999)
        throw Error("cannot resume: a complete line is not valid JSON (" +
                    clean_json_error(e.what()) + "); fix or remove the file")
            .in_file(path_.string())
            .at_line(line);
      }
      ++resumed_records_;
      std::string id = id_of(rec);
      if (!id.empty()) ids_.insert(std::move(id));
    }
    records_ = resumed_records_;
    if (dropped_bytes_ > 0) {
      if (::truncate(path_.c_str(), static_cast<off_t>(keep)) != 0) {
        throw Error(fmt::format("cannot drop the torn last line: {}", std::strerror(errno)))
            .in_file(path_.string());
      }
      log::warn("{}: dropped an incomplete last line ({} bytes) left by an interrupted run",
                path_.string(), dropped_bytes_);
    }
  }
  int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (fresh ? O_TRUNC : 0);
  fd_ = ::open(path_.c_str(), flags, 0644);
  if (fd_ < 0)
    throw Error(fmt::format("cannot open for writing: {}", std::strerror(errno)))
        .in_file(path_.string());
  if (!exists) fsync_directory(path_.parent_path());
}

ResumableJsonlWriter::~ResumableJsonlWriter() {
  if (fd_ >= 0) {
    ::fsync(fd_);
    ::close(fd_);
  }
}

void ResumableJsonlWriter::append(const json& record) {
  append_line(to_json_line(record), id_of(record));
}

void ResumableJsonlWriter::append_line(std::string_view json_line, std::string id) {
  if (json_line.find('\n') != std::string_view::npos) {
    throw Error("cannot append: the encoded record spans more than one line")
        .in_file(path_.string());
  }
  std::string line(json_line);
  line.push_back('\n');
  // One write() per line: with O_APPEND the line lands whole or (on a crash) as a torn tail that
  // the next open drops.
  std::string_view rest = line;
  while (!rest.empty()) {
    ssize_t n = ::write(fd_, rest.data(), rest.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(fmt::format("cannot append: {}", std::strerror(errno))).in_file(path_.string());
    }
    rest.remove_prefix(static_cast<size_t>(n));
  }
  ++records_;
  if (!id.empty()) ids_.insert(std::move(id));
}

void ResumableJsonlWriter::sync() {
  if (fd_ >= 0 && ::fsync(fd_) != 0) {
    throw Error(fmt::format("cannot fsync: {}", std::strerror(errno))).in_file(path_.string());
  }
}

std::vector<std::filesystem::path> jsonl_parts(const std::filesystem::path& out) {
  namespace fs = std::filesystem;
  const fs::path dir = out.parent_path().empty() ? fs::path(".") : out.parent_path();
  const std::string prefix = out.filename().string() + ".part-";
  std::vector<fs::path> parts;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.starts_with(prefix) && name.size() > prefix.size() &&
        name.find_first_not_of("0123456789", prefix.size()) == std::string::npos)
      parts.push_back(out.parent_path() / name);
  }
  std::sort(parts.begin(), parts.end());
  return parts;
}

std::filesystem::path jsonl_part_path(const std::filesystem::path& out, int rank) {
  return out.parent_path() / fmt::format("{}.part-{}", out.filename().string(), rank);
}

int64_t merge_jsonl_parts(const std::filesystem::path& out, const std::string& id_field) {
  const std::vector<std::filesystem::path> parts = jsonl_parts(out);
  if (parts.empty()) return 0;
  int64_t moved = 0;
  {
    ResumableJsonlWriter writer(out, id_field);
    for (const std::filesystem::path& part : parts) {
      { ResumableJsonlWriter clean(part, id_field); }  // drops a torn last line
      JsonlReader reader(part);
      json record;
      while (reader.next(record)) {
        std::string id = writer.id_of(record);
        if (!id.empty() && writer.has_id(id)) continue;
        writer.append_line(reader.raw_line(), std::move(id));
        ++moved;
      }
    }
    writer.sync();  // on disk before the parts go
  }
  for (const std::filesystem::path& part : parts) std::filesystem::remove(part);
  return moved;
}

int64_t remove_jsonl_parts(const std::filesystem::path& out) {
  const std::vector<std::filesystem::path> parts = jsonl_parts(out);
  for (const std::filesystem::path& part : parts) std::filesystem::remove(part);
  return static_cast<int64_t>(parts.size());
}

}  // namespace seqit
