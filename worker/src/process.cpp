// Process-group supervision with clone(CLONE_VM | CLONE_VFORK)/execve.
//
// The child shares the worker's memory until execve (as posix_spawn does),
// so starting a run costs no copy of the worker's page tables and no
// copy-on-write faults: with fork, a run of `true` cost ~12 ms of CPU, most
// of it copying and then tearing down the worker's address space.
// Between clone and execve the child calls only async-signal-safe functions
// and writes no memory the parent reads: everything it needs (argv, envp,
// file descriptors) is prepared beforehand, and every signal is blocked
// until the child has reset the worker's handlers.
// Every descriptor is opened O_CLOEXEC, so the only ones a run inherits are
// stdin (/dev/null), stdout, stderr and, at fd 3, the metrics pipe.
#include <fcntl.h>
#include <signal.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "assay/worker_process.h"

extern char** environ;

namespace assay::worker {

namespace {

constexpr int kMetricsChildFd = 3;

std::string errno_text(int e) { return std::strerror(e); }

// Moves a descriptor to >= 10 so dup2 onto 0..3 in the child never clobbers it.
int high_fd(int fd) {
  if (fd < 0 || fd >= 10) return fd;
  int h = fcntl(fd, F_DUPFD_CLOEXEC, 10);
  close(fd);
  return h;
}

struct Fds {
  int devnull = -1, out = -1, err = -1, mread = -1, mwrite = -1, ereport_r = -1, ereport_w = -1;
  ~Fds() {
    for (int fd : {devnull, out, err, mread, mwrite, ereport_r, ereport_w})
      if (fd >= 0) close(fd);
  }
};

// A grandchild orphaned by its parent is re-parented to the nearest
// subreaper; making the worker one lets it reap them, so "is any process of
// the group left" has an exact answer (no zombies held by an init that never
// reaps).
void become_subreaper() {
  static std::once_flag once;
  std::call_once(once, [] { prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); });
}

// Closes every descriptor >= `from` in the child (close_range, else a loop).
void close_from(int from) {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, static_cast<unsigned>(from), ~0U, 0) == 0) return;
#endif
  long max = sysconf(_SC_OPEN_MAX);
  if (max < 0 || max > 65536) max = 65536;
  for (int fd = from; fd < max; ++fd) close(fd);
}

[[noreturn]] void child_fail(int report_fd, int stage) {
  int payload[2] = {stage, errno};
  ssize_t w = write(report_fd, payload, sizeof payload);
  (void)w;
  _exit(127);
}

[[noreturn]] void child_main(const Fds& f, const LaunchSpec& spec, pid_t parent, char* const* argv,
                             char* const* envp) {
  // A handler of the worker's must never run here (it would write the
  // worker's memory): default dispositions first, then unblock.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  for (int s = 1; s < NSIG; ++s) {
    struct sigaction old {};
    if (s == SIGKILL || s == SIGSTOP || sigaction(s, nullptr, &old) != 0) continue;
    bool handled = (old.sa_flags & SA_SIGINFO) || (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN);
    if (handled) sigaction(s, &dfl, nullptr);
  }
  for (int s : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGCHLD}) sigaction(s, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  if (setsid() < 0) child_fail(f.ereport_w, 1);
  if (spec.die_with_parent) {
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != parent) _exit(127);  // the parent died before prctl took effect
  }
  if (dup2(f.devnull, 0) < 0 || dup2(f.out, 1) < 0 || dup2(f.err, 2) < 0) child_fail(f.ereport_w, 2);
  if (f.mwrite >= 0 && dup2(f.mwrite, kMetricsChildFd) < 0) child_fail(f.ereport_w, 3);
  if (!spec.cwd.empty() && chdir(spec.cwd.c_str()) < 0) child_fail(f.ereport_w, 4);
  // The error pipe must survive until execve (it is O_CLOEXEC): close the
  // rest around it.
  int keep = f.ereport_w;
  int first = f.mwrite >= 0 ? kMetricsChildFd + 1 : kMetricsChildFd;
  if (keep > first) {
    for (int fd = first; fd < keep; ++fd) close(fd);
    close_from(keep + 1);
  } else {
    close_from(first);
  }
  execve("/bin/sh", argv, envp);
  child_fail(f.ereport_w, 5);
}

struct ChildArgs {
  const Fds* f;
  const LaunchSpec* spec;
  pid_t parent;
  char* const* argv;
  char* const* envp;
};

int child_entry(void* p) {
  const auto* a = static_cast<const ChildArgs*>(p);
  child_main(*a->f, *a->spec, a->parent, a->argv, a->envp);
}

// Starts the child on its own small stack, sharing memory with this process
// until it calls execve or _exit (this thread waits until then).
pid_t spawn_child(const ChildArgs& args) {
  constexpr size_t kStack = 64 << 10;  // the child only makes system calls
  void* stack = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK,
                     -1, 0);
  if (stack == MAP_FAILED) return -1;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t pid = clone(child_entry, static_cast<char*>(stack) + kStack,
                    CLONE_VM | CLONE_VFORK | SIGCHLD, const_cast<ChildArgs*>(&args));
  int saved = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  munmap(stack, kStack);
  errno = saved;
  return pid;
}

const char* stage_name(int stage) {
  switch (stage) {
    case 1: return "setsid";
    case 2: return "redirecting stdio";
    case 3: return "passing the metrics pipe";
    case 4: return "chdir to the working directory";
    default: return "execve /bin/sh";
  }
}

}  // namespace

Result<std::unique_ptr<Process>> Process::spawn(const LaunchSpec& spec) {
  become_subreaper();
  Fds f;
  f.devnull = high_fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
  f.out = high_fd(open(spec.stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (f.out < 0) return Status::IoError(spec.stdout_path + ": cannot create: " + errno_text(errno));
  f.err = high_fd(open(spec.stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (f.err < 0) return Status::IoError(spec.stderr_path + ": cannot create: " + errno_text(errno));
  int p[2];
  if (spec.metrics_pipe) {
    if (pipe2(p, O_CLOEXEC) < 0) return Status::IoError("metrics pipe: " + errno_text(errno));
    f.mread = high_fd(p[0]);
    f.mwrite = high_fd(p[1]);
  }
  if (pipe2(p, O_CLOEXEC) < 0) return Status::IoError("spawn report pipe: " + errno_text(errno));
  f.ereport_r = high_fd(p[0]);
  f.ereport_w = high_fd(p[1]);
  if (f.devnull < 0 || (spec.metrics_pipe && (f.mread < 0 || f.mwrite < 0)) || f.ereport_r < 0 ||
      f.ereport_w < 0) {
    return Status::IoError("spawn: cannot allocate descriptors: " + errno_text(errno));
  }

  // Environment: inherited, then spec.env, then the metrics descriptor.
  std::map<std::string, std::string> env;
  std::vector<std::string> order;
  auto put = [&](const std::string& k, const std::string& v) {
    if (env.emplace(k, v).second) order.push_back(k); else env[k] = v;
  };
  for (char** e = environ; e && *e; ++e) {
    std::string kv(*e);
    size_t eq = kv.find('=');
    if (eq != std::string::npos) put(kv.substr(0, eq), kv.substr(eq + 1));
  }
  for (const auto& [k, v] : spec.env) put(k, v);
  if (spec.metrics_pipe) put("ASSAY_METRICS_FD", std::to_string(kMetricsChildFd));
  std::vector<std::string> env_strings;
  env_strings.reserve(order.size());
  for (const auto& k : order) env_strings.push_back(k + "=" + env[k]);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  // The wrapping shell catches SIGUSR1 with a no-op trap: a preemption
  // request (SIGUSR1 to the process group) then reaches the run's processes
  // without killing the shell that reports their exit status. Commands the
  // shell starts get the default disposition back (traps are reset on exec).
  std::string a0 = "sh", a1 = "-c", a2 = "trap : USR1\n" + spec.command;
  char* argv[] = {a0.data(), a1.data(), a2.data(), nullptr};

  ChildArgs args{&f, &spec, getpid(), argv, envp.data()};
  pid_t pid = spawn_child(args);
  if (pid < 0) return Status::IoError("clone: " + errno_text(errno));

  close(f.ereport_w);
  f.ereport_w = -1;
  if (f.mwrite >= 0) {
    close(f.mwrite);  // only the child writes; EOF arrives when the run's writers are gone
    f.mwrite = -1;
  }
  int report[2] = {0, 0};
  ssize_t n;
  do {
    n = read(f.ereport_r, report, sizeof report);
  } while (n < 0 && errno == EINTR);
  auto proc = std::unique_ptr<Process>(new Process());
  proc->pid_ = pid;
#ifdef SYS_pidfd_open
  // Not yet reaped, so the pid cannot have been reused. Close-on-exec.
  if (n <= 0) proc->exit_fd_ = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
#endif
  if (n > 0) {  // the child failed before execve
    int st = 0;
    waitpid(pid, &st, 0);
    proc->pid_ = -1;
    return Status::IoError("spawn: " + std::string(stage_name(report[0])) + " failed: " +
                           errno_text(report[1]));
  }
  if (f.mread >= 0) {
    fcntl(f.mread, F_SETFL, fcntl(f.mread, F_GETFL) | O_NONBLOCK);
    proc->metrics_fd_ = f.mread;
    f.mread = -1;
  }
  return proc;
}

Process::~Process() {
  close_metrics_fd();
  if (exit_fd_ >= 0) close(exit_fd_);
  if (pid_ <= 0) return;
  if (!finished()) {
    signal_group(SIGKILL);
    wait_finished(std::chrono::seconds(5));
  }
}

void Process::close_metrics_fd() {
  if (metrics_fd_ >= 0) close(metrics_fd_);
  metrics_fd_ = -1;
}

bool Process::signal_group(int sig) {
  if (pid_ <= 0) return false;
  return kill(-pid_, sig) == 0;
}

bool Process::group_alive() {
  if (pid_ <= 0) return false;
  return kill(-pid_, 0) == 0 || errno == EPERM;
}

void Process::stop(std::chrono::milliseconds grace) {
  if (stop_requested_) return;
  stop_requested_ = true;
  grace_ = grace;
  kill_at_ = std::chrono::steady_clock::now() + grace;
  signal_group(SIGTERM);
  // A stopped (SIGSTOP) group would never act on SIGTERM.
  signal_group(SIGCONT);
}

void Process::reap() {
  if (pid_ <= 0) return;
  for (;;) {
    int st = 0;
    pid_t r = waitpid(-pid_, &st, WNOHANG);
    if (r <= 0) break;
    if (r == pid_) {
      ExitStatus s;
      if (WIFEXITED(st)) {
        s.exited = true;
        s.code = WEXITSTATUS(st);
      } else if (WIFSIGNALED(st)) {
        s.signal = WTERMSIG(st);
      }
      leader_ = s;
    }
  }
}

void Process::tick() {
  reap();
  if (leader_ && !stop_requested_ && group_alive()) {
    // The leader is gone but it left processes behind: they belong to the run.
    stop(std::chrono::milliseconds(2000));
  }
  if (stop_requested_ && !sigkill_sent_ && std::chrono::steady_clock::now() >= kill_at_) {
    if (group_alive()) {
      signal_group(SIGKILL);
      sigkill_sent_ = true;
    }
  }
  reap();
}

bool Process::finished() {
  reap();
  return leader_.has_value() && !group_alive();
}

bool Process::wait_finished(std::chrono::milliseconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (true) {
    tick();
    if (finished()) return true;
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::vector<std::pair<std::string, std::string>> run_environment(const RunEnv& e) {
  std::vector<std::pair<std::string, std::string>> env = e.extra;
  std::string devices;
  for (size_t i = 0; i < e.gpu_indices.size(); ++i) {
    if (i) devices += ',';
    devices += std::to_string(e.gpu_indices[i]);
  }
  // NVML numbers devices in PCI bus order; make CUDA number them the same way.
  env.emplace_back("CUDA_DEVICE_ORDER", "PCI_BUS_ID");
  env.emplace_back("CUDA_VISIBLE_DEVICES", devices);
  env.emplace_back("ASSAY_RUN_ID", std::to_string(e.run_id));
  env.emplace_back("ASSAY_PARAMS", e.params_json);
  env.emplace_back("ASSAY_OUTPUT_DIR", e.output_dir);
  if (!e.preempt_file.empty()) env.emplace_back("ASSAY_PREEMPT_FILE", e.preempt_file);
  // Set only when the checkpoint exists here; a stale value from the spec's
  // env would make a fresh start look like a resume.
  std::erase_if(env, [](const auto& kv) { return kv.first == "ASSAY_RESUME_FROM"; });
  if (!e.resume_from.empty()) env.emplace_back("ASSAY_RESUME_FROM", e.resume_from);
  return env;
}

// ---- Classification --------------------------------------------------------------

std::string_view to_string(Outcome o) {
  switch (o) {
    case Outcome::kSucceeded: return "succeeded";
    case Outcome::kExitCode: return "exit_code";
    case Outcome::kSignal: return "signal";
    case Outcome::kOom: return "oom";
    case Outcome::kTimeout: return "timeout";
    case Outcome::kCancelled: return "cancelled";
    case Outcome::kSpawnError: return "spawn_error";
  }
  return "exit_code";
}

bool log_shows_oom(std::string_view tail) {
  for (std::string_view pat : {"CUDA out of memory", "CUDA error: out of memory", "OutOfMemoryError"}) {
    if (tail.find(pat) != std::string_view::npos) return true;
  }
  return false;
}

namespace {

std::string signal_text(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return "signal " + std::to_string(sig) + (abbrev ? std::string(" (SIG") + abbrev + ")" : "");
}

}  // namespace

Classification classify_exit(const ExitFacts& f) {
  Classification c;
  if (!f.status) {
    c.outcome = Outcome::kSpawnError;
    c.detail = "the command could not be started";
    return c;
  }
  const ExitStatus& s = *f.status;
  if (s.exited) c.exit_code = s.code; else c.signal = s.signal;
  std::string how = s.exited ? "exit code " + std::to_string(s.code) : "killed by " + signal_text(s.signal);
  if (f.cancelled) {
    c.outcome = Outcome::kCancelled;
    c.detail = "cancelled; " + how;
    return c;
  }
  if (f.timed_out) {
    c.outcome = Outcome::kTimeout;
    c.detail = "timed out; " + how;
    return c;
  }
  if (s.exited && s.code == 0) {
    c.outcome = Outcome::kSucceeded;
    c.detail = how;
    return c;
  }
  // The kernel's OOM killer uses SIGKILL; a shell that did not exec its last
  // command reports that as exit code 128 + 9.
  bool killed9 = (!s.exited && s.signal == SIGKILL) || (s.exited && s.code == 128 + SIGKILL);
  if (killed9 && !f.we_sent_sigkill && f.host_oom) {
    c.outcome = Outcome::kOom;
    c.detail = "out of memory: host OOM killer; " + how;
    return c;
  }
  if (log_shows_oom(f.log_tail)) {
    c.outcome = Outcome::kOom;
    c.detail = "out of memory: CUDA out-of-memory in the log; " + how;
    return c;
  }
  c.outcome = s.exited ? Outcome::kExitCode : Outcome::kSignal;
  c.detail = how;
  return c;
}

std::optional<int64_t> oom_kill_count() {
  auto counter_in = [](const std::string& path) -> std::optional<int64_t> {
    std::ifstream in(path);
    std::string key;
    int64_t v;
    while (in >> key >> v) {
      if (key == "oom_kill") return v;
    }
    return std::nullopt;
  };
  std::ifstream cg("/proc/self/cgroup");
  std::string line;
  while (std::getline(cg, line)) {
    if (line.rfind("0::", 0) == 0) {
      std::string rel = line.substr(3);
      if (auto v = counter_in("/sys/fs/cgroup" + rel + "/memory.events")) return v;
    }
  }
  return counter_in("/proc/vmstat");
}

std::string read_tail(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return "";
  std::streamoff size = in.tellg();
  std::streamoff start = size > static_cast<std::streamoff>(max_bytes) ? size - max_bytes : 0;
  in.seekg(start);
  std::string out(static_cast<size_t>(size - start), '\0');
  in.read(out.data(), static_cast<std::streamsize>(out.size()));
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
}

}  // namespace assay::worker
