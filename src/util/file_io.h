// Whole-file reads and crash-safe whole-file writes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace seqit {

// Reads a whole file; errors name the path.
std::string read_file(const std::filesystem::path& path);

// Writes `content` to `path` atomically: a temporary file in the same folder is written, fsync'ed
// and renamed over the target (and the folder fsync'ed), so readers see the old or the new file,
// never a torn one.
void write_file_atomic(const std::filesystem::path& path, std::string_view content);

// Streaming variant of write_file_atomic for large outputs: write() pieces, then commit(). If the
// writer is destroyed without commit() (an error or Ctrl-C), the target is left untouched.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::filesystem::path path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(std::string_view data);
  void commit();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_, temp_;
  int fd_ = -1;
};

struct TextPosition {
  int64_t line = 1;    // 1-based
  int64_t column = 1;  // 1-based, in bytes
};
// Line and column of byte `offset` in `text` (offsets past the end map to the end).
TextPosition position_of_offset(std::string_view text, size_t offset);

// fsync a folder so a rename or a new file in it survives a crash.
void fsync_directory(const std::filesystem::path& dir);

// `relative` inside the shared data folder (test data, evaluation sets, stories260K):
// $SEQIT_SHARED_DATA/relative when that is set, else ../shared/data/relative or
// shared/data/relative, whichever exists; nullopt when neither does.
std::optional<std::filesystem::path> find_shared_data(std::string_view relative);

}  // namespace seqit
