#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "assay/worker.h"
#include "daemon_state.h"
#include "leftovers.h"

namespace assay::worker {

namespace {

std::string random_hex(size_t bytes) {
  std::string out;
  std::ifstream ur("/dev/urandom", std::ios::binary);
  static const char* hex = "0123456789abcdef";
  std::random_device rd;  // fallback when /dev/urandom is missing
  for (size_t i = 0; i < bytes; ++i) {
    unsigned char c;
    if (!(ur && ur.read(reinterpret_cast<char*>(&c), 1))) c = static_cast<unsigned char>(rd());
    out += hex[c >> 4];
    out += hex[c & 15];
  }
  return out;
}

// Seconds since this worker last had a run leased, running or undelivered
// (--idle-exit), updating *last_busy; only the watcher thread calls it.
double idle_for(Shared& s, std::chrono::steady_clock::time_point* last_busy) {
  auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(s.mu);
  if (s.live_processes > 0 || !s.incoming.empty() || !s.held.empty()) *last_busy = now;
  return std::chrono::duration<double>(now - *last_busy).count();
}

}  // namespace

Result<std::map<std::string, std::string>> parse_labels(const std::string& text) {
  std::map<std::string, std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t comma = text.find(',', pos);
    std::string item = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    pos = comma == std::string::npos ? text.size() : comma + 1;
    if (item.empty()) continue;
    size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Status::Invalid("--labels: item '" + item + "': expected KEY=VALUE");
    }
    out[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return out;
}

Status run_worker(const WorkerConfig& cfg, const std::atomic<bool>& stop,
                  const std::atomic<bool>& abort, std::ostream& log) {
  static const std::atomic<bool> never{false};
  return run_worker(cfg, stop, abort, never, log);
}

Status run_worker(const WorkerConfig& cfg_in, const std::atomic<bool>& stop,
                  const std::atomic<bool>& abort, const std::atomic<bool>& preempt,
                  std::ostream& log) {
  WorkerConfig cfg = cfg_in;
  if (cfg.coordinator_url.empty()) return Status::Invalid("--coordinator: a URL is required");
  if (cfg.coordinator_url.find("://") == std::string::npos) {
    cfg.coordinator_url = "http://" + cfg.coordinator_url;
  }
  if (cfg.work_dir.empty()) cfg.work_dir = "assay-work";
  if (cfg.spool_dir.empty()) cfg.spool_dir = cfg.work_dir + "/spool";
  std::error_code ec;
  std::filesystem::create_directories(cfg.work_dir, ec);
  if (ec) return Status::IoError("--work-dir " + cfg.work_dir + ": cannot create: " + ec.message());
  cfg.work_dir = std::filesystem::absolute(cfg.work_dir).string();

  SpoolOpenStats stats;
  ASSAY_ASSIGN_OR_RETURN(auto spool, Spool::open(cfg.spool_dir, &stats,
                                                 cfg.spool_full_sync ? SpoolSync::kFull : SpoolSync::kNormal));

  Shared s(cfg, log);
  s.instance = random_hex(16);
  // Before leasing anything: what an earlier start of this worker left
  // running (it was killed with SIGKILL) still holds its GPUs.
  kill_leftover_sessions(cfg.work_dir, [&](const std::string& line) { s.say(line); });
  s.spool = spool.get();
  if (stats.pending || stats.dropped_bytes) {
    s.say("spool " + cfg.spool_dir + ": " + std::to_string(stats.pending) +
          " undelivered report(s) from an earlier start" +
          (stats.dropped_bytes ? ", " + std::to_string(stats.dropped_bytes) +
                                     " torn byte(s) at the end dropped"
                               : std::string()));
  }

  std::thread watcher([&] {
    auto last_busy = std::chrono::steady_clock::now();  // --idle-exit
    while (!s.delivery_done) {
      if (stop && !s.stop_leasing) {
        s.stop_leasing = true;
        s.say("stopping: no new runs; waiting for running ones and for delivery "
              "(signal again to abandon them)");
      }
      if (preempt && !s.preempting) {
        s.stop_leasing = true;
        s.preempting = true;
        s.say("preempted: no new runs; asking running ones to checkpoint (SIGUSR1, "
              "ASSAY_PREEMPT_FILE), stopping them after " +
              std::to_string(s.cfg.preempt_grace.count() / 1000.0).substr(0, 6) +
              " s, then delivering (signal again to abandon them)");
      }
      if (abort) s.abort = true;
      if (s.cfg.idle_exit_s > 0 && !s.stop_leasing && idle_for(s, &last_busy) >= s.cfg.idle_exit_s) {
        s.stop_leasing = true;
        s.say("idle for " + std::to_string(s.cfg.idle_exit_s).substr(0, 6) +
              " s (--idle-exit): leasing no more, exiting");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  // The loops catch what they can and go on; anything that still escapes a
  // thread is reported and stops the worker in order, not in std::terminate.
  auto fatal = [&](const char* thread, auto&& body) {
    return [&s, thread, body] {
      try {
        body();
      } catch (const std::exception& e) {
        s.say(std::string(thread) + " thread failed: " + e.what() + "; stopping the worker");
        s.abort = true;
      } catch (...) {
        s.say(std::string(thread) + " thread failed; stopping the worker");
        s.abort = true;
      }
    };
  };
  std::thread heartbeat(fatal("heartbeat", [&] { heartbeat_loop(s); }));
  std::thread lease(fatal("lease", [&] { lease_loop(s); }));
  std::thread delivery(fatal("delivery", [&] {
    try {
      delivery_loop(s);
    } catch (...) {
      s.delivery_done = true;  // others wait for it
      throw;
    }
  }));

  // The forking thread must outlive the runs: their PR_SET_PDEATHSIG fires
  // when it exits.
  fatal("supervisor", [&] {
    try {
      supervise(s);
    } catch (...) {
      s.supervisor_done = true;
      throw;
    }
  })();
  delivery.join();
  lease.join();
  heartbeat.join();
  watcher.join();
  size_t left = spool->pending_count();
  if (left) s.say(std::to_string(left) + " report(s) left in the spool for the next start");
  return Status::Ok();
}

}  // namespace assay::worker
