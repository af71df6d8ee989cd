#include "util/file_io.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <random>

#include "util/error.h"

namespace seqit {
namespace fs = std::filesystem;

namespace {
[[noreturn]] void throw_errno(const std::string& what, const fs::path& path) {
  throw Error(fmt::format("{}: {}", what, std::strerror(errno))).in_file(path.string());
}

void write_all(int fd, std::string_view data, const fs::path& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("cannot write", path);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
}

fs::path temp_name_for(const fs::path& target) {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  return target.parent_path() /
         fmt::format(".{}.tmp.{}.{:x}", target.filename().string(), ::getpid(), rng() & 0xffffff);
}
}  // namespace

std::string read_file(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_errno("cannot open", path);
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    ::close(fd);
    throw Error("is a folder, expected a file").in_file(path.string());
  }
  std::string out;
  if (st.st_size > 0) out.reserve(static_cast<size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int saved = errno;
      ::close(fd);
      errno = saved;
      throw_errno("cannot read", path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

void fsync_directory(const fs::path& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // best effort: some filesystems do not allow opening folders
  ::fsync(fd);
  ::close(fd);
}

void write_file_atomic(const fs::path& path, std::string_view content) {
  AtomicFileWriter w(path);
  w.write(content);
  w.commit();
}

AtomicFileWriter::AtomicFileWriter(fs::path path) : path_(std::move(path)) {
  if (path_.has_parent_path() && !fs::exists(path_.parent_path())) {
    throw Error("folder does not exist").in_file(path_.parent_path().string());
  }
  temp_ = temp_name_for(path_);
  fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) throw_errno("cannot create temporary file for", path_);
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(temp_.c_str());
  }
}

void AtomicFileWriter::write(std::string_view data) {
  if (fd_ < 0) throw Error("write after commit").in_file(path_.string());
  write_all(fd_, data, path_);
}

void AtomicFileWriter::commit() {
  if (fd_ < 0) return;
  if (::fsync(fd_) != 0) throw_errno("cannot fsync", path_);
  ::close(fd_);
  fd_ = -1;
  if (::rename(temp_.c_str(), path_.c_str()) != 0) {
    int saved = errno;
    ::unlink(temp_.c_str());
    errno = saved;
    throw_errno("cannot rename temporary file onto", path_);
  }
  fsync_directory(path_.parent_path());
}

TextPosition position_of_offset(std::string_view text, size_t offset) {
  if (offset > text.size()) offset = text.size();
  TextPosition pos;
  size_t line_start = 0;
  for (size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++pos.line;
      line_start = i + 1;
    }
  }
  pos.column = static_cast<int64_t>(offset - line_start) + 1;
  return pos;
}

std::optional<std::filesystem::path> find_shared_data(std::string_view relative) {
  if (const char* env = std::getenv("SEQIT_SHARED_DATA"))
    return std::filesystem::path(env) / relative;
  for (const char* base : {"../shared/data", "shared/data"}) {
    const std::filesystem::path candidate = std::filesystem::path(base) / relative;
    if (std::filesystem::exists(candidate)) return candidate;
  }
  return std::nullopt;
}

}  // namespace seqit
