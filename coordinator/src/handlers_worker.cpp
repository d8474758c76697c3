// Worker-side endpoints: register, heartbeat, lease, run reports.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include "core_internal.h"
#include "metric_batch.h"
#include "outcome.h"
#include "worker_pipeline.h"
#include "search_driver.h"  // adaptive search hook in h_finished

namespace assay::coordinator {

namespace fs = std::filesystem;

namespace {

Response bad(const Status& st) { return error_response(400, "bad_request", st.message()); }

#define TRY_FIELD(lhs, expr)              \
  auto ASSAY_CONCAT(f_, __LINE__) = expr; \
  if (!ASSAY_CONCAT(f_, __LINE__).ok())   \
    return bad(ASSAY_CONCAT(f_, __LINE__).status()); \
  lhs = std::move(ASSAY_CONCAT(f_, __LINE__)).value()

bool valid_worker_id(const std::string& id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' ||
          c == ':'))
      return false;
  return true;
}

Response unknown_worker(const std::string& id) {
  return error_response(404, "unknown_worker",
                        "worker '" + id + "' is not registered (or restarted); register again");
}

// A metric name becomes a column of the runs_wide view and a label in every
// client; a control character (NUL above all) has no place in either.
// Steps beyond 2^53 would not survive the double that carries them.
Status check_point(const MetricBatch::Point& p, size_t i) {
  const std::string at = "points[" + std::to_string(i) + "]";
  if (p.key.empty() || p.key.size() > 256)
    return Status::Invalid(at + ".key: expected 1..256 characters, got " +
                           std::to_string(p.key.size()));
  for (unsigned char c : p.key)
    if (c < 0x20 || c == 0x7f)
      return Status::Invalid(at + ".key: expected a name without control characters, got " +
                             dump_json(Json(p.key)));
  constexpr int64_t kMaxStep = (int64_t{1} << 53) - 1;
  if (p.step < -kMaxStep || p.step > kMaxStep)
    return Status::Invalid(at + ".step: expected an integer in -" + std::to_string(kMaxStep) +
                           ".." + std::to_string(kMaxStep) + ", got " + std::to_string(p.step));
  return Status::Ok();
}

Result<std::string> worker_id_of(const Json& body) {
  ASSAY_ASSIGN_OR_RETURN(auto id, get_string(body, "worker_id"));
  if (!valid_worker_id(id))
    return Status::Invalid("field 'worker_id': expected 1..128 of [A-Za-z0-9._:-], got '" + id +
                           "'");
  return id;
}

// A preempted attempt (v1.9): back to queued as attempt + 1 without using up
// an attempt (runs.preemptions counts it; max_attempts limits attempt -
// preemptions), marked to resume from its last checkpoint. The audit log
// gets the state change and a `preempted` event saying why.
Response requeue_preempted(Coordinator::Impl& c, const store::Run& r, const std::string& worker,
                           const std::string& why) {
  store::Transition tr;
  tr.run_id = r.id;
  tr.actor = "worker:" + worker;
  tr.expect_from = r.state;
  tr.to = store::RunState::kQueued;
  tr.bump_attempt = true;
  tr.detail = why + "; requeued as attempt " + std::to_string(r.attempt + 1) +
              " (a preemption does not count against max_attempts)";
  Status st = c.db->transaction([&]() -> Status {
    ASSAY_RETURN_IF_ERROR(c.db->transition(tr));
    ASSAY_RETURN_IF_ERROR(c.db->note_preempted(r.id));
    ASSAY_RETURN_IF_ERROR(c.db->set_resume(r.id, true));
    ASSAY_ASSIGN_OR_RETURN(auto ck, c.db->resume_point(r.id));
    return c.db->add_event(r.id, tr.actor, "preempted",
                           "attempt " + std::to_string(r.attempt) + " on worker " + worker + " " +
                               why + "; " +
                               (ck ? "the next attempt resumes from step " +
                                         std::to_string(*ck->step) + " (" + ck->path + ")"
                                   : std::string("no checkpoint reported: the next attempt starts over")));
  });
  if (!st.ok()) return status_response(st);
  c.sched.release(r.id);
  c.lease_granted_at.erase(r.id);
  auto again = c.db->get_run(r.id);
  if (again.ok()) c.sched.enqueue(c.needs_of(*again));
  return json_response(200, {{"state", "queued"}, {"failure_reason", nullptr}, {"preempted", true}});
}

}  // namespace

Response Coordinator::Impl::h_register(const Json& body) {
  TRY_FIELD(std::string id, worker_id_of(body));
  TRY_FIELD(std::string instance, get_string(body, "instance", std::string()));
  TRY_FIELD(std::string host, get_string(body, "host", id));
  TRY_FIELD(int64_t cpus, get_int(body, "cpus", 1));
  TRY_FIELD(int64_t max_runs, get_int(body, "max_runs", 0));
  if (cpus < 0 || cpus > 100000) return bad(Status::Invalid("field 'cpus': expected 0..100000"));
  if (max_runs < 0) return bad(Status::Invalid("field 'max_runs': expected >= 0"));
  Json gpus = body.contains("gpus") ? body["gpus"] : Json::array();
  if (!gpus.is_array()) return bad(Status::Invalid("field 'gpus': expected an array"));
  WorkerInfo wi;
  wi.id = id;
  wi.host = host;
  wi.instance = instance;
  wi.cpus = static_cast<int>(cpus);
  wi.max_runs = static_cast<int>(max_runs);
  for (size_t i = 0; i < gpus.size(); ++i) {
    const Json& g = gpus[i];
    std::string where = "gpus[" + std::to_string(i) + "]";
    if (!g.is_object()) return bad(Status::Invalid(where + ": expected an object"));
    auto idx = get_int(g, "index", static_cast<int64_t>(i));
    auto total = get_int(g, "mem_total_mb", 0);
    auto free_mb = get_int(g, "mem_free_mb", -1);
    auto util = get_int(g, "util_pct", 0);
    auto uuid = get_string(g, "uuid", std::string());
    auto name = get_string(g, "name", std::string());
    for (const Status* st : {&idx.status(), &total.status(), &free_mb.status(), &util.status(),
                             &uuid.status(), &name.status()})
      if (!st->ok()) return bad(st->with_context(where));
    for (auto& other : wi.gpus)
      if (other.index == *idx)
        return bad(Status::Invalid(where + ": duplicate GPU index " + std::to_string(*idx)));
    GpuInfo x{static_cast<int>(*idx), *uuid, *name, *total, *free_mb, static_cast<int>(*util), 0};
    wi.gpus.push_back(x);
  }
  Json labels = body.contains("labels") ? body["labels"] : Json::object();
  if (!labels.is_object()) return bad(Status::Invalid("field 'labels': expected an object"));
  for (auto& [k, v] : labels.items()) {
    if (!v.is_string())
      return bad(Status::Invalid("labels." + k + ": expected a string, got " + describe(v)));
    wi.labels[k] = v.get<std::string>();
  }

  double t = now();
  store::Worker w;
  w.id = id;
  w.host = host;
  w.gpus_json = dump_json(gpus_json(wi));
  w.labels_json = dump_json(labels);
  w.cpus = wi.cpus;
  w.registered_at = t;
  w.last_heartbeat = t;
  Status st = db->transaction([&]() -> Status {
    ASSAY_RETURN_IF_ERROR(db->upsert_worker(w));
    return db->put_worker_instance(id, {instance, wi.max_runs}, t);
  });
  if (!st.ok()) return status_response(st);

  // A new process instance: whatever the old one ran is gone.
  Json requeued = Json::array();
  WorkerInfo* prev = sched.worker(id);
  if (prev && prev->instance != instance) {
    for (int64_t run : sched.runs_of(id)) {
      Status ls = lose_lease(run, "worker " + id + " restarted (new instance)");
      if (ls.ok()) requeued.push_back(run);
    }
  }
  wi.last_heartbeat = t;
  sched.upsert_worker(std::move(wi));
  return json_response(200, {{"worker_id", id},
                             {"lease_ttl_s", ttl()},
                             {"heartbeat_s", ttl() / 3},
                             {"requeued", requeued}});
}

Json Coordinator::Impl::gpus_json(const WorkerInfo& w) {
  Json out = Json::array();
  for (const auto& x : w.gpus) {
    out.push_back({{"index", x.index}, {"uuid", x.uuid}, {"name", x.name},
                   {"mem_total_mb", x.mem_total_mb}, {"mem_free_mb", x.mem_free_mb},
                   {"util_pct", x.util_pct}});
  }
  return out;
}

Status Coordinator::Impl::sample_gpus(const WorkerInfo& w, double t) {
  auto it = gpu_sampled_at.find(w.id);
  if (it != gpu_sampled_at.end() && t - it->second < kGpuSampleEvery) return Status::Ok();
  std::vector<store::GpuSample> rows;
  for (const auto& x : w.gpus) {
    if (x.mem_free_mb < 0) continue;  // never reported
    store::GpuSample g;
    g.worker_id = w.id;
    g.gpu_index = x.index;
    g.at = t;
    if (x.util_pct >= 0) g.util_pct = x.util_pct;
    g.mem_total_mb = x.mem_total_mb;
    g.mem_used_mb = std::max<int64_t>(0, x.mem_total_mb - x.mem_free_mb);
    rows.push_back(g);
  }
  if (rows.empty()) return Status::Ok();
  ASSAY_RETURN_IF_ERROR(db->add_gpu_samples(rows));
  gpu_sampled_at[w.id] = t;
  return Status::Ok();
}

Response Coordinator::Impl::h_heartbeat(const Json& body) {
  TRY_FIELD(std::string id, worker_id_of(body));
  TRY_FIELD(std::string instance, get_string(body, "instance", std::string()));
  if (body.contains("reports")) return apply_reports(*this, id, instance, body["reports"]);
  Json active = body.contains("active") ? body["active"] : Json::array();
  if (!active.is_array()) return bad(Status::Invalid("field 'active': expected an array"));
  std::vector<std::pair<int64_t, int64_t>> act;
  for (size_t i = 0; i < active.size(); ++i) {
    if (!active[i].is_object())
      return bad(Status::Invalid("active[" + std::to_string(i) + "]: expected an object"));
    auto rid = get_int(active[i], "run_id");
    auto att = get_int(active[i], "attempt", 0);
    if (!rid.ok()) return bad(rid.status().with_context("active[" + std::to_string(i) + "]"));
    if (!att.ok()) return bad(att.status().with_context("active[" + std::to_string(i) + "]"));
    act.emplace_back(*rid, *att);
  }
  Json gpus = body.contains("gpus") ? body["gpus"] : Json::array();
  if (!gpus.is_array()) return bad(Status::Invalid("field 'gpus': expected an array"));
  WorkerInfo* w = sched.worker(id);
  if (!w || (!instance.empty() && !w->instance.empty() && instance != w->instance))
    return unknown_worker(id);
  double t = now();
  bool gpus_changed = false;
  for (auto& g : gpus) {
    if (!g.is_object()) continue;
    auto idx = get_int(g, "index");
    if (!idx.ok()) continue;
    for (auto& x : w->gpus) {
      if (x.index != *idx) continue;
      if (auto f = get_int(g, "mem_free_mb", x.mem_free_mb); f.ok()) x.mem_free_mb = *f;
      if (auto u = get_int(g, "util_pct", x.util_pct); u.ok()) x.util_pct = static_cast<int>(*u);
      gpus_changed = true;
    }
  }
  Status st = db->transaction([&]() -> Status {
    if (!gpus_changed) return db->heartbeat(id, t);
    ASSAY_RETURN_IF_ERROR(db->heartbeat(id, t, dump_json(gpus_json(*w))));
    return sample_gpus(*w, t);
  });
  if (!st.ok()) return status_response(st);
  w->last_heartbeat = t;
  sched.renew(id, t + ttl());
  if (body.contains("active")) requeue_unreceived(id, act, t);
  Json cancel = Json::array(), abort = Json::array();
  for (int64_t run : sched.runs_of(id))
    if (cancel_requested.count(run)) cancel.push_back(run);
  for (auto& [rid, att] : act) {
    const Assignment* a = sched.assignment(rid);
    if (!a || a->worker_id != id || (att != 0 && a->attempt != att)) abort.push_back(rid);
  }
  return json_response(200, {{"lease_ttl_s", ttl()}, {"cancel", cancel}, {"abort", abort}});
}

// A run held by this worker but absent from its `active` list for longer than
// a lease ttl after it was handed out never reached the worker (the lease
// reply was lost). Heartbeats renew all of a worker's leases, so without this
// such a run would stay leased forever.
void Coordinator::Impl::requeue_unreceived(const std::string& worker_id,
                                          const std::vector<std::pair<int64_t, int64_t>>& active,
                                          double t) {
  std::set<int64_t> listed;
  for (const auto& a : active) listed.insert(a.first);
  for (int64_t run : sched.runs_of(worker_id)) {
    if (listed.count(run)) continue;
    auto [it, fresh] = lease_granted_at.emplace(run, t);  // unknown after a restart: start now
    if (fresh || t - it->second <= ttl()) continue;
    lease_granted_at.erase(it);
    (void)lose_lease(run, "worker " + worker_id + " never reported the run as active (lost lease reply)");
  }
}

Response Coordinator::Impl::h_lease(const Json& body, bool wait_expired) {
  TRY_FIELD(std::string id, worker_id_of(body));
  TRY_FIELD(int64_t max_runs, get_int(body, "max_runs", 1));
  TRY_FIELD(double wait_s, get_number(body, "wait_s", 0.0));
  TRY_FIELD(int64_t ahead, get_int(body, "ahead", 0));
  if (max_runs < 1 || max_runs > 1024)
    return bad(Status::Invalid("field 'max_runs': expected 1..1024, got " +
                               std::to_string(max_runs)));
  if (wait_s < 0) return bad(Status::Invalid("field 'wait_s': expected >= 0"));
  if (ahead < 0 || ahead > 1024)
    return bad(Status::Invalid("field 'ahead': expected 0..1024 runs held ahead, got " +
                               std::to_string(ahead)));
  WorkerInfo* w = sched.worker(id);
  if (!w) return unknown_worker(id);
  double t = now();
  w->last_heartbeat = t;
  sched.renew(id, t + ttl());
  auto assigned = lease_ahead(*this, *w, static_cast<int>(max_runs), static_cast<int>(ahead),
                              t + ttl());
  if (assigned.empty()) {
    if (wait_s > 0 && !wait_expired) {
      Response r;
      r.retry = true;
      r.wait_s = std::min(wait_s, kLongPollCapS);
      return r;
    }
    return json_response(200, {{"runs", Json::array()}});
  }
  std::vector<store::Run> runs;
  Status st = db->transaction([&]() -> Status {
    for (auto& a : assigned) {
      store::Transition tr;
      tr.run_id = a.run_id;
      tr.to = store::RunState::kLeased;
      tr.expect_from = store::RunState::kQueued;
      tr.actor = "coordinator";
      tr.worker_id = id;
      tr.lease_expires_at = a.lease_expires_at;
      tr.detail = "leased to " + id;
      ASSAY_RETURN_IF_ERROR(db->transition(tr));
      ASSAY_RETURN_IF_ERROR(db->put_placement({a.run_id, id, a.attempt, a.gpus, a.cpus}, t));
      lease_granted_at[a.run_id] = t;
      ASSAY_ASSIGN_OR_RETURN(auto r, db->get_run(a.run_id));
      runs.push_back(std::move(r));
    }
    return Status::Ok();
  });
  if (!st.ok()) {
    // Nothing was written: undo the placement in memory too.
    for (auto& a : assigned) {
      sched.release(a.run_id);
      if (auto r = db->get_run(a.run_id); r.ok() && r->state == store::RunState::kQueued)
        sched.enqueue(needs_of(*r));
    }
    return status_response(st);
  }
  Json out = Json::array();
  for (size_t i = 0; i < runs.size(); ++i) {
    const store::Run& r = runs[i];
    const Assignment& a = assigned[i];
    Json spec = Json::parse(r.spec_json, nullptr, false);
    Json env = spec.is_object() && spec.contains("env") && spec["env"].is_object() ? spec["env"]
                                                                                   : Json::object();
    Json uuids = Json::array();
    for (int gi : a.gpus)
      for (auto& g : w->gpus)
        if (g.index == gi) uuids.push_back(g.uuid);
    Json rj = run_json(r);
    Json resume = nullptr;
    if (auto rp = db->resume_point(r.id); rp.ok() && *rp)
      resume = {{"path", (*rp)->path}, {"step", *(*rp)->step}, {"content_hash", (*rp)->content_hash}};
    out.push_back({{"run_id", r.id},
                   {"resume_from", resume},
                   {"attempt", r.attempt},
                   {"name", r.name},
                   {"sweep", rj["sweep"]},
                   {"command", r.command},
                   {"params", rj["params"]},
                   {"env", env},
                   {"gpus", a.gpus},
                   {"gpu_uuids", uuids},
                   {"cpus", a.cpus},
                   {"timeout_s", rj["timeout_s"]},
                   {"lease_ttl_s", ttl()}});
  }
  return json_response(200, {{"runs", out}});
}

Response Coordinator::Impl::h_started(int64_t run_id, const Json& body) {
  TRY_FIELD(std::string id, worker_id_of(body));
  TRY_FIELD(int64_t attempt, get_int(body, "attempt"));
  TRY_FIELD(int64_t pid, get_int(body, "pid", 0));
  // v1.9: the checkpoint this attempt started from (ASSAY_RESUME_FROM).
  std::optional<int64_t> resumed_step;
  std::string resumed_path;
  if (body.contains("resumed_from") && !body["resumed_from"].is_null()) {
    const Json& rf = body["resumed_from"];
    if (!rf.is_object())
      return bad(Status::Invalid("field 'resumed_from': expected an object {step, path}, got " +
                                 dump_json(rf)));
    TRY_FIELD(resumed_step, get_int(rf, "step"));
    TRY_FIELD(resumed_path, get_string(rf, "path"));
    if (*resumed_step < 0)
      return bad(Status::Invalid("field 'resumed_from.step': expected >= 0, got " +
                                 std::to_string(*resumed_step)));
  }
  Response err;
  auto r = worker_run(run_id, id, attempt, false, &err);
  if (!r) return err;
  if (r->state == store::RunState::kLeased) {
    store::Transition tr;
    tr.run_id = run_id;
    tr.to = store::RunState::kRunning;
    tr.expect_from = store::RunState::kLeased;
    tr.actor = "worker:" + id;
    tr.worker_id = id;
    tr.detail = "started, pid " + std::to_string(pid);
    Status st = db->transaction([&]() -> Status {
      ASSAY_RETURN_IF_ERROR(db->transition(tr));
      if (resumed_step) {
        ASSAY_RETURN_IF_ERROR(db->put_resume(run_id, static_cast<int>(attempt), *resumed_step,
                                             resumed_path));
        ASSAY_RETURN_IF_ERROR(db->add_event(run_id, tr.actor, "resumed",
                                            "attempt " + std::to_string(attempt) +
                                                " resumes from the checkpoint at step " +
                                                std::to_string(*resumed_step) + ": " + resumed_path));
      }
      return Status::Ok();
    });
    if (!st.ok()) return status_response(st);
  }
  sched.renew(id, now() + ttl());
  return json_response(200, {{"state", "running"}, {"cancel", cancel_requested.count(run_id) != 0}});
}

Response Coordinator::Impl::h_finished(int64_t run_id, const Json& body) {
  TRY_FIELD(std::string id, worker_id_of(body));
  TRY_FIELD(int64_t attempt, get_int(body, "attempt"));
  TRY_FIELD(bool oom_killed, get_bool(body, "oom_killed", false));
  TRY_FIELD(bool timed_out, get_bool(body, "timed_out", false));
  TRY_FIELD(bool cancelled, get_bool(body, "cancelled", false));
  TRY_FIELD(bool preempted, get_bool(body, "preempted", false));
  // v1.11: a run leased ahead and handed back before it was started.
  TRY_FIELD(bool unstarted, get_bool(body, "unstarted", false));
  TRY_FIELD(std::string spawn_error, get_string(body, "spawn_error", std::string()));
  TRY_FIELD(std::string tail, get_string(body, "log_tail", std::string()));
  TRY_FIELD(int64_t malformed, get_int(body, "malformed_metric_lines", 0));
  std::optional<int64_t> peak_gpu_mem;
  std::string gpu_mem_source;
  if (body.contains("peak_gpu_mem_mb") && !body["peak_gpu_mem_mb"].is_null()) {
    TRY_FIELD(peak_gpu_mem, get_int(body, "peak_gpu_mem_mb"));
    if (*peak_gpu_mem < 0)
      return bad(Status::Invalid("field 'peak_gpu_mem_mb': expected an integer >= 0, got " +
                                 std::to_string(*peak_gpu_mem)));
    TRY_FIELD(gpu_mem_source, get_string(body, "gpu_mem_source"));
    if (gpu_mem_source != "process" && gpu_mem_source != "device")
      return bad(Status::Invalid("field 'gpu_mem_source': expected \"process\" or \"device\", got \"" +
                                 gpu_mem_source + "\""));
  }
  ExitReport rep;
  rep.oom_killed = oom_killed;
  rep.timed_out = timed_out;
  rep.cancelled = cancelled;
  rep.preempted = preempted;
  rep.spawn_error = spawn_error;
  if (body.contains("exit_code") && !body["exit_code"].is_null()) {
    TRY_FIELD(rep.exit_code, get_int(body, "exit_code"));
  }
  if (body.contains("signal") && !body["signal"].is_null()) {
    TRY_FIELD(rep.signal, get_int(body, "signal"));
  }
  if (!rep.exit_code && !rep.signal && spawn_error.empty() && !cancelled && !timed_out &&
      !oom_killed && !preempted)
    return bad(Status::Invalid("finished report needs exit_code, signal or spawn_error"));
  // When the process exited, by the worker's clock (protocol v1.7); older
  // workers do not send it and the time of this report stands in.
  std::optional<double> exited_at;
  if (body.contains("exited_at") && !body["exited_at"].is_null()) {
    TRY_FIELD(exited_at, get_number(body, "exited_at"));
    if (!std::isfinite(*exited_at) || *exited_at <= 0)
      return bad(Status::Invalid("field 'exited_at': expected unix seconds > 0, got " +
                                 dump_json(body["exited_at"])));
  }
  Response err;
  auto r = worker_run(run_id, id, attempt, true, &err);
  if (!r) return err;
  auto outcome = [this](const store::Run& x) {
    return Json{{"state", std::string(store::to_string(x.state))},
                {"durability", std::string(store::to_string(db->durability()))},
                {"failure_reason", x.failure_reason
                                       ? Json(std::string(store::to_string(*x.failure_reason)))
                                       : Json(nullptr)}};
  };
  if (store::is_terminal(r->state)) {
    Json o = outcome(*r);
    o["duplicate"] = true;
    return json_response(200, o);
  }

  bool cancel_pending = cancel_requested.count(run_id) != 0;
  rep.cancel_pending = cancel_pending;
  rep.timeout_s = r->timeout_s;
  RunOutcome oc = classify_outcome(
      rep, [&] { return tail + "\n" + log_tail(run_id, r->attempt, 8192); });
  // Adaptive search (search_driver.cpp): a run stopped at a rung ends pruned,
  // and a sampled sweep proposes its next runs.
  search_on_finished(*this, *r, &oc);
  if (oc.state == store::RunState::kQueued)
    return requeue_preempted(*this, *r, id,
                             unstarted && preempted && r->state == store::RunState::kLeased
                                 ? "was handed back unstarted (leased ahead; the worker stopped "
                                   "leasing)"
                                 : oc.detail);
  store::Transition tr;
  tr.run_id = run_id;
  tr.actor = "worker:" + id;
  tr.expect_from = store::RunState::kRunning;
  if (rep.exit_code) tr.exit_code = static_cast<int>(*rep.exit_code);
  tr.peak_gpu_mem_mb = peak_gpu_mem;
  tr.gpu_mem_source = gpu_mem_source;
  tr.exited_at = exited_at;
  tr.to = oc.state;
  tr.failure_reason = oc.reason;
  tr.failure_detail = oc.detail;
  tr.detail = tr.failure_detail.empty() ? "exited with code 0" : tr.failure_detail;
  std::vector<int64_t> created;
  Status st = db->transaction([&]() -> Status {
    if (r->state == store::RunState::kLeased) {
      store::Transition run;
      run.run_id = run_id;
      run.to = store::RunState::kRunning;
      run.expect_from = store::RunState::kLeased;
      run.actor = tr.actor;
      run.worker_id = id;
      run.detail = "finished before reporting started";
      ASSAY_RETURN_IF_ERROR(db->transition(run));
    }
    ASSAY_RETURN_IF_ERROR(db->transition(tr));
    if (malformed > 0)
      ASSAY_RETURN_IF_ERROR(db->add_event(run_id, tr.actor, "malformed_metric",
                                          std::to_string(malformed) +
                                              " malformed metric line(s) in total"));
    if (cancel_pending) ASSAY_RETURN_IF_ERROR(db->clear_cancel_request(run_id));
    // Dependent eval runs commit (or roll back) with the success itself.
    if (tr.to == store::RunState::kSucceeded) ASSAY_RETURN_IF_ERROR(on_succeeded(*r, &created));
    return Status::Ok();
  });
  if (!st.ok()) return status_response(st);
  sched.release(run_id);
  cancel_requested.erase(run_id);
  enqueue_runs(created);
  store::Run done = *r;
  done.state = tr.to;
  done.failure_reason = tr.failure_reason;
  return json_response(200, outcome(done));
}

// The general path: any JSON body, with errors that name the field; the
// usual shape comes through parse_metric_batch_fast straight to
// h_metrics_batch.
Response Coordinator::Impl::h_metrics(int64_t run_id, const Json& body) {
  MetricBatch b;
  TRY_FIELD(b.worker_id, worker_id_of(body));
  TRY_FIELD(b.attempt, get_int(body, "attempt"));
  if (body.contains("batch_seq") && !body["batch_seq"].is_null()) {
    TRY_FIELD(b.batch_seq, get_int(body, "batch_seq"));
  }
  auto pit = body.find("points");
  if (pit == body.end() || !pit->is_array())
    return bad(Status::Invalid("field 'points': expected an array of {key, step, value, time}"));
  if (pit->size() > opts.max_points_per_batch) return too_many_points(pit->size());
  b.points.reserve(pit->size());
  for (size_t i = 0; i < pit->size(); ++i) {
    const Json& p = (*pit)[i];
    auto where = [&] { return "points[" + std::to_string(i) + "]"; };
    if (!p.is_object()) return bad(Status::Invalid(where() + ": expected an object"));
    MetricBatch::Point mp;
    auto key = get_string(p, "key");
    if (!key.ok()) return bad(key.status().with_context(where()));
    mp.key = *key;
    auto step = get_int(p, "step");
    if (!step.ok()) return bad(step.status().with_context(where()));
    mp.step = *step;
    auto v = p.find("value");
    if (v == p.end()) return bad(Status::Invalid(where() + ".value: required number is missing"));
    if (v->is_null()) {
      mp.value = std::numeric_limits<double>::quiet_NaN();
    } else if (v->is_number()) {
      mp.value = v->get<double>();
    } else {
      return bad(Status::Invalid(where() + ".value: expected a number or null, got " +
                                 describe(*v)));
    }
    if (p.contains("time") && !p["time"].is_null()) {  // null: time of receipt, as absent
      auto tm = get_number(p, "time");
      if (!tm.ok()) return bad(tm.status().with_context(where()));
      mp.time = *tm;
    }
    b.points.push_back(std::move(mp));
  }
  return h_metrics_batch(run_id, std::move(b));
}

Response Coordinator::Impl::too_many_points(size_t n) const {
  return error_response(413, "payload_too_large",
                        "metric batch of " + std::to_string(n) +
                            " points exceeds the limit of " +
                            std::to_string(opts.max_points_per_batch));
}

Response Coordinator::Impl::h_metrics_batch(int64_t run_id, MetricBatch b) {
  if (!valid_worker_id(b.worker_id))
    return bad(Status::Invalid("field 'worker_id': expected 1..128 of [A-Za-z0-9._:-], got '" +
                               b.worker_id + "'"));
  const std::string& id = b.worker_id;
  const int64_t attempt = *b.attempt;
  const std::optional<int64_t> seq = b.batch_seq;
  if (seq && *seq < 0) return bad(Status::Invalid("field 'batch_seq': expected >= 0"));
  if (b.points.size() > opts.max_points_per_batch) return too_many_points(b.points.size());
  for (size_t i = 0; i < b.points.size(); ++i) {
    Status st = check_point(b.points[i], i);
    if (!st.ok()) return bad(st);
  }
  Response err;
  auto r = worker_run(run_id, id, attempt, true, &err);
  if (!r) return err;
  double t = now();
  std::vector<store::MetricPoint> points;
  points.reserve(b.points.size());
  for (auto& p : b.points) {
    store::MetricPoint mp;
    mp.run_id = run_id;
    mp.key = std::move(p.key);
    mp.step = p.step;
    mp.value = p.value;
    mp.wall_time = p.time.value_or(t);
    mp.attempt = static_cast<int>(attempt);  // checked against the run by worker_run
    points.push_back(std::move(mp));
  }
  bool duplicate = false;
  Status st = db->transaction([&]() -> Status {
    if (seq) {
      ASSAY_ASSIGN_OR_RETURN(bool fresh, db->note_metric_batch(run_id, static_cast<int>(attempt), *seq,
                                                         static_cast<int64_t>(points.size()), t));
      if (!fresh) {
        duplicate = true;
        return Status::Ok();
      }
    }
    ASSAY_RETURN_IF_ERROR(db->put_metrics(points));
    return on_metrics(*r);  // late results of a finished eval run
  });
  if (!st.ok()) return status_response(st);
  sched.renew(id, t + ttl());
  // A stop decided on these very points (an ASHA rung) reaches the worker
  // with this reply, one metric flush after the decision, not a heartbeat.
  return json_response(200, {{"accepted", duplicate ? 0 : points.size()},
                             {"duplicate", duplicate},
                             {"cancel", cancel_requested.count(run_id) != 0},
                             {"durability", std::string(store::to_string(db->durability()))}});
}

Response Coordinator::Impl::h_log_chunk(int64_t run_id, const Target& t, const std::string& data) {
  auto q = [&](const char* k) -> std::optional<std::string> {
    auto it = t.query.find(k);
    if (it == t.query.end()) return std::nullopt;
    return it->second;
  };
  auto id = q("worker_id");
  if (!id || !valid_worker_id(*id))
    return bad(Status::Invalid("query 'worker_id': required, 1..128 of [A-Za-z0-9._:-]"));
  auto att_s = q("attempt");
  auto off_s = q("offset");
  auto stream = q("stream");
  if (!att_s || !off_s || !stream)
    return bad(Status::Invalid("log chunk needs query params worker_id, attempt, stream, offset"));
  if (*stream != "stdout" && *stream != "stderr")
    return bad(Status::Invalid("query 'stream': expected stdout or stderr, got '" + *stream + "'"));
  auto attempt = parse_int(*att_s, "query 'attempt'");
  if (!attempt.ok()) return bad(attempt.status());
  auto offset = parse_int(*off_s, "query 'offset'");
  if (!offset.ok()) return bad(offset.status());
  if (*offset < 0) return bad(Status::Invalid("query 'offset': expected >= 0"));
  Response err;
  auto r = worker_run(run_id, *id, *attempt, true, &err);
  if (!r) return err;

  std::string path = log_path(run_id, static_cast<int>(*attempt), *stream);
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  auto size = static_cast<int64_t>(fs::exists(path, ec) ? fs::file_size(path, ec) : 0);
  if (ec) return error_response(500, "internal", "log file " + path + ": " + ec.message());
  if (*offset > size) {
    Json e{{"error",
            {{"code", "offset_gap"},
             {"message", "log chunk for run " + std::to_string(run_id) + " " + *stream +
                             " starts at byte " + std::to_string(*offset) +
                             " but only " + std::to_string(size) + " bytes are stored"}}},
           {"next_offset", size}};
    return json_response(409, e);
  }
  int64_t skip = size - *offset;  // bytes of this chunk already stored
  if (skip < static_cast<int64_t>(data.size())) {
    std::ofstream out(path, std::ios::binary | std::ios::app);
    out.write(data.data() + skip, static_cast<std::streamsize>(data.size() - skip));
    out.flush();
    if (!out) return error_response(500, "internal", "cannot append to log file " + path);
    size += static_cast<int64_t>(data.size()) - skip;
  }
  sched.renew(*id, now() + ttl());
  return json_response(200, {{"next_offset", size}});
}

Response Coordinator::Impl::h_artifact(int64_t run_id, const Json& body) {
  TRY_FIELD(std::string id, worker_id_of(body));
  TRY_FIELD(int64_t attempt, get_int(body, "attempt"));
  TRY_FIELD(std::string kind, get_string(body, "kind", std::string("checkpoint")));
  TRY_FIELD(std::string path, get_string(body, "path"));
  TRY_FIELD(std::string hash, get_string(body, "content_hash"));
  if (hash.empty()) return bad(Status::Invalid("field 'content_hash': must not be empty"));
  std::optional<int64_t> step;
  if (body.contains("step") && !body["step"].is_null()) {
    TRY_FIELD(step, get_int(body, "step"));
  }
  Json meta = body.contains("metadata") ? body["metadata"] : Json::object();
  if (!meta.is_object()) return bad(Status::Invalid("field 'metadata': expected an object"));
  Response err;
  auto r = worker_run(run_id, id, attempt, true, &err);
  if (!r) return err;
  store::Artifact a;
  a.run_id = run_id;
  a.kind = kind;
  a.content_hash = hash;
  a.path = path;
  a.step = step;
  a.metadata_json = dump_json(meta);
  a.created_at = now();
  int64_t aid = 0;
  std::vector<int64_t> created;
  // The artifact and the eval runs it triggers commit together; a re-sent
  // report finds both and adds nothing.
  Status st = db->transaction([&]() -> Status {
    ASSAY_ASSIGN_OR_RETURN(aid, db->put_artifact(a));
    return on_checkpoint(*r, aid, &created);
  });
  if (!st.ok()) return status_response(st);
  enqueue_runs(created);
  return json_response(200, {{"artifact_id", aid}});
}

Response Coordinator::Impl::h_event(int64_t run_id, const Json& body) {
  TRY_FIELD(std::string id, worker_id_of(body));
  TRY_FIELD(int64_t attempt, get_int(body, "attempt"));
  TRY_FIELD(std::string kind, get_string(body, "kind"));
  TRY_FIELD(std::string detail, get_string(body, "detail", std::string()));
  if (kind.empty() || kind.size() > 40)
    return bad(Status::Invalid("field 'kind': expected 1..40 characters"));
  for (char c : kind)
    if (!(std::islower(static_cast<unsigned char>(c)) || c == '_'))
      return bad(Status::Invalid("field 'kind': expected [a-z_], got '" + kind + "'"));
  if (detail.size() > 65536) detail = detail.substr(0, 65536);
  Response err;
  auto r = worker_run(run_id, id, attempt, true, &err);
  if (!r) return err;
  Status st = db->add_event(run_id, "worker:" + id, kind, detail);
  if (!st.ok()) return status_response(st);
  return json_response(200, {{"ok", true}});
}

}  // namespace assay::coordinator
