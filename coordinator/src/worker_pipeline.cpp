// The pipelined worker's side of the protocol (API.md v1.11).
#include "worker_pipeline.h"

namespace assay::coordinator {

namespace {

Response bad(const Status& st) { return error_response(400, "bad_request", st.message()); }

Response unknown_worker(const std::string& id) {
  return error_response(404, "unknown_worker",
                        "worker '" + id + "' is not registered (or restarted); register again");
}

// The body of an answer, as JSON for a batch result.
Json reply_json(const Response& r) {
  Json j = Json::parse(r.body, nullptr, false);
  return j.is_discarded() ? Json(r.body) : j;
}

}  // namespace

// Places runs on `w` with its CPU slots and run cap raised by `ahead` for
// this request only (v1.11): a pipelining worker holds those runs unstarted
// until its own slots free up, so a slot never idles while a `finished`
// report and the next lease cross the network. GPUs are never leased ahead
// (a GPU stays held until its run's `finished` arrives). A run that fits
// only the raised capacity could never start there and goes back to the
// queue at once.
std::vector<Assignment> lease_ahead(Coordinator::Impl& c, WorkerInfo& w, int max_runs, int ahead,
                                    double lease_expires_at) {
  if (ahead == 0) return c.sched.lease(w.id, max_runs, lease_expires_at);
  const int cpus = w.cpus, cap = w.max_runs;
  w.cpus = cpus + ahead;
  if (cap > 0) w.max_runs = cap + ahead;
  auto assigned = c.sched.lease(w.id, max_runs, lease_expires_at);
  w.cpus = cpus;
  w.max_runs = cap;
  std::vector<Assignment> kept;
  for (auto& a : assigned) {
    if (a.cpus <= cpus) {
      kept.push_back(std::move(a));
      continue;
    }
    c.sched.release(a.run_id);
    if (auto r = c.db->get_run(a.run_id); r.ok()) c.sched.enqueue(c.needs_of(*r));
  }
  return kept;
}

// A batch of run reports (v1.11): a heartbeat whose body carries `reports`,
// each the body of one single-run report plus "op" and "run_id". Each is
// applied by the same handler, in its own transaction, in order, exactly as
// if sent alone; the results come back in the same order. After the first
// report that could not be applied for a reason worth retrying (5xx), the
// rest are left unapplied (503 `not_applied`), so a worker that resends from
// that report on never applies a run's later report without its earlier
// ones. Every report kind a batch may carry is idempotent, so a replayed
// batch doubles nothing.
Response apply_reports(Coordinator::Impl& c, const std::string& id, const std::string& instance,
                       const Json& reports) {
  constexpr size_t kMaxReports = 1024;
  if (!reports.is_array())
    return bad(Status::Invalid("field 'reports': expected an array of reports, got " +
                               describe(reports)));
  if (reports.size() > kMaxReports)
    return error_response(413, "payload_too_large",
                          "field 'reports': " + std::to_string(reports.size()) +
                              " reports exceed the limit of " + std::to_string(kMaxReports));
  WorkerInfo* w = c.sched.worker(id);
  if (!w || (!instance.empty() && !w->instance.empty() && instance != w->instance))
    return unknown_worker(id);
  Json out = Json::array();
  bool stopped = false;
  for (size_t i = 0; i < reports.size(); ++i) {
    const std::string at = "reports[" + std::to_string(i) + "]";
    const Json& rep = reports[i];
    Response r;
    if (stopped) {
      r = error_response(503, "not_applied",
                         at + ": not applied, an earlier report of this batch failed; resend");
    } else if (!rep.is_object()) {
      r = bad(Status::Invalid(at + ": expected an object, got " + describe(rep)));
    } else {
      auto op = get_string(rep, "op");
      auto run = get_int(rep, "run_id");
      Json one = rep;
      one["worker_id"] = id;
      if (!op.ok()) r = bad(op.status().with_context(at));
      else if (!run.ok() || *run <= 0)
        r = bad(Status::Invalid(at + ".run_id: expected a run id > 0, got " +
                                (rep.contains("run_id") ? describe(rep["run_id"]) : "nothing")));
      else if (*op == "started") r = c.h_started(*run, one);
      else if (*op == "finished") r = c.h_finished(*run, one);
      else if (*op == "metrics") r = c.h_metrics(*run, one);
      else if (*op == "artifacts") r = c.h_artifact(*run, one);
      else
        r = bad(Status::Invalid(at + ".op: expected started, finished, metrics or artifacts, got '" +
                                *op + "'"));
    }
    stopped = stopped || r.status >= 500;
    out.push_back({{"status", r.status}, {"body", reply_json(r)}});
  }
  const double t = c.now();
  if (WorkerInfo* again = c.sched.worker(id)) again->last_heartbeat = t;
  c.sched.renew(id, t + c.ttl());
  return json_response(200, {{"lease_ttl_s", c.ttl()}, {"reports", out}});
}

}  // namespace assay::coordinator
