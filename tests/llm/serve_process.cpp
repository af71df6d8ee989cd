#include "serve_process.h"

#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <fstream>
#include <iterator>
#include <sstream>
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
  // The port of the first "on http://HOST:PORT/v1" in `text` (0: not there yet). No <regex>: GCC 12
  // warns inside it in the sanitizer build.
  auto port_in = [](const std::string& t) {
    for (size_t at = t.find("on http://"); at != std::string::npos;
         at = t.find("on http://", at + 1)) {
      const size_t colon = t.find(':', at + 10);
      if (colon == std::string::npos) return 0;
      size_t end = colon + 1;
      while (end < t.size() && std::isdigit(static_cast<unsigned char>(t[end]))) ++end;
      if (end > colon + 1 && t.compare(end, 3, "/v1") == 0)
        return std::stoi(t.substr(colon + 1, end - colon - 1));
    }
    return 0;
  };
  while (port_in(text) == 0) {
    if (std::chrono::steady_clock::now() > deadline) break;
    pollfd p{out[0], POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    char buf[512];
    const ssize_t n = ::read(out[0], buf, sizeof(buf));
    if (n <= 0) break;  // the child exited
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(out[0]);  // nothing more is printed on stdout
  port_ = port_in(text);
  if (port_ == 0) {
    stop(SIGKILL);
    throw std::runtime_error("seqit serve did not start; stdout: '" + text + "'");
  }
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

double ServeProcess::cpu_seconds() const {
  std::ifstream in("/proc/" + std::to_string(pid_) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the command name (which may hold spaces, so start after its closing ')'):
  // state is field 3, utime and stime are fields 14 and 15.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream fields(stat.substr(close + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i)
    if (i >= 14) ticks += std::stod(field);
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

}  // namespace seqit::testing
