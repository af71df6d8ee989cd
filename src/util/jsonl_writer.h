// An append-only JSONL output that survives crashes and resumes. Opening an existing file keeps
// every complete line, cuts off a torn last line (a crash mid-write), and reports which record ids
// are already there, so a rerun skips finished work and never duplicates a row.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace seqit {

class ResumableJsonlWriter {
 public:
  // id_field: the key whose value identifies a record (ids are compared as text: 7 and "7" are the
  // same id); empty to not track ids. fresh=true truncates any existing file instead of resuming.
  explicit ResumableJsonlWriter(std::filesystem::path path, std::string id_field = "id",
                                bool fresh = false);
  ~ResumableJsonlWriter();
  ResumableJsonlWriter(const ResumableJsonlWriter&) = delete;
  ResumableJsonlWriter& operator=(const ResumableJsonlWriter&) = delete;

  // Records found complete when the file was opened.
  int64_t resumed_records() const { return resumed_records_; }
  // Bytes of a torn last line that were dropped on open (0 when the file ended cleanly).
  int64_t dropped_bytes() const { return dropped_bytes_; }
  bool has_id(const std::string& id) const { return ids_.count(id) != 0; }
  bool has_id_value(const nlohmann::json& id) const;
  const std::unordered_set<std::string>& ids() const { return ids_; }
  int64_t records() const { return records_; }

  // Appends one record as one line. The line reaches the file (the OS) before this returns, so a
  // killed process loses nothing appended; call sync() for durability against power loss.
  void append(const nlohmann::json& record);
  // Appends one record already encoded as a single line of JSON (no newline inside; one is added),
  // for writers that control their own layout (key order, escaping). `id` is the record's id text
  // (empty when it has none); the caller guarantees it matches the line's id field.
  void append_line(std::string_view json_line, std::string id = {});
  void sync();
  const std::filesystem::path& path() const { return path_; }

  // The id text of `record` (empty when it has no id field).
  std::string id_of(const nlohmann::json& record) const;

 private:
  std::filesystem::path path_;
  std::string id_field_;
  int fd_ = -1;
  int64_t resumed_records_ = 0, dropped_bytes_ = 0, records_ = 0;
  std::unordered_set<std::string> ids_;
};

// A job split between processes (several ranks under mpirun) writes one part per rank beside its
// output: "<out>.part-<rank>". The part file of `rank`:
std::filesystem::path jsonl_part_path(const std::filesystem::path& out, int rank);
// Appends to `out` (resuming it: a torn last line is dropped) every record of the part files beside
// it (any rank count: a stopped run's leftovers too) whose id `out` does not hold yet, then removes
// the parts. A torn last line of a part is dropped. Safe to repeat after a crash midway: a record
// is never written twice. Returns the records moved.
int64_t merge_jsonl_parts(const std::filesystem::path& out, const std::string& id_field = "id");
// The part files beside `out` (any rank count), sorted.
std::vector<std::filesystem::path> jsonl_parts(const std::filesystem::path& out);
// Removes the part files beside `out`; returns how many there were.
int64_t remove_jsonl_parts(const std::filesystem::path& out);

}  // namespace seqit
