// run_eval: the flow around the suite runners (see evals_runner.h and
// runner_internal.h): spec, identity, cache, task, records and files.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "assay/engine.h"
#include "assay/evals_http.h"
#include "assay/evals_report.h"
#include "assay/hash.h"
#include "runner_internal.h"

namespace assay::evals {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Bumped whenever Assay's scoring of a checkpoint changes its numbers (2: the
// checkpoint's add_bos_token is honoured), so older cached rows are not served.
constexpr int kScoringConvention = 2;

const SuiteRunner kRunners[] = {
    {"gsm8k", prepare_gsm8k, run_gsm8k_task},
    {"ood", prepare_ood, run_ood_task},
    {"provenance", prepare_provenance, run_provenance_task},
    {"unlearning", prepare_unlearning, run_unlearning_task},
    {"preference", prepare_preference, run_preference_task},
    {"diversity", prepare_diversity, run_diversity_task},
};

// Tasks that generate, so that --gen-kwargs applies to them.
bool generates(const std::string& task) {
  return task == "gsm8k" || task == "preference" || task == "diversity";
}

Result<const SuiteRunner*> runner_for(const schemas::SuiteSpec& spec) {
  for (const SuiteRunner& r : kRunners)
    if (spec.task == r.task) return &r;
  std::string known;
  for (const auto& t : eval_tasks()) known += (known.empty() ? "" : ", ") + t;
  return Status::Invalid("suite \"" + spec.name + "\": task \"" + spec.task +
                         "\" has no runner (known: " + known + ")");
}

Result<std::string> model_identity(const EvalOptions& o) {
  if (!o.model_path.empty()) return engine::checkpoint_hash(o.model_path);
  if (!o.predictions.empty()) {
    auto h = sha256_file(o.predictions);
    if (!h.ok()) return h.status().with_context("predictions file " + o.predictions);
    return "predictions:" + *h;
  }
  if (!o.checkpoint_hash.empty()) return o.checkpoint_hash;
  return "endpoint:" + o.endpoint + "#" + o.model;
}

Status check_modes(const EvalContext& c) {
  const EvalOptions& o = c.o;
  const int modes = !o.predictions.empty() + !o.endpoint.empty() + !o.model_path.empty();
  if (modes != 1)
    return Status::Invalid(c.spec.task == "gsm8k"
                               ? "choose exactly one of --predictions, --endpoint or --model-path"
                               : "choose exactly one of --model-path or --endpoint");
  if (!o.predictions.empty() && c.spec.task != "gsm8k")
    return Status::Invalid("--predictions applies to the gsm8k task only");
  if (!o.endpoint.empty() && o.model.empty()) return Status::Invalid("--endpoint needs --model NAME");
  return Status::Ok();
}

// The backend's part of the cache key. Over HTTP, "auto" BOS is resolved
// first (one probe of the server), so servers that add BOS themselves and
// servers that do not get different rows.
Result<json> backend_input(const EvalContext& c) {
  if (!c.o.model_path.empty()) return json("native");
  if (c.o.endpoint.empty()) return json("predictions");
  std::string bos = c.o.bos_text;
  if (bos == kAutoBosText) {
    ASSAY_ASSIGN_OR_RETURN(auto probe, main_backend(c));
    bos = static_cast<HttpBackend&>(*probe).resolved_bos_text();
  }
  return json{{"bos_text", bos}};
}

// What the model is, for the results document's config block.
json run_config(const EvalContext& c) {
  const EvalOptions& o = c.o;
  json cfg;
  if (!o.model_path.empty()) {
    cfg["model"] = "assay-native";
    cfg["model_args"] = "pretrained=" + o.model_path + ",device=" + o.device;
    cfg["batch_size"] = o.batch_size;
    cfg["device"] = o.device;
  } else if (!o.endpoint.empty()) {
    cfg["model"] = "local-completions";
    cfg["model_args"] = "base_url=" + o.endpoint + "/completions,model=" + o.model +
                        ",num_concurrent=" + std::to_string(o.concurrency);
    cfg["batch_size"] = 1;
    cfg["device"] = nullptr;
  } else {
    cfg["model"] = "predictions";
    cfg["model_args"] = "path=" + o.predictions;
    cfg["batch_size"] = nullptr;
    cfg["device"] = nullptr;
  }
  cfg["limit"] = o.limit > 0 ? json(o.limit) : json(nullptr);
  cfg["gen_kwargs"] = c.gen_kwargs ? gen_kwargs_json(*c.gen_kwargs) : json(nullptr);
  cfg["random_seed"] = o.seed;
  return cfg;
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

Status finish(EvalContext& c, const std::vector<ResultRow>& rows, const TaskOutput* task,
              bool cached) {
  ReportContext rc;
  rc.spec = &c.spec;
  rc.id = &c.id;
  rc.rows = &rows;
  rc.backend = cached ? "cached" : c.backend_desc;
  rc.cached = cached;
  rc.task_config = c.task_config;
  rc.run_config = run_config(c);
  rc.start_time = c.start_time;
  rc.total_seconds = unix_now() - c.start_time;
  if (task) {
    rc.n_original = task->n_original;
    rc.task_hash = task->task_hash;
  }
  const json doc = results_document(rc);
  if (c.db && !cached) {
    std::string note;
    ASSAY_RETURN_IF_ERROR(record_results(*c.db, c.id, rows, &note));
    if (!note.empty()) c.log(note);
    c.log("stored " + std::to_string(rows.size()) + " rows in " + c.o.db);
  }
  std::string out = c.o.output;
  if (out.empty() && !c.o.output_dir.empty())
    out = (fs::path(c.o.output_dir) / ("results_" + c.id.suite + ".json")).string();
  if (!out.empty()) {
    ASSAY_RETURN_IF_ERROR(write_text_file(out, doc.dump(2) + "\n"));
    c.log("wrote results to " + out);
    if (c.db && c.id.run_id) {
      Status st = record_results_artifact(*c.db, *c.id.run_id, out, c.id);
      if (!st.ok()) c.log("results artifact not recorded: " + st.message());
    }
  }
  if (c.o.metrics_fd >= 0)
    ASSAY_RETURN_IF_ERROR(write_metric_line(c.o.metrics_fd, metric_line(c.id, rows)));
  return Status::Ok();
}

}  // namespace

std::vector<std::string> eval_tasks() {
  std::vector<std::string> out;
  for (const SuiteRunner& r : kRunners) out.push_back(r.task);
  return out;
}

namespace {

// Setup: everything before a model is loaded. Fills c and the outcome's identity.
Status setup(EvalContext& c, const SuiteRunner** runner) {
  c.start_time = unix_now();
  ASSAY_ASSIGN_OR_RETURN(c.spec, find_suite_spec(c.o.suite, &c.spec_dir));
  c.id.suite = c.spec.name;
  ASSAY_ASSIGN_OR_RETURN(*runner, runner_for(c.spec));
  ASSAY_RETURN_IF_ERROR(check_modes(c));
  if (!c.o.gen_kwargs.empty()) {
    if (!generates(c.spec.task))
      return Status::Invalid("--gen-kwargs applies to generation suites (gsm8k, preference, "
                             "diversity), not task \"" +
                             c.spec.task + "\"");
    auto g = parse_gen_kwargs(c.o.gen_kwargs);
    if (!g.ok()) return g.status().with_context("--gen-kwargs");
    c.gen_kwargs = std::move(*g);
  }
  if (c.o.threads > 0) engine::set_num_threads(c.o.threads);
  ASSAY_ASSIGN_OR_RETURN(c.id.checkpoint_hash, model_identity(c.o));
  c.id.seed = c.o.seed;
  c.id.run_id = c.o.run_id;
  if (!c.o.db.empty()) {
    ASSAY_ASSIGN_OR_RETURN(c.db, store::Store::open(c.o.db));
  }
  ASSAY_RETURN_IF_ERROR((*runner)->prepare(c));
  ASSAY_ASSIGN_OR_RETURN(c.inputs["backend"], backend_input(c));
  c.inputs["scoring"] = kScoringConvention;
  c.id.suite_version = versioned(c.spec.version, c.inputs);
  return Status::Ok();
}

Result<EvalOutcome> run_stage(EvalContext& c, const SuiteRunner& runner) {
  EvalOutcome out;
  out.suite = c.id.suite;
  out.suite_version = c.id.suite_version;
  out.checkpoint_hash = c.id.checkpoint_hash;
  if (c.db && !c.o.force) {
    ASSAY_ASSIGN_OR_RETURN(auto hit, cached_results(*c.db, c.id));
    if (hit) {
      c.log("cached: checkpoint " + c.id.checkpoint_hash.substr(0, 16) + ", suite " + c.id.suite +
            ", version " + c.id.suite_version + ", seed " + std::to_string(c.id.seed) +
            " already in " + c.o.db + " (--force recomputes)");
      ASSAY_RETURN_IF_ERROR(finish(c, *hit, nullptr, true));
      out.cached = true;
      out.rows = std::move(*hit);
      return out;
    }
  }
  ASSAY_ASSIGN_OR_RETURN(TaskOutput t, runner.run(c));
  for (auto& r : t.rows) {
    r.suite = c.id.suite;
    r.suite_version = c.id.suite_version;
  }
  ASSAY_RETURN_IF_ERROR(finish(c, t.rows, &t, false));
  out.rows = std::move(t.rows);
  return out;
}

}  // namespace

Result<EvalOutcome> run_eval(const EvalOptions& opts, EvalStage* failed_in) {
  EvalContext c;
  c.o = opts;
  const SuiteRunner* runner = nullptr;
  if (Status st = setup(c, &runner); !st.ok()) {
    if (failed_in) *failed_in = EvalStage::kSetup;
    return st;
  }
  auto out = run_stage(c, *runner);
  if (!out.ok() && failed_in) *failed_in = EvalStage::kRun;
  return out;
}

// ---- helpers -------------------------------------------------------------------

Result<std::unique_ptr<NativeBackend>> load_native(const EvalContext& c, const std::string& dir) {
  c.log("loading " + dir);
  NativeOptions n;
  n.batch_size = c.o.batch_size;
  n.device = c.o.device;
  // Progress at most every 2 s, plus the last step.
  auto last = std::make_shared<std::chrono::steady_clock::time_point>();
  auto log = c.o.log;
  const std::string suite = c.id.suite;
  n.progress = [log, suite, last](const char* what, int64_t done, int64_t total) {
    auto now = std::chrono::steady_clock::now();
    if (!log || (done < total && now - *last < std::chrono::seconds(2))) return;
    *last = now;
    log(std::string(what) + " " + std::to_string(done) + "/" + std::to_string(total) + " (" +
        std::to_string(total ? 100 * done / total : 100) + "%)");
  };
  // Truncated prompts and similar notes reach the person, once per model.
  if (log) n.warn = [log](const std::string& m) { log("warning: " + m); };
  return load_native_backend(dir, n);
}

Result<std::unique_ptr<Backend>> main_backend(const EvalContext& c) {
  if (!c.o.model_path.empty()) {
    ASSAY_ASSIGN_OR_RETURN(auto b, load_native(c, c.o.model_path));
    return std::unique_ptr<Backend>(std::move(b));
  }
  HttpBackendOptions ho;
  ho.base_url = c.o.endpoint;
  ho.model = c.o.model;
  ho.concurrency = c.o.concurrency;
  ho.max_retries = c.o.max_retries;
  ho.timeout_s = c.o.timeout_s;
  ho.bos_text = c.o.bos_text;
  if (const char* key = std::getenv(c.o.api_key_env.c_str())) ho.api_key = key;
  ASSAY_ASSIGN_OR_RETURN(auto b, make_http_backend(ho));
  return std::unique_ptr<Backend>(std::move(b));
}

std::string data_path(const EvalContext& c, const std::string& flag, const std::string& role) {
  if (!flag.empty()) return flag;
  auto it = c.spec.data.find(role);
  return it == c.spec.data.end() ? "" : resolve_data_path(it->second, c.spec_dir);
}

Status add_file_input(EvalContext& c, const std::string& key, const std::string& path) {
  if (path.empty()) return Status::Ok();
  auto h = sha256_file(path);
  if (!h.ok()) return h.status().with_context("data file " + path);
  c.inputs[key] = *h;
  return Status::Ok();
}

Result<std::vector<TextItem>> load_items(const EvalContext& c, const std::string& path,
                                         const char* what) {
  if (path.empty())
    return Status::Invalid(std::string("the ") + what + " data file is required (--" + what +
                           " FILE, or data." + what + " in the suite spec)");
  ASSAY_ASSIGN_OR_RETURN(auto items, load_text_items(path));
  if (c.o.limit > 0 && static_cast<int64_t>(items.size()) > c.o.limit)
    items.resize(static_cast<size_t>(c.o.limit));
  return items;
}

int64_t option_int(const EvalContext& c, const char* key, int64_t flag, int64_t def) {
  if (flag > 0) return flag;
  const json& o = c.spec.options;
  if (o.contains(key) && o[key].is_number_integer()) return o[key].get<int64_t>();
  return def;
}

double option_double(const EvalContext& c, const char* key, double flag, double def) {
  if (flag > 0) return flag;
  const json& o = c.spec.options;
  if (o.contains(key) && o[key].is_number()) return o[key].get<double>();
  return def;
}

Status write_text_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Status::IoError(path + ": cannot write");
  out << text;
  out.close();
  if (!out) return Status::IoError(path + ": write failed");
  return Status::Ok();
}

}  // namespace assay::evals
