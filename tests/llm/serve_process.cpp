#include "serve_process.h"

#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <stdexcept>

#include "testing.h"

extern char** environ;

namespace seqit::testing {

ServeProcess::ServeProcess(const std::vector<std::string>& args) {
  std::vector<std::string> full = {
      seqit_binary().string(), "--log-level", "warn", "serve", "--port", "0"};
  full.insert(full.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : full) argv.push_back(a.data());
  argv.push_back(nullptr);
  int out[2];
  if (::pipe(out) != 0) throw std::runtime_error("pipe failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_addclose(&actions, out[0]);
  const int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  if (rc != 0) {
    ::close(out[0]);
    throw std::runtime_error("cannot start " + full[0]);
  }
  // Read stdout until the address line: "seqit serve: NAME on http://127.0.0.1:PORT/v1 (...)".
  std::string text;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  static const std::regex address(R"(on http://[^:]+:(\d+)/v1)");
  std::smatch m;
  while (!std::regex_search(text, m, address)) {
    if (std::chrono::steady_clock::now() > deadline) break;
    pollfd p{out[0], POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    char buf[512];
    const ssize_t n = ::read(out[0], buf, sizeof(buf));
    if (n <= 0) break;  // the child exited
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(out[0]);  // nothing more is printed on stdout
  if (!std::regex_search(text, m, address)) {
    stop(SIGKILL);
    throw std::runtime_error("seqit serve did not start; stdout: '" + text + "'");
  }
  port_ = std::stoi(m[1].str());
}

ServeProcess::~ServeProcess() {
  if (pid_ > 0) stop(SIGKILL);
}

int ServeProcess::stop(int signal) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, signal);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

long ServeProcess::rss_kib() const {
  std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
  std::string key;
  while (in >> key) {
    if (key == "VmRSS:") {
      long kib = 0;
      in >> kib;
      return kib;
    }
    std::string rest;
    std::getline(in, rest);
  }
  return -1;
}

}  // namespace seqit::testing
