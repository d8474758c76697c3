// Suite spec lookup, result identity and caching, results documents, metric
// lines and data loading. See evals_results.h.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "assay/evals_gsm8k.h"
#include "assay/evals_results.h"
#include "assay/hash.h"

#ifndef ASSAY_EVALS_DEFAULT_SUITES_DIR
#define ASSAY_EVALS_DEFAULT_SUITES_DIR "evals/suites"
#endif

namespace assay::evals {

namespace fs = std::filesystem;

std::string shipped_suites_dir() {
  if (const char* d = std::getenv("ASSAY_EVALS_SUITES"); d && *d) return d;
  return ASSAY_EVALS_DEFAULT_SUITES_DIR;
}

Result<schemas::SuiteSpec> find_suite_spec(const std::string& name_or_path,
                                           std::string* spec_dir) {
  std::string path = name_or_path;
  const bool looks_like_path = name_or_path.find('/') != std::string::npos ||
                               name_or_path.find(".json") != std::string::npos;
  if (!looks_like_path) {
    path = shipped_suites_dir() + "/" + name_or_path + ".json";
    std::error_code ec;
    if (!fs::exists(path, ec)) {
      std::string known;
      for (const auto& e : fs::directory_iterator(shipped_suites_dir(), ec))
        if (e.path().extension() == ".json")
          known += (known.empty() ? "" : ", ") + e.path().stem().string();
      return Status::NotFound("suite \"" + name_or_path + "\": no shipped suite of that name in " +
                              shipped_suites_dir() + " (known: " + known +
                              "); pass a path to a suite spec JSON file instead");
    }
  }
  ASSAY_ASSIGN_OR_RETURN(auto spec, schemas::load_suite_spec(path));
  if (spec_dir) *spec_dir = fs::path(path).parent_path().string();
  return spec;
}

std::string resolve_data_path(const std::string& path, const std::string& spec_dir) {
  if (path.empty() || fs::path(path).is_absolute()) return path;
  std::error_code ec;
  if (!spec_dir.empty() && fs::exists(fs::path(spec_dir) / path, ec))
    return (fs::path(spec_dir) / path).string();
  if (fs::exists(path, ec)) return path;
  return (fs::path(default_data_dir()) / path).string();
}

std::string versioned(const std::string& version, const nlohmann::json& inputs) {
  return version + "+" + sha256_hex(schemas::canonical_json(inputs)).substr(0, 8);
}

Result<std::optional<std::vector<ResultRow>>> cached_results(store::Store& db,
                                                             const EvalIdentity& id) {
  ASSAY_ASSIGN_OR_RETURN(auto got, db.eval_results(id.checkpoint_hash, id.suite,
                                                   id.suite_version, id.seed));
  if (got.empty()) return std::optional<std::vector<ResultRow>>();
  std::vector<ResultRow> rows;
  for (const auto& e : got) {
    ResultRow r;
    r.suite = e.suite;
    r.metric = e.metric;
    r.filter = e.filter;
    r.value = e.value ? *e.value : std::nan("");
    r.stderr_ = e.stderr_value;
    r.n = e.n ? *e.n : 0;
    r.suite_version = e.suite_version;
    rows.push_back(std::move(r));
  }
  return std::optional<std::vector<ResultRow>>(std::move(rows));
}

Status record_results(store::Store& db, const EvalIdentity& id, const std::vector<ResultRow>& rows,
                      std::string* note) {
  std::optional<int64_t> run_id = id.run_id;
  if (run_id) {
    auto run = db.get_run(*run_id);
    if (!run.ok()) {
      if (note)
        *note = "run " + std::to_string(*run_id) + " is not in " + db.path() +
                "; rows are stored without a run id";
      run_id.reset();
    }
  }
  std::vector<store::EvalResult> out;
  for (const auto& r : rows) {
    store::EvalResult e;
    e.run_id = run_id;
    e.suite = id.suite;
    e.metric = r.metric;
    e.filter = r.filter.empty() ? "none" : r.filter;
    if (std::isfinite(r.value)) e.value = r.value;
    if (r.stderr_ && std::isfinite(*r.stderr_)) e.stderr_value = *r.stderr_;
    e.n = r.n;
    e.suite_version = id.suite_version;
    e.checkpoint_hash = id.checkpoint_hash;
    e.seed = id.seed;
    out.push_back(std::move(e));
  }
  return db.put_eval_results(out);
}

Status record_results_artifact(store::Store& db, int64_t run_id, const std::string& path,
                               const EvalIdentity& id) {
  ASSAY_ASSIGN_OR_RETURN(std::string digest, sha256_file(path));
  store::Artifact a;
  a.run_id = run_id;
  a.kind = "eval_results";
  a.content_hash = digest;
  std::error_code ec;
  fs::path abs = fs::absolute(path, ec);
  a.path = ec ? path : abs.lexically_normal().string();
  a.metadata_json = nlohmann::json{{"suite", id.suite},
                                   {"suite_version", id.suite_version},
                                   {"checkpoint_hash", id.checkpoint_hash},
                                   {"seed", id.seed}}
                        .dump();
  return db.put_artifact(a).status();
}

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

nlohmann::json results_document(const schemas::SuiteSpec& spec, const EvalIdentity& id,
                                const std::vector<ResultRow>& rows, const std::string& backend,
                                bool cached) {
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
  doc["configs"][id.suite] = spec.raw;
  doc["assay"] = {{"checkpoint_hash", id.checkpoint_hash}, {"suite_version", id.suite_version},
                  {"seed", id.seed},  {"backend", backend},       {"cached", cached}};
  if (id.run_id) doc["assay"]["run_id"] = *id.run_id;
  return doc;
}

std::string metric_line(const std::string& suite, const std::vector<ResultRow>& rows) {
  nlohmann::json m = nlohmann::json::object();
  for (const auto& r : rows) {
    if (!std::isfinite(r.value)) continue;
    std::string key = suite + "/" + r.metric;
    if (!r.filter.empty() && r.filter != "none") key += "," + r.filter;
    m[key] = r.value;
  }
  return nlohmann::json{{"step", 0}, {"metrics", m}}.dump() + "\n";
}

Status write_metric_line(int fd, const std::string& line) {
  if (fd < 0) return Status::Ok();
  size_t off = 0;
  while (off < line.size()) {
    ssize_t w = ::write(fd, line.data() + off, line.size() - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::IoError("ASSAY_METRICS_FD " + std::to_string(fd) + ": write failed: " +
                             std::strerror(errno));
    }
    off += static_cast<size_t>(w);
  }
  return Status::Ok();
}

Result<std::vector<TextItem>> load_text_items(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IoError(path + ": cannot open data file");
  const bool jsonl = fs::path(path).extension() == ".jsonl" || fs::path(path).extension() == ".json";
  std::vector<TextItem> out;
  std::string line;
  int64_t lineno = 0;
  auto str = [&](const nlohmann::json& j, const char* key, const std::string& where) -> Result<std::string> {
    if (!j[key].is_string())
      return Status::Invalid(where + ": field \"" + key + "\" must be a string, got " + j[key].dump());
    return j[key].get<std::string>();
  };
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    TextItem it;
    it.id = std::to_string(lineno);
    if (!jsonl) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      it.text = line;
      out.push_back(std::move(it));
      continue;
    }
    const std::string where = path + ":" + std::to_string(lineno);
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return Status::Corruption(where + ": not a JSON object");
    if (j.contains("id")) it.id = j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump();
    if (j.contains("question") && j.contains("answer")) {
      ASSAY_ASSIGN_OR_RETURN(it.question, str(j, "question", where));
      ASSAY_ASSIGN_OR_RETURN(it.answer, str(j, "answer", where));
      it.text = "Question: " + it.question + "\nAnswer: " + it.answer;
    } else if (j.contains("text")) {
      ASSAY_ASSIGN_OR_RETURN(it.text, str(j, "text", where));
    } else if (j.contains("prompt") && (j.contains("completion") || j.contains("chosen"))) {
      ASSAY_ASSIGN_OR_RETURN(std::string p, str(j, "prompt", where));
      ASSAY_ASSIGN_OR_RETURN(std::string c, str(j, j.contains("completion") ? "completion" : "chosen", where));
      it.text = p + c;
    } else {
      return Status::Invalid(where + ": expected fields text, question/answer or prompt/completion");
    }
    out.push_back(std::move(it));
  }
  if (out.empty()) return Status::Invalid(path + ": no items");
  return out;
}

std::vector<std::pair<std::string, double>> last_occurrence_order(
    const std::vector<std::pair<std::string, double>>& transcript) {
  std::map<std::string, double> last;
  for (const auto& [id, order] : transcript) {
    auto it = last.find(id);
    if (it == last.end() || order > it->second) last[id] = order;
  }
  std::vector<std::pair<double, std::string>> by_order;
  for (const auto& [id, order] : last) by_order.emplace_back(order, id);
  std::sort(by_order.begin(), by_order.end());
  std::vector<std::pair<std::string, double>> out;
  for (size_t i = 0; i < by_order.size(); ++i)
    out.emplace_back(by_order[i].second, static_cast<double>(i));
  return out;
}

}  // namespace assay::evals
