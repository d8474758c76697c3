// Registration, heartbeats and leasing: the worker's control-plane threads.
#include <chrono>
#include <thread>

#include "assay/worker_gpu.h"
#include "daemon_state.h"

namespace assay::worker {

namespace {

using namespace std::chrono_literals;

// Sleeps in short slices so shutdown is prompt.
void nap(std::chrono::milliseconds total, const std::atomic<bool>& until,
         const std::atomic<bool>* also = nullptr) {
  auto end = std::chrono::steady_clock::now() + total;
  while (!until && !(also && *also) && std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(20ms);
}

std::chrono::milliseconds secs(double s) {
  return std::chrono::milliseconds(static_cast<int64_t>(s * 1000));
}

}  // namespace

void Shared::say(const std::string& line) {
  std::lock_guard lock(log_mu);
  log_out << "assay worker: " << line << std::endl;
}

namespace {

std::string str_or_empty(const Json& j, const char* key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
}

// Run ids under `key` of a heartbeat reply; a wrong shape is noted in *problems.
std::vector<int64_t> run_ids(const Json& reply, const char* key, std::string* problems) {
  std::vector<int64_t> out;
  auto it = reply.find(key);
  if (it == reply.end() || it->is_null()) return out;
  if (!it->is_array()) {
    *problems += std::string(problems->empty() ? "" : "; ") + key +
                 ": expected an array of run ids, got " + excerpt(*it);
    return out;
  }
  for (const auto& v : *it) {
    if (auto id = int_of(v)) out.push_back(*id);
    else *problems += std::string(problems->empty() ? "" : "; ") + key +
                      ": expected a run id, got " + excerpt(v);
  }
  return out;
}

// Applies a heartbeat reply; returns what could not be understood ("" when all was).
std::string apply_heartbeat_reply(Shared& s, const Json& reply) {
  if (!reply.is_object()) return "expected a JSON object, got " + excerpt(reply);
  std::string problems;
  auto cancel = run_ids(reply, "cancel", &problems);
  auto abort = run_ids(reply, "abort", &problems);
  {
    std::lock_guard lock(s.mu);
    for (int64_t id : cancel) s.cancel.insert(id);
    for (int64_t run : abort) {
      // Held ahead and not started: forgotten, nothing to report.
      std::erase_if(s.incoming, [&](const LeasedRun& l) { return l.run_id == run; });
      for (auto it = s.held.begin(); it != s.held.end();) {
        if (it->first == run) {
          s.dropped.insert(*it);
          s.logs.erase(*it);
          it = s.held.erase(it);
        } else {
          ++it;
        }
      }
    }
  }
  if (auto ttl = reply.find("lease_ttl_s"); ttl != reply.end()) {
    auto v = number_of(*ttl);
    if (v && *v > 0 && *v < 1e6) s.heartbeat_s = *v / 3;
    else problems += std::string(problems.empty() ? "" : "; ") +
                     "lease_ttl_s: expected a number of seconds, got " + excerpt(*ttl);
  }
  return problems;
}

}  // namespace

std::optional<int64_t> int_of(const Json& v) {
  if (v.is_number_unsigned()) {
    if (v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
    return static_cast<int64_t>(v.get<uint64_t>());
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  return std::nullopt;
}

std::optional<double> number_of(const Json& v) {
  if (v.is_number()) return v.get<double>();
  return std::nullopt;
}

std::string excerpt(const Json& v) {
  std::string t = v.dump(-1, ' ', false, Json::error_handler_t::replace);
  return t.size() > 80 ? t.substr(0, 77) + "..." : t;
}

Result<LeasedRun> parse_leased_run(const Json& j) {
  try {
    if (!j.is_object()) return Status::Invalid("lease reply: run entry " + excerpt(j) + ": expected an object");
    LeasedRun r;
    r.run_id = j.at("run_id").get<int64_t>();
    r.attempt = j.contains("attempt") && j["attempt"].is_number_integer() ? j["attempt"].get<int>() : 1;
    r.name = str_or_empty(j, "name");
    r.sweep = str_or_empty(j, "sweep");
    r.command = j.at("command").get<std::string>();
    if (j.contains("params") && j["params"].is_object()) r.params = j["params"];
    if (j.contains("env") && j["env"].is_object()) {
      for (auto& [k, v] : j["env"].items()) {
        r.env.emplace_back(k, v.is_string() ? v.get<std::string>() : v.dump());
      }
    }
    if (j.contains("gpus") && j["gpus"].is_array()) {
      for (auto& g : j["gpus"]) r.gpus.push_back(g.get<int>());
    }
    if (j.contains("cpus") && !j["cpus"].is_null()) {
      auto cpus = int_of(j["cpus"]);
      if (!cpus || *cpus < 0 || *cpus > 1000000)
        return Status::Invalid("lease reply: run " + std::to_string(r.run_id) +
                               ": cpus: expected an integer >= 0, got " + excerpt(j["cpus"]));
      r.cpus = static_cast<int>(*cpus);
    }
    if (j.contains("resume_from") && j["resume_from"].is_object()) {
      const Json& rf = j["resume_from"];
      auto step = rf.contains("step") ? int_of(rf["step"]) : std::nullopt;
      if (!rf.contains("path") || !rf["path"].is_string() || !step || *step < 0)
        return Status::Invalid("lease reply: run " + std::to_string(r.run_id) +
                               ": resume_from: expected {\"path\": string, \"step\": int >= 0}, got " +
                               excerpt(rf));
      r.resume_path = rf["path"].get<std::string>();
      r.resume_step = *step;
    }
    if (j.contains("timeout_s") && j["timeout_s"].is_number()) {
      // Turned into milliseconds later: past ~30 years that would overflow.
      double t = j["timeout_s"].get<double>();
      if (!(t > 0 && t <= 1e9))
        return Status::Invalid("lease reply: run " + std::to_string(r.run_id) +
                               ": timeout_s: expected a number in (0, 1e9] seconds, got " +
                               excerpt(j["timeout_s"]));
      r.timeout_s = t;
    }
    return r;
  } catch (const std::exception& e) {
    return Status::Invalid("lease reply: run entry " + j.dump().substr(0, 200) + ": " + e.what());
  }
}

Status register_worker(HttpClient& http, Shared& s) {
  Json gpus = Json::array();
  for (const auto& g : s.cfg.gpus) gpus.push_back(to_json(g));
  Json body = {{"worker_id", s.cfg.worker_id}, {"instance", s.instance},
               {"host", s.cfg.host},           {"cpus", s.cfg.cpus},
               {"max_runs", s.cfg.max_runs},   {"gpus", gpus},
               {"labels", s.cfg.labels}};
  ASSAY_ASSIGN_OR_RETURN(HttpReply rep, http.post_json("/v1/worker/register", body));
  if (!rep.ok()) {
    Status st(rep.retryable() ? Code::kUnavailable : Code::kInvalidArgument,
              "register: HTTP " + std::to_string(rep.status) + ": " + rep.body.substr(0, 300));
    return st;
  }
  if (!rep.json.is_object()) {
    s.say("register: reply is not a JSON object (" +
          (rep.json_error.empty() ? excerpt(rep.json) : rep.json_error) + "); using defaults");
  } else {
    if (auto hb = rep.json.find("heartbeat_s"); hb != rep.json.end()) {
      auto v = number_of(*hb);
      if (v && *v > 0 && *v < 1e6) s.heartbeat_s = *v;
      else s.say("register: heartbeat_s: expected a number of seconds, got " + excerpt(*hb));
    }
    if (rep.json.contains("requeued") && rep.json["requeued"].is_array() &&
        !rep.json["requeued"].empty()) {
      s.say("coordinator requeued runs of this worker's previous start: " + rep.json["requeued"].dump());
    }
  }
  if (!s.registered.exchange(true)) {
    s.say("registered as " + s.cfg.worker_id + " with " + s.cfg.coordinator_url + " (" +
          std::to_string(s.cfg.gpus.size()) + " GPU(s), " + std::to_string(s.cfg.cpus) +
          " CPU slot(s))");
  }
  return Status::Ok();
}

namespace {

struct HeartbeatState {
  std::chrono::milliseconds backoff = 200ms;  // between registration attempts
  bool warned = false;
  std::string last_problem;  // logged when it changes, not on every beat
};

// Registers when needed, then sends one heartbeat and applies the reply.
// Returns false when the caller should try again at once (no nap).
bool heartbeat_once(HttpClient& http, Shared& s, Nvml* nvml, HeartbeatState& hs) {
  if (!s.registered) {
    Status st = register_worker(http, s);
    if (!st.ok()) {
      if (!hs.warned) s.say("cannot register yet (will keep trying): " + st.message());
      hs.warned = true;
      if (st.code() == Code::kInvalidArgument) hs.backoff = 5000ms;  // e.g. a bad token
      nap(hs.backoff, s.abort);
      hs.backoff = std::min(hs.backoff * 2, std::chrono::milliseconds(2000));
      return false;
    }
    hs.warned = false;
    hs.backoff = 200ms;
  }
  Json active = Json::array();
  {
    std::lock_guard lock(s.mu);
    for (const auto& [run, attempt] : s.held) active.push_back({{"run_id", run}, {"attempt", attempt}});
    for (const auto& l : s.incoming) active.push_back({{"run_id", l.run_id}, {"attempt", l.attempt}});
  }
  Json body = {{"worker_id", s.cfg.worker_id}, {"instance", s.instance}, {"active", active}};
  if (nvml) {
    Json g = Json::array();
    for (const auto& d : nvml->query()) {
      g.push_back({{"index", d.index}, {"mem_free_mb", d.mem_free_mb}, {"util_pct", d.util_pct}});
    }
    body["gpus"] = g;
  }
  auto rep = http.post_json("/v1/worker/heartbeat", body, 10);
  if (rep.ok() && rep->status == 404 && rep->error_code == "unknown_worker") {
    s.registered = false;
    return false;
  }
  if (rep.ok() && rep->ok()) {
    std::string problem =
        rep->json_error.empty() ? apply_heartbeat_reply(s, rep->json) : rep->json_error;
    if (!problem.empty() && problem != hs.last_problem)
      s.say("heartbeat: reply not understood, ignoring: " + problem);
    hs.last_problem = problem;
  }
  return true;
}

}  // namespace

void heartbeat_loop(Shared& s) {
  HttpClient http(s.cfg.coordinator_url, s.cfg.token, &s.abort);
  std::unique_ptr<Nvml> nvml;
  if (s.cfg.gpus_from_nvml) nvml = Nvml::open(nullptr);
  HeartbeatState hs;
  while (!s.abort && !s.delivery_done) {
    bool beat = true;
    guarded(s, "heartbeat", [&] { beat = heartbeat_once(http, s, nvml.get(), hs); });
    // Wakes on delivery_done too: a clean shutdown must not wait out a
    // whole heartbeat interval (lease_ttl / 3) before the worker can exit.
    if (beat) nap(secs(s.heartbeat_s.load()), s.abort, &s.delivery_done);
  }
}

namespace {

// One lease request and what came back. Every reply field is checked before
// use: a malformed reply is logged, never fatal.
void lease_once(HttpClient& http, Shared& s) {
  // Per request: the coordinator places what fits its view of this worker's
  // resources, raised by `ahead`; runs beyond the free slots wait here.
  const int ahead = s.lease_ahead();
  int room = std::max(8, s.cfg.cpus + ahead);
  {
    std::lock_guard lock(s.mu);
    int busy = s.live_processes + static_cast<int>(s.incoming.size());
    if (s.cfg.max_runs > 0) room = s.cfg.max_runs + ahead - busy;
  }
  room = std::min(room, 1024);  // the coordinator's limit per request
  if (room <= 0) {
    nap(5ms, s.abort);
    return;
  }
  Json body = {{"worker_id", s.cfg.worker_id}, {"max_runs", room}, {"wait_s", s.cfg.lease_wait_s}};
  if (ahead > 0) body["ahead"] = ahead;  // v1.11; older coordinators ignore it
  s.lease_in_flight = true;
  struct Landed {
    Shared& s;
    ~Landed() { s.lease_in_flight = false; }
  } landed{s};
  // Checked after raising lease_in_flight: the supervisor hands held runs
  // back only when no request is on the wire, and none starts after that.
  if (s.stop_leasing) return;
  auto rep = http.post_json("/v1/worker/lease", body, s.cfg.lease_wait_s + 15);
  if (!rep.ok() || rep->retryable()) {
    nap(500ms, s.abort);
    return;
  }
  if (rep->status == 404 && rep->error_code == "unknown_worker") {
    s.registered = false;
    return;
  }
  if (!rep->ok()) {
    s.say("lease refused: HTTP " + std::to_string(rep->status) + ": " + rep->body.substr(0, 300));
    nap(2000ms, s.abort);
    return;
  }
  auto runs = rep->json.is_object() ? rep->json.find("runs") : rep->json.end();
  if (!rep->json.is_object() || runs == rep->json.end() || !runs->is_array()) {
    s.say("lease: reply not understood, expected {\"runs\": [...]}, got " +
          (rep->json_error.empty() ? excerpt(rep->json) : rep->json_error));
    nap(2000ms, s.abort);
    return;
  }
  for (const auto& j : *runs) {
    auto run = parse_leased_run(j);
    if (!run.ok()) {
      s.say(run.status().message());
      // The run is leased to us now: end it as a spawn error rather than
      // let it sit leased forever.
      auto id = j.is_object() && j.contains("run_id") ? int_of(j["run_id"]) : std::nullopt;
      if (id) {
        LeasedRun bad;
        bad.run_id = *id;
        auto attempt = j.contains("attempt") ? int_of(j["attempt"]) : std::nullopt;
        if (attempt && *attempt > 0 && *attempt < 1000000) bad.attempt = static_cast<int>(*attempt);
        bad.lease_error = run.status().message();
        std::lock_guard lock(s.mu);
        s.incoming.push_back(std::move(bad));
      }
      continue;
    }
    std::lock_guard lock(s.mu);
    s.incoming.push_back(std::move(run).value());
  }
  if (!runs->empty()) s.wake_supervisor();
}

}  // namespace

void lease_loop(Shared& s) {
  HttpClient http(s.cfg.coordinator_url, s.cfg.token, &s.abort);
  while (!s.abort && !s.stop_leasing) {
    if (!s.registered) {
      nap(50ms, s.abort);
      continue;
    }
    if (!guarded(s, "lease", [&] { lease_once(http, s); })) nap(2000ms, s.abort);
  }
}

}  // namespace assay::worker
