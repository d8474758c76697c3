// The delivery thread: sends spool records to the coordinator strictly in
// order, acknowledging them in the spool once the coordinator answered, and
// ships stdout/stderr by byte offset. Connection errors and 5xx are retried
// with backoff, forever; 409 stale_attempt drops the attempt's data (the run
// is no longer this worker's); other 4xx are logged, recorded on the run as a
// `report_rejected` event, and skipped, so one refused report never blocks
// the spool.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
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


// Up to `max` bytes of `path` from `offset`. Sized by fstat first: most runs
// write little or nothing, and zero-filling a 1 MiB buffer per stream per run
// (fresh pages each time, above malloc's mmap threshold) was a large share
// of the worker's CPU for short runs.
std::string read_at(const std::string& path, int64_t offset, size_t max) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  struct stat st {};
  std::string buf;
  if (fstat(fd, &st) == 0 && st.st_size > offset) {
    buf.resize(std::min(max, static_cast<size_t>(st.st_size - offset)));
    ssize_t n = pread(fd, buf.data(), buf.size(), static_cast<off_t>(offset));
    buf.resize(n > 0 ? static_cast<size_t>(n) : 0);
  }
  close(fd);
  return buf;
}

std::optional<int64_t> next_offset(const Json& reply) {
  if (!reply.is_object()) return std::nullopt;
  auto it = reply.find("next_offset");
  return it == reply.end() ? std::nullopt : int_of(*it);
}

// Report types a batch may carry: each is idempotent at the coordinator, so
// a replayed batch doubles nothing. Events (not de-duplicated) go alone.
const char* batch_op(const std::string& type) {
  if (type == kRecStarted) return "started";
  if (type == kRecFinished) return "finished";
  if (type == kRecMetrics) return "metrics";
  if (type == kRecArtifact) return "artifacts";
  return nullptr;
}

// One spool record on its way, parsed.
struct Item {
  uint64_t seq = 0;
  Json rec;
  AttemptKey key;
  std::string type;
  bool skip = false;  // its attempt was dropped: done with, never sent
};

class Delivery {
 public:
  explicit Delivery(Shared& s) : s_(s), http_(s.cfg.coordinator_url, s.cfg.token, &s.abort) {}
  void run();

 private:
  Outcome classify(const Result<HttpReply>& rep, const std::string& what);
  Outcome deliver(const Json& rec);
  // Sends `items` (all batchable) as one batch; fills one outcome per item
  // it got an answer for, in order, and stops at the first kRetry. Returns
  // false when the coordinator does not take batches (before v1.11).
  bool deliver_batch(const std::vector<Item>& items, std::vector<Outcome>* out);
  // What a report's answer means for the record, and its side effects.
  Outcome settle(const Item& it, Outcome o, const HttpReply& rep);
  // Delivers records in order, batching runs of batchable ones; returns the
  // seq of the last record done with (0: none) and whether to back off.
  uint64_t deliver_all(const std::vector<SpoolRecord>& recs, bool* retry);
  // Leaves a `report_rejected` event on the run for a report the coordinator
  // refused with a 4xx; best effort, in order with the other reports.
  void note_rejection(const AttemptKey& key, const std::string& what, const HttpReply& rep);
  Outcome ship_logs(const AttemptKey& key, bool to_eof);
  void ship_all_logs();

  Shared& s_;
  HttpClient http_;
  std::chrono::steady_clock::time_point last_log_sweep_{};
  bool down_reported_ = false;
  bool batches_ = true;  // false once the coordinator showed it takes none
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

// A `started` or `metrics` reply asks the worker to stop the run (a user's
// cancel, or an adaptive-search stop decided on the points just sent).
bool wants_cancel(const Json& reply) {
  return reply.is_object() && reply.contains("cancel") && reply["cancel"].is_boolean() &&
         reply["cancel"].get<bool>();
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
    if (o == Outcome::kDelivered && wants_cancel(rep->json)) {
      std::lock_guard lock(s_.mu);
      s_.cancel.insert(key.first);
    }
    return o;
  }
  auto send = [&](const char* op) {
    auto rep = http_.post_json(base + op, body);
    Outcome o = classify(rep, what);
    if (o == Outcome::kRejected) note_rejection(key, what, *rep);
    if (o == Outcome::kDelivered && wants_cancel(rep->json)) {
      std::lock_guard lock(s_.mu);
      s_.cancel.insert(key.first);
    }
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

// After a report was answered: a `started` or `metrics` reply may carry a cancel, and a
// `finished` one that is settled ends the run's bookkeeping here.
Outcome Delivery::settle(const Item& it, Outcome o, const HttpReply& rep) {
  if ((it.type == kRecStarted || it.type == kRecMetrics) && o == Outcome::kDelivered &&
      wants_cancel(rep.json)) {
    std::lock_guard lock(s_.mu);
    s_.cancel.insert(it.key.first);
  }
  if (o == Outcome::kRejected && it.type != kRecStarted && it.type != kRecFinished)
    note_rejection(it.key, it.type + " report of run " + std::to_string(it.key.first), rep);
  if (it.type == kRecFinished && o != Outcome::kRetry) {
    std::lock_guard lock(s_.mu);
    s_.held.erase(it.key);
    s_.logs.erase(it.key);
  }
  return o;
}

bool Delivery::deliver_batch(const std::vector<Item>& items, std::vector<Outcome>* out) {
  Json reports = Json::array();
  for (const auto& it : items) {
    Json r = it.rec.contains("body") && it.rec["body"].is_object() ? it.rec["body"] : Json::object();
    r["op"] = batch_op(it.type);
    r["run_id"] = it.key.first;
    r["attempt"] = it.key.second;
    reports.push_back(std::move(r));
  }
  Json body = {{"worker_id", s_.cfg.worker_id}, {"instance", s_.instance}, {"reports", reports}};
  auto rep = http_.post_json("/v1/worker/heartbeat", body);
  std::string what = std::to_string(items.size()) + " report(s) from run " +
                     std::to_string(items.front().key.first) + " on";
  Outcome o = classify(rep, what);
  if (o != Outcome::kDelivered) {
    // The batch as a whole was not taken: nothing in it was applied.
    if (o == Outcome::kRetry) return true;
    batches_ = false;  // refused outright: send reports one by one
    return false;
  }
  const Json* results = rep->json.is_object() && rep->json.contains("reports")
                            ? &rep->json["reports"] : nullptr;
  if (!results || !results->is_array() || results->size() != items.size()) {
    // A coordinator before v1.11 took it as a plain heartbeat.
    s_.say("the coordinator does not take report batches; sending reports one by one");
    batches_ = false;
    return false;
  }
  for (size_t i = 0; i < items.size(); ++i) {
    const Json& r = (*results)[i];
    HttpReply one;
    auto status = r.is_object() && r.contains("status") ? int_of(r["status"]) : std::nullopt;
    one.status = status.value_or(0);
    one.json = r.is_object() && r.contains("body") ? r["body"] : Json();
    one.body = one.json.dump(-1, ' ', false, Json::error_handler_t::replace);
    if (one.json.is_object() && one.json.contains("error") && one.json["error"].is_object() &&
        one.json["error"].contains("code") && one.json["error"]["code"].is_string())
      one.error_code = one.json["error"]["code"].get<std::string>();
    const Item& it = items[i];
    Outcome oi = settle(it, classify(one, it.type + " report of run " + std::to_string(it.key.first)),
                        one);
    out->push_back(oi);
    if (oi == Outcome::kRetry) break;
  }
  return true;
}

uint64_t Delivery::deliver_all(const std::vector<SpoolRecord>& recs, bool* retry) {
  uint64_t last_done = 0;
  std::vector<Item> batch;
  // Sends the pending batch; false when the caller must stop (retry).
  auto flush = [&]() -> bool {
    std::vector<Item> send;
    for (const auto& it : batch)
      if (!it.skip) send.push_back(it);
    std::vector<Outcome> outs;
    if (!send.empty()) {
      bool taken = false;
      guarded(s_, "delivery of a report batch", [&] { taken = deliver_batch(send, &outs); });
      if (!taken) {
        // Not taken as a batch: the same records one by one, in order.
        outs.clear();
        for (const auto& it : send) {
          Outcome o = Outcome::kRejected;
          guarded(s_, "delivery of a report", [&] { o = deliver(it.rec); });
          outs.push_back(o);
          if (o == Outcome::kRetry) break;
        }
      }
    }
    size_t k = 0;  // next outcome of `send`
    bool all = true;
    for (const auto& it : batch) {
      if (!it.skip) {
        if (k >= outs.size() || outs[k] == Outcome::kRetry) {
          all = false;
          break;
        }
        if (outs[k] == Outcome::kStale) {
          s_.say("run " + std::to_string(it.key.first) + " attempt " +
                 std::to_string(it.key.second) +
                 " is no longer this worker's; stopping it and dropping its reports");
          s_.drop(it.key);
        }
        ++k;
      }
      last_done = it.seq;
    }
    batch.clear();
    if (!all) *retry = true;
    return all;
  };
  for (const auto& r : recs) {
    if (s_.abort) break;
    auto parsed = parse_json(r.payload, "spool record " + std::to_string(r.seq));
    if (!parsed.ok() || !parsed->is_object()) {  // cannot happen unless edited by hand
      if (!flush()) return last_done;
      s_.say((parsed.ok() ? "spool record " + std::to_string(r.seq) + ": not a JSON object"
                          : parsed.status().message()) + "; skipped");
      last_done = r.seq;
      continue;
    }
    Item it{r.seq, std::move(parsed).value(), {}, {}};
    it.key = key_of(it.rec);
    it.type = it.rec.contains("type") && it.rec["type"].is_string() ? it.rec["type"].get<std::string>() : "";
    if (s_.is_dropped(it.key)) {
      it.skip = true;
      if (batch.empty()) last_done = r.seq;
      else batch.push_back(std::move(it));  // the ack stays a prefix
      continue;
    }
    if (batches_ && batch_op(it.type)) {
      if (it.type == kRecFinished) {
        // The contract: every log chunk of the attempt lands before `finished`.
        Outcome lo = ship_logs(it.key, true);
        if (lo == Outcome::kStale) {
          s_.drop(it.key);
          it.skip = true;
        }
        if (lo == Outcome::kRetry) {
          flush();
          *retry = true;
          return last_done;
        }
      }
      batch.push_back(std::move(it));
      continue;
    }
    if (!flush()) return last_done;
    Outcome o = Outcome::kRejected;
    // A throw here would end the thread and with it every later report.
    if (!guarded(s_, ("delivery of spool record " + std::to_string(r.seq)).c_str(),
                 [&] { o = deliver(it.rec); }))
      s_.say("spool record " + std::to_string(r.seq) + " skipped after the error above");
    if (o == Outcome::kRetry) {
      *retry = true;
      return last_done;
    }
    if (o == Outcome::kStale) {
      s_.say("run " + std::to_string(it.key.first) + " attempt " + std::to_string(it.key.second) +
             " is no longer this worker's; stopping it and dropping its reports");
      s_.drop(it.key);
    }
    last_done = r.seq;
  }
  flush();
  return last_done;
}

void Delivery::run() {
  auto backoff = 100ms;
  while (!s_.abort) {
    auto recs = s_.spool->pending(256);
    if (recs.empty()) {
      if (s_.supervisor_done && s_.spool->pending_count() == 0) break;
      ship_all_logs();
      // Wakes as soon as the supervisor appends: no polling delay.
      s_.spool->wait_pending(20ms);
      continue;
    }
    bool retry = false;
    uint64_t last_done = deliver_all(recs, &retry);
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
