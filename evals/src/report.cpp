// lm-eval style results documents. See evals_report.h.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>

#include "assay/evals_report.h"

namespace assay::evals {

namespace {

using json = nlohmann::json;

// lm-eval marks whether larger is better; names ending in these are lower-better.
bool higher_is_better(const std::string& metric) {
  static const char* kLower[] = {"fpr95", "nll", "p_t", "p_perm", "privleak", "_loss", "self_bleu",
                                 "p_value", "p_exact", "p_perm_floor"};
  for (const char* s : kLower) {
    const std::string suf = s;
    if (metric.size() >= suf.size() && metric.compare(metric.size() - suf.size(), suf.size(), suf) == 0)
      return false;
  }
  return true;
}

json num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

// lm-eval's task VERSION is metadata.version, a number for "3.0" and the like.
json version_json(const std::string& v) {
  char* end = nullptr;
  const double d = std::strtod(v.c_str(), &end);
  if (!v.empty() && end && *end == '\0' && std::isfinite(d)) return d;
  return v;
}

double now_unix() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// "config" with every key lm-eval's simple_evaluate writes.
json run_config_json(const ReportContext& rc) {
  json cfg = rc.run_config.is_object() ? rc.run_config : json::object();
  const json defaults = {{"model", nullptr},       {"model_args", nullptr}, {"batch_size", nullptr},
                         {"batch_sizes", json::array()}, {"device", nullptr}, {"use_cache", nullptr},
                         {"limit", nullptr},       {"bootstrap_iters", 0},  {"gen_kwargs", nullptr},
                         {"random_seed", nullptr}, {"numpy_seed", nullptr}, {"torch_seed", nullptr},
                         {"fewshot_seed", nullptr}};
  for (auto it = defaults.begin(); it != defaults.end(); ++it)
    if (!cfg.contains(it.key())) cfg[it.key()] = it.value();
  if (cfg["fewshot_seed"].is_null() && rc.task_config.is_object() &&
      rc.task_config.contains("fewshot_seed"))
    cfg["fewshot_seed"] = rc.task_config["fewshot_seed"];
  return cfg;
}

}  // namespace

std::string model_name_from_args(const std::string& model_args) {
  for (const char* prefix : {"peft", "delta", "pretrained", "model", "path", "engine"}) {
    const std::string key = std::string(prefix) + "=";
    const size_t at = model_args.find(key);
    if (at == std::string::npos) continue;
    const std::string rest = model_args.substr(at + key.size());
    size_t end = std::min(rest.find(','), rest.find(key));
    return rest.substr(0, end);
  }
  return "";
}

std::string sanitize_model_name(const std::string& name) {
  static const std::string kBad = "\"<>:/|\\?*[]";
  std::string out;
  for (size_t i = 0; i < name.size();) {
    if (kBad.find(name[i]) == std::string::npos) {
      out += name[i++];
      continue;
    }
    while (i < name.size() && kBad.find(name[i]) != std::string::npos) ++i;
    out += "__";
  }
  return out;
}

json gen_kwargs_json(const GenKwargs& g) {
  if (g.given.empty()) return nullptr;
  json out = json::object();
  for (const auto& [key, v] : g.given) {
    if (std::holds_alternative<std::monostate>(v)) out[key] = nullptr;
    else if (const bool* b = std::get_if<bool>(&v)) out[key] = *b;
    else if (const int64_t* i = std::get_if<int64_t>(&v)) out[key] = *i;
    else if (const double* d = std::get_if<double>(&v)) out[key] = *d;
    else out[key] = std::get<std::string>(v);
  }
  return out;
}

json results_document(const ReportContext& rc) {
  const schemas::SuiteSpec& spec = *rc.spec;
  const EvalIdentity& id = *rc.id;
  const std::vector<ResultRow>& rows = *rc.rows;
  const std::string& task = id.suite;
  int64_t n = 0;
  json res = {{"name", task}, {"alias", task}};
  json hib = json::object();
  for (const auto& r : rows) {
    res[r.metric + "," + r.filter] = num(r.value);
    // lm-eval writes "N/A" where a metric has no standard error.
    res[r.metric + "_stderr," + r.filter] =
        r.stderr_ && std::isfinite(*r.stderr_) ? json(*r.stderr_) : json("N/A");
    hib[r.metric] = higher_is_better(r.metric);
    n = std::max(n, r.n);
  }
  res["sample_len"] = n;
  json cfg = spec.raw.is_object() ? spec.raw : json::object();
  if (rc.task_config.is_object()) cfg.merge_patch(rc.task_config);
  const json run = run_config_json(rc);
  std::string model_name;
  if (run["model_args"].is_string()) model_name = model_name_from_args(run["model_args"].get<std::string>());
  if (model_name.empty() && run["model"].is_string()) model_name = run["model"].get<std::string>();
  const double start = rc.start_time.value_or(now_unix());

  json doc;
  doc["results"][task] = res;
  doc["group_subtasks"][task] = json::array();
  doc["configs"][task] = cfg;
  doc["versions"][task] = version_json(spec.version);
  doc["n-shot"][task] = cfg.contains("num_fewshot") && cfg["num_fewshot"].is_number_integer()
                            ? cfg["num_fewshot"].get<int64_t>()
                            : static_cast<int64_t>(spec.num_fewshot);
  doc["higher_is_better"][task] = hib;
  doc["n-samples"][task] = {{"original", rc.n_original.value_or(n)}, {"effective", n}};
  doc["config"] = run;
  doc["git_hash"] = rc.git_hash.empty() ? json(nullptr) : json(rc.git_hash);
  doc["date"] = start;
  doc["task_hashes"] = json::object();
  if (!rc.task_hash.empty()) doc["task_hashes"][task] = rc.task_hash;
  doc["model_source"] = run["model"];
  doc["model_name"] = model_name;
  doc["model_name_sanitized"] = sanitize_model_name(model_name);
  doc["system_instruction"] = nullptr;
  doc["system_instruction_sha"] = nullptr;
  doc["fewshot_as_multiturn"] = false;
  doc["chat_template"] = nullptr;
  doc["chat_template_sha"] = nullptr;
  doc["start_time"] = start;
  doc["end_time"] = rc.total_seconds ? json(start + *rc.total_seconds) : json(nullptr);
  doc["total_evaluation_time_seconds"] =
      rc.total_seconds ? json(std::to_string(*rc.total_seconds)) : json(nullptr);
  doc["assay"] = {{"checkpoint_hash", id.checkpoint_hash}, {"suite_version", id.suite_version},
                  {"seed", id.seed},  {"backend", rc.backend},    {"cached", rc.cached}};
  if (id.run_id) doc["assay"]["run_id"] = *id.run_id;
  return doc;
}

}  // namespace assay::evals
