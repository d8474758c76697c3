// Private to assay_ui: the change feed behind GET /v1/ui/changes, which
// lets an open page wait for something new instead of re-reading on a timer.
//
// A page holds a cursor "<feed nonce>.<version>" for a scope (one run, or
// the whole database); a request with an older cursor is answered at once,
// one with the current cursor is parked until the scope's version moves or
// its wait runs out. Versions come from two sources:
//
//  * In the coordinator (observe()): the requests it serves. A worker's
//    report about run R (metrics, logs, events, artifacts, started,
//    finished) moves run R and the database; the coordinator's own timers
//    (a lease that expired) and granted leases show as a wake-up of the
//    parked request that no request explains, which moves every scope. The
//    answer to a woken request goes out after the coordinator's group
//    commit, so what the page reads next is already there.
//    Parked requests are the server's long-polls (Response::retry): nothing
//    runs while they wait, and the check is a few map lookups on the server
//    thread, no SQL.
//  * Under `assay ui` (start_polling()): a thread that looks every 200 ms
//    at the database file and its WAL (size and mtime: a commit by any
//    process changes them) and at the log files of watched runs, and only
//    when something moved re-reads a watched run's cheap fingerprint (state,
//    last event, last artifact, last step per metric key). It answers the
//    parked requests itself through the asynchronous server's reply.
//
// At most kMaxParked requests wait at once; more are answered 503.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "assay/coordinator.h"
#include "assay/status.h"

namespace assay::ui {

constexpr size_t kMaxParked = 256;
constexpr double kFeedPollS = 0.2;  // how often `assay ui` looks for changes

struct ChangesQuery {
  int64_t run = 0;         // 0: the whole database
  std::string since;       // empty: answer at once with the current cursor
  double wait_s = 0;       // how long to park, at most kLongPollCapS
  std::string key;         // identifies one waiting page (its target)
};

// Parses ?run=&since=&wait=&poll= of GET /v1/ui/changes.
Result<ChangesQuery> parse_changes(const std::string& target);

class ChangeFeed {
 public:
  ChangeFeed();
  ~ChangeFeed();
  ChangeFeed(const ChangeFeed&) = delete;
  ChangeFeed& operator=(const ChangeFeed&) = delete;

  // ---- Coordinator mode (server thread only) ----
  // Every request the coordinator receives, before it is handled.
  void observe(const coordinator::Request& req);
  // The answer to a changes request: now, or Response::retry to park it.
  coordinator::Response coordinator_changes(const coordinator::Request& req,
                                            const ChangesQuery& q);

  // ---- `assay ui` mode ----
  // Starts the thread that watches db_path (and logs_dir/<run>/...).
  void start_polling(const std::string& db_path, const std::string& logs_dir,
                     double time_budget_s);
  // Answers through `reply` (exactly once, from any thread) when the scope
  // moves past q.since or the wait runs out.
  void park(const ChangesQuery& q, coordinator::HttpRespond reply);

 private:
  struct Scope {
    uint64_t version = 0;
    bool ready = false;          // fingerprint read at least once
    std::string fingerprint;     // last database fingerprint (run scopes)
    std::string logs;            // log file sizes (run scopes)
    std::string db_sig;          // database signature the fingerprint was read at
    int64_t attempt = 1;         // the run's current attempt: whose log files to watch
    double last_used = 0;        // steady seconds
  };
  struct Waiter {
    ChangesQuery q;
    double deadline = 0;         // steady seconds
    coordinator::HttpRespond reply;
  };
  struct Parked {
    double deadline = 0;
    uint64_t writes = 0;         // writes_ when it parked
  };
  // Coordinator mode: a watched run's version, from counter_, so a run
  // watched again after being dropped never repeats an old cursor.
  struct RunVersion {
    uint64_t version = 0;
    double asked = 0;            // steady seconds of the last changes request
  };

  std::string cursor(uint64_t version) const;
  uint64_t coordinator_version(int64_t run, double now);
  void poll_loop();
  void refresh_scope(int64_t run, Scope& s, const std::string& db_sig);

  const std::string nonce_;
  std::mutex mu_;
  // Coordinator mode.
  uint64_t writes_ = 0, global_ = 0, all_runs_ = 0;
  std::map<int64_t, RunVersion> run_versions_;  // runs pages watch (asked in 10 min)
  std::map<std::string, Parked> parked_;
  // `assay ui` mode.
  std::string db_path_, logs_dir_;
  double time_budget_s_ = 10;
  uint64_t counter_ = 0;  // versions handed out; never reused
  std::map<int64_t, Scope> scopes_;  // 0: the whole database
  std::vector<Waiter> waiters_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace assay::ui
