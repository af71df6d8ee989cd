// The sandbox (see sandbox.h). The parent prepares everything the child needs (paths, argv, envp,
// the seccomp program) before clone(2), because the child of a multi-threaded process may only make
// system calls until it execs: no allocation, no locks. The child is made with the raw clone system
// call (so that it can start in new namespaces at once), which also means glibc's bookkeeping of
// threads is stale in it: credentials are changed with raw system calls, not glibc's set*id, which
// would try to signal the parent's threads.
#include "eval/sandbox.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

#include "util/error.h"

#ifndef SECBIT_NOROOT
#define SECBIT_NOROOT (1 << 0)
#define SECBIT_NOROOT_LOCKED (1 << 1)
#endif

namespace seqit::eval {
namespace {

#if defined(__x86_64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_AARCH64;
#else
#error "the sandbox's seccomp filter knows x86_64 and aarch64 only"
#endif

// ---- The seccomp filter -------------------------------------------------------------------------

class FilterBuilder {
 public:
  void stmt(uint16_t code, uint32_t k) { f_.push_back(BPF_STMT(code, k)); }
  void jump(uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) {
    f_.push_back(BPF_JUMP(code, k, jt, jf));
  }
  void load_nr() { stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)); }
  // The low 32 bits of argument i (both supported architectures are little-endian).
  void load_arg(int i) {
    stmt(BPF_LD | BPF_W | BPF_ABS,
         static_cast<uint32_t>(offsetof(struct seccomp_data, args) + 8 * i));
  }
  // if (nr == syscall) return ret;  (the accumulator keeps nr)
  void deny(long syscall, uint32_t ret) {
    jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(syscall), 0, 1);
    stmt(BPF_RET | BPF_K, ret);
  }
  // if (nr == syscall) return (arg_i & mask) ? ret : ALLOW;
  void deny_if_flags(long syscall, int arg, uint32_t mask, uint32_t ret) {
    jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(syscall), 0, 4);
    load_arg(arg);
    jump(BPF_JMP | BPF_JSET | BPF_K, mask, 0, 1);
    stmt(BPF_RET | BPF_K, ret);
    stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  }
  std::vector<sock_filter> take() { return std::move(f_); }

 private:
  std::vector<sock_filter> f_;
};

constexpr uint32_t kEperm = SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA);
constexpr uint32_t kEnosys = SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA);

std::vector<sock_filter> build_filter(bool block_writes) {
  FilterBuilder b;
  // Another ABI's system call numbers mean other calls: refuse them all.
  b.stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
  b.jump(BPF_JMP | BPF_JEQ | BPF_K, kAuditArch, 1, 0);
  b.stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
  b.load_nr();
#if defined(__x86_64__)
  b.jump(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u /* __X32_SYSCALL_BIT */, 0, 1);
  b.stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
#endif
  // No socket() of any family: nothing to connect or bind with, so neither the network nor a
  // listening AF_UNIX socket on the host (a world-writable D-Bus or container socket) is reachable.
  // socketpair(AF_UNIX), a connected pair with no address, stays for asyncio and multiprocessing.
  b.deny(SYS_socket, kEperm);
  b.jump(BPF_JMP | BPF_JEQ | BPF_K, SYS_socketpair, 0, 4);
  b.load_arg(0);
  b.jump(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 0, 1);
  b.stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  b.stmt(BPF_RET | BPF_K, kEperm);
  b.load_nr();
  // No new namespaces (clone's flags are its first argument on both architectures); clone3 passes
  // its flags in memory that seccomp cannot read, so it is "not implemented" and glibc falls back.
  constexpr uint32_t kNamespaceFlags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID |
                                       CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;
  b.deny_if_flags(SYS_clone, 0, kNamespaceFlags, kEperm);
  b.load_nr();
#ifdef SYS_clone3
  b.deny(SYS_clone3, kEnosys);
#endif
  for (long nr : {
           SYS_mount,
           SYS_umount2,
           SYS_pivot_root,
           SYS_chroot,
           SYS_unshare,
           SYS_setns,
           SYS_setsid,
           SYS_setpgid,
           SYS_ptrace,
           SYS_process_vm_readv,
           SYS_process_vm_writev,
           SYS_bpf,
           SYS_perf_event_open,
           SYS_keyctl,
           SYS_add_key,
           SYS_request_key,
           SYS_userfaultfd,
           SYS_kexec_load,
           SYS_init_module,
           SYS_finit_module,
           SYS_delete_module,
           SYS_reboot,
           SYS_swapon,
           SYS_swapoff,
           SYS_acct,
#ifdef SYS_io_uring_setup
           SYS_io_uring_setup,
           SYS_io_uring_enter,
           SYS_io_uring_register,
#endif
#ifdef SYS_mount_setattr
           SYS_mount_setattr,
           SYS_move_mount,
           SYS_open_tree,
           SYS_fsopen,
           SYS_fsmount,
           SYS_fsconfig,
           SYS_fspick,
#endif
       })
    b.deny(nr, kEperm);
  if (block_writes) {
    constexpr uint32_t kWriteFlags = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC;
#ifdef SYS_open
    b.deny_if_flags(SYS_open, 1, kWriteFlags, kEperm);
    b.load_nr();
#endif
    b.deny_if_flags(SYS_openat, 2, kWriteFlags, kEperm);
    b.load_nr();
    for (long nr : {
#ifdef SYS_creat
             SYS_creat,     SYS_unlink,    SYS_rename,      SYS_mkdir,        SYS_rmdir,
             SYS_link,      SYS_symlink,   SYS_chmod,       SYS_chown,        SYS_lchown,
             SYS_mknod,     SYS_utime,     SYS_utimes,      SYS_futimesat,
#endif
#ifdef SYS_openat2
             SYS_openat2,
#endif
             SYS_unlinkat,  SYS_renameat,  SYS_renameat2,   SYS_mkdirat,      SYS_linkat,
             SYS_symlinkat, SYS_truncate,  SYS_ftruncate,   SYS_fchmod,       SYS_fchmodat,
             SYS_fchown,    SYS_fchownat,  SYS_mknodat,     SYS_utimensat,    SYS_setxattr,
             SYS_lsetxattr, SYS_fsetxattr, SYS_removexattr, SYS_lremovexattr, SYS_fremovexattr})
      b.deny(nr, kEperm);
  }
  b.stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  return b.take();
}

// ---- The child
// -----------------------------------------------------------------------------------

// Where the child's set-up failed, sent to the parent through the report pipe before _exit(127).
enum ChildStep : int {
  kStepSync = 1,
  kStepSetsid,
  kStepStdio,
  kStepCredentials,
  kStepMountPrivate,
  kStepBindFolder,
  kStepReadOnlyRoot,
  kStepWritableFolder,
  kStepChdir,
  kStepCapabilities,
  kStepRlimit,
  kStepNoNewPrivs,
  kStepSeccomp,
  kStepExec,
  kNoteFreshProc = 100,  // not a failure: /proc now shows only the sandbox's PID namespace
};
const char* step_name(int step) {
  switch (step) {
    case kStepSync:
      return "waiting for the parent";
    case kStepSetsid:
      return "setsid";
    case kStepStdio:
      return "redirecting stdin/stdout/stderr";
    case kStepCredentials:
      return "switching to the sandbox uid/gid";
    case kStepMountPrivate:
      return "making mounts private";
    case kStepBindFolder:
      return "bind-mounting the sandbox folder";
    case kStepReadOnlyRoot:
      return "making the file system read-only (mount_setattr)";
    case kStepWritableFolder:
      return "making the sandbox folder writable";
    case kStepChdir:
      return "entering the sandbox folder";
    case kStepCapabilities:
      return "dropping capabilities";
    case kStepRlimit:
      return "setting resource limits";
    case kStepNoNewPrivs:
      return "PR_SET_NO_NEW_PRIVS";
    case kStepSeccomp:
      return "installing the seccomp filter";
    case kStepExec:
      return "executing python";
  }
  return "?";
}
struct ChildFailure {
  int step = 0;
  int error = 0;
};

// What the parent sends once it has written the id maps.
struct GoMessage {
  uid_t uid = 0;  // the ids to switch to (in the user namespace when there is one)
  gid_t gid = 0;
  int switch_ids = 0;
};

// Everything the child reads; built by the parent before clone.
struct ChildPlan {
  const char* folder = nullptr;
  const char* python = nullptr;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  int stdin_fd = -1, stdout_fd = -1, stderr_fd = -1, report_fd = -1, sync_fd = -1;
  bool user_namespace = false, mount_namespace = false, pid_namespace = false, drop_groups = false;
  struct rlimit cpu {
  }, as{}, nproc{}, fsize{}, nofile{}, core{};
  const sock_fprog* filter = nullptr;
};

[[noreturn]] void child_fail(const ChildPlan& p, int step) {
  ChildFailure f{step, errno};
  ssize_t ignored = write(p.report_fd, &f, sizeof f);
  (void)ignored;
  _exit(127);
}

[[noreturn]] void child_main(const ChildPlan& p) {
  GoMessage go;
  if (read(p.sync_fd, &go, sizeof go) != static_cast<ssize_t>(sizeof go)) child_fail(p, kStepSync);
  if (setsid() < 0) child_fail(p, kStepSetsid);
  if (dup2(p.stdin_fd, 0) < 0 || dup2(p.stdout_fd, 1) < 0 || dup2(p.stderr_fd, 2) < 0)
    child_fail(p, kStepStdio);
  // Every other descriptor closes at exec (the report pipe's too, which tells the parent exec
  // worked).
  if (syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC) != 0) {
    const long max = sysconf(_SC_OPEN_MAX);
    for (long fd = 3; fd < max; ++fd) fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC);
  }

  // In a user namespace: become its uid 0 (which the parent mapped to the sandbox uid outside).
  if (p.user_namespace) {
    if (p.drop_groups && syscall(SYS_setgroups, 0, nullptr) != 0) child_fail(p, kStepCredentials);
    if (syscall(SYS_setresgid, 0, 0, 0) != 0 || syscall(SYS_setresuid, 0, 0, 0) != 0)
      child_fail(p, kStepCredentials);
  }
  if (p.mount_namespace) {
    // Nothing done here may reach the evaluator's mounts.
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
      child_fail(p, kStepMountPrivate);
    if (mount(p.folder, p.folder, nullptr, MS_BIND, nullptr) != 0) child_fail(p, kStepBindFolder);
    // A /proc of our own PID namespace hides the host's processes; where the kernel or container
    // refuses (masked /proc paths), the host's stays, read-only like the rest.
    if (p.pid_namespace &&
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0) {
      ChildFailure note{kNoteFreshProc, 0};
      if (write(p.report_fd, &note, sizeof note) != static_cast<ssize_t>(sizeof note))
        child_fail(p, kStepMountPrivate);
    }
    struct mount_attr ro {};
    ro.attr_set = MOUNT_ATTR_RDONLY;
    if (syscall(SYS_mount_setattr, -1, "/", AT_RECURSIVE, &ro, sizeof ro) != 0)
      child_fail(p, kStepReadOnlyRoot);
    struct mount_attr rw {};
    rw.attr_clr = MOUNT_ATTR_RDONLY;
    if (syscall(SYS_mount_setattr, -1, p.folder, 0, &rw, sizeof rw) != 0)
      child_fail(p, kStepWritableFolder);
  }
  if (chdir(p.folder) != 0) child_fail(p, kStepChdir);
  if (p.user_namespace) {
    // uid 0 of the namespace would get every capability back at exec: empty the bounding set and
    // tell the kernel not to treat uid 0 specially.
    for (int cap = 0; cap < 64; ++cap)
      if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
        child_fail(p, kStepCapabilities);
    if (prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED, 0, 0, 0) != 0)
      child_fail(p, kStepCapabilities);
  } else if (go.switch_ids) {
    // Root without a user namespace: become the per-run uid (which drops every capability).
    if (syscall(SYS_setgroups, 0, nullptr) != 0 ||
        syscall(SYS_setresgid, go.gid, go.gid, go.gid) != 0 ||
        syscall(SYS_setresuid, go.uid, go.uid, go.uid) != 0)
      child_fail(p, kStepCredentials);
  }
  if (setrlimit(RLIMIT_CPU, &p.cpu) != 0 || setrlimit(RLIMIT_AS, &p.as) != 0 ||
      setrlimit(RLIMIT_NPROC, &p.nproc) != 0 || setrlimit(RLIMIT_FSIZE, &p.fsize) != 0 ||
      setrlimit(RLIMIT_NOFILE, &p.nofile) != 0 || setrlimit(RLIMIT_CORE, &p.core) != 0)
    child_fail(p, kStepRlimit);
  // Dies with the evaluator (set last: a change of credentials clears it).
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) child_fail(p, kStepNoNewPrivs);
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, p.filter, 0, 0) != 0) child_fail(p, kStepSeccomp);
  execve(p.python, p.argv, p.envp);
  child_fail(p, kStepExec);
}

// ---- The parent
// ------------------------------------------------------------------------------------

// An owned file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

struct Pipe {
  Fd read, write;
};
Pipe make_pipe() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0)
    throw Error(fmt::format("sandbox: pipe2: {}", std::strerror(errno)));
  return {Fd(fds[0]), Fd(fds[1])};
}

// The sandbox folder, removed with everything in it.
class TempFolder {
 public:
  TempFolder() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "seqit-sandbox-XXXXXX").string();
    if (!mkdtemp(pattern.data()))
      throw Error(
          fmt::format("sandbox: cannot create a temporary folder: {}", std::strerror(errno)))
          .in_file(pattern);
    path_ = pattern;
  }
  ~TempFolder() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void write_whole_file(const std::string& path, std::string_view content, int flags, mode_t mode) {
  Fd fd(open(path.c_str(), flags | O_CLOEXEC, mode));
  if (fd.get() < 0)
    throw Error(fmt::format("sandbox: cannot open: {}", std::strerror(errno))).in_file(path);
  while (!content.empty()) {
    const ssize_t n = write(fd.get(), content.data(), content.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      throw Error(fmt::format("sandbox: cannot write: {}", std::strerror(errno))).in_file(path);
    content.remove_prefix(static_cast<size_t>(n));
  }
}

// One way of starting the child: the namespaces to ask clone for.
struct Attempt {
  unsigned long clone_flags = 0;
  bool user_namespace = false, mount_namespace = false;
};

// A bounded capture of one stream.
struct Capture {
  std::string text;
  bool truncated = false;
  bool open = true;
};
// Reads what is there now; false at end of stream.
void read_available(int fd, Capture& c, size_t limit) {
  char buf[8192];
  const ssize_t n = read(fd, buf, sizeof buf);
  if (n > 0) {
    const size_t keep = std::min(static_cast<size_t>(n), limit - std::min(limit, c.text.size()));
    c.text.append(buf, keep);
    if (keep < static_cast<size_t>(n)) c.truncated = true;
  } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
    c.open = false;
  }
}

// Polls both streams for up to `timeout_ms`.
void pump(int out_fd, int err_fd, Capture& out, Capture& err, size_t limit, int timeout_ms) {
  pollfd fds[2] = {{out.open ? out_fd : -1, POLLIN, 0}, {err.open ? err_fd : -1, POLLIN, 0}};
  const int n = poll(fds, 2, timeout_ms);
  if (n <= 0) return;
  if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) read_available(out_fd, out, limit);
  if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) read_available(err_fd, err, limit);
}

std::string last_line(const std::string& text) {
  size_t end = text.size();
  while (end > 0 && (text[end - 1] == '\n' || text[end - 1] == '\r' || text[end - 1] == ' ')) --end;
  const size_t start = text.rfind('\n', end == 0 ? 0 : end - 1);
  std::string line = text.substr(start == std::string::npos ? 0 : start + 1,
                                 end - (start == std::string::npos ? 0 : start + 1));
  if (line.size() > 200) line = line.substr(0, 200) + "...";
  return line;
}

double seconds_of(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) * 1e-6;
}

}  // namespace

std::string SandboxProtections::summary() const {
  std::vector<std::string> parts;
  std::string ns;
  for (auto [on, name] : {std::pair{user_namespace, "user"}, std::pair{mount_namespace, "mount"},
                          std::pair{network_namespace, "net"}, std::pair{pid_namespace, "pid"}}) {
    if (!on) continue;
    if (!ns.empty()) ns += '+';
    ns += name;
  }
  if (!ns.empty()) parts.push_back(ns + " namespaces");
  if (mount_namespace) parts.push_back("read-only root");
  if (private_proc) parts.push_back("private /proc");
  if (unprivileged_uid) parts.push_back("unprivileged uid");
  if (seccomp_socket_filter) parts.push_back("seccomp(socket)");
  if (seccomp_write_filter) parts.push_back("seccomp(writes)");
  if (parts.empty()) return "none";
  return fmt::format("{}", fmt::join(parts, ", "));
}

std::string_view to_string(SandboxOutcome outcome) {
  switch (outcome) {
    case SandboxOutcome::kPassed:
      return "passed";
    case SandboxOutcome::kFailed:
      return "failed";
    case SandboxOutcome::kTimeout:
      return "timeout";
    case SandboxOutcome::kMemoryLimit:
      return "memory limit";
    case SandboxOutcome::kSignal:
      return "signal";
  }
  return "?";
}

SandboxResult run_python_sandboxed(const std::string& program, const SandboxLimits& limits) {
  if (!(limits.wall_seconds > 0) || limits.cpu_seconds < 1 || limits.memory_bytes < (16 << 20) ||
      limits.max_processes < 1 || limits.max_open_files < 8 || limits.max_file_bytes < 0)
    throw Error(
        "sandbox: invalid limits (wall > 0 s, cpu >= 1 s, memory >= 16 MiB, processes >= 1, open "
        "files >= 8)");
  if (access(limits.python.c_str(), X_OK) != 0)
    throw Error(fmt::format("sandbox: python is not executable: {}", std::strerror(errno)))
        .in_file(limits.python);

  TempFolder folder;
  const std::string program_path = folder.path() + "/program.py";
  write_whole_file(program_path, program, O_WRONLY | O_CREAT | O_EXCL, 0644);

  const bool root = geteuid() == 0;
  std::vector<std::string> args = {limits.python, "-I", "-B", program_path};
  std::vector<std::string> env = {"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8",
                                  "HOME=" + folder.path(), "TMPDIR=" + folder.path()};
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);

  std::vector<sock_filter> filter_ns = build_filter(false), filter_plain = build_filter(true);
  sock_fprog prog_ns{static_cast<unsigned short>(filter_ns.size()), filter_ns.data()};
  sock_fprog prog_plain{static_cast<unsigned short>(filter_plain.size()), filter_plain.data()};

  Fd devnull(open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (devnull.get() < 0) throw Error(fmt::format("sandbox: /dev/null: {}", std::strerror(errno)));
  Pipe out = make_pipe(), err = make_pipe();

  ChildPlan plan;
  plan.folder = folder.path().c_str();
  plan.python = limits.python.c_str();
  plan.argv = argv.data();
  plan.envp = envp.data();
  plan.stdin_fd = devnull.get();
  plan.stdout_fd = out.write.get();
  plan.stderr_fd = err.write.get();
  plan.cpu = {static_cast<rlim_t>(limits.cpu_seconds), static_cast<rlim_t>(limits.cpu_seconds + 1)};
  plan.as = {static_cast<rlim_t>(limits.memory_bytes), static_cast<rlim_t>(limits.memory_bytes)};
  plan.nproc = {static_cast<rlim_t>(limits.max_processes),
                static_cast<rlim_t>(limits.max_processes)};
  plan.fsize = {static_cast<rlim_t>(limits.max_file_bytes),
                static_cast<rlim_t>(limits.max_file_bytes)};
  plan.nofile = {static_cast<rlim_t>(limits.max_open_files),
                 static_cast<rlim_t>(limits.max_open_files)};
  plan.core = {0, 0};

  std::vector<Attempt> attempts;
  if (limits.use_namespaces) {
    attempts.push_back({CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID, true, true});
    if (root) attempts.push_back({CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID, false, true});
  }
  attempts.push_back({0, false, false});

  SandboxResult result;
  std::vector<std::string> refusals;  // why the stronger attempts did not work, for the error text
  const auto start = std::chrono::steady_clock::now();
  pid_t pid = -1;
  for (const Attempt& attempt : attempts) {
    Pipe report = make_pipe(), sync = make_pipe();
    plan.report_fd = report.write.get();
    plan.sync_fd = sync.read.get();
    plan.user_namespace = attempt.user_namespace;
    plan.mount_namespace = attempt.mount_namespace;
    plan.pid_namespace = (attempt.clone_flags & CLONE_NEWPID) != 0;
    plan.drop_groups = root;
    plan.filter = attempt.mount_namespace ? &prog_ns : &prog_plain;

    pid = static_cast<pid_t>(
        syscall(SYS_clone, attempt.clone_flags | SIGCHLD, nullptr, nullptr, nullptr, 0));
    if (pid == 0) child_main(plan);
    if (pid < 0) {
      refusals.push_back(
          fmt::format("clone({:#x}): {}", attempt.clone_flags, std::strerror(errno)));
      continue;
    }
    report.write.reset();
    sync.read.reset();
    auto abandon = [&](std::string why) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      refusals.push_back(std::move(why));
    };

    // The per-run identity: 2'000'000'000 + pid when root; the evaluator's own ids otherwise.
    GoMessage go;
    go.uid = root ? static_cast<uid_t>(2'000'000'000u + static_cast<uint32_t>(pid)) : geteuid();
    go.gid = root ? static_cast<gid_t>(go.uid) : getegid();
    go.switch_ids = root;
    if (root && (chown(folder.path().c_str(), go.uid, go.gid) != 0 ||
                 chown(program_path.c_str(), go.uid, go.gid) != 0)) {
      abandon(fmt::format("chown of the sandbox folder: {}", std::strerror(errno)));
      throw Error(fmt::format("sandbox: {}", refusals.back())).in_file(folder.path());
    }
    if (attempt.user_namespace) {
      const std::string proc = fmt::format("/proc/{}/", pid);
      try {
        if (!root) write_whole_file(proc + "setgroups", "deny", O_WRONLY, 0);
        write_whole_file(proc + "uid_map", fmt::format("0 {} 1\n", go.uid), O_WRONLY, 0);
        write_whole_file(proc + "gid_map", fmt::format("0 {} 1\n", go.gid), O_WRONLY, 0);
      } catch (const Error& e) {
        abandon(fmt::format("user namespace id maps: {}", e.what()));
        continue;
      }
    }
    if (write(sync.write.get(), &go, sizeof go) != static_cast<ssize_t>(sizeof go)) {
      abandon(fmt::format("starting the child: {}", std::strerror(errno)));
      continue;
    }
    sync.write.reset();
    ChildFailure failure;
    ssize_t n;
    bool fresh_proc = false;
    for (;;) {
      do n = read(report.read.get(), &failure, sizeof failure);
      while (n < 0 && errno == EINTR);
      if (n != static_cast<ssize_t>(sizeof failure) || failure.step != kNoteFreshProc) break;
      fresh_proc = true;
    }
    if (n == 0) {  // the report pipe closed at exec: python runs
      result.protections.user_namespace = attempt.user_namespace;
      result.protections.mount_namespace = attempt.mount_namespace;
      result.protections.network_namespace = (attempt.clone_flags & CLONE_NEWNET) != 0;
      result.protections.pid_namespace = plan.pid_namespace;
      result.protections.private_proc = fresh_proc;
      result.protections.unprivileged_uid = root || attempt.user_namespace;
      result.protections.seccomp_socket_filter = true;
      result.protections.seccomp_write_filter = !attempt.mount_namespace;
      result.fallback_reason = fmt::format("{}", fmt::join(refusals, "; "));
      break;
    }
    waitpid(pid, nullptr, 0);
    refusals.push_back(
        n == static_cast<ssize_t>(sizeof failure)
            ? fmt::format("{}: {}", step_name(failure.step), std::strerror(failure.error))
            : "the child ended without a report");
    pid = -1;
  }
  if (pid <= 0)
    throw Error(fmt::format("sandbox: could not start python: {}", fmt::join(refusals, "; ")));
  out.write.reset();
  err.write.reset();
  result.process_group = pid;

  // Wait for python, reading its output, until it ends or the wall-clock limit passes.
  const auto deadline = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                    std::chrono::duration<double>(limits.wall_seconds));
  Capture out_c, err_c;
  bool timed_out = false;
  for (;;) {
    siginfo_t info{};
    if (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == pid)
      break;
    const auto now = std::chrono::steady_clock::now();
    if (!timed_out && now >= deadline) {
      kill(-pid, SIGKILL);
      timed_out = true;
    }
    int wait_ms = 50;
    if (!timed_out)
      wait_ms = static_cast<int>(std::clamp<int64_t>(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1, 1,
          50));
    if (out_c.open || err_c.open) {
      pump(out.read.get(), err.read.get(), out_c, err_c, limits.max_output_bytes, wait_ms);
    } else {
      usleep(static_cast<useconds_t>(wait_ms) * 1000);
    }
  }
  // python has ended but is not reaped yet, so the process group id is still ours: end the rest.
  kill(-pid, SIGKILL);
  int status = 0;
  rusage usage{};
  while (wait4(pid, &status, 0, &usage) < 0 && errno == EINTR) {
  }
  // Without a PID namespace the processes python started may still be dying (or be zombies waiting
  // for init): wait up to 2 s until the group is empty, so that the caller sees none of them.
  for (int i = 0; i < 200 && kill(-pid, SIGKILL) == 0; ++i) usleep(10'000);
  // Read what is left; every writer is dead or dying, so the pipes reach their end at once.
  const auto drain_until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while ((out_c.open || err_c.open) && std::chrono::steady_clock::now() < drain_until)
    pump(out.read.get(), err.read.get(), out_c, err_c, limits.max_output_bytes, 50);

  result.wall_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.cpu_seconds = seconds_of(usage.ru_utime) + seconds_of(usage.ru_stime);
  result.output = std::move(out_c.text);
  result.output_truncated = out_c.truncated;
  result.error_output = std::move(err_c.text);
  result.error_output_truncated = err_c.truncated;

  if (WIFEXITED(status)) {
    result.exit_status = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
  }
  if (timed_out) {
    result.outcome = SandboxOutcome::kTimeout;
    result.reason = fmt::format("wall-clock limit of {} s reached", limits.wall_seconds);
  } else if (result.signal == SIGXCPU ||
             (result.signal == SIGKILL && result.cpu_seconds >= limits.cpu_seconds - 0.05)) {
    result.outcome = SandboxOutcome::kTimeout;
    result.reason = fmt::format("CPU-time limit of {} s reached", limits.cpu_seconds);
  } else if (result.signal != 0) {
    result.outcome = SandboxOutcome::kSignal;
    const char* abbrev = sigabbrev_np(result.signal);
    result.reason =
        fmt::format("killed by signal {} (SIG{})", result.signal, abbrev ? abbrev : "?");
  } else if (result.exit_status == 0) {
    result.outcome = SandboxOutcome::kPassed;
    result.reason = "exit status 0";
  } else if (result.error_output.find("MemoryError") != std::string::npos) {
    result.outcome = SandboxOutcome::kMemoryLimit;
    result.reason =
        fmt::format("MemoryError under the {} MiB address-space limit", limits.memory_bytes >> 20);
  } else {
    result.outcome = SandboxOutcome::kFailed;
    const std::string last = last_line(result.error_output);
    result.reason = last.empty() ? fmt::format("exit status {}", result.exit_status)
                                 : fmt::format("exit status {}: {}", result.exit_status, last);
  }
  return result;
}

}  // namespace seqit::eval
