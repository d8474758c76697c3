// The supervising thread: starts leased runs, reads their metric pipes, turns
// protocol lines into spool records, enforces cancel/timeout/abort, and
// records how each run ended. It never talks to the network: everything it
// produces goes through the spool, in order.
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <thread>

#include "assay/worker_process.h"
#include "assay/hash.h"
#include "assay/worker_protocol.h"
#include "daemon_state.h"
#include "gpu_memory.h"
#include "leftovers.h"

namespace assay::worker {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kMaxPointsPerBatch = 10000;   // the coordinator's per-batch cap
constexpr int64_t kMaxMalformedEvents = 100;   // per run; the rest are only counted
constexpr size_t kMaxKeyBytes = 256;          // the coordinator's limit on a metric name
constexpr size_t kLogTailBytes = 4096;         // per stream: 8 KiB together

// The host's (or cgroup's) OOM-kill counter as of at most 100 ms ago, for a
// run's "before" value. Reading and parsing /proc/vmstat at every start cost
// more CPU than the rest of starting a trivial run; a value up to 100 ms old
// can only make a run that later dies of SIGKILL look OOM-killed when the
// kernel killed something else in those 100 ms. Supervisor thread only.
std::optional<int64_t> recent_oom_kill_count() {
  using Clock = std::chrono::steady_clock;
  static std::optional<int64_t> value;
  static std::optional<Clock::time_point> read_at;
  const auto now = Clock::now();
  if (!read_at || now - *read_at > std::chrono::milliseconds(100)) {
    value = oom_kill_count();
    read_at = now;
  }
  return value;
}

// `s` as one POSIX shell word: single-quoted, each ' written as '\''.
std::string shell_word(const std::string& s) {
  std::string out = "'";
  for (char ch : s) out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return out + "'";
}

std::string dump(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

Json record(const char* type, const AttemptKey& k, Json body) {
  return {{"type", type}, {"run_id", k.first}, {"attempt", k.second}, {"body", std::move(body)}};
}

struct RunSlot {
  LeasedRun lease;
  AttemptKey key;
  std::string stdout_path, stderr_path;
  std::unique_ptr<Process> proc;
  MetricLineReader reader;
  bool metrics_open = true;
  int64_t next_batch_seq = 0;
  Json points = Json::array();
  Clock::time_point last_flush = Clock::now();
  std::vector<std::future<Json>> hashes;  // each yields an artifact or event body record
  bool cancelled = false, timed_out = false, dropped = false;
  // Preemption: asked to checkpoint (SIGUSR1 + preempt file) at most once;
  // stopped as on a cancel when the grace runs out.
  bool preempted = false;
  std::string preempt_file;
  std::optional<Clock::time_point> preempt_deadline;
  std::optional<Clock::time_point> deadline;
  std::optional<Clock::time_point> leader_gone_at;
  // Unix seconds when the leader was first seen exited (polled each
  // iteration): the run's end as `finished` reports it, however late the
  // report reaches the coordinator.
  std::optional<double> exited_at;
  std::optional<int64_t> oom_before;
  int64_t malformed_reported = 0;
  GpuPeak gpu_peak;
};

class Supervisor {
 public:
  explicit Supervisor(Shared& s) : s_(s) {
    if (s_.cfg.gpus_from_nvml) nvml_ = Nvml::open(nullptr);
  }
  void run();

 private:
  bool iterate();
  void start_held();
  void hand_back(const LeasedRun& l);
  void start(LeasedRun lease);
  void poll_pipes();
  void step(RunSlot& r);
  void preempt(RunSlot& r);
  void consume_lines(RunSlot& r);
  void flush_points(RunSlot& r, bool force);
  bool complete(RunSlot& r);
  void finish(RunSlot& r);
  void append(const Json& rec);
  void append_all(const std::vector<Json>& recs);
  void commit();
  void sample_gpus();

  Shared& s_;
  std::unique_ptr<Nvml> nvml_;  // null: GPUs given by --gpus, or no NVML
  Clock::time_point next_gpu_sample_ = Clock::now();
  std::vector<std::string> out_;  // records of this iteration, in order
  std::vector<std::unique_ptr<RunSlot>> slots_;
  int cpus_busy_ = 0;  // CPU slots of the runs in slots_
};

void Supervisor::append_all(const std::vector<Json>& recs) {
  for (const auto& r : recs) out_.push_back(dump(r));
}

// One fsync'd spool append per loop iteration, however many runs reported.
void Supervisor::commit() {
  if (out_.empty()) return;
  // A failing disk is retried: losing a report would be worse than waiting.
  for (int tries = 0;; ++tries) {
    auto st = s_.spool->append(out_);
    if (st.ok()) break;
    if (tries % 50 == 0) s_.say("spool append failed (retrying): " + st.status().message());
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (s_.abort) break;
  }
  out_.clear();
}

void Supervisor::append(const Json& rec) { append_all({rec}); }

// A run held ahead (or leased by a request on the wire when the worker
// stopped leasing) goes back unstarted, as a preemption: requeued without
// using up an attempt. It stays in `held` (listed as active in heartbeats)
// until that report is delivered.
void Supervisor::hand_back(const LeasedRun& l) {
  s_.say("run " + std::to_string(l.run_id) + ": leased ahead, handed back unstarted (" +
         (s_.preempting ? "preempted" : "draining") + ")");
  AttemptKey key{l.run_id, l.attempt};
  {
    std::lock_guard lock(s_.mu);
    s_.held.insert(key);
  }
  Json body = {{"exit_code", nullptr}, {"signal", nullptr}, {"oom_killed", false},
               {"timed_out", false},   {"cancelled", false}, {"preempted", true},
               {"unstarted", true},    {"spawn_error", nullptr}, {"log_tail", ""},
               {"malformed_metric_lines", 0}, {"exited_at", unix_now()}};
  append(record(kRecFinished, key, body));
}

// Starts held runs, in lease order, while their CPU slots (and the run cap)
// are free; hands them all back once the worker stops leasing (drain) or is
// preempted. A run needing more slots than the worker has starts once
// nothing else runs (the coordinator never leases one ahead; this only
// keeps it from stalling).
void Supervisor::start_held() {
  std::deque<LeasedRun> back;
  std::vector<LeasedRun> go;
  {
    std::lock_guard lock(s_.mu);
    if (s_.stop_leasing || s_.preempting) {
      // Once no lease request is on the wire: handed back sooner, a run
      // could be leased straight back to the request still parked there.
      if (!s_.lease_in_flight) back.swap(s_.incoming);
    } else {
      int cpus = cpus_busy_;
      size_t runs = slots_.size();
      while (!s_.incoming.empty()) {
        const LeasedRun& l = s_.incoming.front();
        bool fits = !l.lease_error.empty() || runs == 0 ||
                    ((s_.cfg.max_runs <= 0 || static_cast<int>(runs) < s_.cfg.max_runs) &&
                     (l.cpus <= 0 || cpus + l.cpus <= s_.cfg.cpus));
        if (!fits) break;
        cpus += std::max(0, l.cpus);
        ++runs;
        go.push_back(std::move(s_.incoming.front()));
        s_.incoming.pop_front();
      }
    }
  }
  for (auto& l : back) hand_back(l);
  for (auto& l : go) start(std::move(l));
}

void Supervisor::start(LeasedRun lease) {
  auto slot = std::make_unique<RunSlot>();
  RunSlot& r = *slot;
  r.key = {lease.run_id, lease.attempt};
  r.lease = std::move(lease);
  fs::path dir = fs::path(s_.cfg.work_dir) / "runs" /
                 (std::to_string(r.key.first) + "." + std::to_string(r.key.second));
  fs::path out = dir / "output";
  std::error_code ec;
  fs::create_directories(out, ec);
  r.stdout_path = (dir / "stdout.log").string();
  r.stderr_path = (dir / "stderr.log").string();

  RunEnv env;
  env.run_id = r.key.first;
  env.params_json = dump(r.lease.params);
  env.output_dir = fs::absolute(out).string();
  env.gpu_indices = r.lease.gpus;
  env.extra = r.lease.env;
  r.preempt_file = (dir / "preempt").string();
  env.preempt_file = r.preempt_file;
  std::error_code rm_ec;
  fs::remove(r.preempt_file, rm_ec);  // a leftover of an earlier start is not a request
  // Resume only from a checkpoint this machine can read (a shared
  // filesystem); otherwise the attempt starts over and says so.
  Json resumed = nullptr;
  std::vector<Json> resume_events;
  if (r.lease.resume_step >= 0) {
    std::error_code ex_ec;
    if (fs::exists(r.lease.resume_path, ex_ec)) {
      env.resume_from = r.lease.resume_path;
      resumed = {{"step", r.lease.resume_step}, {"path", r.lease.resume_path}};
    } else {
      resume_events.push_back(record(
          kRecEvent, r.key,
          {{"kind", "resume_unavailable"},
           {"detail", "checkpoint " + r.lease.resume_path + " (step " +
                          std::to_string(r.lease.resume_step) + ") is not readable on worker " +
                          s_.cfg.worker_id + "; the attempt starts over"}}));
    }
  }
  LaunchSpec spec;
  // An executor prefix (`assay slurm exec ... --`) takes the command as one
  // quoted word, so the run's own shell syntax reaches the executor intact.
  spec.command = s_.cfg.command_prefix.empty()
                     ? r.lease.command
                     : s_.cfg.command_prefix + " " + shell_word(r.lease.command);
  spec.env = run_environment(env);
  spec.stdout_path = r.stdout_path;
  spec.stderr_path = r.stderr_path;
  {
    std::lock_guard lock(s_.mu);
    s_.held.insert(r.key);
  }
  r.oom_before = recent_oom_kill_count();
  auto proc = !r.lease.lease_error.empty()
                  ? Result<std::unique_ptr<Process>>(Status::Invalid(r.lease.lease_error))
              : ec ? Result<std::unique_ptr<Process>>(Status::IoError(
                         dir.string() + ": cannot create the run directory: " + ec.message()))
                   : Process::spawn(spec);
  if (!proc.ok()) {
    s_.say("run " + std::to_string(r.key.first) + ": " + proc.status().message());
    Json body = {{"exit_code", nullptr}, {"signal", nullptr}, {"oom_killed", false},
                 {"timed_out", false},   {"cancelled", false},
                 {"spawn_error", proc.status().message()},
                 {"log_tail", ""},       {"malformed_metric_lines", 0},
                 {"exited_at", unix_now()}};
    append(record(kRecFinished, r.key, body));
    return;
  }
  r.proc = std::move(proc).value();
  record_session(s_.cfg.work_dir, r.key, r.proc->pid());  // setsid: sid == pid
  if (r.lease.timeout_s && *r.lease.timeout_s > 0) {
    r.deadline = Clock::now() + std::chrono::milliseconds(
                                    static_cast<int64_t>(*r.lease.timeout_s * 1000));
  }
  {
    std::lock_guard lock(s_.mu);
    LogCursor c;
    c.path[0] = r.stdout_path;
    c.path[1] = r.stderr_path;
    s_.logs[r.key] = c;
    ++s_.live_processes;
  }
  s_.say("run " + std::to_string(r.key.first) + " attempt " + std::to_string(r.key.second) +
         " started: pid " + std::to_string(r.proc->pid()) + ", gpus [" +
         [&] {
           std::string g;
           for (size_t i = 0; i < r.lease.gpus.size(); ++i)
             g += (i ? "," : "") + std::to_string(r.lease.gpus[i]);
           return g;
         }() + "]");
  Json started = {{"pid", r.proc->pid()}};
  if (!resumed.is_null()) started["resumed_from"] = resumed;
  append(record(kRecStarted, r.key, started));
  append_all(resume_events);
  if (!resumed.is_null())
    s_.say("run " + std::to_string(r.key.first) + ": resumes from step " +
           std::to_string(r.lease.resume_step) + " (" + r.lease.resume_path + ")");
  cpus_busy_ += std::max(0, r.lease.cpus);
  slots_.push_back(std::move(slot));
}

// Sleeps until a metrics pipe has data, a run's leader exits (its pidfd),
// the wake descriptor is written (a lease landed, a signal came) or 20 ms
// pass (timeouts, flushes, group members outliving their leader).
void Supervisor::poll_pipes() {
  std::vector<pollfd> fds;
  std::vector<RunSlot*> owners;
  if (s_.wake_fd >= 0) {
    fds.push_back({s_.wake_fd, POLLIN, 0});
    owners.push_back(nullptr);
  }
  size_t first_pipe = fds.size();
  for (auto& r : slots_) {
    if (r->metrics_open && r->proc && r->proc->metrics_fd() >= 0) {
      fds.push_back({r->proc->metrics_fd(), POLLIN, 0});
      owners.push_back(r.get());
    }
  }
  size_t first_exit = fds.size();
  for (auto& r : slots_) {
    if (r->proc && r->proc->exit_fd() >= 0 && !r->proc->leader_status()) {
      fds.push_back({r->proc->exit_fd(), POLLIN, 0});
      owners.push_back(nullptr);
    }
  }
  if (fds.empty()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return;
  }
  int n = ::poll(fds.data(), fds.size(), 20);
  if (n <= 0) return;
  if (first_pipe > 0 && fds[0].revents) {
    uint64_t count = 0;
    (void)!::read(s_.wake_fd, &count, sizeof count);
  }
  for (size_t i = first_pipe; i < first_exit; ++i) {
    if (!fds[i].revents) continue;
    RunSlot& r = *owners[i];
    if (!drain_fd(fds[i].fd, r.reader)) {  // every writer closed it
      r.reader.finish();
      r.proc->close_metrics_fd();
      r.metrics_open = false;
    }
  }
}

void Supervisor::consume_lines(RunSlot& r) {
  std::vector<Json> recs;
  for (auto& m : r.reader.take_malformed()) {
    // All are counted (in `finished`); only the first ones become events.
    if (r.dropped || r.malformed_reported >= kMaxMalformedEvents) continue;
    ++r.malformed_reported;
    recs.push_back(record(kRecEvent, r.key,
                          {{"kind", "malformed_metric"},
                           {"detail", "line " + std::to_string(m.line_no) + ": " + m.error +
                                          " (line starts: " + m.excerpt + ")"}}));
  }
  double now = unix_now();
  for (auto& p : r.reader.take_parsed()) {
    const auto& line = p.line;
    if (line.checkpoint) {
      fs::path path = *line.checkpoint;
      std::error_code ec;
      if (path.is_relative()) path = fs::absolute(path, ec);
      std::string abs = path.lexically_normal().string();
      int64_t step = line.step;
      int64_t line_no = p.line_no;
      r.hashes.push_back(std::async(std::launch::async, [abs, step, line_no] {
        auto h = artifact_hash(abs);  // the same id the engine gives a checkpoint
        if (!h.ok()) {
          return Json{{"type", kRecEvent},
                      {"body", {{"kind", "checkpoint_error"},
                                {"detail", "line " + std::to_string(line_no) + ": " +
                                               h.status().message()}}}};
        }
        return Json{{"type", kRecArtifact},
                    {"body", {{"kind", "checkpoint"}, {"path", abs}, {"content_hash", *h},
                              {"step", step}, {"metadata", Json::object()}}}};
      }));
    }
    for (const auto& [key, value] : line.metrics) {
      // The coordinator counts bytes (<= 256) where the line schema counts
      // code points (<= 200): a longer name would get its whole batch refused.
      if (key.size() > kMaxKeyBytes) {
        if (!r.dropped && r.malformed_reported < kMaxMalformedEvents) {
          ++r.malformed_reported;
          recs.push_back(record(kRecEvent, r.key,
                                {{"kind", "malformed_metric"},
                                 {"detail", "line " + std::to_string(p.line_no) + ": metric name of " +
                                                std::to_string(key.size()) + " bytes exceeds " +
                                                std::to_string(kMaxKeyBytes) + "; point dropped"}}));
        }
        continue;
      }
      Json v = std::isfinite(value) ? Json(value) : Json(nullptr);
      r.points.push_back({{"key", key}, {"step", line.step}, {"value", v},
                          {"time", line.time.value_or(now)}});
      if (r.points.size() >= kMaxPointsPerBatch) flush_points(r, true);
    }
  }
  if (!r.dropped) append_all(recs);
  // Finished hashes become records in completion order.
  std::vector<Json> done;
  for (auto it = r.hashes.begin(); it != r.hashes.end();) {
    if (it->wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
      Json j = it->get();
      done.push_back(record(j["type"].get<std::string>().c_str(), r.key, j["body"]));
      it = r.hashes.erase(it);
    } else {
      ++it;
    }
  }
  if (!r.dropped) {
    flush_points(r, !done.empty());  // metrics before the checkpoint that follows them
    append_all(done);
  }
}

void Supervisor::flush_points(RunSlot& r, bool force) {
  if (r.points.empty()) return;
  if (!force && Clock::now() - r.last_flush < s_.cfg.metrics_flush) return;
  r.last_flush = Clock::now();
  if (r.dropped) {
    r.points = Json::array();
    return;
  }
  Json body = {{"batch_seq", r.next_batch_seq++}, {"points", std::move(r.points)}};
  r.points = Json::array();
  append(record(kRecMetrics, r.key, std::move(body)));
}

void Supervisor::step(RunSlot& r) {
  r.proc->tick();
  bool leader_alive = !r.proc->leader_status().has_value();
  if (!r.dropped && s_.is_dropped(r.key)) {
    r.dropped = true;
    if (leader_alive) r.proc->stop(s_.cfg.kill_grace);
    s_.say("run " + std::to_string(r.key.first) + ": lease gone, stopping it");
  }
  if (leader_alive && !r.proc->stop_requested()) {
    bool cancel = false;
    {
      std::lock_guard lock(s_.mu);
      cancel = s_.cancel.erase(r.key.first) > 0;
    }
    if (cancel) {
      r.cancelled = true;
      r.proc->stop(s_.cfg.kill_grace);
      s_.say("run " + std::to_string(r.key.first) + ": cancel requested, SIGTERM sent");
    } else if (r.deadline && Clock::now() >= *r.deadline) {
      r.timed_out = true;
      r.proc->stop(s_.cfg.kill_grace);
      s_.say("run " + std::to_string(r.key.first) + ": timeout, SIGTERM sent");
    }
  }
  if (leader_alive && s_.preempting && !r.dropped) preempt(r);
  if (!leader_alive && !r.leader_gone_at) {
    r.leader_gone_at = Clock::now();
    r.exited_at = unix_now();
  }
  // A process that left the group (setsid) may hold the pipe open forever.
  if (r.metrics_open && r.leader_gone_at && r.proc->finished() &&
      Clock::now() - *r.leader_gone_at > std::chrono::seconds(2)) {
    drain_fd(r.proc->metrics_fd(), r.reader);
    r.reader.finish();
    r.proc->close_metrics_fd();
    r.metrics_open = false;
  }
  consume_lines(r);
  flush_points(r, false);
}

// Asks the run to checkpoint and exit: the preempt file (for runs that poll)
// and SIGUSR1 to its process group, once; when the grace runs out, stops it
// as on a cancel (SIGTERM, SIGKILL after kill_grace).
void Supervisor::preempt(RunSlot& r) {
  if (!r.preempted) {
    r.preempted = true;
    r.preempt_deadline = Clock::now() + s_.cfg.preempt_grace;
    std::ofstream(r.preempt_file) << "preempted\n";
    r.proc->signal_group(SIGUSR1);
    s_.say("run " + std::to_string(r.key.first) + ": preempted, SIGUSR1 sent");
    return;
  }
  if (!r.proc->stop_requested() && Clock::now() >= *r.preempt_deadline) {
    r.proc->stop(s_.cfg.kill_grace);
    s_.say("run " + std::to_string(r.key.first) + ": preemption grace over, SIGTERM sent");
  }
}

bool Supervisor::complete(RunSlot& r) {
  return !r.metrics_open && r.proc->finished() && r.hashes.empty();
}

void Supervisor::finish(RunSlot& r) {
  flush_points(r, true);
  cpus_busy_ -= std::max(0, r.lease.cpus);
  {
    std::lock_guard lock(s_.mu);
    --s_.live_processes;
    s_.cancel.erase(r.key.first);
  }
  if (r.dropped) {
    s_.drop(r.key);
    return;
  }
  ExitFacts f;
  f.status = r.proc->leader_status();
  f.cancelled = r.cancelled;
  f.timed_out = r.timed_out;
  f.we_sent_sigkill = r.proc->sigkill_sent();
  // The OOM counter matters only for a run that died of SIGKILL (classify_exit
  // and oom_killed look at it for nothing else): skip the read otherwise.
  const ExitStatus& ls = *f.status;
  if ((!ls.exited && ls.signal == SIGKILL) || (ls.exited && ls.code == 137)) {
    auto oom_after = oom_kill_count();
    f.host_oom = r.oom_before && oom_after && *oom_after > *r.oom_before;
  }
  std::string tail = read_tail(r.stdout_path, kLogTailBytes);
  if (!tail.empty() && tail.back() != '\n') tail += '\n';
  tail += read_tail(r.stderr_path, kLogTailBytes);
  f.log_tail = tail;
  const ExitStatus& st = *f.status;
  // A cluster that preempts a job (SLURM's cancel, preemption or time limit)
  // signals every process in it, runs included, often before this worker has
  // asked them to checkpoint: a run that died of SIGTERM while the worker is
  // preempting was preempted too, not failed.
  const bool died_of_term = (!st.exited && st.signal == SIGTERM) || (st.exited && st.code == 143);
  if (s_.preempting && died_of_term && !r.cancelled && !r.timed_out && !r.preempted) {
    r.preempted = true;
    s_.say("run " + std::to_string(r.key.first) + ": ended by SIGTERM while preempting: preempted");
  }
  Classification c = classify_exit(f);
  bool killed9 = (!st.exited && st.signal == 9) || (st.exited && st.code == 137);
  Json body = {{"exit_code", st.exited ? Json(st.code) : Json(nullptr)},
               {"signal", st.exited ? Json(nullptr) : Json(st.signal)},
               {"oom_killed", killed9 && f.host_oom && !f.we_sent_sigkill},
               {"timed_out", r.timed_out},
               {"cancelled", r.cancelled},
               {"preempted", r.preempted},
               {"spawn_error", nullptr},
               {"log_tail", tail},
               {"malformed_metric_lines", r.reader.malformed_total()},
               {"exited_at", r.exited_at.value_or(unix_now())}};
  if (auto peak = r.gpu_peak.report()) {
    body["peak_gpu_mem_mb"] = peak->first;
    body["gpu_mem_source"] = peak->second;
  }
  if (r.reader.malformed_total() > kMaxMalformedEvents) {
    append(record(kRecEvent, r.key,
                  {{"kind", "malformed_metric"},
                   {"detail", std::to_string(r.reader.malformed_total()) +
                                  " malformed metric lines in all; only the first " +
                                  std::to_string(kMaxMalformedEvents) + " were reported"}}));
  }
  append(record(kRecFinished, r.key, body));
  s_.say("run " + std::to_string(r.key.first) + " attempt " + std::to_string(r.key.second) +
         " ended: " + std::string(to_string(c.outcome)) + " (" + c.detail + ")");
}

// Once a second: NVML calls take about a millisecond each, and a run's
// memory peak lasts far longer than that.
void Supervisor::sample_gpus() {
  if (!nvml_ || Clock::now() < next_gpu_sample_) return;
  next_gpu_sample_ = Clock::now() + std::chrono::seconds(1);
  std::vector<TrackedRun> runs;
  for (auto& r : slots_)
    if (!r->proc->finished() && !r->lease.gpus.empty())
      runs.push_back({r->proc->pid(), &r->lease.gpus, &r->gpu_peak});
  if (!runs.empty()) sample_gpu_memory(*nvml_, runs);
}

void Supervisor::run() {
  while (true) {
    if (s_.abort) break;
    bool done = false;
    // An unexpected throw is logged and the loop goes on: ending this thread
    // would orphan every run on the worker.
    if (!guarded(s_, "supervisor", [&] { done = iterate(); }))
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (done) break;
  }
  // Abort: the groups die with us; their leases expire at the coordinator.
  for (auto& r : slots_) {
    r->proc->signal_group(SIGKILL);
    forget_session(s_.cfg.work_dir, r->key);
  }
  slots_.clear();
}

// One pass: start new runs, read pipes, step and finish runs, commit the
// spool. True when draining is complete.
bool Supervisor::iterate() {
  {
    start_held();
    poll_pipes();
    for (auto it = slots_.begin(); it != slots_.end();) {
      RunSlot& r = **it;
      step(r);
      if (complete(r)) {
        finish(r);
        forget_session(s_.cfg.work_dir, r.key);
        it = slots_.erase(it);
      } else {
        ++it;
      }
    }
    // A slot freed above is taken at once: its `finished` report and the
    // next run's `started` share one spool append.
    start_held();
    sample_gpus();
    commit();
    if (s_.stop_leasing && slots_.empty() && !s_.lease_in_flight) {
      std::lock_guard lock(s_.mu);
      if (s_.incoming.empty()) return true;
    }
  }
  return false;
}

}  // namespace

void supervise(Shared& s) {
  Supervisor(s).run();
  s.supervisor_done = true;
}

}  // namespace assay::worker
