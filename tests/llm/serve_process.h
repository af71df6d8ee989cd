// `seqit serve` as a child process for the tests: started on a free port (read back from the line
// it prints), stopped with a signal, its memory read from /proc.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace seqit::testing {

class ServeProcess {
 public:
  // Runs `seqit serve --port 0 <args...>` and waits (up to 60 s) for it to print its address.
  explicit ServeProcess(const std::vector<std::string>& args);
  ~ServeProcess();  // SIGKILLs it if still running
  ServeProcess(const ServeProcess&) = delete;
  ServeProcess& operator=(const ServeProcess&) = delete;

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }
  // Sends `signal` and waits for the exit; returns the exit code (128 + signal when killed by one).
  int stop(int signal);
  // Resident memory in KiB (VmRSS from /proc/<pid>/status).
  long rss_kib() const;
  // CPU time used so far, user + system, in seconds (/proc/<pid>/stat).
  double cpu_seconds() const;

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace seqit::testing
