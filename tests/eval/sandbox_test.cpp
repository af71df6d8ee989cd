// The sandbox against real attempts to escape it. Each test runs python3 and checks from outside
// (the file system, a listening socket, the process table) that the attempt failed.
#include "eval/sandbox.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cstdio>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "testing.h"
#include "util/error.h"

namespace seqit::eval {
namespace {

namespace fs = std::filesystem;

// Processes whose process group is `pgid` (field 5 of /proc/<pid>/stat).
int processes_in_group(pid_t pgid) {
  int count = 0;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "stat");
    std::string stat;
    if (!std::getline(in, stat)) continue;
    const size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    char state;
    long ppid, group;
    if (rest >> state >> ppid >> group && group == pgid) ++count;
  }
  return count;
}

// Whether a forked child can make the namespaces the sandbox asks for first (or, as root, the
// mount/net/pid ones without a user namespace): the sandbox must then use them.
bool kernel_allows_namespaces() {
  for (int flags : {CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID,
                    CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID}) {
    const pid_t pid = fork();
    if (pid == 0) _exit(unshare(flags) == 0 ? 0 : 1);
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return true;
  }
  return false;
}

SandboxLimits limits_for(bool namespaces) {
  SandboxLimits l;
  l.use_namespaces = namespaces;
  l.wall_seconds = 20;
  return l;
}

class SandboxModes : public ::testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(Sandbox, SandboxModes, ::testing::Values(true, false),
                         [](const auto& info) {
                           return info.param ? "Namespaces" : "SeccompOnly";
                         });

TEST(Sandbox, CorrectProgramPassesAndWrongAssertFails) {
  const std::string function = "def add(a, b):\n    return a + b\n";
  const auto good = run_python_sandboxed(function + "assert add(2, 3) == 5\nprint('ok')\n");
  EXPECT_EQ(good.outcome, SandboxOutcome::kPassed) << good.reason << "\n" << good.error_output;
  EXPECT_EQ(good.output, "ok\n");
  EXPECT_EQ(good.exit_status, 0);

  const auto bad = run_python_sandboxed(function + "assert add(2, 3) == 6\n");
  EXPECT_EQ(bad.outcome, SandboxOutcome::kFailed);
  EXPECT_EQ(bad.exit_status, 1);
  EXPECT_NE(bad.reason.find("AssertionError"), std::string::npos) << bad.reason;

  const auto syntax = run_python_sandboxed("def f(:\n");
  EXPECT_EQ(syntax.outcome, SandboxOutcome::kFailed);
  EXPECT_NE(syntax.reason.find("SyntaxError"), std::string::npos) << syntax.reason;
}

TEST(Sandbox, UsesTheStrongestIsolationTheKernelAllows) {
  const auto r = run_python_sandboxed("print(1)\n");
  ASSERT_TRUE(r.passed()) << r.reason;
  EXPECT_TRUE(r.protections.seccomp_socket_filter);
  bool namespaces = kernel_allows_namespaces();
  if (namespaces && !r.protections.mount_namespace) {
    // The kernel lets a process unshare, but setting the sandbox up inside the namespaces failed
    // (in a chroot, for one, the root cannot be made read-only): the fallback must say why and
    // carry the seccomp write filter instead.
    EXPECT_FALSE(r.fallback_reason.empty());
    std::printf("note: namespaces unshare here but the sandbox fell back: %s\n",
                r.fallback_reason.c_str());
    namespaces = false;
  }
  EXPECT_EQ(r.protections.mount_namespace, namespaces) << r.protections.summary();
  EXPECT_EQ(r.protections.network_namespace, namespaces);
  EXPECT_EQ(r.protections.pid_namespace, namespaces);
  EXPECT_EQ(r.protections.seccomp_write_filter, !namespaces);
  if (geteuid() == 0) {
    EXPECT_TRUE(r.protections.unprivileged_uid);
  }

  const auto fallback = run_python_sandboxed("print(1)\n", limits_for(false));
  ASSERT_TRUE(fallback.passed()) << fallback.reason;
  EXPECT_FALSE(fallback.protections.mount_namespace);
  EXPECT_TRUE(fallback.protections.seccomp_write_filter);
  EXPECT_EQ(fallback.protections.summary().find("namespaces"), std::string::npos);
}

TEST(Sandbox, InfiniteLoopIsStoppedByTheWallClock) {
  testing::allow_seconds(30);
  SandboxLimits l;
  l.wall_seconds = 1.5;
  const auto busy = run_python_sandboxed("while True:\n    pass\n", l);
  EXPECT_EQ(busy.outcome, SandboxOutcome::kTimeout);
  EXPECT_NE(busy.reason.find("wall-clock"), std::string::npos) << busy.reason;
  EXPECT_GE(busy.wall_seconds, 1.4);
  EXPECT_LT(busy.wall_seconds, 6);

  const auto sleeping = run_python_sandboxed("import time\ntime.sleep(100)\n", l);
  EXPECT_EQ(sleeping.outcome, SandboxOutcome::kTimeout);
  EXPECT_LT(sleeping.wall_seconds, 6);
  EXPECT_EQ(processes_in_group(sleeping.process_group), 0);
}

TEST(Sandbox, CpuTimeLimitStopsABusyLoop) {
  testing::allow_seconds(30);
  SandboxLimits l;
  l.cpu_seconds = 1;
  l.wall_seconds = 20;
  const auto r = run_python_sandboxed("while True:\n    pass\n", l);
  EXPECT_EQ(r.outcome, SandboxOutcome::kTimeout);
  EXPECT_NE(r.reason.find("CPU-time"), std::string::npos) << r.reason;
  // Ended by the CPU limit (the hard limit's SIGKILL at 2 s of CPU), well before the wall clock;
  // on a loaded machine 2 CPU-seconds can take several wall seconds. The kernel checks the limit
  // at its tick while the child's rusage is finer: the soft limit can end it at 0.999 s.
  EXPECT_GE(r.cpu_seconds, 0.9);
  EXPECT_LT(r.wall_seconds, 19);
}

TEST_P(SandboxModes, ForkBombIsContained) {
  testing::allow_seconds(60);
  const auto r =
      run_python_sandboxed("import os\nwhile True:\n    os.fork()\n", limits_for(GetParam()));
  // RLIMIT_NPROC makes fork fail (BlockingIOError) long before the 20 s timeout.
  EXPECT_EQ(r.outcome, SandboxOutcome::kFailed) << r.reason;
  EXPECT_LT(r.wall_seconds, 15);
  EXPECT_EQ(processes_in_group(r.process_group), 0) << "sandbox processes outlived the run";
  // The host still starts processes.
  EXPECT_EQ(std::system("true"), 0);
}

TEST(Sandbox, HugeAllocationHitsTheMemoryLimit) {
  const auto r = run_python_sandboxed("x = bytearray(10 * 1024 ** 3)\nprint('allocated')\n");
  EXPECT_EQ(r.outcome, SandboxOutcome::kMemoryLimit) << r.reason << "\n" << r.error_output;
  EXPECT_EQ(r.output.find("allocated"), std::string::npos);
}

TEST(Sandbox, CrashIsReportedAsASignal) {
  const auto r = run_python_sandboxed("import ctypes\nctypes.string_at(0)\n");
  EXPECT_EQ(r.outcome, SandboxOutcome::kSignal) << r.reason;
  EXPECT_EQ(r.signal, SIGSEGV);
  EXPECT_NE(r.reason.find("SIGSEGV"), std::string::npos) << r.reason;
}

TEST_P(SandboxModes, WritesOutsideTheSandboxFolderFail) {
  const std::string target = "/tmp/seqit_sandbox_escape_" + std::to_string(getpid());
  for (const std::string suffix : {"", "_dir", "_link"}) fs::remove(target + suffix);
  const std::string program =
      "import os\n"
      "p = '" +
      target +
      "'\n"
      "attempts = [lambda: open(p, 'w').write('x'), lambda: os.mkdir(p + '_dir'),\n"
      "            lambda: os.symlink('/etc/passwd', p + '_link')]\n"
      "for attempt in attempts:\n"
      "    try:\n"
      "        attempt()\n"
      "        print('escaped')\n"
      "    except OSError as e:\n"
      "        print(type(e).__name__)\n"
      "print(os.getcwd())\n";
  const auto r = run_python_sandboxed(program, limits_for(GetParam()));
  ASSERT_EQ(r.outcome, SandboxOutcome::kPassed) << r.reason << "\n" << r.error_output;
  EXPECT_EQ(r.output.find("escaped"), std::string::npos) << r.output;
  for (const std::string suffix : {"", "_dir", "_link"}) {
    EXPECT_FALSE(fs::exists(fs::symlink_status(target + suffix))) << target + suffix;
    fs::remove(target + suffix);
  }
  // The sandbox folder itself is gone after the run.
  const std::string cwd = r.output.substr(r.output.rfind('\n', r.output.size() - 2) + 1);
  const std::string folder = cwd.substr(0, cwd.size() - 1);
  EXPECT_NE(folder.find("seqit-sandbox-"), std::string::npos) << folder;
  EXPECT_FALSE(fs::exists(folder)) << folder;
}

TEST(Sandbox, WritesInsideTheSandboxFolderWorkWithAMountNamespace) {
  const auto r = run_python_sandboxed(
      "import os, tempfile\n"
      "open('note.txt', 'w').write('kept')\n"
      "with tempfile.NamedTemporaryFile(dir=os.environ['TMPDIR']) as f:\n"
      "    f.write(b'x')\n"
      "print(open('note.txt').read())\n");
  if (!r.protections.mount_namespace)
    GTEST_SKIP() << "no mount namespace here: " << r.protections.summary();
  EXPECT_EQ(r.outcome, SandboxOutcome::kPassed) << r.reason << "\n" << r.error_output;
  EXPECT_EQ(r.output, "kept\n");
}

TEST_P(SandboxModes, NetworkConnectionsFail) {
  // A listener on the host's loopback that the program tries to reach.
  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(listener, 4), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int port = ntohs(addr.sin_port);

  const auto r = run_python_sandboxed(
      "import socket\n"
      "s = socket.create_connection(('127.0.0.1', " +
          std::to_string(port) +
          "), timeout=3)\n"
          "print('connected')\n",
      limits_for(GetParam()));
  EXPECT_EQ(r.outcome, SandboxOutcome::kFailed) << r.reason;
  EXPECT_EQ(r.output.find("connected"), std::string::npos);
  EXPECT_NE(r.reason.find("PermissionError"), std::string::npos) << r.reason;
  pollfd p{listener, POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 200), 0) << "the listener saw a connection";
  close(listener);
}

TEST_P(SandboxModes, LocalSocketsOnlyAsAnonymousPairs) {
  // socketpair works (asyncio's self-pipe needs it); socket() fails for AF_UNIX too, so no
  // listening socket on the host can be reached.
  const auto r = run_python_sandboxed(
      "import socket\n"
      "a, b = socket.socketpair()\n"
      "a.sendall(b'ping')\n"
      "print(b.recv(4).decode())\n"
      "try:\n"
      "    socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
      "    print('unix socket')\n"
      "except PermissionError:\n"
      "    print('refused')\n",
      limits_for(GetParam()));
  EXPECT_EQ(r.outcome, SandboxOutcome::kPassed) << r.reason << "\n" << r.error_output;
  EXPECT_EQ(r.output, "ping\nrefused\n");
}

TEST_P(SandboxModes, CannotSignalTheEvaluator) {
  // SIGTERM would end this test binary: it survives because the pid is out of reach (another PID
  // namespace, or another uid).
  const auto r = run_python_sandboxed(
      "import os, signal\n"
      "try:\n"
      "    os.kill(" +
          std::to_string(getpid()) +
          ", signal.SIGTERM)\n"
          "    print('sent')\n"
          "except OSError as e:\n"
          "    print(type(e).__name__)\n",
      limits_for(GetParam()));
  EXPECT_EQ(r.outcome, SandboxOutcome::kPassed) << r.reason;
  if (geteuid() == 0 || r.protections.pid_namespace) {
    EXPECT_TRUE(r.output == "ProcessLookupError\n" || r.output == "PermissionError\n") << r.output;
  }
}

TEST(Sandbox, PidNamespaceHidesTheHostsProcesses) {
  const auto r = run_python_sandboxed(
      "import os\n"
      "print(os.getpid(), sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n");
  ASSERT_EQ(r.outcome, SandboxOutcome::kPassed) << r.reason << "\n" << r.error_output;
  if (!r.protections.private_proc)
    GTEST_SKIP() << "no private /proc here: " << r.protections.summary();
  EXPECT_EQ(r.output, "1 [1]\n");
}

TEST(Sandbox, OutputIsBounded) {
  SandboxLimits l;
  l.max_output_bytes = 1000;
  const auto r = run_python_sandboxed(
      "import sys\nsys.stdout.write('x' * 1000000)\nsys.stderr.write('done')\n", l);
  EXPECT_EQ(r.outcome, SandboxOutcome::kPassed) << r.reason;
  EXPECT_EQ(r.output.size(), 1000u);
  EXPECT_TRUE(r.output_truncated);
  EXPECT_EQ(r.error_output, "done");
  EXPECT_FALSE(r.error_output_truncated);
}

TEST(Sandbox, RejectsABrokenSetup) {
  SandboxLimits l;
  l.python = "/nonexistent/python3";
  EXPECT_THROW(run_python_sandboxed("print(1)", l), Error);
  l = {};
  l.wall_seconds = 0;
  EXPECT_THROW(run_python_sandboxed("print(1)", l), Error);
}

}  // namespace
}  // namespace seqit::eval
