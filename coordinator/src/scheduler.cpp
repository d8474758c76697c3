#include "assay/scheduler.h"

#include <algorithm>

namespace assay::coordinator {

void Scheduler::upsert_worker(WorkerInfo w) {
  auto it = workers_.find(w.id);
  if (it == workers_.end()) {
    w.cpus_used = 0;
    for (auto& g : w.gpus) g.held_by = 0;
    workers_.emplace(w.id, std::move(w));
    return;
  }
  WorkerInfo& old = it->second;
  // Keep holds: copy held_by onto matching indices; keep vanished held GPUs.
  for (auto& g : w.gpus) {
    g.held_by = 0;
    for (auto& og : old.gpus)
      if (og.index == g.index) g.held_by = og.held_by;
  }
  for (auto& og : old.gpus) {
    bool present = std::any_of(w.gpus.begin(), w.gpus.end(),
                               [&](const GpuInfo& g) { return g.index == og.index; });
    if (!present && og.held_by != 0) w.gpus.push_back(og);
  }
  w.cpus_used = old.cpus_used;
  old = std::move(w);
}

WorkerInfo* Scheduler::worker(const std::string& id) {
  auto it = workers_.find(id);
  return it == workers_.end() ? nullptr : &it->second;
}

void Scheduler::enqueue(const RunNeeds& r) {
  dequeue(r.run_id);
  queued_[r.run_id] = r;
  order_.insert({-r.priority, r.run_id});
  if (r.cpus <= 0) ++queued_cpuless_;
}

bool Scheduler::dequeue(int64_t run_id) {
  auto it = queued_.find(run_id);
  if (it == queued_.end()) return false;
  order_.erase({-it->second.priority, run_id});
  if (it->second.cpus <= 0) --queued_cpuless_;
  queued_.erase(it);
  return true;
}

bool Scheduler::fits(const WorkerInfo& w, size_t runs_on_worker, const RunNeeds& r,
                     std::vector<int>* gpus_out) {
  if (w.max_runs > 0 && runs_on_worker >= static_cast<size_t>(w.max_runs)) return false;
  for (const auto& [k, v] : r.labels) {
    if (k == kWorkerIdLabel) {
      if (w.id != v) return false;
      continue;
    }
    auto it = w.labels.find(k);
    if (it == w.labels.end() || it->second != v) return false;
  }
  if (w.cpus_used + r.cpus > w.cpus) return false;
  std::vector<int> picked;
  if (r.gpus > 0) {
    for (const auto& g : w.gpus) {
      if (g.held_by != 0) continue;
      int64_t free_mb = g.mem_free_mb >= 0 ? g.mem_free_mb : g.mem_total_mb;
      if (free_mb < r.gpu_mem_mb) continue;
      picked.push_back(g.index);
      if (static_cast<int>(picked.size()) == r.gpus) break;
    }
    if (static_cast<int>(picked.size()) < r.gpus) return false;
  }
  if (gpus_out) *gpus_out = std::move(picked);
  return true;
}

std::vector<Assignment> Scheduler::lease(const std::string& worker_id, int max_runs,
                                         double lease_expires_at) {
  std::vector<Assignment> out;
  auto wit = workers_.find(worker_id);
  if (wit == workers_.end() || max_runs <= 0) return out;
  WorkerInfo& w = wit->second;
  size_t on_worker = by_worker_[worker_id].size();
  int free_gpus = 0;
  for (const auto& g : w.gpus) free_gpus += g.held_by == 0 ? 1 : 0;
  for (auto it = order_.begin(); it != order_.end() && static_cast<int>(out.size()) < max_runs;) {
    // A full worker asks again and again while thousands of runs queue:
    // stop as soon as nothing left in the queue can fit, instead of testing
    // every queued run (fits() is the rule; these only skip sure misses).
    if (w.max_runs > 0 && on_worker >= static_cast<size_t>(w.max_runs)) break;
    const int free_cpus = w.cpus - w.cpus_used;
    if (free_cpus <= 0 && queued_cpuless_ == 0) break;
    const RunNeeds& r = queued_.at(it->second);
    std::vector<int> gpus;
    if (r.cpus > free_cpus || r.gpus > free_gpus || !fits(w, on_worker, r, &gpus)) {
      ++it;
      continue;
    }
    free_gpus -= static_cast<int>(gpus.size());
    Assignment a{r.run_id, r.attempt, worker_id, gpus, r.cpus, lease_expires_at};
    for (auto& g : w.gpus)
      if (std::find(gpus.begin(), gpus.end(), g.index) != gpus.end()) g.held_by = r.run_id;
    w.cpus_used += r.cpus;
    held_[r.run_id] = a;
    by_worker_[worker_id].insert(r.run_id);
    ++on_worker;
    out.push_back(std::move(a));
    int64_t id = it->second;
    it = order_.erase(it);
    if (r.cpus <= 0) --queued_cpuless_;
    queued_.erase(id);
  }
  return out;
}

Status Scheduler::hold(const Assignment& a) {
  auto wit = workers_.find(a.worker_id);
  if (wit == workers_.end())
    return Status::NotFound("run " + std::to_string(a.run_id) + ": worker " + a.worker_id +
                            " is unknown");
  WorkerInfo& w = wit->second;
  for (int gi : a.gpus) {
    auto g = std::find_if(w.gpus.begin(), w.gpus.end(),
                          [&](const GpuInfo& x) { return x.index == gi; });
    if (g == w.gpus.end())
      return Status::NotFound("run " + std::to_string(a.run_id) + ": worker " + a.worker_id +
                              " has no GPU " + std::to_string(gi));
    if (g->held_by != 0 && g->held_by != a.run_id)
      return Status::FailedPrecondition("run " + std::to_string(a.run_id) + ": GPU " +
                                        std::to_string(gi) + " on " + a.worker_id +
                                        " is held by run " + std::to_string(g->held_by));
  }
  release(a.run_id);
  dequeue(a.run_id);
  for (auto& g : w.gpus)
    if (std::find(a.gpus.begin(), a.gpus.end(), g.index) != a.gpus.end()) g.held_by = a.run_id;
  w.cpus_used += a.cpus;
  held_[a.run_id] = a;
  by_worker_[a.worker_id].insert(a.run_id);
  return Status::Ok();
}

void Scheduler::release(int64_t run_id) {
  auto it = held_.find(run_id);
  if (it == held_.end()) return;
  const Assignment& a = it->second;
  if (auto* w = worker(a.worker_id)) {
    for (auto& g : w->gpus)
      if (g.held_by == run_id) g.held_by = 0;
    w->cpus_used = std::max(0, w->cpus_used - a.cpus);
  }
  by_worker_[a.worker_id].erase(run_id);
  held_.erase(it);
}

const Assignment* Scheduler::assignment(int64_t run_id) const {
  auto it = held_.find(run_id);
  return it == held_.end() ? nullptr : &it->second;
}

std::vector<int64_t> Scheduler::runs_of(const std::string& worker_id) const {
  auto it = by_worker_.find(worker_id);
  if (it == by_worker_.end()) return {};
  return {it->second.begin(), it->second.end()};
}

void Scheduler::renew(const std::string& worker_id, double until) {
  auto it = by_worker_.find(worker_id);
  if (it == by_worker_.end()) return;
  for (int64_t id : it->second) {
    auto& a = held_.at(id);
    a.lease_expires_at = std::max(a.lease_expires_at, until);
  }
}

void Scheduler::renew_all(double until) {
  for (auto& [_, a] : held_) a.lease_expires_at = std::max(a.lease_expires_at, until);
}

std::vector<int64_t> Scheduler::expired(double now) const {
  std::vector<int64_t> out;
  for (const auto& [id, a] : held_)
    if (a.lease_expires_at < now) out.push_back(id);
  return out;
}

}  // namespace assay::coordinator
