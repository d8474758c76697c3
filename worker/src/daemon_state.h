// State the worker's threads share. Each field says what makes sharing it
// safe: the mutex that guards it (ASSAY_GUARDED_BY), being atomic, or being
// set before the threads start and never written again.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "assay/thread_annotations.h"
#include "assay/worker.h"
#include "assay/worker_spool.h"
#include "http_client.h"

namespace assay::worker {

using Json = nlohmann::json;
using AttemptKey = std::pair<int64_t, int>;  // (run id, attempt)

// One run as the coordinator leased it.
struct LeasedRun {
  int64_t run_id = 0;
  int attempt = 1;
  std::string name, sweep, command;
  Json params = Json::object();
  std::vector<std::pair<std::string, std::string>> env;
  std::vector<int> gpus;
  int cpus = 1;  // CPU slots it holds (the lease reply's `cpus`)
  std::optional<double> timeout_s;
  // The checkpoint the coordinator asks this attempt to resume from (v1.9).
  std::string resume_path;
  int64_t resume_step = -1;  // -1: none
  std::string lease_error;  // set when the lease entry could not be understood
};
Result<LeasedRun> parse_leased_run(const Json& j);

// Where a run's stdout/stderr files are and how far each was shipped.
struct LogCursor {
  std::string path[2];   // stdout, stderr
  int64_t offset[2] = {0, 0};
};

// Spool record types (the "type" field of a payload).
inline constexpr const char* kRecStarted = "started";
inline constexpr const char* kRecMetrics = "metrics";
inline constexpr const char* kRecArtifact = "artifact";
inline constexpr const char* kRecEvent = "event";
inline constexpr const char* kRecFinished = "finished";

struct Shared {
  Shared(const WorkerConfig& c, std::ostream& l)
      : cfg(c), wake_fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)), log_out(l) {}
  ~Shared() {
    if (wake_fd >= 0) ::close(wake_fd);
  }
  Shared(const Shared&) = delete;
  Shared& operator=(const Shared&) = delete;

  // Set before the threads start, then only read: no lock.
  const WorkerConfig& cfg;
  std::string instance;           // random per process start
  Spool* spool = nullptr;         // the Spool is thread-safe itself (its own mutex)
  // Written to wake the supervisor out of its poll at once (a lease landed,
  // a signal came) instead of at its next periodic pass; -1 if unavailable.
  const int wake_fd;
  void wake_supervisor() const {
    uint64_t one = 1;
    if (wake_fd >= 0) (void)!::write(wake_fd, &one, sizeof one);
  }
  // Runs leased ahead of free resources (WorkerConfig::lease_ahead resolved).
  int lease_ahead() const { return cfg.lease_ahead >= 0 ? cfg.lease_ahead : cfg.cpus; }

  // Flags and settings any thread reads or writes: atomic, no lock.
  std::atomic<bool> registered{false};
  std::atomic<double> heartbeat_s{10};
  std::atomic<bool> stop_leasing{false};  // draining: lease no more
  // A lease request is on the wire: its reply may still hand us runs, so
  // the supervisor does not finish until it is back.
  std::atomic<bool> lease_in_flight{false};
  // Preempted (SIGTERM): runs are asked to checkpoint (SIGUSR1 and
  // ASSAY_PREEMPT_FILE), stopped after cfg.preempt_grace, and reported as
  // `preempted`.
  std::atomic<bool> preempting{false};
  std::atomic<bool> abort{false};         // leave now
  std::atomic<bool> supervisor_done{false};
  std::atomic<bool> delivery_done{false};

  // The run bookkeeping the lease, supervisor and delivery threads share.
  std::mutex mu;
  // Leased, not yet started: held (in lease order) until the run's CPU
  // slots are free here; handed back unstarted on drain or preemption.
  std::deque<LeasedRun> incoming ASSAY_GUARDED_BY(mu);
  std::set<int64_t> cancel ASSAY_GUARDED_BY(mu);              // runs a user cancelled
  std::set<AttemptKey> dropped ASSAY_GUARDED_BY(mu);          // no longer ours: kill, report nothing
  std::map<AttemptKey, LogCursor> logs ASSAY_GUARDED_BY(mu);  // logs still to ship
  std::set<AttemptKey> held ASSAY_GUARDED_BY(mu);             // ours until `finished` is delivered
  int live_processes ASSAY_GUARDED_BY(mu) = 0;                // started and not yet finished

  bool is_dropped(const AttemptKey& k) ASSAY_EXCLUDES(mu) {
    std::lock_guard lock(mu);
    return dropped.count(k) > 0;
  }
  void drop(const AttemptKey& k) ASSAY_EXCLUDES(mu) {
    std::lock_guard lock(mu);
    dropped.insert(k);
    held.erase(k);
    logs.erase(k);
  }

  // One line to the worker's log, whole, from any thread.
  void say(const std::string& line) ASSAY_EXCLUDES(log_mu);
  std::mutex log_mu;
  std::ostream& log_out;  // written only under log_mu (a reference takes no annotation)
};

// Checked reads of peer data (coordinator replies): nullopt when the value
// is missing or of another type, never an exception.
std::optional<int64_t> int_of(const Json& v);
std::optional<double> number_of(const Json& v);
// A short rendering of a value for log lines.
std::string excerpt(const Json& v);

// Runs one step of a thread's loop. An exception (a library throw, a reply
// shape no check foresaw) is logged with `where` and swallowed, so the loop
// goes on instead of the process ending in std::terminate. Returns false
// when it caught one.
template <class F>
bool guarded(Shared& s, const char* where, F&& fn) {
  try {
    fn();
    return true;
  } catch (const std::exception& e) {
    s.say(std::string(where) + ": unexpected error, continuing: " + e.what());
  } catch (...) {
    s.say(std::string(where) + ": unexpected error of unknown type, continuing");
  }
  return false;
}

// Registers (again) with the coordinator; safe to call from any thread.
Status register_worker(HttpClient& http, Shared& s);

// Thread bodies.
void heartbeat_loop(Shared& s);
void lease_loop(Shared& s);
void delivery_loop(Shared& s);
void supervise(Shared& s);

}  // namespace assay::worker
