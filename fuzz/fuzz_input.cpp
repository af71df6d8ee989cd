#include "fuzz_input.h"

#include <unistd.h>

#include <cstdio>
#include <stdexcept>

namespace seqit::fuzz {

namespace fs = std::filesystem;

namespace {

struct PrivateFolder {
  fs::path path;
  PrivateFolder() {
    std::error_code ec;
    const fs::path base =
        fs::is_directory("/dev/shm", ec) ? fs::path("/dev/shm") : fs::temp_directory_path();
    path = base / ("seqit-fuzz-" + std::to_string(::getpid()));
    fs::create_directories(path);
  }
  ~PrivateFolder() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

}  // namespace

fs::path input_file(const uint8_t* data, size_t size, const std::string& name) {
  static PrivateFolder folder;
  const fs::path path = folder.path / name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw std::runtime_error("fuzz: cannot write " + path.string());
  const size_t written = size == 0 ? 0 : std::fwrite(data, 1, size, f);
  std::fclose(f);
  if (written != size) throw std::runtime_error("fuzz: short write to " + path.string());
  return path;
}

}  // namespace seqit::fuzz
