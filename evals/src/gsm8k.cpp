// GSM8K: data, prompts, filters, exact_match and lm-eval style results.
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>

#include "assay/evals_gsm8k.h"
#include "assay/hash.h"
#include "assay/jsonl.h"
#include "assay/evals_pyrandom.h"

#ifndef ASSAY_EVALS_DEFAULT_DATA_DIR
#define ASSAY_EVALS_DEFAULT_DATA_DIR "evals/data"
#endif

namespace assay::evals {

std::string default_data_dir() {
  const char* env = std::getenv("ASSAY_EVALS_DATA");
  if (env && *env) return env;
  return ASSAY_EVALS_DEFAULT_DATA_DIR;
}

Result<std::vector<Gsm8kDoc>> load_gsm8k_jsonl(const std::string& path) {
  std::vector<Gsm8kDoc> docs;
  ASSAY_RETURN_IF_ERROR(for_each_jsonl_object(
      path, "GSM8K data file", [&](const nlohmann::json& j, const std::string& where) -> Status {
        if (!j.contains("question") || !j["question"].is_string() || !j.contains("answer") ||
            !j["answer"].is_string())
          return Status::Corruption(where + ": expected {\"question\": str, \"answer\": str}");
        docs.push_back({j["question"].get<std::string>(), j["answer"].get<std::string>()});
        return Status::Ok();
      }));
  if (docs.empty()) return Status::Corruption(path + ": no documents");
  return docs;
}

std::vector<std::vector<uint64_t>> gsm8k_fewshot_indices(int64_t n_docs, uint64_t n_train,
                                                         int k, uint64_t seed) {
  PyRandom rng(seed);
  std::vector<std::vector<uint64_t>> out;
  out.reserve(static_cast<size_t>(n_docs));
  for (int64_t i = 0; i < n_docs; ++i) out.push_back(rng.sample(n_train, k));
  return out;
}

std::string gsm8k_prompt(const Gsm8kDoc& doc, const std::vector<const Gsm8kDoc*>& shots) {
  std::string p;
  for (const Gsm8kDoc* s : shots) p += "Question: " + s->question + "\nAnswer: " + s->answer + "\n\n";
  p += "Question: " + doc.question + "\nAnswer:";
  return p;
}

namespace {

constexpr const char* kInvalid = "[invalid]";

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Python str.strip() for ASCII whitespace.
std::string strip(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

// Length of the run of characters matching `pred` starting at `i`.
template <class Pred>
size_t run_length(const std::string& s, size_t i, Pred pred) {
  size_t n = 0;
  while (i + n < s.size() && pred(s[i + n])) ++n;
  return n;
}

}  // namespace

// Regex `#### (\-?[0-9\.\,]+)`, first match, group 1. Hand-written so that
// arbitrarily long responses cost linear time.
std::string filter_strict_match(const std::string& response) {
  auto cls = [](char c) { return is_digit(c) || c == '.' || c == ','; };
  for (size_t p = response.find("#### "); p != std::string::npos;
       p = response.find("#### ", p + 1)) {
    size_t q = p + 5;
    if (q < response.size() && response[q] == '-') {
      size_t n = run_length(response, q + 1, cls);
      if (n > 0) return strip(response.substr(q, n + 1));
    }
    size_t n = run_length(response, q, cls);  // '-' is not in the class
    if (n > 0) return strip(response.substr(q, n));
  }
  return kInvalid;
}

// Regex `(-?[$0-9.,]{2,})|(-?[0-9]+)`, every match left to right; the last
// match's first non-empty group.
std::string filter_flexible_extract(const std::string& s) {
  auto cls = [](char c) { return is_digit(c) || c == '$' || c == '.' || c == ','; };
  std::string last;
  bool found = false;
  size_t i = 0;
  while (i < s.size()) {
    size_t len = 0;
    if (s[i] == '-') {
      size_t a = run_length(s, i + 1, cls);
      if (a >= 2) len = 1 + a;  // alternative 1 with the sign
      else {
        size_t d = run_length(s, i + 1, is_digit);
        if (d >= 1) len = 1 + d;  // alternative 2 with the sign
      }
    } else {
      size_t a = run_length(s, i, cls);
      if (a >= 2) len = a;
      else len = run_length(s, i, is_digit);
    }
    if (len > 0) {
      last = s.substr(i, len);
      found = true;
      i += len;
    } else {
      ++i;
    }
  }
  return found ? strip(last) : kInvalid;
}

Result<std::string> apply_gsm8k_filter(const std::string& filter, const std::string& response) {
  if (filter == "strict-match") return filter_strict_match(response);
  if (filter == "flexible-extract") return filter_flexible_extract(response);
  if (filter == "none") return response;
  return Status::Invalid("gsm8k filter: expected strict-match, flexible-extract or none, got \"" +
                         filter + "\"");
}

// Deletes, in order, every match of ",", "\$", "(?s).*#### " and "\.$" (Python
// `$`: end of text or before a final newline), then lowercases (ASCII).
std::string gsm8k_normalize(const std::string& in) {
  std::string s;
  s.reserve(in.size());
  for (char c : in)
    if (c != ',') s += c;
  std::string t;
  t.reserve(s.size());
  for (char c : s)
    if (c != '$') t += c;
  // Greedy (?s).*#### matches from the start through the last "#### ".
  size_t last = t.rfind("#### ");
  if (last != std::string::npos) t = t.substr(last + 5);
  if (!t.empty() && t.back() == '.') t.pop_back();
  else if (t.size() >= 2 && t.back() == '\n' && t[t.size() - 2] == '.') t.erase(t.size() - 2, 1);
  for (char& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return t;
}

bool gsm8k_exact_match(const std::string& prediction, const std::string& reference) {
  return gsm8k_normalize(prediction) == gsm8k_normalize(reference);
}

void apply_gen_kwargs(const GenKwargs& g, Gsm8kConfig* cfg) {
  cfg->sampling = g.sampling;
  if (g.max_gen_toks) cfg->max_gen_toks = *g.max_gen_toks;
  if (g.until) cfg->stop = *g.until;
}

nlohmann::json gsm8k_generation_kwargs(const Gsm8kConfig& cfg) {
  const SamplingParams& p = cfg.sampling;
  nlohmann::json g{{"until", cfg.stop},
                   {"do_sample", !p.greedy()},
                   {"temperature", p.temperature},
                   {"max_gen_toks", cfg.max_gen_toks}};
  if (p.top_p != 1) g["top_p"] = p.top_p;
  if (p.top_k > 0) g["top_k"] = p.top_k;
  if (p.seed) g["seed"] = *p.seed;
  return g;
}

nlohmann::json gsm8k_task_config(const Gsm8kConfig& cfg) {
  nlohmann::json filters = nlohmann::json::array();
  for (const auto& f : cfg.filters) {
    nlohmann::json steps = nlohmann::json::array();
    if (f == "strict-match")
      steps.push_back({{"function", "regex"}, {"regex_pattern", "#### (\\-?[0-9\\.\\,]+)"}});
    else if (f == "flexible-extract")
      steps.push_back({{"function", "regex"},
                       {"group_select", -1},
                       {"regex_pattern", "(-?[$0-9.,]{2,})|(-?[0-9]+)"}});
    steps.push_back({{"function", "take_first"}});
    filters.push_back({{"name", f}, {"filter", steps}});
  }
  return {{"task", "gsm8k"},
          {"dataset_path", "gsm8k"},
          {"dataset_name", "main"},
          {"training_split", "train"},
          {"test_split", "test"},
          {"fewshot_split", "train"},
          {"doc_to_text", "Question: {{question}}\nAnswer:"},
          {"doc_to_target", "{{answer}}"},
          {"description", ""},
          {"target_delimiter", " "},
          {"fewshot_delimiter", "\n\n"},
          {"num_fewshot", cfg.num_fewshot},
          {"fewshot_seed", cfg.fewshot_seed},
          {"metric_list",
           {{{"metric", "exact_match"},
             {"aggregation", "mean"},
             {"higher_is_better", true},
             {"ignore_case", true},
             {"ignore_punctuation", false},
             {"regexes_to_ignore", {",", "\\$", "(?s).*#### ", "\\.$"}}}}},
          {"output_type", "generate_until"},
          {"generation_kwargs", gsm8k_generation_kwargs(cfg)},
          {"repeats", 1},
          {"filter_list", filters},
          {"metadata", {{"version", 3.0}}},
          // The Assay spec's own names for what the run set.
          {"filters", cfg.filters},
          {"max_gen_tokens", cfg.max_gen_toks},
          {"stop", cfg.stop},
          {"limit", cfg.limit ? nlohmann::json(*cfg.limit) : nlohmann::json(nullptr)}};
}

namespace {

nlohmann::json number_or_null(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json("N/A");
}

void build_results(Gsm8kReport* r, const Gsm8kConfig& cfg, int64_t n_original) {
  nlohmann::json task{{"name", "gsm8k"}, {"alias", "gsm8k"},
                      {"sample_len", static_cast<int64_t>(r->samples.size())}};
  for (const auto& f : cfg.filters) {
    const MeanStderr& m = r->exact_match[f];
    task["exact_match," + f] = number_or_null(m.mean);
    task["exact_match_stderr," + f] = number_or_null(m.stderr_);
    ResultRow row{"gsm8k", "exact_match", f, m.mean, std::nullopt, m.n, "3.0"};
    if (std::isfinite(m.stderr_)) row.stderr_ = m.stderr_;
    r->rows.push_back(row);
  }
  const int64_t n = static_cast<int64_t>(r->samples.size());
  r->results = {{"results", {{"gsm8k", task}}},
                {"group_subtasks", {{"gsm8k", nlohmann::json::array()}}},
                {"configs", {{"gsm8k", gsm8k_task_config(cfg)}}},
                {"versions", {{"gsm8k", 3.0}}},
                {"n-shot", {{"gsm8k", cfg.num_fewshot}}},
                {"higher_is_better", {{"gsm8k", {{"exact_match", true}}}}},
                {"n-samples", {{"gsm8k", {{"original", n_original}, {"effective", n}}}}}};
  if (cfg.limit) r->results["config"] = {{"limit", *cfg.limit}};
  r->results["task_hashes"] = {{"gsm8k", gsm8k_task_hash(*r)}};
}

}  // namespace

Result<Gsm8kReport> score_gsm8k(const std::vector<std::string>& responses,
                                const std::vector<std::string>& references,
                                const Gsm8kConfig& cfg) {
  if (responses.size() != references.size())
    return Status::Invalid("gsm8k: " + std::to_string(responses.size()) + " responses but " +
                           std::to_string(references.size()) + " references");
  if (responses.empty()) return Status::Invalid("gsm8k: nothing to score (0 responses)");
  if (cfg.filters.empty()) return Status::Invalid("gsm8k: at least one filter is required");
  Gsm8kReport r;
  r.config = cfg;
  std::map<std::string, std::vector<double>> scores;
  for (size_t i = 0; i < responses.size(); ++i) {
    Gsm8kSample s;
    s.doc_id = static_cast<int64_t>(i);
    s.target = references[i];
    s.response = responses[i];
    for (const auto& f : cfg.filters) {
      ASSAY_ASSIGN_OR_RETURN(std::string pred, apply_gsm8k_filter(f, responses[i]));
      double em = gsm8k_exact_match(pred, references[i]) ? 1.0 : 0.0;
      s.filtered[f] = pred;
      s.exact_match[f] = em;
      scores[f].push_back(em);
    }
    r.samples.push_back(std::move(s));
  }
  for (const auto& f : cfg.filters) r.exact_match[f] = mean_stderr(scores[f]);
  build_results(&r, cfg, static_cast<int64_t>(responses.size()));
  return r;
}

Result<Gsm8kReport> run_gsm8k(Backend& backend, const std::vector<Gsm8kDoc>& test,
                              const std::vector<Gsm8kDoc>& train, const Gsm8kConfig& cfg) {
  int64_t n = static_cast<int64_t>(test.size());
  if (cfg.limit) n = std::min<int64_t>(n, *cfg.limit);
  if (cfg.num_fewshot < 0 || static_cast<size_t>(cfg.num_fewshot) > train.size())
    return Status::Invalid("gsm8k: num_fewshot must be in 0.." + std::to_string(train.size()) +
                           ", got " + std::to_string(cfg.num_fewshot));
  auto shots = gsm8k_fewshot_indices(n, train.size(), cfg.num_fewshot, cfg.fewshot_seed);
  std::vector<GenRequest> reqs;
  std::vector<std::string> refs;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<const Gsm8kDoc*> docs;
    for (uint64_t k : shots[i]) {
      const Gsm8kDoc& d = train[k];
      // lm-eval drops a drawn shot equal to the test doc itself.
      if (d.question == test[i].question && d.answer == test[i].answer) continue;
      docs.push_back(&d);
    }
    reqs.push_back({gsm8k_prompt(test[i], docs), cfg.stop, cfg.max_gen_toks, cfg.sampling});
    refs.push_back(test[i].answer);
  }
  ASSAY_ASSIGN_OR_RETURN(auto responses, backend.generate(reqs));
  if (responses.size() != reqs.size())
    return Status::Internal("gsm8k: backend returned " + std::to_string(responses.size()) +
                            " completions for " + std::to_string(reqs.size()) + " prompts");
  ASSAY_ASSIGN_OR_RETURN(Gsm8kReport r, score_gsm8k(responses, refs, cfg));
  for (int64_t i = 0; i < n; ++i) {
    r.samples[i].prompt = reqs[i].prompt;
    r.samples[i].question = test[i].question;
  }
  r.results["n-samples"]["gsm8k"]["original"] = static_cast<int64_t>(test.size());
  r.results["task_hashes"]["gsm8k"] = gsm8k_task_hash(r);
  r.results["model"] = backend.describe();
  return r;
}

namespace {

std::string dump(const nlohmann::ordered_json& j, int indent = -1) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

// The dataset row as lm-eval holds it, question first.
nlohmann::ordered_json doc_json(const Gsm8kSample& s) {
  nlohmann::ordered_json doc = nlohmann::ordered_json::object();
  if (!s.question.empty()) doc["question"] = s.question;
  doc["answer"] = s.target;
  return doc;
}

struct SampleHashes {
  std::string doc, prompt, target;
};

// lm-eval's hash_string (sha256 hex of the UTF-8 text) of json.dumps(doc,
// indent=2, ensure_ascii=False) (the same text as this dump with indent 2),
// of the prompt and of str(target).
SampleHashes hashes(const Gsm8kSample& s) {
  return {sha256_hex(dump(doc_json(s), 2)), sha256_hex(s.prompt), sha256_hex(s.target)};
}

}  // namespace

std::string gsm8k_samples_jsonl(const Gsm8kReport& report) {
  const nlohmann::ordered_json gen = gsm8k_generation_kwargs(report.config);
  std::vector<SampleHashes> h;
  for (const auto& s : report.samples) h.push_back(hashes(s));
  std::string out;
  for (const auto& f : report.config.filters) {
    for (size_t i = 0; i < report.samples.size(); ++i) {
      const Gsm8kSample& s = report.samples[i];
      auto filtered = s.filtered.find(f);
      auto em = s.exact_match.find(f);
      if (filtered == s.filtered.end() || em == s.exact_match.end()) continue;
      nlohmann::ordered_json j;
      j["doc_id"] = s.doc_id;
      j["doc"] = doc_json(s);
      j["target"] = s.target;
      j["arguments"] = {{"gen_args_0", {{"arg_0", s.prompt}, {"arg_1", gen}}}};
      j["resps"] = nlohmann::ordered_json::array({nlohmann::ordered_json::array({s.response})});
      j["filtered_resps"] = nlohmann::ordered_json::array({filtered->second});
      j["filter"] = f;
      j["metrics"] = nlohmann::ordered_json::array({"exact_match"});
      j["doc_hash"] = h[i].doc;
      j["prompt_hash"] = h[i].prompt;
      j["target_hash"] = h[i].target;
      j["exact_match"] = em->second;
      out += dump(j) + "\n";
    }
  }
  return out;
}

std::string gsm8k_task_hash(const Gsm8kReport& report) {
  std::vector<SampleHashes> h;
  for (const auto& s : report.samples) h.push_back(hashes(s));
  std::string all;
  for (const auto& f : report.config.filters)
    for (size_t i = 0; i < report.samples.size(); ++i)
      if (report.samples[i].filtered.count(f)) all += h[i].doc + h[i].prompt + h[i].target;
  return sha256_hex(all);
}

}  // namespace assay::evals
