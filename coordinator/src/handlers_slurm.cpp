// POST /v1/slurm/jobs/{job}: what SLURM says about a worker job that ended
// (from `assay slurm autoscale` or `assay slurm report`). The runs of that
// job's workers (ids "slurm-<job>-<node>-<procid>") learn why their worker
// went: a run still held by one loses its lease now, with the job's state as
// the reason (requeued, or failed lost_worker naming the state when its
// attempts are used up), instead of waiting out the lease; a run already
// requeued or failed for that worker gets the state as a `slurm_job` event.
#include <algorithm>

#include "core_internal.h"

namespace assay::coordinator {

namespace {

bool plain_word(const std::string& s, size_t max) {
  if (s.empty() || s.size() > max) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == ':' ||
           c == '.' || c == '+';
  });
}

}  // namespace

Response slurm_job_ended(Coordinator::Impl& c, const std::string& job, const Json& body) {
  if (job.empty() || job.size() > 40 || job.find_first_not_of("0123456789_") != std::string::npos)
    return error_response(400, "bad_request",
                          "job id in /v1/slurm/jobs/{job}: expected digits (and '_'), got '" +
                              job.substr(0, 40) + "'");
  auto state = get_string(body, "state");
  if (!state.ok()) return error_response(400, "bad_request", state.status().message());
  if (!plain_word(*state, 40))
    return error_response(400, "bad_request",
                          "field 'state': expected a SLURM job state such as CANCELLED, got '" +
                              state->substr(0, 40) + "'");
  auto reason = get_string(body, "reason", std::string());
  auto source = get_string(body, "source", std::string());
  auto exit_code = get_string(body, "exit_code", std::string());
  if (!reason.ok() || !source.ok() || !exit_code.ok())
    return error_response(400, "bad_request",
                          (!reason.ok() ? reason.status() : !source.ok() ? source.status()
                                                                         : exit_code.status())
                              .message());
  std::string why = "SLURM job " + job + " ended " + *state;
  if (!exit_code->empty()) why += ", exit code " + exit_code->substr(0, 20);
  if (!reason->empty() && *reason != "None") why += ", reason " + reason->substr(0, 200);
  if (!source->empty()) why += " (from " + source->substr(0, 200) + ")";
  const std::string prefix = "slurm-" + job + "-";
  auto ours = [&](const std::string& w) { return w.rfind(prefix, 0) == 0; };

  Json lost = Json::array(), noted = Json::array();
  std::vector<int64_t> held;
  for (const auto& [run_id, a] : c.sched.assignments())
    if (ours(a.worker_id)) held.push_back(run_id);
  for (int64_t id : held) {
    Status st = c.lose_lease(id, why);
    if (!st.ok()) return status_response(st);
    lost.push_back(id);
  }
  // Runs whose lease already ran out: the last placement names the worker.
  for (auto state_filter : {store::RunState::kQueued, store::RunState::kFailed}) {
    store::RunFilter f;
    f.state = state_filter;
    f.limit = 100000;
    auto runs = c.db->list_runs(f);
    if (!runs.ok()) return status_response(runs.status());
    for (const auto& r : *runs) {
      if (std::find(held.begin(), held.end(), r.id) != held.end()) continue;
      auto p = c.db->placement(r.id);
      if (!p.ok() || !p->has_value() || !ours((*p)->worker_id)) continue;
      // Only the attempt that ran there (a requeued run is one attempt on).
      const bool that_attempt = (*p)->attempt == r.attempt ||
                                (state_filter == store::RunState::kQueued &&
                                 (*p)->attempt + 1 == r.attempt);
      if (!that_attempt) continue;
      Status st = c.db->add_event(r.id, "slurm", "slurm_job",
                                  why + "; worker " + (*p)->worker_id + ", attempt " +
                                      std::to_string((*p)->attempt));
      if (!st.ok()) return status_response(st);
      noted.push_back(r.id);
    }
  }
  return json_response(200, {{"job", job}, {"state", *state}, {"lost", lost}, {"noted", noted}});
}

}  // namespace assay::coordinator
