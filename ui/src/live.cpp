// The change feed behind GET /v1/ui/changes (live.h).
#include "live.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>

#include "api_internal.h"

namespace assay::ui {

namespace co = coordinator;

namespace {

double steady_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

co::Response json_response(int status, const Json& j) {
  co::Response r;
  r.status = status;
  r.body = j.dump(-1, ' ', false, Json::error_handler_t::replace);
  r.headers.push_back({"Cache-Control", "no-store"});
  return r;
}

co::Response changes_answer(const std::string& cursor, const std::string& since) {
  return json_response(200, Json{{"cursor", cursor}, {"changed", cursor != since}});
}

co::Response too_many() {
  return json_response(503, Json{{"error", {{"code", "unavailable"},
      {"message", "too busy: " + std::to_string(kMaxParked) +
                  " change requests are already waiting; retry later"}}}});
}

// "size:mtime_ns" of a file, "-" when it does not exist.
std::string file_sig(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "-";
  return std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec);
}

// The segments of a path ("/v1/runs/3/cancel" -> v1, runs, 3, cancel).
std::vector<std::string> segments(const std::string& path) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    if (j > i) out.push_back(path.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

int64_t run_id_of(const std::string& s) {
  if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos) return 0;
  return std::stoll(s);
}

}  // namespace

Result<ChangesQuery> parse_changes(const std::string& target) {
  Target t = parse_target(target);
  ChangesQuery q;
  q.key = target;
  if (auto it = t.query.find("run"); it != t.query.end()) {
    q.run = run_id_of(it->second);
    if (q.run <= 0)
      return Status::Invalid("query parameter 'run': expected a run id (integer > 0), got '" +
                             it->second + "'");
  }
  if (auto it = t.query.find("since"); it != t.query.end()) q.since = it->second;
  if (auto it = t.query.find("wait"); it != t.query.end()) {
    char* end = nullptr;
    q.wait_s = std::strtod(it->second.c_str(), &end);
    if (it->second.empty() || *end != '\0' || !(q.wait_s >= 0))
      return Status::Invalid("query parameter 'wait': expected seconds >= 0, got '" + it->second + "'");
    q.wait_s = std::min(q.wait_s, co::kLongPollCapS);
  }
  return q;
}

ChangeFeed::ChangeFeed()
    : nonce_([] {
        std::random_device rd;
        char buf[17];
        std::snprintf(buf, sizeof buf, "%08x%08x", rd(), rd());
        return std::string(buf);
      }()) {}

ChangeFeed::~ChangeFeed() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  // Pages still waiting get what there is (the server drops late replies).
  for (auto& w : waiters_) w.reply(changes_answer(w.q.since, w.q.since));
}

std::string ChangeFeed::cursor(uint64_t version) const {
  return nonce_ + "." + std::to_string(version);
}

// ---- Coordinator mode ---------------------------------------------------------

void ChangeFeed::observe(const co::Request& req) {
  if (req.method == "GET" || req.method == "HEAD") return;
  const std::string path = req.target.substr(0, req.target.find('?'));
  // A lease long-poll is re-asked at every wake-up; a lease it grants wakes
  // the parked pages itself, with no other request to explain it (see
  // coordinator_changes).
  if (path == "/v1/worker/lease") return;
  std::lock_guard<std::mutex> lock(mu_);
  ++writes_;
  const auto s = segments(path);
  if (s.size() >= 2 && s[0] == "v1" && (s[1] == "ui" || s[1] == "query")) return;  // reads
  int64_t run = 0;
  if (s.size() >= 4 && s[0] == "v1" && s[1] == "worker" && s[2] == "runs") run = run_id_of(s[3]);
  if (s.size() >= 3 && s[0] == "v1" && s[1] == "runs") run = run_id_of(s[2]);
  if (run > 0) {
    // Only runs a page watches keep a version: a coordinator serves millions.
    if (auto it = run_versions_.find(run); it != run_versions_.end()) it->second.version = ++counter_;
    ++global_;
  } else if ((s.size() == 3 && s[1] == "worker" && s[2] == "register") ||
             (s.size() == 4 && s[1] == "sweeps" && s[3] == "cancel")) {
    ++all_runs_;  // may requeue or cancel any run
  } else if (!(s.size() == 3 && s[1] == "worker" && s[2] == "heartbeat")) {
    ++global_;
  }
}

uint64_t ChangeFeed::coordinator_version(int64_t run, double now) {
  if (run == 0) return global_ + all_runs_;
  auto [it, fresh] = run_versions_.try_emplace(run);
  if (fresh) it->second.version = ++counter_;
  it->second.asked = now;
  return it->second.version + all_runs_;
}

co::Response ChangeFeed::coordinator_changes(const co::Request& req, const ChangesQuery& q) {
  std::lock_guard<std::mutex> lock(mu_);
  const double now = steady_s();
  for (auto it = parked_.begin(); it != parked_.end();)
    it = it->second.deadline + 5 < now ? parked_.erase(it) : std::next(it);
  for (auto it = run_versions_.begin(); it != run_versions_.end();)
    it = it->second.asked + 600 < now ? run_versions_.erase(it) : std::next(it);
  auto answer = [&](bool moved) {
    parked_.erase(q.key);
    if (moved) ++all_runs_;
    return changes_answer(cursor(coordinator_version(q.run, now)), q.since);
  };
  if (q.since != cursor(coordinator_version(q.run, now)) || q.wait_s <= 0) return answer(false);
  auto it = parked_.find(q.key);
  co::Response wait;
  wait.retry = true;
  wait.wait_s = q.wait_s;
  if (it == parked_.end()) {
    if (parked_.size() >= kMaxParked) return too_many();
    parked_[q.key] = Parked{now + q.wait_s, writes_};
    return wait;
  }
  if (req.wait_expired) return answer(false);
  // Woken up with no request seen since it parked: the coordinator's timer
  // wrote (an expired lease) or a lease was granted. Either can touch any run.
  if (it->second.writes == writes_) return answer(true);
  it->second.writes = writes_;
  return wait;
}

// ---- `assay ui` mode --------------------------------------------------------

void ChangeFeed::start_polling(const std::string& db_path, const std::string& logs_dir,
                               double time_budget_s) {
  db_path_ = db_path;
  logs_dir_ = logs_dir;
  time_budget_s_ = time_budget_s;
  thread_ = std::thread([this] { poll_loop(); });
}

void ChangeFeed::park(const ChangesQuery& q, co::HttpRespond reply) {
  std::unique_lock<std::mutex> lock(mu_);
  Scope& s = scopes_[q.run];
  s.last_used = steady_s();
  if (s.ready && (q.since != cursor(s.version) || q.wait_s <= 0)) {
    auto r = changes_answer(cursor(s.version), q.since);
    lock.unlock();
    return reply(std::move(r));
  }
  if (waiters_.size() >= kMaxParked) {
    lock.unlock();
    return reply(too_many());
  }
  waiters_.push_back(Waiter{q, s.last_used + q.wait_s, std::move(reply)});
  lock.unlock();
  cv_.notify_one();
}

// A run's fingerprint: what its page shows, read cheaply (one index probe
// per metric key for the last step, no scan of its points).
void ChangeFeed::refresh_scope(int64_t run, Scope& s, const std::string& db_sig) {
  if (run == 0) {
    s.fingerprint = db_sig;  // the whole database: any commit
    s.db_sig = db_sig;
  } else if (!s.ready || s.db_sig != db_sig) {
    const std::string id = std::to_string(run);
    ApiLimits lim;
    lim.time_budget_s = time_budget_s_;
    auto r = read_sql(db_path_,
        "SELECT r.state, r.attempt, r.finished_at, "
        "(SELECT MAX(id) FROM run_events WHERE run_id = " + id + "), "
        "(SELECT MAX(id) FROM artifacts WHERE run_id = " + id + "), "
        "(SELECT group_concat(k.id || ':' || (SELECT MAX(m.step) FROM metrics m WHERE m.run_id = " +
        id + " AND m.attempt = r.attempt AND m.key_id = k.id)) FROM metric_keys k), "
        "(SELECT MAX(e.id) FROM artifacts a JOIN eval_results e ON e.checkpoint_hash = "
        "a.content_hash WHERE a.run_id = " + id + ") FROM runs r WHERE r.id = " + id, lim);
    if (!r.ok()) return;  // e.g. the file is being replaced: try again next time
    std::string fp;
    for (const auto& row : r->rows)
      for (const auto& c : row) fp += cell_json(c).dump() + "|";
    if (!r->rows.empty()) {
      if (auto a = std::get_if<int64_t>(&r->rows[0][1])) s.attempt = *a;
    }
    s.fingerprint = fp;
    s.db_sig = db_sig;
  }
  if (run != 0) {
    const std::string base = logs_dir_ + "/" + std::to_string(run) + "/" + std::to_string(s.attempt);
    s.logs = file_sig(base + ".stdout.log") + "," + file_sig(base + ".stderr.log");
  }
}

void ChangeFeed::poll_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::duration<double>(kFeedPollS));
    if (stop_) break;
    // Read outside the lock: the server thread parks requests meanwhile.
    std::map<int64_t, Scope> work = scopes_;
    lock.unlock();
    const std::string sig = file_sig(db_path_) + "," + file_sig(db_path_ + "-wal");
    for (auto& [run, s] : work) refresh_scope(run, s, sig);
    lock.lock();
    const double now = steady_s();
    for (auto& [run, fresh] : work) {
      auto it = scopes_.find(run);
      if (it == scopes_.end()) continue;
      Scope& s = it->second;
      if (fresh.db_sig.empty()) continue;  // not read yet (the read failed)
      const bool moved = s.ready && (fresh.fingerprint != s.fingerprint || fresh.logs != s.logs);
      if (!s.ready || moved) s.version = ++counter_;
      s.ready = true;
      s.fingerprint = fresh.fingerprint;
      s.logs = fresh.logs;
      s.db_sig = fresh.db_sig;
      s.attempt = fresh.attempt;
    }
    std::vector<std::pair<co::HttpRespond, co::Response>> replies;
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      auto sc = scopes_.find(it->q.run);
      const bool ready = sc != scopes_.end() && sc->second.ready;
      const std::string cur = ready ? cursor(sc->second.version) : it->q.since;
      if ((ready && cur != it->q.since) || now >= it->deadline) {
        replies.emplace_back(std::move(it->reply), changes_answer(cur, it->q.since));
        it = waiters_.erase(it);
      } else {
        ++it;
      }
    }
    // Scopes nobody asked about for ten minutes stop being watched.
    for (auto it = scopes_.begin(); it != scopes_.end();) {
      bool waited = std::any_of(waiters_.begin(), waiters_.end(),
                                [&](const Waiter& w) { return w.q.run == it->first; });
      it = (!waited && it->second.last_used + 600 < now) ? scopes_.erase(it) : std::next(it);
    }
    lock.unlock();
    for (auto& [reply, resp] : replies) reply(std::move(resp));
    lock.lock();
  }
}

}  // namespace assay::ui
