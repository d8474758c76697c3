// Registration, heartbeats and leasing: the worker's control-plane threads.
#include <chrono>
#include <thread>

#include "assay/worker_gpu.h"
#include "daemon_state.h"

namespace assay::worker {

namespace {

using namespace std::chrono_literals;

// Sleeps in short slices so shutdown is prompt.
void nap(std::chrono::milliseconds total, const std::atomic<bool>& until) {
  auto end = std::chrono::steady_clock::now() + total;
  while (!until && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(20ms);
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

}  // namespace

Result<LeasedRun> parse_leased_run(const Json& j) {
  try {
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
    if (j.contains("timeout_s") && j["timeout_s"].is_number()) r.timeout_s = j["timeout_s"].get<double>();
    return r;
  } catch (const Json::exception& e) {
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
  if (rep.json.is_object()) {
    if (rep.json.contains("heartbeat_s") && rep.json["heartbeat_s"].is_number()) {
      s.heartbeat_s = rep.json["heartbeat_s"].get<double>();
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

void heartbeat_loop(Shared& s) {
  HttpClient http(s.cfg.coordinator_url, s.cfg.token, &s.abort);
  std::unique_ptr<Nvml> nvml;
  if (s.cfg.gpus_from_nvml) nvml = Nvml::open(nullptr);
  auto backoff = 200ms;
  bool warned = false;
  while (!s.abort && !s.delivery_done) {
    if (!s.registered) {
      Status st = register_worker(http, s);
      if (!st.ok()) {
        if (!warned) s.say("cannot register yet (will keep trying): " + st.message());
        warned = true;
        if (st.code() == Code::kInvalidArgument) backoff = 5000ms;  // e.g. a bad token
        nap(backoff, s.abort);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
        continue;
      }
      warned = false;
      backoff = 200ms;
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
      continue;
    }
    if (rep.ok() && rep->ok() && rep->json.is_object()) {
      std::lock_guard lock(s.mu);
      for (const auto& id : rep->json.value("cancel", Json::array())) s.cancel.insert(id.get<int64_t>());
      for (const auto& id : rep->json.value("abort", Json::array())) {
        int64_t run = id.get<int64_t>();
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
      if (rep->json.contains("lease_ttl_s") && rep->json["lease_ttl_s"].is_number()) {
        double hb = rep->json["lease_ttl_s"].get<double>() / 3;
        if (hb > 0) s.heartbeat_s = hb;
      }
    }
    nap(secs(s.heartbeat_s.load()), s.abort);
  }
}

void lease_loop(Shared& s) {
  HttpClient http(s.cfg.coordinator_url, s.cfg.token, &s.abort);
  while (!s.abort && !s.stop_leasing) {
    if (!s.registered) {
      nap(50ms, s.abort);
      continue;
    }
    int room = 8;  // per request, when the worker sets no cap
    {
      std::lock_guard lock(s.mu);
      int busy = s.live_processes + static_cast<int>(s.incoming.size());
      if (s.cfg.max_runs > 0) room = s.cfg.max_runs - busy;
    }
    if (room <= 0) {
      nap(50ms, s.abort);
      continue;
    }
    Json body = {{"worker_id", s.cfg.worker_id}, {"max_runs", room}, {"wait_s", s.cfg.lease_wait_s}};
    auto rep = http.post_json("/v1/worker/lease", body, s.cfg.lease_wait_s + 15);
    if (!rep.ok() || rep->retryable()) {
      nap(500ms, s.abort);
      continue;
    }
    if (rep->status == 404 && rep->error_code == "unknown_worker") {
      s.registered = false;
      continue;
    }
    if (!rep->ok() || !rep->json.is_object()) {
      s.say("lease refused: HTTP " + std::to_string(rep->status) + ": " + rep->body.substr(0, 300));
      nap(2000ms, s.abort);
      continue;
    }
    for (const auto& j : rep->json.value("runs", Json::array())) {
      auto run = parse_leased_run(j);
      if (!run.ok()) {
        s.say(run.status().message());
        // The run is leased to us now: end it as a spawn error rather than
        // let it sit leased forever.
        if (j.is_object() && j.contains("run_id") && j["run_id"].is_number_integer()) {
          LeasedRun bad;
          bad.run_id = j["run_id"].get<int64_t>();
          if (j.contains("attempt") && j["attempt"].is_number_integer()) bad.attempt = j["attempt"].get<int>();
          bad.lease_error = run.status().message();
          std::lock_guard lock(s.mu);
          s.incoming.push_back(std::move(bad));
        }
        continue;
      }
      std::lock_guard lock(s.mu);
      s.incoming.push_back(std::move(run).value());
    }
  }
}

}  // namespace assay::worker
