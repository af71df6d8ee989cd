// Test helpers: the one place that knows where ../shared/data is.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace seqit::testing {

// The shared data folder: $SEQIT_SHARED_DATA if set, else <source>/../shared/data. Resolved once;
// throws std::runtime_error with instructions when it does not exist.
const std::filesystem::path& shared_data_dir();
// A file or folder inside the shared data; throws (naming the path) when it is missing.
std::filesystem::path shared_data(std::string_view relative);

// The built `seqit` executable, and the source tree.
std::filesystem::path seqit_binary();
std::filesystem::path source_dir();
std::filesystem::path build_dir();

// Runs a shell command, returning its exit status; stdout (and stderr when merge_stderr) go to
// *output.
int run_command(const std::string& command, std::string* output = nullptr,
                bool merge_stderr = true);
// Quotes a string for the shell.
std::string shell_quote(std::string_view s);
// Starts args[0] with args (no shell) in the background, stderr to /dev/null; returns its pid (for
// the kill -9 tests). The caller waits for it.
int start_in_background(const std::vector<std::string>& args);

// Several processes (mpirun): why they cannot run here ("" when they can: the built seqit has MPI
// and mpirun is installed), and the start of an mpirun command line for `ranks` processes (Open MPI
// refuses root unless told — CI and the Debian chroot run as root — and may see fewer slots than
// ranks in a container).
std::string mpi_missing();
std::string mpirun_command(int ranks);

// A fresh temporary folder, removed with everything in it when the object goes away.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// The larger of a running worst error and a new one, where a NaN error makes the worst +infinity
// (std::max(worst, NaN) keeps `worst`: a tolerance check built on it passes NaN results).
inline double nan_max(double worst, double error) {
  return error != error ? __builtin_inf() : (error > worst ? error : worst);
}

// Whole-file helpers for tests.
std::string slurp(const std::filesystem::path& path);
void spit(const std::filesystem::path& path, std::string_view content);

}  // namespace seqit::testing

namespace seqit::testing {

// Every test runs under a watchdog (watchdog.cpp, linked into each test binary): a test that has
// not finished after its budget prints its name and the budget and ends the process with exit code
// 124, so a hang fails in seconds, named, instead of running into ctest's timeout. The budget is
// $SEQIT_TEST_TIMEOUT_S or 60 s; a test that is slow by design raises its own with this call
// (from its body, before the slow part), in release-build seconds: both scale with
// $SEQIT_TEST_TIMEOUT_S / 60 (the asan preset sets 300, so 5x).
void allow_seconds(int seconds);

}  // namespace seqit::testing
