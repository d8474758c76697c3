// assay eval gsm8k: GSM8K exact_match with lm-eval gsm8k v3 semantics, scored
// from a predictions file or generated through an OpenAI-compatible endpoint.
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>

#include "assay/evals_gsm8k.h"
#include "assay/evals_http.h"
#include "registry.h"

namespace {

namespace ev = assay::evals;
using assay::cli::set_exit_code;

struct Gsm8kOpts {
  std::string predictions, pred_field = "response", ref_field = "answer";
  bool refs_from_test = false;
  std::string endpoint, model, api_key_env = "OPENAI_API_KEY", model_path;
  int concurrency = 4, max_retries = 5;
  double timeout_s = 600;
  std::string data_dir;
  int64_t limit = 0;
  std::vector<std::string> filters;
  int num_fewshot = 5;
  uint64_t fewshot_seed = 1234;
  int max_gen_toks = 256;
  std::string output, samples;
};

int fail(const std::string& m, int code = 1) {
  std::cerr << "assay eval gsm8k: " << m << "\n";
  return code;
}

// lm-eval sample files nest responses as [[text]]; take the first leaf.
const nlohmann::json* first_leaf(const nlohmann::json& v) {
  const nlohmann::json* p = &v;
  while (p->is_array() && !p->empty()) p = &(*p)[0];
  return p;
}

assay::Status read_predictions(const Gsm8kOpts& o, const std::vector<ev::Gsm8kDoc>* test,
                               std::vector<std::string>* preds, std::vector<std::string>* refs) {
  std::ifstream in(o.predictions);
  if (!in) return assay::Status::IoError(o.predictions + ": cannot open predictions file");
  std::string line;
  int64_t lineno = 0, index = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (o.limit > 0 && index >= o.limit) break;
    const std::string where = o.predictions + ":" + std::to_string(lineno);
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      return assay::Status::Corruption(where + ": not a JSON object");
    if (!j.contains(o.pred_field))
      return assay::Status::Invalid(where + ": missing prediction field \"" + o.pred_field +
                                    "\" (set --pred-field)");
    const nlohmann::json* p = first_leaf(j[o.pred_field]);
    if (!p->is_string())
      return assay::Status::Invalid(where + ": field \"" + o.pred_field + "\" must be a string, got " +
                                    p->dump());
    preds->push_back(p->get<std::string>());
    if (test) {
      int64_t doc = index;
      if (j.contains("doc_id") && j["doc_id"].is_number_integer()) doc = j["doc_id"].get<int64_t>();
      if (doc < 0 || doc >= static_cast<int64_t>(test->size()))
        return assay::Status::Invalid(where + ": doc " + std::to_string(doc) +
                                      " is outside the GSM8K test split (0.." +
                                      std::to_string(test->size() - 1) + ")");
      refs->push_back((*test)[doc].answer);
    } else {
      if (!j.contains(o.ref_field))
        return assay::Status::Invalid(where + ": missing reference field \"" + o.ref_field +
                                      "\" (set --ref-field, or --refs-from-test)");
      const nlohmann::json* r = first_leaf(j[o.ref_field]);
      refs->push_back(r->is_string() ? r->get<std::string>() : r->dump());
    }
    ++index;
  }
  if (preds->empty()) return assay::Status::Invalid(o.predictions + ": no predictions");
  return assay::Status::Ok();
}

assay::Status write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return assay::Status::IoError(path + ": cannot write");
  out << text;
  out.close();
  if (!out) return assay::Status::IoError(path + ": write failed");
  return assay::Status::Ok();
}

void print_summary(const ev::Gsm8kReport& r, int nshot) {
  std::printf("gsm8k (v3.0, %d-shot, n=%zu)\n", nshot, r.samples.size());
  for (const auto& [filter, m] : r.exact_match)
    std::printf("  exact_match  %-17s %.4f ± %.4f\n", filter.c_str(), m.mean, m.stderr_);
}

int run(const Gsm8kOpts& o) {
  int modes = !o.predictions.empty() + !o.endpoint.empty() + !o.model_path.empty();
  if (modes != 1)
    return fail("choose exactly one of --predictions, --endpoint or --model-path", 2);
  if (!o.model_path.empty())
    return fail("--model-path: native checkpoints are not wired into `assay eval` yet; serve the "
                "checkpoint with an OpenAI-compatible server and pass --endpoint/--model");
  ev::Gsm8kConfig cfg;
  cfg.num_fewshot = o.num_fewshot;
  cfg.fewshot_seed = o.fewshot_seed;
  cfg.max_gen_toks = o.max_gen_toks;
  if (!o.filters.empty()) cfg.filters = o.filters;
  if (o.limit > 0) cfg.limit = o.limit;
  for (const auto& f : cfg.filters)
    if (f != "strict-match" && f != "flexible-extract" && f != "none")
      return fail("--filter: expected strict-match, flexible-extract or none, got \"" + f + "\"", 2);
  const std::string dir = o.data_dir.empty() ? ev::default_data_dir() : o.data_dir;
  auto load = [&](const char* split) { return ev::load_gsm8k_jsonl(dir + "/gsm8k/" + split + ".jsonl"); };

  assay::Result<ev::Gsm8kReport> report = assay::Status::Internal("unset");
  if (!o.predictions.empty()) {
    std::vector<ev::Gsm8kDoc> test;
    if (o.refs_from_test) {
      auto t = load("test");
      if (!t.ok()) return fail(t.status().message() + " (set --data-dir or $ASSAY_EVALS_DATA)");
      test = std::move(t).value();
    }
    std::vector<std::string> preds, refs;
    if (auto st = read_predictions(o, o.refs_from_test ? &test : nullptr, &preds, &refs); !st.ok())
      return fail(st.message());
    report = ev::score_gsm8k(preds, refs, cfg);
  } else {
    if (o.model.empty()) return fail("--endpoint needs --model NAME", 2);
    auto test = load("test");
    auto train = load("train");
    if (!test.ok() || !train.ok())
      return fail((!test.ok() ? test : train).status().message() +
                  " (set --data-dir or $ASSAY_EVALS_DATA)");
    ev::HttpBackendOptions ho;
    ho.base_url = o.endpoint;
    ho.model = o.model;
    ho.concurrency = o.concurrency;
    ho.max_retries = o.max_retries;
    ho.timeout_s = o.timeout_s;
    if (const char* key = std::getenv(o.api_key_env.c_str())) ho.api_key = key;
    auto backend = ev::make_http_backend(ho);
    if (!backend.ok()) return fail(backend.status().message(), 2);
    report = ev::run_gsm8k(**backend, *test, *train, cfg);
  }
  if (!report.ok()) return fail(report.status().message());
  print_summary(*report, cfg.num_fewshot);
  if (!o.output.empty()) {
    if (auto st = write_file(o.output, report->results.dump(2) + "\n"); !st.ok()) return fail(st.message());
    std::cerr << "assay eval gsm8k: wrote results to " << o.output << "\n";
  }
  if (!o.samples.empty()) {
    if (auto st = write_file(o.samples, ev::gsm8k_samples_jsonl(*report)); !st.ok()) return fail(st.message());
    std::cerr << "assay eval gsm8k: wrote per-item samples to " << o.samples << "\n";
  }
  return 0;
}

void add_gsm8k(CLI::App* eval) {
  auto o = std::make_shared<Gsm8kOpts>();
  auto* c = eval->add_subcommand("gsm8k", "GSM8K exact_match (lm-eval gsm8k v3: 5-shot, strict/flexible filters)");
  c->add_option("--predictions", o->predictions,
                "Score this JSONL of precomputed responses (one object per line) instead of generating");
  c->add_option("--pred-field", o->pred_field,
                "Field holding the response; a nested list such as lm-eval's resps [[text]] "
                "uses its first element")->capture_default_str();
  c->add_option("--ref-field", o->ref_field,
                "Field holding the reference answer (text ending in '#### N', or just N)")
      ->capture_default_str();
  c->add_flag("--refs-from-test", o->refs_from_test,
              "Take references from the shipped GSM8K test split: line i (or field doc_id) is doc i");
  c->add_option("--endpoint", o->endpoint,
                "Generate through an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 "
                "(POST <endpoint>/completions)");
  c->add_option("--model", o->model, "Model name sent to --endpoint");
  c->add_option("--api-key-env", o->api_key_env, "Environment variable holding a bearer token for --endpoint")
      ->capture_default_str();
  c->add_option("--concurrency", o->concurrency, "Parallel requests to --endpoint")->capture_default_str();
  c->add_option("--max-retries", o->max_retries,
                "Retries per request on connection errors, HTTP 429 and 5xx (exponential backoff)")
      ->capture_default_str();
  c->add_option("--request-timeout", o->timeout_s, "Seconds per HTTP request")->capture_default_str();
  c->add_option("--model-path", o->model_path,
                "Native checkpoint: NOT WIRED YET (fails with a message); serve it and use --endpoint");
  c->add_option("--data-dir", o->data_dir,
                "Directory holding gsm8k/{test,train}.jsonl (default: $ASSAY_EVALS_DATA, else " +
                    ev::default_data_dir() + ")");
  c->add_option("--limit", o->limit, "Evaluate only the first N documents (0 = all)")->capture_default_str();
  c->add_option("--filter", o->filters,
                "Filter(s) to report: strict-match, flexible-extract, none (repeatable; default: "
                "strict-match and flexible-extract)");
  c->add_option("--num-fewshot", o->num_fewshot,
                "Few-shot examples per prompt (--endpoint); with --predictions only recorded in n-shot")
      ->capture_default_str();
  c->add_option("--fewshot-seed", o->fewshot_seed,
                "Seed of the Python-compatible random.Random sampler of shots")->capture_default_str();
  c->add_option("--max-gen-toks", o->max_gen_toks, "Most new tokens per generation")->capture_default_str();
  c->add_option("--output", o->output, "Write the lm-eval style results JSON here");
  c->add_option("--samples", o->samples, "Write per-item responses, filtered answers and scores (JSONL)");
  c->footer(
      "\nA prediction is scored by each filter: strict-match takes the number after '#### ',\n"
      "flexible-extract the last number in the text; both are compared to the reference after\n"
      "removing ',', '$', everything up to the last '#### ' and a final '.', case-folded.\n"
      "The summary goes to stdout; results.json carries results, n-shot, versions,\n"
      "higher_is_better and configs keyed by task, as lm-evaluation-harness writes them.\n\n"
      "Examples:\n"
      "  assay eval gsm8k --predictions preds.jsonl --pred-field response --ref-field answer\n"
      "  assay eval gsm8k --predictions samples_gsm8k.jsonl --pred-field resps --refs-from-test\n"
      "  assay eval gsm8k --endpoint http://127.0.0.1:8000/v1 --model my-model --limit 100 \\\n"
      "      --output results.json --samples samples.jsonl");
  c->callback([o] { set_exit_code(run(*o)); });
}

void add_eval(CLI::App& app) {
  auto* eval = app.add_subcommand("eval", "Run evaluation suites (GSM8K) against predictions or a model");
  eval->require_subcommand(1);
  eval->footer(
      "\nSuites: gsm8k. OOD likelihood-ratio, provenance and unlearning metrics are available\n"
      "in the assay_evals library and are not exposed as commands yet.\n\n"
      "Example:\n  assay eval gsm8k --predictions preds.jsonl --output results.json");
  add_gsm8k(eval);
}

}  // namespace

ASSAY_REGISTER_COMMAND(60, add_eval);
