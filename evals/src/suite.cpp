// SuiteSpec parsing and ResultRow serialization.
#include <set>

#include "assay/evals_suite.h"

namespace assay::evals {

nlohmann::json to_json(const ResultRow& r) {
  nlohmann::json j{{"suite", r.suite},   {"metric", r.metric}, {"filter", r.filter},
                   {"value", r.value},   {"n", r.n},           {"suite_version", r.suite_version}};
  j["stderr"] = r.stderr_ ? nlohmann::json(*r.stderr_) : nlohmann::json(nullptr);
  return j;
}

nlohmann::json to_json(const SuiteSpec& s) {
  nlohmann::json j{{"name", s.name},
                   {"version", s.version},
                   {"task", s.task},
                   {"data", s.data},
                   {"prompt_template", s.prompt_template},
                   {"num_fewshot", s.num_fewshot},
                   {"fewshot_seed", s.fewshot_seed},
                   {"filters", s.filters},
                   {"metrics", s.metrics}};
  j["limit"] = s.limit ? nlohmann::json(*s.limit) : nlohmann::json(nullptr);
  return j;
}

namespace {

Status type_error(const std::string& source, const std::string& field, const char* want,
                  const nlohmann::json& got) {
  return Status::Invalid(source + ": /" + field + ": expected " + want + ", got " + got.dump());
}

Result<std::vector<std::string>> string_list(const nlohmann::json& v, const std::string& source,
                                             const std::string& field) {
  if (!v.is_array()) return type_error(source, field, "an array of strings", v);
  std::vector<std::string> out;
  for (const auto& e : v) {
    if (!e.is_string()) return type_error(source, field, "an array of strings", v);
    out.push_back(e.get<std::string>());
  }
  return out;
}

}  // namespace

Result<SuiteSpec> suite_spec_from_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) return type_error(source, "", "an object", j);
  static const std::set<std::string> kTasks{"gsm8k", "ood", "provenance", "unlearning"};
  SuiteSpec s;
  for (const auto& [key, v] : j.items()) {
    if (key == "name" || key == "version" || key == "task" || key == "prompt_template") {
      if (!v.is_string()) return type_error(source, key, "a string", v);
      std::string str = v.get<std::string>();
      if (key == "name") s.name = str;
      else if (key == "version") s.version = str;
      else if (key == "task") s.task = str;
      else s.prompt_template = str;
    } else if (key == "data" || key == "filters" || key == "metrics") {
      ASSAY_ASSIGN_OR_RETURN(auto list, string_list(v, source, key));
      (key == "data" ? s.data : key == "filters" ? s.filters : s.metrics) = std::move(list);
    } else if (key == "num_fewshot") {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 1000)
        return type_error(source, key, "an integer in 0..1000", v);
      s.num_fewshot = v.get<int>();
    } else if (key == "fewshot_seed") {
      if (!v.is_number_unsigned()) return type_error(source, key, "an integer >= 0", v);
      s.fewshot_seed = v.get<uint64_t>();
    } else if (key == "limit") {
      if (v.is_null()) continue;
      if (!v.is_number_integer() || v.get<int64_t>() < 1)
        return type_error(source, key, "an integer >= 1 or null", v);
      s.limit = v.get<int64_t>();
    } else {
      return Status::Invalid(source + ": /" + key + ": unknown field");
    }
  }
  if (!kTasks.count(s.task))
    return Status::Invalid(source + ": /task: expected one of gsm8k, ood, provenance, "
                           "unlearning, got \"" + s.task + "\"");
  if (s.name.empty()) s.name = s.task;
  return s;
}

Result<SuiteSpec> default_suite_spec(const std::string& task) {
  SuiteSpec s;
  s.task = task;
  s.name = task;
  if (task == "gsm8k") {
    s.version = "3.0";
    s.data = {"gsm8k/test.jsonl", "gsm8k/train.jsonl"};
    s.prompt_template = "Question: {question}\nAnswer:";
    s.num_fewshot = 5;
    s.fewshot_seed = 1234;
    s.filters = {"strict-match", "flexible-extract"};
    s.metrics = {"exact_match"};
    return s;
  }
  if (task == "ood") {
    s.version = "1.0";
    s.metrics = {"auroc", "aupr", "fpr95"};
    return s;
  }
  if (task == "provenance") {
    s.version = "1.0";
    s.metrics = {"spearman_rho", "p_t", "p_perm"};
    return s;
  }
  if (task == "unlearning") {
    s.version = "1.0";
    s.metrics = {"nll", "token_accuracy", "mink_auc", "privleak", "exact_memorization",
                 "extraction_strength", "forget_quality"};
    return s;
  }
  return Status::Invalid("suite task: expected one of gsm8k, ood, provenance, unlearning, got \"" +
                         task + "\"");
}

}  // namespace assay::evals
