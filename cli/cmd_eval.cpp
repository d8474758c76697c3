// assay eval SUITE: parses the options, hands them to the evals component's
// runner (evals_runner.h: spec, cache, task, records, files) and prints the
// rows. Under a worker, ASSAY_RUN_ID, ASSAY_METRICS_FD and ASSAY_OUTPUT_DIR
// tie the eval to its run.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>

#include "assay/evals_gsm8k.h"
#include "assay/evals_runner.h"
#include "registry.h"

namespace {

namespace ev = assay::evals;
using assay::Status;
using assay::cli::set_exit_code;

// A positive integer from the environment; nullopt when unset.
assay::Result<std::optional<int64_t>> env_int(const char* name, int64_t min) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::optional<int64_t>();
  char* end = nullptr;
  const long long x = std::strtoll(v, &end, 10);
  if (*end != '\0' || x < min)
    return Status::Invalid(std::string(name) + ": expected an integer >= " + std::to_string(min) +
                           ", got \"" + v + "\"");
  return std::optional<int64_t>(x);
}

// A number for people: 4 decimals, or 3 significant digits when tiny (p-values).
std::string fmt(double v) {
  char b[64];
  std::snprintf(b, sizeof b, v == 0 || std::fabs(v) >= 1e-3 ? "%.4f" : "%.3g", v);
  return b;
}

void print_rows(const ev::EvalOutcome& r) {
  std::printf("%s%s (%s)\n", r.cached ? "cached results\n" : "", r.suite.c_str(),
              r.suite_version.c_str());
  for (const auto& row : r.rows) {
    std::printf("  %-24s %-17s %s", row.metric.c_str(), row.filter.c_str(), fmt(row.value).c_str());
    if (row.stderr_) std::printf(" ± %s", fmt(*row.stderr_).c_str());
    std::printf("  (n=%lld)\n", (long long)row.n);
  }
}

int run(ev::EvalOptions o) {
  const std::string prefix = "assay eval " + o.suite + ": ";
  auto run_id = env_int("ASSAY_RUN_ID", 1);
  auto fd = env_int("ASSAY_METRICS_FD", 0);
  for (const Status& st : {run_id.status(), fd.status()})
    if (!st.ok()) {
      std::cerr << prefix << st.message() << "\n";
      return 2;
    }
  o.run_id = *run_id;
  if (*fd) o.metrics_fd = static_cast<int>(**fd);
  if (const char* d = std::getenv("ASSAY_OUTPUT_DIR"); d && *d) o.output_dir = d;
  o.log = [prefix](const std::string& m) { std::cerr << prefix << m << std::endl; };
  ev::EvalStage stage = ev::EvalStage::kSetup;
  auto r = ev::run_eval(o, &stage);
  if (!r.ok()) {
    std::cerr << prefix << r.status().message() << "\n";
    // Usage errors (bad options, unknown suite, missing inputs) exit 2.
    const auto code = r.status().code();
    const bool usage = stage == ev::EvalStage::kSetup &&
                       (code == assay::Code::kInvalidArgument || code == assay::Code::kNotFound);
    return usage ? 2 : 1;
  }
  print_rows(*r);
  return 0;
}

void add_options(CLI::App* c, const std::shared_ptr<ev::EvalOptions>& o) {
  c->add_option("suite", o->suite,
                "Suite: a shipped name (gsm8k, ood, provenance, unlearning, preference, diversity; specs in " +
                    ev::shipped_suites_dir() + ") or a path to a suite spec JSON file")
      ->required();
  c->add_option("--model-path", o->model_path, "Native checkpoint directory to evaluate");
  c->add_option("--endpoint", o->endpoint,
                "OpenAI-compatible server to evaluate, e.g. http://127.0.0.1:8000/v1 (POST <endpoint>/completions)");
  c->add_option("--model", o->model, "Model name sent to --endpoint");
  c->add_option("--checkpoint-hash", o->checkpoint_hash,
                "Identity of the model behind --endpoint for the results store (default: endpoint#model)");
  c->add_option("--api-key-env", o->api_key_env, "Environment variable holding a bearer token for --endpoint")->capture_default_str();
  c->add_option("--concurrency", o->concurrency, "Parallel requests to --endpoint")->capture_default_str();
  c->add_option("--max-retries", o->max_retries, "Retries per request on connection errors, HTTP 429 and 5xx (exponential backoff)")->capture_default_str();
  c->add_option("--request-timeout", o->timeout_s, "Seconds per HTTP request")->capture_default_str();
  c->add_option("--bos-text", o->bos_text,
                 "Start text prepended to whole-text scoring over --endpoint: auto (none when the "
                 "server's /tokenize shows it adds BOS itself, else <|endoftext|>), or the text; "
                 "native checkpoints follow their tokenizer_config.json add_bos_token")
      ->capture_default_str();
  c->add_option("--threads", o->threads, "CPU threads of the native engine (0 = default)")->capture_default_str();
  c->add_option("--batch-size", o->batch_size, "Sequences per native scoring forward")->capture_default_str();
  c->add_option("--device", o->device,
                "Where native models run: auto (a GPU when this build has CUDA and one is "
                "visible, else the CPU), cpu, cuda or cuda:N")
      ->capture_default_str();
  c->add_option("--db", o->db, "SQLite results database: rows are stored there and identical evals are served from it");
  c->add_flag("--force", o->force, "Recompute even when the results database has this eval");
  c->add_option("--seed", o->seed, "Eval seed (permutation test); part of the cache key")->capture_default_str();
  c->add_option("--limit", o->limit, "Only the first N documents / items of each set (0 = all)")->capture_default_str();
  c->add_option("--output", o->output, "Write the lm-eval style results JSON here (default with ASSAY_OUTPUT_DIR: <dir>/results_<suite>.json)");
  c->add_option("--data-dir", o->data_dir, "Directory that relative gsm8k data paths resolve against (default: $ASSAY_EVALS_DATA, else " + ev::default_data_dir() + ")");
  // gsm8k
  c->add_option("--predictions", o->predictions, "gsm8k: score this JSONL of precomputed responses instead of generating");
  c->add_option("--pred-field", o->pred_field, "gsm8k: field holding the response; a nested list such as lm-eval's resps [[text]] uses its first element")->capture_default_str();
  c->add_option("--ref-field", o->ref_field, "gsm8k: field holding the reference answer (text ending in '#### N', or just N)")->capture_default_str();
  c->add_flag("--refs-from-test", o->refs_from_test, "gsm8k: references from the test split: line i (or field doc_id) is doc i");
  c->add_option("--samples", o->samples, "gsm8k: write per-item responses, filtered answers and scores (JSONL)");
  c->add_option("--filter", o->filters, "gsm8k: filter(s) to report: strict-match, flexible-extract, none (repeatable)");
  c->add_option("--num-fewshot", o->num_fewshot, "gsm8k: few-shot examples per prompt (default: the spec's)");
  c->add_option("--fewshot-seed", o->fewshot_seed, "gsm8k: seed of the Python-compatible shot sampler (default: the spec's)");
  c->add_option("--max-gen-toks", o->max_gen_toks, "gsm8k: most new tokens per generation (default: the spec's)");
  c->add_option("--gen-kwargs", o->gen_kwargs,
                "gsm8k, preference, diversity: generation settings in lm-eval's --gen_kwargs syntax, e.g. "
                "temperature=0.7,top_p=0.9,top_k=50,seed=1,max_gen_toks=64 (default: greedy for gsm8k, "
                "temperature 1 for the diversity samples); part of the cache key");
  // ood
  c->add_option("--base", o->base, "ood: native checkpoint of the model before finetuning");
  c->add_option("--id", o->id_file, "ood: in-distribution texts (JSONL text or question/answer, or plain lines)");
  c->add_option("--ood", o->ood_file, "ood: out-of-distribution texts");
  c->add_option("--variant", o->variant, "ood: text (NLR/LR on whole texts) or qa (S_{a|q}); default: the spec's");
  // provenance
  c->add_option("--reference", o->reference, "provenance: native checkpoint independent of the training order; preference: the reference model of the implicit reward (the policy before alignment)");
  c->add_option("--transcript", o->transcript, "provenance: training transcript JSONL (example_id, order); default: the run's artifact in --db, or transcript.jsonl beside the checkpoint directory");
  c->add_option("--data", o->data, "provenance: data files holding the transcript's examples (default: train_config.json beside the transcript); preference: held-out pairs (prompt/chosen/rejected JSONL, as `assay data prefs` writes); diversity: prompts (JSONL prompt, question or text)");
  c->add_option("--permutations", o->permutations, "provenance: permutations of the exact test (default: the spec's)");
  c->add_option("--alpha", o->alpha, "provenance: significance level of the verdict (default: the spec's)");
  c->add_option("--window", o->window,
                "provenance: only the last K examples of the transcript by last position, where the "
                "order signal concentrates (0 = all; default: the spec's, 0)")
      ->check(CLI::NonNegativeNumber);
  c->add_option("--alternative", o->alternative,
                "provenance: alternative hypothesis of every p-value, for rho = Spearman(order, "
                "NLL_test - NLL_ref) as scipy's spearmanr names it: less (rho < 0, the paper's: "
                "recently seen examples have the lower NLL), greater or two-sided (default: the spec's, less)")
      ->check(CLI::IsMember({"less", "greater", "two-sided"}));
  // unlearning
  c->add_option("--forget", o->forget, "unlearning: forget set (JSONL question/answer)");
  c->add_option("--retain", o->retain, "unlearning: retain set");
  c->add_option("--holdout", o->holdout, "unlearning: holdout set (never trained on)");
  c->add_option("--retain-model", o->retain_model, "unlearning: native checkpoint trained on retain only (PrivLeak, forget quality)");
  c->add_option("--perturbed", o->perturbed, "unlearning: JSONL question, paraphrased_answer, perturbed_answers (truth ratio, forget quality)");
}

void add_eval(CLI::App& app) {
  auto o = std::make_shared<ev::EvalOptions>();
  auto* c = app.add_subcommand("eval", "Run an eval suite (gsm8k, ood, provenance, unlearning, preference, diversity) on a model");
  add_options(c, o);
  c->footer(
      "\nThe model is a native checkpoint (--model-path), an OpenAI-compatible server (--endpoint,\n"
      "--model; `assay serve CKPT` is one), or for gsm8k a predictions file (--predictions).\n"
      "With --db, rows (suite, metric, filter, value, stderr, n, suite version, checkpoint hash,\n"
      "run id from ASSAY_RUN_ID) are stored; an eval with the same checkpoint, suite, version and\n"
      "seed is served from the database. The version recorded is the spec's plus a digest of the\n"
      "inputs (data files, settings, other models), e.g. 3.0+1a2b3c4d. Under a worker, a line\n"
      "{\"step\": 0, \"metrics\": {\"<suite>/<metric>,<filter>\": v}} goes to ASSAY_METRICS_FD.\n\n"
      "Examples:\n"
      "  assay eval gsm8k --model-path runs/sft/final --limit 50 --db results.db --output gsm8k.json\n"
      "  assay eval gsm8k --predictions preds.jsonl --pred-field response --ref-field answer\n"
      "  assay eval gsm8k --endpoint http://127.0.0.1:8000/v1 --model my-model --limit 100\n"
      "  assay eval ood --model-path runs/sft/final --base runs/teacher/final --id id.jsonl --ood weather.jsonl\n"
      "  assay eval provenance --model-path runs/sft/final --reference runs/other/final --db results.db\n"
      "  assay eval unlearning --model-path runs/npo/final --forget forget.jsonl --retain retain.jsonl \\\n"
      "      --holdout holdout.jsonl --retain-model runs/retain/final\n"
      "  assay eval preference --model-path runs/dpo/final --reference runs/sft/final --data heldout_prefs.jsonl \\\n"
      "      --gen-kwargs temperature=1.0,seed=1 --db results.db\n"
      "Provenance rows: spearman_rho; p_t, p_perm, p_perm_floor (= 1/(permutations+1), the smallest\n"
      "p_perm can be), p_exact (all orderings enumerated, n <= 10), p_value (the verdict's: p_exact, else\n"
      "p_perm, else when every permutation was beaten min(floor, p_t)) and derived, each with the\n"
      "alternative as its filter. A sweep's eval hook can test against another run's transcript with\n"
      "args {\"transcript_from\": \"<run name or id>\"} (coordinator/API.md, Eval hooks).\n"
      "  assay eval provenance --model-path runs/b/final --reference runs/r/final \\\n"
      "      --transcript runs/a/transcript.jsonl --window 200 --alternative less\n"
      "Preference options (beta, samples_per_prompt, diversity_prompts) are the suite spec's \"options\";\n"
      "copy evals/suites/preference.json and pass its path as SUITE to change them.");
  c->callback([o] { set_exit_code(run(*o)); });
}

}  // namespace

ASSAY_REGISTER_COMMAND(60, add_eval);
