// lm-eval style results documents. See evals_report.h.
#include <algorithm>
#include <cmath>

#include "assay/evals_report.h"

namespace assay::evals {

namespace {

// lm-eval marks whether larger is better; names ending in these are lower-better.
bool higher_is_better(const std::string& metric) {
  static const char* kLower[] = {"fpr95", "nll", "p_t", "p_perm", "privleak", "_loss"};
  for (const char* s : kLower) {
    const std::string suf = s;
    if (metric.size() >= suf.size() && metric.compare(metric.size() - suf.size(), suf.size(), suf) == 0)
      return false;
  }
  return true;
}

nlohmann::json num(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

}  // namespace

nlohmann::json results_document(const ReportContext& rc) {
  const schemas::SuiteSpec& spec = *rc.spec;
  const EvalIdentity& id = *rc.id;
  const std::vector<ResultRow>& rows = *rc.rows;
  const std::string& backend = rc.backend;
  const bool cached = rc.cached;
  nlohmann::json res = nlohmann::json::object(), hib = nlohmann::json::object();
  int64_t n = 0;
  for (const auto& r : rows) {
    res[r.metric + "," + r.filter] = num(r.value);
    if (r.stderr_) res[r.metric + "_stderr," + r.filter] = num(*r.stderr_);
    hib[r.metric] = higher_is_better(r.metric);
    n = std::max(n, r.n);
  }
  res["alias"] = id.suite;
  nlohmann::json doc;
  doc["results"][id.suite] = res;
  doc["versions"][id.suite] = spec.version;
  doc["n-shot"][id.suite] = spec.num_fewshot;
  doc["n-samples"][id.suite] = {{"effective", n}};
  doc["higher_is_better"][id.suite] = hib;
  nlohmann::json cfg = spec.raw.is_object() ? spec.raw : nlohmann::json::object();
  for (auto it = rc.task_config.begin(); it != rc.task_config.end(); ++it) cfg[it.key()] = it.value();
  doc["configs"][id.suite] = cfg;
  doc["config"] = rc.run_config;
  doc["assay"] = {{"checkpoint_hash", id.checkpoint_hash}, {"suite_version", id.suite_version},
                  {"seed", id.seed},  {"backend", backend},       {"cached", cached}};
  if (id.run_id) doc["assay"]["run_id"] = *id.run_id;
  return doc;
}

}  // namespace assay::evals
