// Supervision of one run: a shell command started as its own process group,
// with stdout/stderr in files and a metrics pipe, stopped with SIGTERM then
// SIGKILL, and its end classified into the reasons users see.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "assay/status.h"

namespace assay::worker {

struct LaunchSpec {
  std::string command;  // run as: /bin/sh -c <command>
  // Set over the inherited environment (a later entry wins).
  std::vector<std::pair<std::string, std::string>> env;
  std::string cwd;          // empty: the worker's own
  std::string stdout_path;  // created or truncated
  std::string stderr_path;
  // Open a pipe whose write end the child inherits; its number is exported
  // as ASSAY_METRICS_FD. The read end stays here only.
  bool metrics_pipe = true;
  // Kill the run's leader when the supervising thread dies (PR_SET_PDEATHSIG).
  bool die_with_parent = true;
};

struct ExitStatus {
  bool exited = false;  // true: `code` holds the exit code; false: killed by `signal`
  int code = 0;
  int signal = 0;
};

// One child process group. The leader's pid is the group id. Not thread-safe;
// the destructor kills whatever is left of the group and reaps it.
class Process {
 public:
  static Result<std::unique_ptr<Process>> spawn(const LaunchSpec& spec);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  // Read end of the metrics pipe (non-blocking), or -1.
  int metrics_fd() const { return metrics_fd_; }
  // A pidfd of the leader: readable (poll POLLIN) once it has exited, so a
  // supervisor can sleep until then instead of polling; -1 if the kernel
  // has none (before Linux 5.3).
  int exit_fd() const { return exit_fd_; }
  void close_metrics_fd();

  // Sends `sig` to every process in the group; false when none is left.
  bool signal_group(int sig);
  // True while any process of the group exists (leader or descendants).
  bool group_alive();
  // SIGTERM to the group now; SIGKILL from tick() once `grace` has passed.
  void stop(std::chrono::milliseconds grace);
  bool stop_requested() const { return stop_requested_; }
  bool sigkill_sent() const { return sigkill_sent_; }

  // Reaps the leader and orphaned members without blocking. After the leader
  // exits, the rest of the group is stopped too (a run owns its processes).
  void tick();
  // The leader's status once it has exited.
  const std::optional<ExitStatus>& leader_status() const { return leader_; }
  // Leader reaped and no process of the group left.
  bool finished();
  // Blocks (polling) until finished() or `limit` passes; true when finished.
  bool wait_finished(std::chrono::milliseconds limit);

 private:
  Process() = default;
  void reap();

  pid_t pid_ = -1;
  int metrics_fd_ = -1;
  int exit_fd_ = -1;
  std::optional<ExitStatus> leader_;
  bool stop_requested_ = false;
  bool sigkill_sent_ = false;
  std::chrono::steady_clock::time_point kill_at_{};
  std::chrono::milliseconds grace_{0};
};

// Environment for a run, in the order it is applied.
struct RunEnv {
  int64_t run_id = 0;
  std::string params_json = "{}";
  std::string output_dir;
  std::vector<int> gpu_indices;  // empty: CUDA_VISIBLE_DEVICES="" (no GPU)
  std::vector<std::pair<std::string, std::string>> extra;  // the spec's env, applied first
  // ASSAY_PREEMPT_FILE: created by the worker when it is preempted (for runs
  // that poll rather than handle SIGUSR1). Empty: not set.
  std::string preempt_file;
  // ASSAY_RESUME_FROM: the checkpoint to resume from. Empty: not set.
  std::string resume_from;
};
std::vector<std::pair<std::string, std::string>> run_environment(const RunEnv& e);

// ---- How a run ended ----------------------------------------------------------
// The names match the database's failure_reason values; kSucceeded has none.
enum class Outcome { kSucceeded, kExitCode, kSignal, kOom, kTimeout, kCancelled, kSpawnError };
std::string_view to_string(Outcome o);

struct ExitFacts {
  std::optional<ExitStatus> status;  // none: the process could not be started
  bool cancelled = false;            // we stopped it because a user cancelled / the lease went
  bool timed_out = false;            // we stopped it because its timeout passed
  bool we_sent_sigkill = false;      // our own escalation, not the kernel's OOM killer
  bool host_oom = false;             // the OOM killer fired while it ran
  std::string log_tail;              // last bytes of stderr and stdout
};

struct Classification {
  Outcome outcome = Outcome::kSucceeded;
  std::optional<int> exit_code;
  std::optional<int> signal;
  std::string detail;  // one line for users, e.g. "exit code 3"
};

// Precedence: cancelled > timeout > out of memory > signal > exit code.
// A zero exit is success whatever the log says.
Classification classify_exit(const ExitFacts& f);

// "CUDA out of memory", "CUDA error: out of memory" or "OutOfMemoryError".
bool log_shows_oom(std::string_view tail);

// Count of OOM kills seen by the kernel for this process's cgroup (cgroup v2
// memory.events), else system-wide (/proc/vmstat); none when neither exists.
// A rise while a run was alive is the host-OOM evidence.
std::optional<int64_t> oom_kill_count();

// Up to `max_bytes` from the end of a file ("" when it does not exist).
std::string read_tail(const std::string& path, size_t max_bytes);

}  // namespace assay::worker
