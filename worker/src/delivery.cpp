// The delivery thread: sends spool records to the coordinator strictly in
// order, acknowledging them in the spool once the coordinator answered, and
// ships stdout/stderr by byte offset. Connection errors and 5xx are retried
// with backoff, forever; 409 stale_attempt drops the attempt's data (the run
// is no longer this worker's); other 4xx are logged, recorded on the run as a
// `report_rejected` event, and skipped, so one refused report never blocks
// the spool.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "assay/json_limits.h"
#include "assay/url.h"
#include "daemon_state.h"

namespace assay::worker {

namespace {

using namespace std::chrono_literals;
constexpr size_t kLogChunk = 1 << 20;  // the API recommends <= 1 MiB per chunk

enum class Outcome { kDelivered, kStale, kRejected, kRetry };


std::string read_at(const std::string& path, int64_t offset, size_t max) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  std::string buf(max, '\0');
  ssize_t n = pread(fd, buf.data(), max, static_cast<off_t>(offset));
  close(fd);
  buf.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return buf;
}

std::optional<int64_t> next_offset(const Json& reply) {
  if (!reply.is_object()) return std::nullopt;
  auto it = reply.find("next_offset");
  return it == reply.end() ? std::nullopt : int_of(*it);
}

class Delivery {
 public:
  explicit Delivery(Shared& s) : s_(s), http_(s.cfg.coordinator_url, s.cfg.token, &s.abort) {}
  void run();

 private:
  Outcome classify(const Result<HttpReply>& rep, const std::string& what);
  Outcome deliver(const Json& rec);
  // Leaves a `report_rejected` event on the run for a report the coordinator
  // refused with a 4xx; best effort, in order with the other reports.
  void note_rejection(const AttemptKey& key, const std::string& what, const HttpReply& rep);
  Outcome ship_logs(const AttemptKey& key, bool to_eof);
  void ship_all_logs();

  Shared& s_;
  HttpClient http_;
  std::chrono::steady_clock::time_point last_log_sweep_{};
  bool down_reported_ = false;
};

Outcome Delivery::classify(const Result<HttpReply>& rep, const std::string& what) {
  if (!rep.ok() || rep->retryable()) {
    if (!down_reported_) {
      s_.say(what + ": coordinator unreachable, spooling (" +
             (rep.ok() ? "HTTP " + std::to_string(rep->status) : rep.status().message()) + ")");
      down_reported_ = true;
    }
    return Outcome::kRetry;
  }
  if (down_reported_) {
    s_.say("coordinator reachable again; resending spooled reports in order");
    down_reported_ = false;
  }
  if (rep->ok()) return Outcome::kDelivered;
  if (rep->status == 409 && rep->error_code == "stale_attempt") return Outcome::kStale;
  if (rep->status == 404 && rep->error_code == "unknown_worker") {
    s_.registered = false;
    (void)register_worker(http_, s_);
    return Outcome::kRetry;
  }
  s_.say(what + ": refused with HTTP " + std::to_string(rep->status) + ": " +
         rep->body.substr(0, 300) + " (dropped)");
  return Outcome::kRejected;
}

Outcome Delivery::ship_logs(const AttemptKey& key, bool to_eof) {
  LogCursor cur;
  {
    std::lock_guard lock(s_.mu);
    auto it = s_.logs.find(key);
    if (it == s_.logs.end()) return Outcome::kDelivered;
    cur = it->second;
  }
  const char* names[2] = {"stdout", "stderr"};
  Outcome result = Outcome::kDelivered;
  for (int i = 0; i < 2 && result == Outcome::kDelivered; ++i) {
    for (int guard = 0; guard < 10000; ++guard) {
      std::string chunk = read_at(cur.path[i], cur.offset[i], kLogChunk);
      if (chunk.empty()) break;
      std::string path = "/v1/worker/runs/" + std::to_string(key.first) +
                         "/logs?worker_id=" + url_encode(s_.cfg.worker_id) +
                         "&attempt=" + std::to_string(key.second) + "&stream=" + names[i] +
                         "&offset=" + std::to_string(cur.offset[i]);
      auto rep = http_.post_bytes(path, chunk);
      if (rep.ok() && rep->status == 409 && rep->error_code == "offset_gap") {
        auto next = next_offset(rep->json);
        if (next && *next >= 0) {
          cur.offset[i] = *next;
          continue;
        }
      }
      Outcome o = classify(rep, "log chunk of run " + std::to_string(key.first));
      if (o == Outcome::kDelivered) {
        // The coordinator's offset when it gave a usable one, else ours.
        auto next = next_offset(rep->json);
        cur.offset[i] = next && *next >= 0 ? *next
                                           : cur.offset[i] + static_cast<int64_t>(chunk.size());
      } else if (o == Outcome::kRejected) {
        break;  // logs are best effort beyond this point
      } else {
        result = o;
        break;
      }
      if (!to_eof) break;
    }
  }
  std::lock_guard lock(s_.mu);
  auto it = s_.logs.find(key);
  if (it != s_.logs.end()) it->second = cur;
  return result;
}

void Delivery::ship_all_logs() {
  auto now = std::chrono::steady_clock::now();
  if (now - last_log_sweep_ < 500ms) return;
  last_log_sweep_ = now;
  std::vector<AttemptKey> keys;
  {
    std::lock_guard lock(s_.mu);
    for (const auto& [k, c] : s_.logs) keys.push_back(k);
  }
  for (const auto& k : keys) {
    Outcome o = ship_logs(k, false);
    if (o == Outcome::kStale) s_.drop(k);
    if (o == Outcome::kRetry) break;
  }
}

void Delivery::note_rejection(const AttemptKey& key, const std::string& what,
                              const HttpReply& rep) {
  std::string why = rep.body.substr(0, 2000);
  if (rep.json.is_object() && rep.json.contains("error") && rep.json["error"].is_object() &&
      rep.json["error"].contains("message") && rep.json["error"]["message"].is_string())
    why = rep.json["error"]["message"].get<std::string>();
  Json body = {{"worker_id", s_.cfg.worker_id},
               {"attempt", key.second},
               {"kind", "report_rejected"},
               {"detail", what + " refused with HTTP " + std::to_string(rep.status) + ": " + why +
                              "; dropped, later reports go on"}};
  auto r = http_.post_json("/v1/worker/runs/" + std::to_string(key.first) + "/events", body);
  if (!r.ok() || !r->ok())
    s_.say("could not record the rejection of " + what + " as an event (" +
           (r.ok() ? "HTTP " + std::to_string(r->status) : r.status().message()) + ")");
}

AttemptKey key_of(const Json& rec) {
  auto run = rec.contains("run_id") ? int_of(rec["run_id"]) : std::nullopt;
  auto attempt = rec.contains("attempt") ? int_of(rec["attempt"]) : std::nullopt;
  return {run.value_or(0), static_cast<int>(attempt.value_or(1))};
}

Outcome Delivery::deliver(const Json& rec) {
  std::string type = rec.contains("type") && rec["type"].is_string() ? rec["type"].get<std::string>() : "";
  AttemptKey key = key_of(rec);
  Json body = rec.contains("body") && rec["body"].is_object() ? rec["body"] : Json::object();
  body["worker_id"] = s_.cfg.worker_id;
  body["attempt"] = key.second;
  std::string base = "/v1/worker/runs/" + std::to_string(key.first);
  std::string what = type + " report of run " + std::to_string(key.first);
  if (type == kRecStarted) {
    auto rep = http_.post_json(base + "/started", body);
    Outcome o = classify(rep, what);
    if (o == Outcome::kDelivered && rep->json.is_object() && rep->json.contains("cancel") &&
        rep->json["cancel"].is_boolean() && rep->json["cancel"].get<bool>()) {
      std::lock_guard lock(s_.mu);
      s_.cancel.insert(key.first);
    }
    return o;
  }
  auto send = [&](const char* op) {
    auto rep = http_.post_json(base + op, body);
    Outcome o = classify(rep, what);
    if (o == Outcome::kRejected) note_rejection(key, what, *rep);
    return o;
  };
  if (type == kRecMetrics) {
    if (body.contains("batch_seq")) what = "metric batch " + excerpt(body["batch_seq"]) + " of run " + std::to_string(key.first);
    return send("/metrics");
  }
  if (type == kRecArtifact) return send("/artifacts");
  if (type == kRecEvent) return classify(http_.post_json(base + "/events", body), what);
  if (type == kRecFinished) {
    // The contract: every log chunk of the attempt lands before `finished`.
    Outcome o = ship_logs(key, true);
    if (o != Outcome::kDelivered) return o;
    o = classify(http_.post_json(base + "/finished", body), what);
    if (o != Outcome::kRetry) {
      std::lock_guard lock(s_.mu);
      s_.held.erase(key);
      s_.logs.erase(key);
    }
    return o;
  }
  s_.say("spool record of unknown type '" + type + "' skipped");
  return Outcome::kRejected;
}

void Delivery::run() {
  auto backoff = 100ms;
  while (!s_.abort) {
    auto recs = s_.spool->pending(64);
    if (recs.empty()) {
      if (s_.supervisor_done && s_.spool->pending_count() == 0) break;
      ship_all_logs();
      std::this_thread::sleep_for(20ms);
      continue;
    }
    uint64_t last_done = 0;
    bool retry = false;
    for (const auto& r : recs) {
      if (s_.abort) break;
      auto parsed = parse_json(r.payload, "spool record " + std::to_string(r.seq));
      if (!parsed.ok() || !parsed->is_object()) {  // cannot happen unless edited by hand
        s_.say((parsed.ok() ? "spool record " + std::to_string(r.seq) + ": not a JSON object"
                            : parsed.status().message()) + "; skipped");
        last_done = r.seq;
        continue;
      }
      const Json& rec = *parsed;
      AttemptKey key = key_of(rec);
      if (s_.is_dropped(key)) {
        last_done = r.seq;
        continue;
      }
      Outcome o = Outcome::kRejected;
      // A throw here would end the thread and with it every later report.
      if (!guarded(s_, ("delivery of spool record " + std::to_string(r.seq)).c_str(),
                   [&] { o = deliver(rec); }))
        s_.say("spool record " + std::to_string(r.seq) + " skipped after the error above");
      if (o == Outcome::kRetry) {
        retry = true;
        break;
      }
      if (o == Outcome::kStale) {
        s_.say("run " + std::to_string(key.first) + " attempt " + std::to_string(key.second) +
               " is no longer this worker's; stopping it and dropping its reports");
        s_.drop(key);
      }
      last_done = r.seq;
    }
    if (last_done) {
      Status st = s_.spool->ack(last_done);
      if (!st.ok()) s_.say("spool ack failed: " + st.message());
    }
    if (retry) {
      auto end = std::chrono::steady_clock::now() + backoff;
      while (!s_.abort && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(10ms);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
    } else {
      backoff = 100ms;
      ship_all_logs();
    }
  }
}

}  // namespace

void delivery_loop(Shared& s) {
  Delivery(s).run();
  s.delivery_done = true;
}

}  // namespace assay::worker
