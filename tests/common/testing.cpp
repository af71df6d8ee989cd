#include "testing.h"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

namespace seqit::testing {
namespace fs = std::filesystem;

const fs::path& shared_data_dir() {
  static const fs::path dir = [] {
    const char* env = std::getenv("SEQIT_SHARED_DATA");
    fs::path p = env && *env ? fs::path(env) : fs::path(SEQIT_SHARED_DATA_DEFAULT);
    std::error_code ec;
    fs::path canon = fs::weakly_canonical(p, ec);
    return ec ? p : canon;
  }();
  if (!fs::is_directory(dir)) {
    throw std::runtime_error("shared test data not found at '" + dir.string() +
                             "': the tests read ../shared/data next to the checkout; set "
                             "SEQIT_SHARED_DATA to its location");
  }
  return dir;
}

fs::path shared_data(std::string_view relative) {
  fs::path p = shared_data_dir() / fs::path(relative);
  if (!fs::exists(p)) throw std::runtime_error("shared test data file missing: " + p.string());
  return p;
}

fs::path seqit_binary() {
  return fs::path(SEQIT_BINARY_DIR) / "bin" / "seqit";
}
fs::path source_dir() {
  return fs::path(SEQIT_SOURCE_DIR);
}
fs::path build_dir() {
  return fs::path(SEQIT_BINARY_DIR);
}

std::string mpi_missing() {
  if (run_command(shell_quote(seqit_binary().string()) + " version | grep -q '^mpi: yes'") != 0)
    return "seqit was built without MPI (libopenmpi-dev)";
  if (run_command("command -v mpirun >/dev/null 2>&1") != 0)
    return "mpirun is not installed (openmpi-bin)";
  return "";
}

std::string mpirun_command(int ranks) {
  return "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
         "OMPI_MCA_rmaps_base_oversubscribe=1 mpirun -np " +
         std::to_string(ranks) + " ";
}

int start_in_background(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t child = fork();
  if (child == 0) {
    if (!freopen("/dev/null", "w", stderr)) _exit(126);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return child;
}

std::string shell_quote(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

int run_command(const std::string& command, std::string* output, bool merge_stderr) {
  std::string full = merge_stderr ? "(" + command + ") 2>&1" : command;
  FILE* pipe = ::popen(full.c_str(), "r");
  if (!pipe) throw std::runtime_error("popen failed for: " + command);
  std::array<char, 4096> buf;
  std::string out;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  int status = ::pclose(pipe);
  if (output) *output = std::move(out);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TempDir::TempDir() {
  std::random_device rd;
  for (int attempt = 0; attempt < 100; ++attempt) {
    fs::path p = fs::temp_directory_path() / ("seqit-test-" + std::to_string(::getpid()) + "-" +
                                              std::to_string(rd() % 1000000));
    if (fs::create_directory(p)) {
      path_ = p;
      return;
    }
  }
  throw std::runtime_error("cannot create a temporary folder");
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void spit(const fs::path& path, std::string_view content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot write " + path.string());
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
}

}  // namespace seqit::testing
