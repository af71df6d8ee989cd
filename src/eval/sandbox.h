// Running untrusted Python (HumanEval completions) without letting it harm the machine.
//
// run_python_sandboxed writes the program into a fresh temporary folder and runs `python3 -I -B`
// on it in a child process, then removes the folder. The child is its own session and process
// group and is confined by (docs/eval.md has the same list for users):
//
// namespaces: a new user, mount, network and PID namespace (one clone(2)). The network namespace
//   has only a loopback device that is down: no connection leaves it, not even to the host's
//   127.0.0.1. In the mount namespace every mount is made read-only (mount_setattr, recursive;
//   Linux >= 5.12) except a bind mount of the sandbox folder, so the program writes only there,
//   even when the evaluator runs as root; /proc is replaced by one of the PID namespace where the
//   kernel allows it. In the PID namespace python is process 1: when it exits, the kernel kills
//   everything it started. Without unprivileged user namespaces, root still gets the mount,
//   network and PID namespaces.
// identity: when the evaluator runs as root, the program runs as an unprivileged uid/gid chosen
//   for this run (2'000'000'000 + the child's pid), so RLIMIT_NPROC binds (the kernel exempts
//   root from it) and the program owns nothing outside its folder. Inside a user namespace it is
//   that namespace's uid 0 with no capabilities (empty bounding set, SECBIT_NOROOT).
// rlimits: RLIMIT_CPU (soft = the limit, hard = limit + 1 s), RLIMIT_AS, RLIMIT_NPROC,
//   RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_CORE = 0.
// seccomp-bpf, always, with PR_SET_NO_NEW_PRIVS: socket() fails with EPERM for every family, so
//   nothing can connect or listen (AF_UNIX included: a world-writable socket on the host, such as
//   D-Bus's, would otherwise be reachable); socketpair(AF_UNIX) stays for asyncio and
//   multiprocessing. mount, namespaces (unshare, setns, clone with CLONE_NEW*; clone3 answers
//   ENOSYS so that glibc falls back to clone), setsid/setpgid (leaving the process group would
//   escape the timeout's kill), ptrace, bpf, perf_event_open, io_uring (which could open sockets
//   and files behind seccomp's back) and the key ring fail with EPERM; another system call ABI
//   (i386, x32) kills the process. When no mount namespace could be made, the filter also makes
//   every file-system write fail with EPERM (open for writing, create, rename, remove, link,
//   chmod/chown, truncate), inside the sandbox folder too: weaker, but enough for HumanEval,
//   whose programs write no files.
// timeout: a wall-clock limit; when it passes the whole process group gets SIGKILL (with a PID
//   namespace, killing python kills the rest). Without a PID namespace, processes that outlive
//   python are killed with the group and waited for (up to 2 s) before the call returns.
//
// HOME and TMPDIR point into the sandbox folder; the environment is otherwise empty but for PATH
// and LANG; stdin is /dev/null; stdout and stderr are captured up to a bound.
// SandboxResult::protections says which of these applied on this machine.
#pragma once

#include <sys/types.h>
#include <cstdint>
#include <string>

namespace seqit::eval {

struct SandboxLimits {
  double wall_seconds = 10;                 // wall-clock timeout (SIGKILL to the process group)
  int cpu_seconds = 10;                     // RLIMIT_CPU
  int64_t memory_bytes = int64_t{2} << 30;  // RLIMIT_AS (address space, not resident memory)
  int max_processes = 32;                   // RLIMIT_NPROC (for the sandbox's uid)
  int64_t max_file_bytes = 16 << 20;        // RLIMIT_FSIZE
  int max_open_files = 64;                  // RLIMIT_NOFILE
  size_t max_output_bytes = 64 << 10;       // per stream; the rest is read and dropped
  std::string python = "/usr/bin/python3";
  bool use_namespaces = true;  // false: skip the namespaces (tests of the seccomp-only fallback)
};

// What actually confined the program (see the comment at the top of this file).
struct SandboxProtections {
  bool user_namespace = false;
  bool mount_namespace = false;  // and with it the read-only file system outside the sandbox folder
  bool network_namespace = false;
  bool pid_namespace = false;
  bool private_proc = false;  // a /proc of the PID namespace over the host's
  bool unprivileged_uid =
      false;  // ran as the per-run uid (evaluator is root) or in a user namespace
  bool seccomp_socket_filter = false;
  bool seccomp_write_filter = false;  // the fallback when there is no mount namespace
  // "user+mount+net+pid namespaces, read-only root, seccomp(socket)" and the like.
  std::string summary() const;
};

enum class SandboxOutcome {
  kPassed,       // exit status 0
  kFailed,       // non-zero exit status (an assertion, an exception, a syntax error)
  kTimeout,      // the wall-clock or the CPU-time limit
  kMemoryLimit,  // Python reported MemoryError (RLIMIT_AS refused an allocation)
  kSignal,       // killed by a signal we did not send (a crash, or the kernel's OOM killer)
};
std::string_view to_string(SandboxOutcome outcome);

struct SandboxResult {
  SandboxOutcome outcome = SandboxOutcome::kFailed;
  std::string
      reason;  // one line for a report: "exit status 1", "wall-clock limit of 3 s reached", ...
  int exit_status = -1;              // when the program exited; -1 when killed
  int signal = 0;                    // the terminating signal, when killed
  std::string output, error_output;  // stdout and stderr, each up to max_output_bytes
  bool output_truncated = false, error_output_truncated = false;
  double wall_seconds = 0, cpu_seconds = 0;
  pid_t process_group = 0;  // the child's pid (and process group id) in the evaluator's namespace
  SandboxProtections protections;
  // Why stronger isolation than `protections` could not be set up (e.g. inside a chroot the mount
  // namespace cannot make the root read-only), joined with "; "; empty when the first choice ran.
  std::string fallback_reason;
  bool passed() const { return outcome == SandboxOutcome::kPassed; }
};

// Runs `program` as described above and waits for it. Throws seqit::Error when the sandbox itself
// cannot be set up (no temporary folder, no fork, python missing: a broken evaluator, not a failed
// program).
SandboxResult run_python_sandboxed(const std::string& program, const SandboxLimits& limits = {});

}  // namespace seqit::eval
