// User-side endpoints: sweeps, runs, logs, metrics, workers, read-only SQL.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "assay/specs.h"
#include "assay/sweep_expand.h"
#include "core_internal.h"

namespace assay::coordinator {

namespace fs = std::filesystem;

namespace {

Response invalid_spec(const Status& st) {
  return error_response(400, "invalid_spec", st.message());
}

Json labels_json(const std::map<std::string, std::string>& labels) {
  Json j = Json::object();
  for (auto& [k, v] : labels) j[k] = v;
  return j;
}

Json env_json(const std::map<std::string, std::string>& env) { return labels_json(env); }

Response run_not_found(int64_t id) {
  return error_response(404, "not_found", "run " + std::to_string(id) + " not found");
}

}  // namespace

Response Coordinator::Impl::h_submit_sweep(const Json& body) {
  auto spec = schemas::parse_sweep_spec(body, "sweep");
  if (!spec.ok()) return invalid_spec(spec.status());
  auto runs = expand_sweep(*spec);
  if (!runs.ok()) return invalid_spec(runs.status());
  std::string hash = sweep_content_hash(spec->raw.is_null() ? body : spec->raw);

  auto existing = db->find_sweep(spec->name);
  if (!existing.ok()) return status_response(existing.status());
  if (existing->has_value()) {
    const store::Sweep& sw = **existing;
    if (sw.content_hash != hash)
      return error_response(
          409, "sweep_conflict",
          "sweep '" + sw.name + "' already exists with different content (stored hash " +
              sw.content_hash.substr(0, 12) + ", submitted " + hash.substr(0, 12) +
              "); submit it under a new name");
    store::RunFilter f;
    f.sweep_id = sw.id;
    f.limit = static_cast<int>(kMaxSweepRuns);
    auto rs = db->list_runs(f);
    if (!rs.ok()) return status_response(rs.status());
    Json ids = Json::array();
    for (auto& r : *rs) ids.push_back(r.id);
    return json_response(200, {{"sweep",
                                {{"id", sw.id},
                                 {"name", sw.name},
                                 {"content_hash", sw.content_hash},
                                 {"created_at", sw.created_at}}},
                               {"runs", ids},
                               {"created", false}});
  }

  const schemas::SweepSpec& sp = *spec;
  int64_t sweep_id = 0;
  std::vector<int64_t> ids;
  Status st = db->transaction([&]() -> Status {
    ASSAY_ASSIGN_OR_RETURN(sweep_id,
                           db->insert_sweep(sp.name, schemas::canonical_json(body), hash));
    Json evals = body.contains("evals") ? body["evals"] : Json::array();
    for (auto& er : *runs) {
      store::NewRun nr;
      nr.sweep_id = sweep_id;
      nr.name = er.name;
      nr.spec_json = dump_json(
          {{"sweep", sp.name}, {"index", er.index}, {"env", env_json(sp.env)}, {"evals", evals}});
      nr.params_json = dump_json(er.params);
      nr.command = er.command;
      nr.priority = sp.priority;
      nr.resources = {sp.resources.gpus, sp.resources.gpu_mem_mb, sp.resources.cpus};
      nr.labels_json = dump_json(labels_json(sp.labels));
      nr.max_attempts = sp.max_attempts;
      nr.timeout_s = sp.timeout_s;
      ASSAY_ASSIGN_OR_RETURN(int64_t id, db->insert_run(nr, "user"));
      ids.push_back(id);
    }
    return Status::Ok();
  });
  if (!st.ok()) return status_response(st);
  sweep_names[sweep_id] = sp.name;
  for (int64_t id : ids) {
    auto r = db->get_run(id);
    if (r.ok()) sched.enqueue(needs_of(*r));
  }
  auto sw = db->get_sweep(sweep_id);
  if (!sw.ok()) return status_response(sw.status());
  return json_response(201, {{"sweep",
                              {{"id", sw->id},
                               {"name", sw->name},
                               {"content_hash", sw->content_hash},
                               {"created_at", sw->created_at}}},
                             {"runs", ids},
                             {"created", true}});
}

Response Coordinator::Impl::h_submit_run(const Json& body) {
  auto spec = schemas::parse_run_spec(body, "run");
  if (!spec.ok()) return invalid_spec(spec.status());
  const schemas::RunSpec& sp = *spec;
  std::string command = sp.command;
  if (!sp.params.empty()) {
    auto c = render_command(sp.command, sp.params);
    if (!c.ok()) return invalid_spec(c.status());
    command = *c;
  }
  store::NewRun nr;
  nr.name = sp.name;
  nr.spec_json = dump_json({{"env", env_json(sp.env)}});
  nr.params_json = dump_json(sp.params);
  nr.command = command;
  nr.priority = sp.priority;
  nr.resources = {sp.resources.gpus, sp.resources.gpu_mem_mb, sp.resources.cpus};
  nr.labels_json = dump_json(labels_json(sp.labels));
  nr.max_attempts = sp.max_attempts;
  nr.timeout_s = sp.timeout_s;
  int64_t id = 0;
  Status st = db->transaction([&]() -> Status {
    ASSAY_ASSIGN_OR_RETURN(id, db->insert_run(nr, "user"));
    return Status::Ok();
  });
  if (!st.ok()) return status_response(st);
  auto r = db->get_run(id);
  if (!r.ok()) return status_response(r.status());
  sched.enqueue(needs_of(*r));
  return json_response(201, {{"run", run_json(*r)}});
}

namespace {
Json sweep_row_json(const store::SweepCounts& s) {
  Json counts = Json::object();
  for (auto& [k, v] : s.counts) counts[k] = v;
  return {{"id", s.id},
          {"name", s.name},
          {"content_hash", s.content_hash},
          {"created_at", s.created_at},
          {"counts", counts}};
}
}  // namespace

Response Coordinator::Impl::h_list_sweeps() {
  auto rows = db->sweep_counts(std::nullopt);
  if (!rows.ok()) return status_response(rows.status());
  Json out = Json::array();
  for (auto& s : *rows) out.push_back(sweep_row_json(s));
  return json_response(200, {{"sweeps", out}});
}

Response Coordinator::Impl::h_get_sweep(const std::string& name) {
  auto sw = db->find_sweep(name);
  if (!sw.ok()) return status_response(sw.status());
  if (!sw->has_value()) return error_response(404, "not_found", "sweep '" + name + "' not found");
  auto rows = db->sweep_counts((*sw)->id);
  if (!rows.ok()) return status_response(rows.status());
  if (rows->empty()) return error_response(404, "not_found", "sweep '" + name + "' not found");
  Json j = sweep_row_json(rows->front());
  j["spec"] = Json::parse((*sw)->spec_json, nullptr, false);
  Json counts = j["counts"];
  return json_response(200, {{"sweep", j}, {"counts", counts}});
}

Response Coordinator::Impl::h_cancel_sweep(const std::string& name) {
  auto sw = db->find_sweep(name);
  if (!sw.ok()) return status_response(sw.status());
  if (!sw->has_value()) return error_response(404, "not_found", "sweep '" + name + "' not found");
  store::RunFilter f;
  f.sweep_id = (*sw)->id;
  f.limit = static_cast<int>(kMaxSweepRuns);
  auto runs = db->list_runs(f);
  if (!runs.ok()) return status_response(runs.status());
  Json cancelled = Json::array(), pending = Json::array();
  Status st = db->transaction([&]() -> Status {
    for (auto& r : *runs) {
      if (store::is_terminal(r.state)) continue;
      bool is_pending = false;
      ASSAY_RETURN_IF_ERROR(cancel_run(r, "user", &is_pending));
      (is_pending ? pending : cancelled).push_back(r.id);
    }
    return Status::Ok();
  });
  if (!st.ok()) {
    // The transaction rolled back; rebuild the in-memory view from the database.
    for (auto& r : *runs) {
      auto now_r = db->get_run(r.id);
      if (!now_r.ok()) continue;
      if (now_r->state == store::RunState::kQueued) sched.enqueue(needs_of(*now_r));
      if (now_r->state != store::RunState::kRunning) cancel_requested.erase(r.id);
    }
    return status_response(st);
  }
  return json_response(200, {{"cancelled", cancelled}, {"cancel_requested", pending}});
}

Response Coordinator::Impl::h_list_runs(const Target& t) {
  store::RunFilter f;
  f.limit = 1000;
  for (auto& [k, v] : t.query_list) {
    if (k == "sweep") {
      auto sw = db->find_sweep(v);
      if (!sw.ok()) return status_response(sw.status());
      if (!sw->has_value()) return error_response(404, "not_found", "sweep '" + v + "' not found");
      f.sweep_id = (*sw)->id;
    } else if (k == "state") {
      auto s = store::parse_run_state(v);
      if (!s.ok())
        return error_response(400, "bad_request",
                              "query 'state': expected queued|leased|running|succeeded|failed|"
                              "cancelled|pruned, got '" + v + "'");
      f.state = *s;
    } else if (k == "after") {
      auto a = parse_int(v, "query 'after'");
      if (!a.ok()) return error_response(400, "bad_request", a.status().message());
      f.after_id = *a;
    } else if (k == "limit") {
      auto l = parse_int(v, "query 'limit'");
      if (!l.ok() || *l < 1 || *l > 10000)
        return error_response(400, "bad_request", "query 'limit': expected 1..10000, got '" + v + "'");
      f.limit = static_cast<int>(*l);
    } else if (k.rfind("param.", 0) == 0 && k.size() > 6) {
      f.params.emplace_back(k.substr(6), v);
    } else {
      return error_response(400, "bad_request",
                            "unknown query parameter '" + k +
                                "' (use sweep, state, param.<name>, after, limit)");
    }
  }
  auto runs = db->list_runs(f);
  if (!runs.ok()) return status_response(runs.status());
  Json out = Json::array();
  for (auto& r : *runs) out.push_back(run_json(r));
  Json next = runs->size() == static_cast<size_t>(f.limit) && !runs->empty()
                  ? Json(runs->back().id)
                  : Json(nullptr);
  return json_response(200, {{"runs", out}, {"next_after", next}});
}

Response Coordinator::Impl::h_get_run(int64_t run_id) {
  auto r = db->get_run(run_id);
  if (!r.ok())
    return r.status().code() == Code::kNotFound ? run_not_found(run_id) : status_response(r.status());
  auto ev = db->events(run_id);
  if (!ev.ok()) return status_response(ev.status());
  auto arts = db->artifacts(run_id);
  if (!arts.ok()) return status_response(arts.status());
  Json events = Json::array();
  for (auto& e : *ev)
    events.push_back({{"id", e.id},
                      {"at", e.at},
                      {"actor", e.actor},
                      {"kind", e.kind},
                      {"from", e.from_state ? Json(*e.from_state) : Json(nullptr)},
                      {"to", e.to_state ? Json(*e.to_state) : Json(nullptr)},
                      {"detail", e.detail}});
  Json artifacts = Json::array();
  for (auto& a : *arts)
    artifacts.push_back({{"id", a.id},
                         {"kind", a.kind},
                         {"content_hash", a.content_hash},
                         {"path", a.path},
                         {"step", a.step ? Json(*a.step) : Json(nullptr)},
                         {"metadata", Json::parse(a.metadata_json, nullptr, false)},
                         {"created_at", a.created_at}});
  return json_response(200, {{"run", run_json(*r)}, {"events", events}, {"artifacts", artifacts}});
}

Response Coordinator::Impl::h_cancel(int64_t run_id) {
  auto r = db->get_run(run_id);
  if (!r.ok())
    return r.status().code() == Code::kNotFound ? run_not_found(run_id) : status_response(r.status());
  bool pending = false;
  Status st = cancel_run(*r, "user", &pending);
  if (!st.ok()) return status_response(st);
  auto after = db->get_run(run_id);
  if (!after.ok()) return status_response(after.status());
  return json_response(200, {{"run", run_json(*after)}});
}

Response Coordinator::Impl::h_retry(int64_t run_id) {
  auto r = db->get_run(run_id);
  if (!r.ok())
    return r.status().code() == Code::kNotFound ? run_not_found(run_id) : status_response(r.status());
  if (r->state != store::RunState::kFailed && r->state != store::RunState::kCancelled)
    return error_response(409, "invalid_state",
                          "run " + std::to_string(run_id) + " is " +
                              std::string(store::to_string(r->state)) +
                              "; only failed or cancelled runs can be retried");
  store::Transition t;
  t.run_id = run_id;
  t.to = store::RunState::kQueued;
  t.expect_from = r->state;
  t.actor = "user";
  t.bump_attempt = true;
  t.detail = "retried by user as attempt " + std::to_string(r->attempt + 1);
  Status st = db->transition(t);
  if (!st.ok()) return status_response(st);
  auto after = db->get_run(run_id);
  if (!after.ok()) return status_response(after.status());
  sched.enqueue(needs_of(*after));
  return json_response(200, {{"run", run_json(*after)}});
}

Response Coordinator::Impl::h_get_logs(int64_t run_id, const Target& t, bool wait_expired) {
  auto r = db->get_run(run_id);
  if (!r.ok())
    return r.status().code() == Code::kNotFound ? run_not_found(run_id) : status_response(r.status());
  auto q = [&](const char* k, const std::string& d) {
    auto it = t.query.find(k);
    return it == t.query.end() ? d : it->second;
  };
  std::string stream = q("stream", "stdout");
  if (stream != "stdout" && stream != "stderr")
    return error_response(400, "bad_request",
                          "query 'stream': expected stdout or stderr, got '" + stream + "'");
  auto offset = parse_int(q("offset", "0"), "query 'offset'");
  auto attempt = parse_int(q("attempt", std::to_string(r->attempt)), "query 'attempt'");
  auto max_bytes = parse_int(q("max_bytes", std::to_string(1 << 20)), "query 'max_bytes'");
  auto wait_s = parse_double(q("wait_s", "0"), "query 'wait_s'");
  for (const Status* st : {&offset.status(), &attempt.status(), &max_bytes.status(), &wait_s.status()})
    if (!st->ok()) return error_response(400, "bad_request", st->message());
  if (*offset < 0 || *max_bytes < 1)
    return error_response(400, "bad_request", "query 'offset' must be >= 0 and 'max_bytes' >= 1");
  int64_t cap = std::min<int64_t>(*max_bytes, 8 << 20);

  std::string path = log_path(run_id, static_cast<int>(*attempt), stream);
  std::error_code ec;
  int64_t size = fs::exists(path, ec) ? static_cast<int64_t>(fs::file_size(path, ec)) : 0;
  std::string data;
  if (*offset < size) {
    std::ifstream in(path, std::ios::binary);
    in.seekg(*offset);
    data.resize(static_cast<size_t>(std::min(cap, size - *offset)));
    in.read(data.data(), static_cast<std::streamsize>(data.size()));
    data.resize(static_cast<size_t>(in.gcount()));
  }
  bool terminal = store::is_terminal(r->state) || *attempt < r->attempt;
  if (data.empty() && !terminal && *wait_s > 0 && !wait_expired) {
    Response w;
    w.retry = true;
    w.wait_s = std::min(*wait_s, kLongPollCapS);
    return w;
  }
  int64_t next = *offset + static_cast<int64_t>(data.size());
  Response resp;
  resp.status = 200;
  resp.content_type = "application/octet-stream";
  resp.body = std::move(data);
  resp.headers = {{"X-Assay-Next-Offset", std::to_string(next)},
                  {"X-Assay-Attempt", std::to_string(*attempt)},
                  {"X-Assay-Run-State", std::string(store::to_string(r->state))},
                  {"X-Assay-Complete", terminal && next >= size ? "1" : "0"}};
  return resp;
}

Response Coordinator::Impl::h_get_metrics(int64_t run_id, const Target& t) {
  auto r = db->get_run(run_id);
  if (!r.ok())
    return r.status().code() == Code::kNotFound ? run_not_found(run_id) : status_response(r.status());
  auto it = t.query.find("key");
  // ?attempt=N (one attempt), ?attempt=all; by default the run's current
  // attempt, the one whose outcome the run shows.
  int attempt = store::kCurrentAttempt;
  if (auto a = t.query.find("attempt"); a != t.query.end()) {
    if (a->second == "all") {
      attempt = store::kAllAttempts;
    } else {
      auto n = parse_int(a->second, "query 'attempt'");
      if (!n.ok() || *n < 1 || *n > r->attempt)
        return error_response(400, "bad_request",
                              "query 'attempt': expected 'all' or an attempt 1.." +
                                  std::to_string(r->attempt) + " of run " +
                                  std::to_string(run_id) + ", got '" + a->second + "'");
      attempt = static_cast<int>(*n);
    }
  }
  auto pts = db->metrics(run_id, it == t.query.end() ? "" : it->second, attempt);
  if (!pts.ok()) return status_response(pts.status());
  Json out = Json::array();
  for (auto& p : *pts)
    out.push_back({{"key", p.key},
                   {"step", p.step},
                   {"value", std::isfinite(p.value) ? Json(p.value) : Json(nullptr)},
                   {"time", p.wall_time},
                   {"attempt", p.attempt}});
  return json_response(200, {{"points", out}, {"attempt", r->attempt}});
}

Response Coordinator::Impl::h_workers() {
  double t = now();
  Json out = Json::array();
  for (auto& [id, w] : sched.workers()) {
    Json gpus = Json::array();
    for (auto& g : w.gpus)
      gpus.push_back({{"index", g.index},
                      {"uuid", g.uuid},
                      {"name", g.name},
                      {"mem_total_mb", g.mem_total_mb},
                      {"mem_free_mb", g.mem_free_mb},
                      {"util_pct", g.util_pct},
                      {"run_id", g.held_by ? Json(g.held_by) : Json(nullptr)}});
    Json labels = Json::object();
    for (auto& [k, v] : w.labels) labels[k] = v;
    out.push_back({{"id", id},
                   {"host", w.host},
                   {"cpus", w.cpus},
                   {"cpus_used", w.cpus_used},
                   {"max_runs", w.max_runs},
                   {"labels", labels},
                   {"gpus", gpus},
                   {"last_heartbeat", w.last_heartbeat},
                   {"alive", t - w.last_heartbeat <= ttl()},
                   {"runs", sched.runs_of(id)}});
  }
  return json_response(200, {{"workers", out}});
}

namespace {

Json cell_json(const store::Cell& c) {
  if (std::holds_alternative<std::monostate>(c)) return nullptr;
  if (auto* i = std::get_if<int64_t>(&c)) return *i;
  if (auto* d = std::get_if<double>(&c)) return std::isfinite(*d) ? Json(*d) : Json(nullptr);
  return std::get<std::string>(c);
}

// Runs on whichever thread the server chose: touches nothing of the
// Coordinator, only its own read-only connection.
Response run_query(const std::string& db_path, const std::string& sql,
                   store::QueryLimits limits, const std::atomic<bool>* cancel) {
  limits.cancel = cancel;
  auto res = store::query_readonly(db_path, sql, limits);
  if (!res.ok()) {
    if (res.status().code() == Code::kPermissionDenied)
      return error_response(403, "forbidden", res.status().message());
    if (res.status().code() == Code::kInvalidArgument)
      return error_response(400, "bad_request", res.status().message());
    return status_response(res.status());
  }
  Json rows = Json::array();
  for (auto& row : res->rows) {
    Json jr = Json::array();
    for (auto& c : row) jr.push_back(cell_json(c));
    rows.push_back(std::move(jr));
  }
  return json_response(200, {{"columns", res->columns}, {"rows", rows}, {"truncated", res->truncated}});
}

}  // namespace

Response Coordinator::Impl::h_query(const Json& body, bool defer) {
  auto sql = get_string(body, "sql");
  if (!sql.ok()) return error_response(400, "bad_request", sql.status().message());
  const int64_t cap = static_cast<int64_t>(opts.query_max_rows);
  auto max_rows = get_int(body, "max_rows", std::min<int64_t>(10000, cap));
  if (!max_rows.ok() || *max_rows < 1 || *max_rows > cap)
    return error_response(400, "bad_request",
                          "field 'max_rows': expected 1.." + std::to_string(cap) +
                              " (the coordinator's row budget, --query-max-rows), got " +
                              (max_rows.ok() ? std::to_string(*max_rows)
                                             : describe(body.value("max_rows", Json()))));
  store::QueryLimits limits;
  limits.max_rows = static_cast<size_t>(*max_rows);
  limits.time_budget_s = opts.query_time_budget_s;
  limits.budget_name = "the coordinator's --query-time-budget";
  if (!defer) return run_query(opts.db_path, *sql, limits, nullptr);
  Response r;
  r.deferred = [db = opts.db_path, sql = *sql, limits](const std::atomic<bool>& cancel) {
    return run_query(db, sql, limits, &cancel);
  };
  return r;
}

}  // namespace assay::coordinator
