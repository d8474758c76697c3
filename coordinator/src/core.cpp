// Coordinator: open/reload, routing and auth, lease loss, shared helpers.
#include <chrono>
#include <filesystem>
#include <fstream>

#include "assay/coordinator_routes.h"
#include "assay/json_limits.h"
#include "assay/version.h"
#include "core_internal.h"
#include "search_driver.h"

namespace assay::coordinator {

namespace fs = std::filesystem;

double Coordinator::Impl::now() const {
  if (opts.clock) return opts.clock();
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

Coordinator::Coordinator(std::unique_ptr<Impl> impl, Options opts)
    : impl_(std::move(impl)), opts_(std::move(opts)) {}
Coordinator::~Coordinator() = default;

double Coordinator::now() const { return impl_->now(); }

Result<std::unique_ptr<Coordinator>> Coordinator::open(const Options& opts_in) {
  Options opts = opts_in;
  if (opts.db_path.empty()) return Status::Invalid("coordinator: --db path is empty");
  if (opts.logs_dir.empty()) opts.logs_dir = opts.db_path + ".logs";
  if (!(opts.lease_ttl_s > 0))
    return Status::Invalid("coordinator: lease ttl must be > 0 s, got " +
                           std::to_string(opts.lease_ttl_s));
  if (opts.assay_exe.empty()) {
    // Resolved once: a binary replaced on disk later must not change the
    // commands of runs created by this process.
    std::error_code exe_ec;
    fs::path self = fs::read_symlink("/proc/self/exe", exe_ec);
    opts.assay_exe = exe_ec ? std::string("assay") : self.string();
  }
  auto impl = std::make_unique<Impl>();
  impl->opts = opts;
  store::OpenOptions so;
  so.clock = opts.clock;
  auto durability = store::parse_durability(opts.durability);
  if (!durability.ok()) return durability.status().with_context("coordinator: option durability");
  so.durability = *durability;
  ASSAY_ASSIGN_OR_RETURN(impl->db, store::Store::open(opts.db_path, so));
  std::error_code ec;
  fs::create_directories(opts.logs_dir, ec);
  if (ec) return Status::IoError("coordinator: cannot create logs dir " + opts.logs_dir + ": " +
                                 ec.message());
  ASSAY_RETURN_IF_ERROR(impl->reload());
  return std::unique_ptr<Coordinator>(new Coordinator(std::move(impl), opts));
}

void Coordinator::tick() { impl_->expire_leases(); }

void Coordinator::set_group_commit(bool on) { impl_->db->set_group_commit(on); }
bool Coordinator::commit_pending() const { return impl_->db->group_pending(); }

Status Coordinator::commit() {
  Status st = impl_->db->commit_group();
  if (st.ok()) return st;
  Status rebuilt = impl_->rebuild();
  if (!rebuilt.ok())
    return st.with_context("commit failed, and rebuilding from the database failed too (" +
                           rebuilt.message() + ")");
  return st.with_context("commit failed; the batch was rolled back");
}

// ---- Reload -------------------------------------------------------------------

namespace {
std::map<std::string, std::string> string_map(const std::string& json_text) {
  std::map<std::string, std::string> out;
  Json j = Json::parse(json_text, nullptr, false);
  if (j.is_object())
    for (auto& [k, v] : j.items()) out[k] = v.is_string() ? v.get<std::string>() : v.dump();
  return out;
}

std::vector<GpuInfo> gpus_from_json(const Json& arr) {
  std::vector<GpuInfo> out;
  if (!arr.is_array()) return out;
  for (auto& g : arr) {
    if (!g.is_object()) continue;
    GpuInfo x;
    x.index = g.value("index", static_cast<int>(out.size()));
    x.uuid = g.value("uuid", std::string());
    x.name = g.value("name", std::string());
    x.mem_total_mb = g.value("mem_total_mb", int64_t{0});
    x.mem_free_mb = g.value("mem_free_mb", int64_t{-1});
    x.util_pct = g.value("util_pct", 0);
    out.push_back(std::move(x));
  }
  return out;
}
}  // namespace

Status Coordinator::Impl::rebuild() {
  sched = Scheduler();
  lease_granted_at.clear();
  gpu_sampled_at.clear();
  return reload();
}

Status Coordinator::Impl::reload() {
  ASSAY_ASSIGN_OR_RETURN(sweep_names, db->sweep_names());
  ASSAY_ASSIGN_OR_RETURN(cancel_requested, db->cancel_requests());
  ASSAY_ASSIGN_OR_RETURN(auto instances, db->worker_instances());
  ASSAY_ASSIGN_OR_RETURN(auto workers, db->workers());
  for (auto& w : workers) {
    WorkerInfo wi;
    wi.id = w.id;
    wi.host = w.host;
    wi.cpus = w.cpus;
    wi.labels = string_map(w.labels_json);
    wi.gpus = gpus_from_json(Json::parse(w.gpus_json, nullptr, false));
    wi.last_heartbeat = w.last_heartbeat;
    if (auto it = instances.find(w.id); it != instances.end()) {
      wi.instance = it->second.instance;
      wi.max_runs = it->second.max_runs;
    }
    sched.upsert_worker(std::move(wi));
  }
  // Queued runs, paged by id.
  for (auto state : {store::RunState::kQueued}) {
    store::RunFilter f;
    f.state = state;
    f.limit = 5000;
    for (;;) {
      ASSAY_ASSIGN_OR_RETURN(auto runs, db->list_runs(f));
      for (auto& r : runs) sched.enqueue(needs_of(r));
      if (runs.size() < static_cast<size_t>(f.limit)) break;
      f.after_id = runs.back().id;
    }
  }
  // Leased/running runs keep their resources; their workers get a full ttl to
  // reconnect, counted from now.
  double until = now() + ttl();
  ASSAY_ASSIGN_OR_RETURN(auto placements, db->held_placements());
  std::set<int64_t> held;
  std::vector<int64_t> orphans;
  for (auto& p : placements) {
    Assignment a{p.run_id, p.attempt, p.worker_id, p.gpus, p.cpus, until};
    if (sched.hold(a).ok()) held.insert(p.run_id);
  }
  for (auto state : {store::RunState::kLeased, store::RunState::kRunning}) {
    store::RunFilter f;
    f.state = state;
    f.limit = 100000;
    ASSAY_ASSIGN_OR_RETURN(auto runs, db->list_runs(f));
    for (auto& r : runs)
      if (!held.count(r.id)) orphans.push_back(r.id);
  }
  for (int64_t id : orphans)
    ASSAY_RETURN_IF_ERROR(lose_lease(id, "placement missing at coordinator restart"));
  return Status::Ok();
}

// ---- Lease loss ---------------------------------------------------------------

// Leases lost before their run started that are not counted against
// max_attempts (runs.preemptions counts them with real preemptions).
constexpr int kMaxUncountedAttempts = 16;

Status Coordinator::Impl::lose_lease(int64_t run_id, const std::string& why) {
  lease_granted_at.erase(run_id);
  ASSAY_ASSIGN_OR_RETURN(auto r, db->get_run(run_id));
  if (r.state != store::RunState::kLeased && r.state != store::RunState::kRunning) {
    sched.release(run_id);
    return Status::Ok();
  }
  store::Transition t;
  t.run_id = run_id;
  t.expect_from = r.state;
  t.actor = "coordinator";
  bool cancel = cancel_requested.count(run_id) != 0;
  // Preempted attempts do not count against max_attempts (migration 0006).
  ASSAY_ASSIGN_OR_RETURN(int preempted, db->preemptions(run_id));
  // A lease lost before its run started (the reply never reached the worker,
  // or the worker died holding it ahead of a free slot) ran nothing: like a
  // lease handed back unstarted, it does not use up an attempt. Bounded, so a
  // worker that loses every lease cannot cycle a run forever.
  const bool uncounted = r.state == store::RunState::kLeased && preempted < kMaxUncountedAttempts;
  if (cancel) {
    t.to = store::RunState::kCancelled;
    t.failure_reason = store::FailureReason::kCancelled;
    t.failure_detail = "cancelled by user; worker lost (" + why + ")";
    t.detail = t.failure_detail;
  } else if (!uncounted && r.attempt - preempted >= r.max_attempts) {
    t.to = store::RunState::kFailed;
    t.failure_reason = store::FailureReason::kLostWorker;
    t.failure_detail = why + "; attempt " + std::to_string(r.attempt - preempted) + " of " +
                       std::to_string(r.max_attempts) + ", no attempts left" +
                       (preempted ? " (" + std::to_string(preempted) + " preemption(s) not counted)"
                                  : std::string());
    t.detail = t.failure_detail;
  } else {
    t.to = store::RunState::kQueued;
    t.bump_attempt = true;
    t.detail = "lease lost: " + why + "; requeued as attempt " + std::to_string(r.attempt + 1) +
               (uncounted ? " (it never started: not counted against max_attempts)" : "");
  }
  ASSAY_RETURN_IF_ERROR(db->transaction([&]() -> Status {
    ASSAY_RETURN_IF_ERROR(db->transition(t));
    if (cancel) ASSAY_RETURN_IF_ERROR(db->clear_cancel_request(run_id));
    if (uncounted && t.to == store::RunState::kQueued) ASSAY_RETURN_IF_ERROR(db->note_preempted(run_id));
    // The next attempt resumes from the last checkpoint, if any (v1.9).
    if (t.to == store::RunState::kQueued) ASSAY_RETURN_IF_ERROR(db->set_resume(run_id, true));
    return Status::Ok();
  }));
  // Resources are freed only once the database agrees, so a failed write
  // leaves the run held and the next tick retries.
  sched.release(run_id);
  if (cancel) cancel_requested.erase(run_id);
  if (t.to == store::RunState::kQueued) {
    ASSAY_ASSIGN_OR_RETURN(auto again, db->get_run(run_id));
    sched.enqueue(needs_of(again));
  } else if (t.to == store::RunState::kFailed) {
    // A sampled sweep must not stall when its last run in flight is lost.
    ASSAY_ASSIGN_OR_RETURN(auto ended, db->get_run(run_id));
    search_on_lost(*this, ended);
  }
  return Status::Ok();
}

void Coordinator::Impl::expire_leases() {
  double t = now();
  for (int64_t id : sched.expired(t)) {
    const Assignment* a = sched.assignment(id);
    std::string why = "worker " + (a ? a->worker_id : std::string("?")) +
                      " did not heartbeat within the lease ttl of " +
                      std::to_string(static_cast<int>(ttl())) + " s";
    Status st = lose_lease(id, why);
    (void)st;  // on failure the run stays held and the next tick retries
  }
}

// ---- Helpers -------------------------------------------------------------------

RunNeeds Coordinator::Impl::needs_of(const store::Run& r) {
  RunNeeds n;
  n.run_id = r.id;
  n.attempt = r.attempt;
  n.priority = r.priority;
  n.gpus = r.resources.gpus;
  n.gpu_mem_mb = r.resources.gpu_mem_mb;
  n.cpus = r.resources.cpus;
  n.labels = string_map(r.labels_json);
  return n;
}

Json Coordinator::Impl::run_json(const store::Run& r) {
  Json j;
  j["id"] = r.id;
  j["sweep_id"] = r.sweep_id ? Json(*r.sweep_id) : Json(nullptr);
  j["sweep"] = nullptr;
  if (r.sweep_id) {
    auto it = sweep_names.find(*r.sweep_id);
    if (it != sweep_names.end()) j["sweep"] = it->second;
  }
  j["name"] = r.name;
  j["state"] = std::string(store::to_string(r.state));
  j["attempt"] = r.attempt;
  j["max_attempts"] = r.max_attempts;
  j["priority"] = r.priority;
  j["resources"] = {{"gpus", r.resources.gpus},
                    {"gpu_mem_mb", r.resources.gpu_mem_mb},
                    {"cpus", r.resources.cpus}};
  j["labels"] = Json::parse(r.labels_json, nullptr, false);
  j["params"] = Json::parse(r.params_json, nullptr, false);
  j["command"] = r.command;
  j["worker_id"] = r.worker_id ? Json(*r.worker_id) : Json(nullptr);
  j["gpus"] = Json::array();
  if (const Assignment* a = sched.assignment(r.id)) {
    j["worker_id"] = a->worker_id;
    j["gpus"] = a->gpus;
  }
  j["failure_reason"] =
      r.failure_reason ? Json(std::string(store::to_string(*r.failure_reason))) : Json(nullptr);
  j["failure_detail"] = r.failure_detail;
  j["exit_code"] = r.exit_code ? Json(*r.exit_code) : Json(nullptr);
  j["timeout_s"] = r.timeout_s ? Json(*r.timeout_s) : Json(nullptr);
  j["peak_gpu_mem_mb"] = r.peak_gpu_mem_mb ? Json(*r.peak_gpu_mem_mb) : Json(nullptr);
  j["gpu_mem_source"] = r.gpu_mem_source.empty() ? Json(nullptr) : Json(r.gpu_mem_source);
  j["created_at"] = r.created_at;
  j["started_at"] = r.started_at ? Json(*r.started_at) : Json(nullptr);
  j["finished_at"] = r.finished_at ? Json(*r.finished_at) : Json(nullptr);
  j["reported_at"] = r.reported_at ? Json(*r.reported_at) : Json(nullptr);
  j["cancel_requested"] = cancel_requested.count(r.id) != 0;
  return j;
}

std::string Coordinator::Impl::log_path(int64_t run_id, int attempt,
                                        const std::string& stream) const {
  return opts.logs_dir + "/" + std::to_string(run_id) + "/" + std::to_string(attempt) + "." +
         stream + ".log";
}

std::string Coordinator::Impl::log_tail(int64_t run_id, int attempt, size_t max_bytes) const {
  std::string out;
  for (const char* stream : {"stdout", "stderr"}) {
    std::ifstream in(log_path(run_id, attempt, stream), std::ios::binary | std::ios::ate);
    if (!in) continue;
    auto size = static_cast<size_t>(in.tellg());
    size_t n = std::min(size, max_bytes);
    in.seekg(static_cast<std::streamoff>(size - n));
    std::string buf(n, '\0');
    in.read(buf.data(), static_cast<std::streamsize>(n));
    out += buf;
  }
  return out;
}

std::optional<store::Run> Coordinator::Impl::worker_run(int64_t run_id,
                                                        const std::string& worker_id,
                                                        int64_t attempt, bool allow_terminal,
                                                        Response* err) {
  auto r = db->get_run(run_id);
  if (!r.ok()) {
    *err = r.status().code() == Code::kNotFound
               ? error_response(404, "not_found", "run " + std::to_string(run_id) + " not found")
               : status_response(r.status());
    return std::nullopt;
  }
  auto stale = [&](const std::string& why) {
    *err = error_response(409, "stale_attempt",
                          "run " + std::to_string(run_id) + " attempt " +
                              std::to_string(attempt) + " is not held by worker " + worker_id +
                              ": " + why);
    return std::nullopt;
  };
  if (r->attempt != attempt)
    return stale("the run is at attempt " + std::to_string(r->attempt));
  if (r->state == store::RunState::kLeased || r->state == store::RunState::kRunning) {
    const Assignment* a = sched.assignment(run_id);
    if (!a || a->worker_id != worker_id)
      return stale("it is held by " + (a ? a->worker_id : std::string("nobody")));
    return std::move(r).value();
  }
  if (store::is_terminal(r->state) && allow_terminal) {
    auto p = db->placement(run_id);
    if (p.ok() && p->has_value() && (*p)->worker_id == worker_id && (*p)->attempt == attempt)
      return std::move(r).value();
  }
  return stale("the run is " + std::string(store::to_string(r->state)));
}

Status Coordinator::Impl::cancel_run(const store::Run& r, const std::string& actor,
                                     bool* pending) {
  *pending = false;
  if (store::is_terminal(r.state))
    return Status::FailedPrecondition("run " + std::to_string(r.id) + " is already " +
                                      std::string(store::to_string(r.state)));
  if (r.state == store::RunState::kRunning) {
    ASSAY_RETURN_IF_ERROR(db->transaction([&]() -> Status {
      ASSAY_RETURN_IF_ERROR(db->set_cancel_request(r.id, now()));
      return db->add_event(r.id, actor, "cancel_requested",
                           "cancel requested; waiting for the worker to stop the process");
    }));
    cancel_requested.insert(r.id);
    *pending = true;
    return Status::Ok();
  }
  store::Transition t;
  t.run_id = r.id;
  t.to = store::RunState::kCancelled;
  t.expect_from = r.state;
  t.actor = actor;
  t.failure_reason = store::FailureReason::kCancelled;
  t.failure_detail = "cancelled by user while " + std::string(store::to_string(r.state));
  t.detail = t.failure_detail;
  ASSAY_RETURN_IF_ERROR(db->transition(t));
  sched.dequeue(r.id);
  sched.release(r.id);
  return Status::Ok();
}

// ---- Routing ------------------------------------------------------------------

Response Coordinator::handle_request(const Request& req) {
  try {
    return impl_->route(req);
  } catch (const std::exception& e) {
    // Handlers validate before writing, so a throw here changed nothing.
    return error_response(500, "internal", std::string("unexpected error: ") + e.what());
  }
}

namespace {

Role role_of(const Options& o, const std::string& authorization) {
  static const std::string kBearer = "Bearer ";
  if (authorization.size() <= kBearer.size() ||
      authorization.compare(0, kBearer.size(), kBearer) != 0)
    return Role::kNone;
  std::string tok = authorization.substr(kBearer.size());
  // Both comparisons always run, so timing does not reveal which role matched.
  bool user = !o.user_token.empty() && tokens_equal(tok, o.user_token);
  bool worker = !o.worker_token.empty() && tokens_equal(tok, o.worker_token);
  if (user) return Role::kUser;
  if (worker) return Role::kWorker;
  return Role::kNone;
}

}  // namespace

// POST /v1/runs/{id}/retry, body optional: {"resume": true} (v1.9) makes the
// new attempt start from the run's last reported checkpoint; without it the
// retry starts over, even after an earlier preemption.
static Response retry_with_resume(Coordinator::Impl& c, int64_t id, const Json& body) {
  auto resume = get_bool(body, "resume", false);
  if (!resume.ok()) return error_response(400, "bad_request", resume.status().message());
  Response resp = c.h_retry(id);
  if (resp.status != 200) return resp;
  Status st = c.db->transaction([&]() -> Status {
    ASSAY_RETURN_IF_ERROR(c.db->set_resume(id, *resume));
    if (!*resume) return Status::Ok();
    ASSAY_ASSIGN_OR_RETURN(auto ck, c.db->resume_point(id));
    return c.db->add_event(id, "user", "resume_requested",
                           ck ? "the retry resumes from the checkpoint at step " +
                                    std::to_string(*ck->step) + ": " + ck->path
                              : std::string("no checkpoint reported: the retry starts over"));
  });
  if (!st.ok()) return status_response(st);
  return resp;
}

Response Coordinator::Impl::route(const Request& req) {
  if (auto hooked = run_route_hook(req, opts)) return std::move(*hooked);  // e.g. the dashboard
  auto tr = parse_target(req.target);
  if (!tr.ok()) return error_response(400, "bad_request", tr.status().message());
  const Target& t = *tr;
  const auto& s = t.segments;
  const std::string& m = req.method;
  if (s.empty() || s[0] != "v1")
    return error_response(404, "not_found", "no such path: " + t.path + " (the API is under /v1)");
  if (s.size() == 2 && s[1] == "health") {
    if (m != "GET") return error_response(405, "method_not_allowed", "use GET /v1/health");
    return json_response(200, {{"ok", true},
                               {"version", assay::kVersion},
                               {"durability", std::string(store::to_string(db->durability()))}});
  }
  bool worker_api = s.size() >= 2 && s[1] == "worker";
  Role role = role_of(opts, req.authorization);
  if (role == Role::kNone)
    return error_response(401, "unauthenticated",
                          "missing or unknown bearer token (send 'Authorization: Bearer <token>')");
  if (worker_api && role != Role::kWorker)
    return error_response(403, "forbidden", t.path + " needs a worker token, got a user token");
  if (!worker_api && role != Role::kUser)
    return error_response(403, "forbidden", t.path + " needs a user token, got a worker token");
  if (req.body.size() > opts.max_body_bytes)
    return error_response(413, "payload_too_large",
                          "body of " + std::to_string(req.body.size()) + " bytes exceeds " +
                              std::to_string(opts.max_body_bytes));

  auto not_found = [&] { return error_response(404, "not_found", "no such path: " + t.path); };
  auto method = [&](const char* want) -> std::optional<Response> {
    if (m == want) return std::nullopt;
    return error_response(405, "method_not_allowed",
                          std::string("use ") + want + " " + t.path + ", got " + m);
  };
  bool is_log_chunk = worker_api && s.size() == 5 && s[4] == "logs";
  // Metric batches in their usual shape skip the JSON tree (metric_batch.h).
  std::optional<MetricBatch> batch;
  if (worker_api && s.size() == 5 && s[4] == "metrics" && m == "POST") {
    MetricBatch b;
    if (parse_metric_batch_fast(req.body, &b)) batch = std::move(b);
  }
  Json body;
  if (m == "POST" && !is_log_chunk && !batch) {
    if (req.body.empty()) {
      body = Json::object();
    } else {
      // The depth limit keeps a hostile body from exhausting the stack in
      // whatever recurses over the tree later (dump, copy, validation).
      auto parsed = parse_json(req.body, "request body");
      if (!parsed.ok()) return error_response(400, "bad_request", parsed.status().message());
      body = std::move(parsed).value();
      if (!body.is_object())
        return error_response(400, "bad_request",
                              "request body must be a JSON object, got " + describe(body));
    }
  }
  auto run_id_at = [&](size_t i) -> Result<int64_t> {
    auto id = parse_int(s[i], "run id in " + t.path);
    if (id.ok() && *id <= 0) return Status::Invalid("run id in " + t.path + " must be > 0");
    return id;
  };

  if (worker_api) {
    if (s.size() == 3) {
      if (auto e = method("POST")) return *e;
      if (s[2] == "register") return h_register(body);
      if (s[2] == "heartbeat") return h_heartbeat(body);
      if (s[2] == "lease") return h_lease(body, req.wait_expired);
      return not_found();
    }
    if (s.size() == 5 && s[2] == "runs") {
      if (auto e = method("POST")) return *e;
      auto id = run_id_at(3);
      if (!id.ok()) return error_response(400, "bad_request", id.status().message());
      const std::string& op = s[4];
      if (op == "started") return h_started(*id, body);
      if (op == "finished") return h_finished(*id, body);
      if (op == "metrics") return batch ? h_metrics_batch(*id, std::move(*batch)) : h_metrics(*id, body);
      if (op == "logs") return h_log_chunk(*id, t, req.body);
      if (op == "artifacts") return h_artifact(*id, body);
      if (op == "events") return h_event(*id, body);
    }
    return not_found();
  }

  const std::string& top = s.size() >= 2 ? s[1] : std::string();
  if (top == "sweeps") {
    if (s.size() == 2) {
      if (m == "POST") return h_submit_sweep(body);
      if (auto e = method("GET")) return *e;
      return h_list_sweeps();
    }
    if (s.size() == 3) {
      if (auto e = method("GET")) return *e;
      return h_get_sweep(s[2]);
    }
    if (s.size() == 4 && s[3] == "cancel") {
      if (auto e = method("POST")) return *e;
      return h_cancel_sweep(s[2]);
    }
    return not_found();
  }
  if (top == "runs") {
    if (s.size() == 2) {
      if (m == "POST") return h_submit_run(body);
      if (auto e = method("GET")) return *e;
      return h_list_runs(t);
    }
    auto id = run_id_at(2);
    if (!id.ok()) return error_response(400, "bad_request", id.status().message());
    if (s.size() == 3) {
      if (auto e = method("GET")) return *e;
      return h_get_run(*id);
    }
    if (s.size() == 4) {
      const std::string& op = s[3];
      if (op == "cancel" || op == "retry") {
        if (auto e = method("POST")) return *e;
        if (op == "cancel") return h_cancel(*id);
        return retry_with_resume(*this, *id, body);
      }
      if (op == "logs" || op == "metrics") {
        if (auto e = method("GET")) return *e;
        return op == "logs" ? h_get_logs(*id, t, req.wait_expired) : h_get_metrics(*id, t);
      }
    }
    return not_found();
  }
  if (top == "workers" && s.size() == 2) {
    if (auto e = method("GET")) return *e;
    return h_workers();
  }
  if (top == "query" && s.size() == 2) {
    if (auto e = method("POST")) return *e;
    return h_query(body, req.can_defer);
  }
  if (top == "slurm" && s.size() == 4 && s[2] == "jobs")  // handlers_slurm.cpp
    return m == "POST" ? slurm_job_ended(*this, s[3], body) : *method("POST");
  return not_found();
}

}  // namespace assay::coordinator
