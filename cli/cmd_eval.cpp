// assay eval SUITE: runs a suite spec (shipped name or path) against a native
// checkpoint, an OpenAI-compatible endpoint, or (gsm8k) a predictions file;
// stores rows in SQLite, serves identical evals from it, writes an lm-eval
// style results JSON and reports metrics through the run metric protocol.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "assay/engine.h"
#include "assay/evals_gsm8k.h"
#include "assay/evals_http.h"
#include "assay/evals_native.h"
#include "assay/evals_results.h"
#include "assay/hash.h"
#include "registry.h"

namespace {

namespace ev = assay::evals;
namespace fs = std::filesystem;
using assay::Result;
using assay::Status;
using assay::cli::set_exit_code;
using json = nlohmann::json;

struct EvalOpts {
  std::string suite;
  // Backends.
  std::string model_path, endpoint, model, api_key_env = "OPENAI_API_KEY", checkpoint_hash;
  std::string bos_text = "<|endoftext|>";
  int concurrency = 4, max_retries = 5, threads = 0, batch_size = 16;
  std::string device = "auto";
  double timeout_s = 600;
  // Predictions (gsm8k).
  std::string predictions, pred_field = "response", ref_field = "answer";
  bool refs_from_test = false;
  // Results.
  std::string db, output, samples, data_dir;
  int64_t limit = 0, seed = 0;
  bool force = false;
  // gsm8k overrides.
  std::vector<std::string> filters;
  int num_fewshot = -1, max_gen_toks = -1;
  int64_t fewshot_seed = -1;
  // ood.
  std::string base, id_file, ood_file, variant;
  // provenance.
  std::string reference, transcript;
  std::vector<std::string> data;
  int64_t permutations = 0;
  double alpha = 0;
  // unlearning.
  std::string forget, retain, holdout, retain_model, perturbed;
};

// Everything one eval run carries around.
struct Ctx {
  EvalOpts o;
  assay::schemas::SuiteSpec spec;
  std::string spec_dir, prefix;
  std::unique_ptr<assay::store::Store> db;
  ev::EvalIdentity id;
  json inputs = json::object();
  std::string backend_desc;
};

int fail(const Ctx& c, const std::string& m, int code = 1) {
  std::cerr << c.prefix << m << "\n";
  return code;
}

// Progress on stderr, at most every 2 s plus the last step.
ev::NativeOptions native_options(const Ctx& c) {
  ev::NativeOptions n;
  n.batch_size = c.o.batch_size;
  n.device = c.o.device;
  auto last = std::make_shared<std::chrono::steady_clock::time_point>();
  const std::string suite = c.id.suite;
  n.progress = [suite, last](const char* what, int64_t done, int64_t total) {
    auto now = std::chrono::steady_clock::now();
    if (done < total && now - *last < std::chrono::seconds(2)) return;
    *last = now;
    std::fprintf(stderr, "%s: %s %lld/%lld (%d%%)\n", suite.c_str(), what, (long long)done,
                 (long long)total, total ? static_cast<int>(100 * done / total) : 100);
  };
  return n;
}

Result<std::unique_ptr<ev::NativeBackend>> load_native(const Ctx& c, const std::string& dir) {
  std::fprintf(stderr, "%s: loading %s\n", c.id.suite.c_str(), dir.c_str());
  return ev::load_native_backend(dir, native_options(c));
}

Result<std::unique_ptr<ev::Backend>> main_backend(const Ctx& c) {
  if (!c.o.model_path.empty()) {
    ASSAY_ASSIGN_OR_RETURN(auto b, load_native(c, c.o.model_path));
    return std::unique_ptr<ev::Backend>(std::move(b));
  }
  ev::HttpBackendOptions ho;
  ho.base_url = c.o.endpoint;
  ho.model = c.o.model;
  ho.concurrency = c.o.concurrency;
  ho.max_retries = c.o.max_retries;
  ho.timeout_s = c.o.timeout_s;
  ho.bos_text = c.o.bos_text;
  if (const char* key = std::getenv(c.o.api_key_env.c_str())) ho.api_key = key;
  ASSAY_ASSIGN_OR_RETURN(auto b, ev::make_http_backend(ho));
  return std::unique_ptr<ev::Backend>(std::move(b));
}

Result<std::string> file_digest(const std::string& path) {
  auto h = assay::sha256_file(path);
  if (!h.ok()) return h.status().with_context("data file " + path);
  return *h;
}

// Spec data role, overridden by a flag; resolved against the spec directory.
std::string data_path(const Ctx& c, const std::string& flag, const std::string& role) {
  if (!flag.empty()) return flag;
  auto it = c.spec.data.find(role);
  return it == c.spec.data.end() ? "" : ev::resolve_data_path(it->second, c.spec_dir);
}

Status add_file_input(Ctx& c, const std::string& key, const std::string& path) {
  if (path.empty()) return Status::Ok();
  ASSAY_ASSIGN_OR_RETURN(std::string h, file_digest(path));
  c.inputs[key] = h;
  return Status::Ok();
}

Result<std::vector<ev::TextItem>> load_items(const Ctx& c, const std::string& path,
                                             const char* what) {
  if (path.empty())
    return Status::Invalid(std::string("the ") + what + " data file is required (--" + what +
                           " FILE, or data." + what + " in the suite spec)");
  ASSAY_ASSIGN_OR_RETURN(auto items, ev::load_text_items(path));
  if (c.o.limit > 0 && static_cast<int64_t>(items.size()) > c.o.limit)
    items.resize(static_cast<size_t>(c.o.limit));
  return items;
}

void print_rows(const std::string& suite, const std::string& version,
                const std::vector<ev::ResultRow>& rows) {
  std::printf("%s (%s)\n", suite.c_str(), version.c_str());
  for (const auto& r : rows) {
    std::printf("  %-28s %-18s %.6g", r.metric.c_str(), r.filter.c_str(), r.value);
    if (r.stderr_) std::printf(" ± %.4g", *r.stderr_);
    std::printf("  (n=%lld)\n", (long long)r.n);
  }
}


Status write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Status::IoError(path + ": cannot write");
  out << text;
  out.close();
  if (!out) return Status::IoError(path + ": write failed");
  return Status::Ok();
}

// ---------------------------------------------------------------- gsm8k

// lm-eval sample files nest responses as [[text]]; take the first leaf.
const json* first_leaf(const json& v) {
  const json* p = &v;
  while (p->is_array() && !p->empty()) p = &(*p)[0];
  return p;
}

Status read_predictions(const EvalOpts& o, const std::vector<ev::Gsm8kDoc>* test,
                        std::vector<std::string>* preds, std::vector<std::string>* refs) {
  std::ifstream in(o.predictions);
  if (!in) return Status::IoError(o.predictions + ": cannot open predictions file");
  std::string line;
  int64_t lineno = 0, index = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (o.limit > 0 && index >= o.limit) break;
    const std::string where = o.predictions + ":" + std::to_string(lineno);
    auto j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return Status::Corruption(where + ": not a JSON object");
    if (!j.contains(o.pred_field))
      return Status::Invalid(where + ": missing prediction field \"" + o.pred_field +
                             "\" (set --pred-field)");
    const json* p = first_leaf(j[o.pred_field]);
    if (!p->is_string())
      return Status::Invalid(where + ": field \"" + o.pred_field + "\" must be a string, got " +
                             p->dump());
    preds->push_back(p->get<std::string>());
    if (test) {
      int64_t doc = index;
      if (j.contains("doc_id") && j["doc_id"].is_number_integer()) doc = j["doc_id"].get<int64_t>();
      if (doc < 0 || doc >= static_cast<int64_t>(test->size()))
        return Status::Invalid(where + ": doc " + std::to_string(doc) +
                               " is outside the GSM8K test split (0.." +
                               std::to_string(test->size() - 1) + ")");
      refs->push_back((*test)[doc].answer);
    } else {
      if (!j.contains(o.ref_field))
        return Status::Invalid(where + ": missing reference field \"" + o.ref_field +
                               "\" (set --ref-field, or --refs-from-test)");
      const json* r = first_leaf(j[o.ref_field]);
      refs->push_back(r->is_string() ? r->get<std::string>() : r->dump());
    }
    ++index;
  }
  if (preds->empty()) return Status::Invalid(o.predictions + ": no predictions");
  return Status::Ok();
}

ev::Gsm8kConfig gsm8k_config(const Ctx& c) {
  ev::Gsm8kConfig cfg;
  cfg.num_fewshot = c.o.num_fewshot >= 0 ? c.o.num_fewshot : c.spec.num_fewshot;
  cfg.fewshot_seed = static_cast<uint64_t>(c.o.fewshot_seed >= 0 ? c.o.fewshot_seed : c.spec.fewshot_seed);
  cfg.max_gen_toks = c.o.max_gen_toks > 0 ? c.o.max_gen_toks : c.spec.max_gen_tokens;
  if (!c.spec.stop.empty()) cfg.stop = c.spec.stop;
  if (!c.o.filters.empty()) cfg.filters = c.o.filters;
  else if (!c.spec.filters.empty()) cfg.filters = c.spec.filters;
  if (c.o.limit > 0) cfg.limit = c.o.limit;
  else if (c.spec.limit) cfg.limit = *c.spec.limit;
  return cfg;
}

std::string gsm8k_file(const Ctx& c, const std::string& role, const char* fallback) {
  auto it = c.spec.data.find(role);
  const std::string rel = it == c.spec.data.end() ? fallback : it->second;
  if (!c.o.data_dir.empty() && !fs::path(rel).is_absolute()) return (fs::path(c.o.data_dir) / rel).string();
  return ev::resolve_data_path(rel, c.spec_dir);
}

Status prepare_gsm8k(Ctx& c) {
  const ev::Gsm8kConfig cfg = gsm8k_config(c);
  for (const auto& f : cfg.filters)
    if (f != "strict-match" && f != "flexible-extract" && f != "none")
      return Status::Invalid("--filter: expected strict-match, flexible-extract or none, got \"" + f + "\"");
  c.inputs["config"] = {{"num_fewshot", cfg.num_fewshot}, {"fewshot_seed", cfg.fewshot_seed},
                        {"max_gen_toks", cfg.max_gen_toks}, {"stop", cfg.stop},
                        {"filters", cfg.filters}, {"limit", cfg.limit ? json(*cfg.limit) : json()}};
  if (!c.o.predictions.empty()) {
    c.inputs["pred_field"] = c.o.pred_field;
    c.inputs["ref_field"] = c.o.refs_from_test ? "test-split" : c.o.ref_field;
    if (c.o.refs_from_test) ASSAY_RETURN_IF_ERROR(add_file_input(c, "test", gsm8k_file(c, "test", "gsm8k/test.jsonl")));
    return Status::Ok();
  }
  ASSAY_RETURN_IF_ERROR(add_file_input(c, "test", gsm8k_file(c, "test", "gsm8k/test.jsonl")));
  ASSAY_RETURN_IF_ERROR(add_file_input(c, "fewshot", gsm8k_file(c, "fewshot", "gsm8k/train.jsonl")));
  return Status::Ok();
}

Result<json> run_gsm8k(Ctx& c, std::vector<ev::ResultRow>* rows) {
  const ev::Gsm8kConfig cfg = gsm8k_config(c);
  auto load = [&](const char* role, const char* fb) {
    return ev::load_gsm8k_jsonl(gsm8k_file(c, role, fb));
  };
  Result<ev::Gsm8kReport> report = Status::Internal("unset");
  if (!c.o.predictions.empty()) {
    std::vector<ev::Gsm8kDoc> test;
    if (c.o.refs_from_test) {
      ASSAY_ASSIGN_OR_RETURN(test, load("test", "gsm8k/test.jsonl"));
    }
    std::vector<std::string> preds, refs;
    ASSAY_RETURN_IF_ERROR(read_predictions(c.o, c.o.refs_from_test ? &test : nullptr, &preds, &refs));
    report = ev::score_gsm8k(preds, refs, cfg);
  } else {
    ASSAY_ASSIGN_OR_RETURN(auto test, load("test", "gsm8k/test.jsonl"));
    ASSAY_ASSIGN_OR_RETURN(auto train, load("fewshot", "gsm8k/train.jsonl"));
    ASSAY_ASSIGN_OR_RETURN(auto backend, main_backend(c));
    c.backend_desc = backend->describe();
    report = ev::run_gsm8k(*backend, test, train, cfg);
  }
  if (!report.ok()) return report.status();
  std::printf("gsm8k (v%s, %d-shot, n=%zu)\n", c.spec.version.c_str(), cfg.num_fewshot,
              report->samples.size());
  for (const auto& [filter, m] : report->exact_match)
    std::printf("  exact_match  %-17s %.4f ± %.4f\n", filter.c_str(), m.mean, m.stderr_);
  if (!c.o.samples.empty()) {
    ASSAY_RETURN_IF_ERROR(write_file(c.o.samples, ev::gsm8k_samples_jsonl(*report)));
    std::cerr << c.prefix << "wrote per-item samples to " << c.o.samples << "\n";
  }
  *rows = report->rows;
  // Rows carry the suite's name (a custom spec may rename it).
  for (auto& r : *rows) r.suite = c.id.suite;
  return report->results;
}

// ------------------------------------------------------------------ ood

std::string ood_variant(const Ctx& c) {
  if (!c.o.variant.empty()) return c.o.variant;
  if (c.spec.options.contains("variant") && c.spec.options["variant"].is_string())
    return c.spec.options["variant"].get<std::string>();
  return "text";
}

Status prepare_ood(Ctx& c) {
  if (c.o.base.empty()) return Status::Invalid("--base CKPT (the model before finetuning) is required");
  ASSAY_ASSIGN_OR_RETURN(c.inputs["base"], assay::engine::checkpoint_hash(c.o.base));
  ASSAY_RETURN_IF_ERROR(add_file_input(c, "id", data_path(c, c.o.id_file, "id")));
  ASSAY_RETURN_IF_ERROR(add_file_input(c, "ood", data_path(c, c.o.ood_file, "ood")));
  c.inputs["variant"] = ood_variant(c);
  c.inputs["limit"] = c.o.limit;
  return Status::Ok();
}

Result<json> run_ood(Ctx& c, std::vector<ev::ResultRow>* rows) {
  ASSAY_ASSIGN_OR_RETURN(auto id_items, load_items(c, data_path(c, c.o.id_file, "id"), "id"));
  ASSAY_ASSIGN_OR_RETURN(auto ood_items, load_items(c, data_path(c, c.o.ood_file, "ood"), "ood"));
  ASSAY_ASSIGN_OR_RETURN(auto base, load_native(c, c.o.base));
  ASSAY_ASSIGN_OR_RETURN(auto ft, main_backend(c));
  c.backend_desc = ft->describe() + " base=" + base->describe();
  ev::OodSuiteOptions oo;
  oo.variant = ood_variant(c);
  ASSAY_ASSIGN_OR_RETURN(*rows, ev::run_ood_suite(*base, *ft, id_items, ood_items, oo, c.id.suite));
  return json();
}

// ----------------------------------------------------------- provenance

// The transcript: --transcript; else an artifact of kind 'transcript' of the
// run that produced the checkpoint (DB); else transcript.jsonl next to the
// checkpoint directory.
Result<std::string> find_transcript(Ctx& c) {
  if (!c.o.transcript.empty()) return c.o.transcript;
  if (c.db) {
    ASSAY_ASSIGN_OR_RETURN(auto art, c.db->find_artifact(c.id.checkpoint_hash));
    if (art && art->run_id) {
      ASSAY_ASSIGN_OR_RETURN(auto arts, c.db->artifacts(*art->run_id));
      for (const auto& a : arts)
        if (a.kind == "transcript") return a.path;
    }
  }
  if (!c.o.model_path.empty()) {
    fs::path p = fs::path(c.o.model_path).lexically_normal();
    if (p.filename().empty()) p = p.parent_path();
    const fs::path t = p.parent_path() / "transcript.jsonl";
    std::error_code ec;
    if (fs::exists(t, ec)) return t.string();
  }
  return Status::NotFound("no training transcript: pass --transcript FILE, or --db with a "
                          "'transcript' artifact of the run that produced the checkpoint, or keep "
                          "transcript.jsonl next to the checkpoint directory");
}

// Training data: --data; else data.train of the spec; else data.train of the
// train_config.json beside the transcript (paths as given, else relative to
// the transcript's directory and its parents).
Result<std::vector<std::string>> find_train_data(const Ctx& c, const std::string& transcript) {
  if (!c.o.data.empty()) return c.o.data;
  if (c.spec.data.count("train")) return std::vector<std::string>{data_path(c, "", "train")};
  const fs::path dir = fs::path(transcript).parent_path();
  const fs::path cfg = dir / "train_config.json";
  std::ifstream in(cfg);
  if (!in)
    return Status::NotFound("no training data: pass --data FILE (the examples named in " +
                            transcript + ")");
  json j = json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.contains("data") || !j["data"].contains("train"))
    return Status::Invalid(cfg.string() + ": expected data.train; pass --data FILE");
  std::vector<std::string> raw;
  const json& t = j["data"]["train"];
  if (t.is_string()) raw.push_back(t.get<std::string>());
  else for (const auto& e : t) if (e.is_string()) raw.push_back(e.get<std::string>());
  std::vector<std::string> out;
  for (const auto& r : raw) {
    std::error_code ec;
    std::string found;
    if (fs::path(r).is_absolute() || fs::exists(r, ec)) found = r;
    for (fs::path d = dir; found.empty() && !d.empty() && d != d.parent_path(); d = d.parent_path())
      if (fs::exists(d / r, ec)) found = (d / r).string();
    if (found.empty())
      return Status::NotFound(cfg.string() + ": training data " + r + " not found; pass --data FILE");
    out.push_back(found);
  }
  return out;
}

int64_t spec_int(const Ctx& c, const char* key, int64_t flag, int64_t def) {
  if (flag > 0) return flag;
  if (c.spec.options.contains(key) && c.spec.options[key].is_number_integer())
    return c.spec.options[key].get<int64_t>();
  return def;
}

double spec_double(const Ctx& c, const char* key, double flag, double def) {
  if (flag > 0) return flag;
  if (c.spec.options.contains(key) && c.spec.options[key].is_number()) return c.spec.options[key].get<double>();
  return def;
}

Status prepare_provenance(Ctx& c) {
  if (c.o.reference.empty())
    return Status::Invalid("--reference CKPT (a model independent of the training order) is required");
  ASSAY_ASSIGN_OR_RETURN(c.inputs["reference"], assay::engine::checkpoint_hash(c.o.reference));
  ASSAY_ASSIGN_OR_RETURN(std::string transcript, find_transcript(c));
  ASSAY_ASSIGN_OR_RETURN(auto data, find_train_data(c, transcript));
  c.o.transcript = transcript;
  c.o.data = data;
  ASSAY_RETURN_IF_ERROR(add_file_input(c, "transcript", transcript));
  for (size_t i = 0; i < data.size(); ++i)
    ASSAY_RETURN_IF_ERROR(add_file_input(c, "data" + std::to_string(i), data[i]));
  c.inputs["permutations"] = spec_int(c, "permutations", c.o.permutations, 1000);
  c.inputs["alpha"] = spec_double(c, "alpha", c.o.alpha, 0.01);
  c.inputs["limit"] = c.o.limit;
  return Status::Ok();
}

Result<json> run_provenance(Ctx& c, std::vector<ev::ResultRow>* rows) {
  std::fprintf(stderr, "%s: transcript %s\n", c.id.suite.c_str(), c.o.transcript.c_str());
  ASSAY_ASSIGN_OR_RETURN(auto transcript, ev::read_transcript_jsonl(c.o.transcript, "example_id", "order"));
  std::vector<ev::TextItem> items;
  for (const auto& d : c.o.data) {
    ASSAY_ASSIGN_OR_RETURN(auto part, ev::load_text_items(d));
    items.insert(items.end(), part.begin(), part.end());
  }
  if (c.o.limit > 0) {
    auto order = ev::last_occurrence_order(transcript);
    if (static_cast<int64_t>(order.size()) > c.o.limit) order.resize(static_cast<size_t>(c.o.limit));
    transcript = order;
  }
  ASSAY_ASSIGN_OR_RETURN(auto ref, load_native(c, c.o.reference));
  ASSAY_ASSIGN_OR_RETURN(auto test, main_backend(c));
  c.backend_desc = test->describe() + " reference=" + ref->describe();
  ev::ProvenanceSuiteOptions po;
  po.permutations = c.inputs["permutations"].get<int64_t>();
  po.alpha = c.inputs["alpha"].get<double>();
  po.seed = static_cast<uint64_t>(c.o.seed);
  ASSAY_ASSIGN_OR_RETURN(auto r, ev::run_provenance_suite(*test, *ref, transcript, items, po, c.id.suite));
  std::printf("provenance: rho = %.4f, p_t = %.3g, p_perm = %.3g (%lld permutations): %s at alpha %g\n",
              r.rho, r.p_t, r.p_perm, (long long)r.permutations,
              r.derived ? "DERIVED from the transcript's run" : "no evidence of derivation", r.alpha);
  *rows = r.rows;
  return json();
}

// ----------------------------------------------------------- unlearning

Status prepare_unlearning(Ctx& c) {
  for (const char* role : {"forget", "retain", "holdout"}) {
    const std::string flag = std::string(role) == "forget" ? c.o.forget
                             : std::string(role) == "retain" ? c.o.retain : c.o.holdout;
    const std::string p = data_path(c, flag, role);
    if (p.empty()) return Status::Invalid(std::string("--") + role + " FILE is required");
    ASSAY_RETURN_IF_ERROR(add_file_input(c, role, p));
  }
  ASSAY_RETURN_IF_ERROR(add_file_input(c, "perturbed", data_path(c, c.o.perturbed, "perturbed")));
  if (!c.o.retain_model.empty()) {
    ASSAY_ASSIGN_OR_RETURN(c.inputs["retain_model"], assay::engine::checkpoint_hash(c.o.retain_model));
  }
  c.inputs["min_k"] = spec_double(c, "min_k", 0, 0.4);
  c.inputs["limit"] = c.o.limit;
  return Status::Ok();
}

Result<json> run_unlearning(Ctx& c, std::vector<ev::ResultRow>* rows) {
  ASSAY_ASSIGN_OR_RETURN(auto forget, load_items(c, data_path(c, c.o.forget, "forget"), "forget"));
  ASSAY_ASSIGN_OR_RETURN(auto retain, load_items(c, data_path(c, c.o.retain, "retain"), "retain"));
  ASSAY_ASSIGN_OR_RETURN(auto holdout, load_items(c, data_path(c, c.o.holdout, "holdout"), "holdout"));
  std::vector<ev::PerturbedItem> perturbed;
  if (const std::string p = data_path(c, c.o.perturbed, "perturbed"); !p.empty()) {
    ASSAY_ASSIGN_OR_RETURN(perturbed, ev::load_perturbed(p));
  }
  std::unique_ptr<ev::NativeBackend> retain_model;
  if (!c.o.retain_model.empty()) {
    ASSAY_ASSIGN_OR_RETURN(retain_model, load_native(c, c.o.retain_model));
  }
  ASSAY_ASSIGN_OR_RETURN(auto model, main_backend(c));
  c.backend_desc = model->describe();
  ev::UnlearningSuiteOptions uo;
  uo.min_k = c.inputs["min_k"].get<double>();
  ASSAY_ASSIGN_OR_RETURN(auto r, ev::run_unlearning_suite(*model, retain_model.get(), forget, retain,
                                                         holdout, perturbed, uo, c.id.suite));
  *rows = r.rows;
  return json();
}

// ----------------------------------------------------------------- flow

Result<std::string> model_identity(const EvalOpts& o) {
  if (!o.model_path.empty()) return assay::engine::checkpoint_hash(o.model_path);
  if (!o.predictions.empty()) {
    ASSAY_ASSIGN_OR_RETURN(std::string h, file_digest(o.predictions));
    return "predictions:" + h;
  }
  if (!o.checkpoint_hash.empty()) return o.checkpoint_hash;
  return "endpoint:" + o.endpoint + "#" + o.model;
}

Status finish(Ctx& c, const std::vector<ev::ResultRow>& rows, json doc, bool cached) {
  if (doc.is_null() || !doc.is_object()) {
    doc = ev::results_document(c.spec, c.id, rows, c.backend_desc, cached);
  } else {
    doc["assay"] = ev::results_document(c.spec, c.id, rows, c.backend_desc, cached)["assay"];
  }
  if (c.db && !cached) {
    std::string note;
    ASSAY_RETURN_IF_ERROR(ev::record_results(*c.db, c.id, rows, &note));
    if (!note.empty()) std::cerr << c.prefix << note << "\n";
    std::cerr << c.prefix << "stored " << rows.size() << " rows in " << c.o.db << "\n";
  }
  std::string out = c.o.output;
  if (out.empty())
    if (const char* d = std::getenv("ASSAY_OUTPUT_DIR"); d && *d)
      out = (fs::path(d) / ("results_" + c.id.suite + ".json")).string();
  if (!out.empty()) {
    ASSAY_RETURN_IF_ERROR(write_file(out, doc.dump(2) + "\n"));
    std::cerr << c.prefix << "wrote results to " << out << "\n";
    if (c.db && c.id.run_id) {
      Status st = ev::record_results_artifact(*c.db, *c.id.run_id, out, c.id);
      if (!st.ok()) std::cerr << c.prefix << "results artifact not recorded: " << st.message() << "\n";
    }
  }
  if (const char* fd = std::getenv("ASSAY_METRICS_FD"); fd && *fd) {
    char* end = nullptr;
    long v = std::strtol(fd, &end, 10);
    if (*end != '\0' || v < 0) return Status::Invalid("ASSAY_METRICS_FD: expected a descriptor number, got \"" + std::string(fd) + "\"");
    ASSAY_RETURN_IF_ERROR(ev::write_metric_line(static_cast<int>(v), ev::metric_line(c.id.suite, rows)));
  }
  return Status::Ok();
}

int run(const EvalOpts& opts) {
  Ctx c;
  c.o = opts;
  c.prefix = "assay eval " + opts.suite + ": ";
  auto spec = ev::find_suite_spec(opts.suite, &c.spec_dir);
  if (!spec.ok()) return fail(c, spec.status().message(), spec.status().code() == assay::Code::kNotFound ? 2 : 1);
  c.spec = std::move(spec).value();
  c.id.suite = c.spec.name;
  const EvalOpts& o = c.o;
  const int modes = !o.predictions.empty() + !o.endpoint.empty() + !o.model_path.empty();
  if (modes != 1)
    return fail(c, c.spec.task == "gsm8k" ? "choose exactly one of --predictions, --endpoint or --model-path"
                                          : "choose exactly one of --model-path or --endpoint", 2);
  if (!o.predictions.empty() && c.spec.task != "gsm8k")
    return fail(c, "--predictions applies to the gsm8k task only", 2);
  if (!o.endpoint.empty() && o.model.empty()) return fail(c, "--endpoint needs --model NAME", 2);
  if (o.threads > 0) assay::engine::set_num_threads(o.threads);
  auto ident = model_identity(o);
  if (!ident.ok()) return fail(c, ident.status().message());
  c.id.checkpoint_hash = *ident;
  c.id.seed = o.seed;
  if (const char* r = std::getenv("ASSAY_RUN_ID"); r && *r) {
    char* end = nullptr;
    long long v = std::strtoll(r, &end, 10);
    if (*end != '\0' || v <= 0) return fail(c, "ASSAY_RUN_ID: expected a run id, got \"" + std::string(r) + "\"");
    c.id.run_id = v;
  }
  if (!o.db.empty()) {
    auto db = assay::store::Store::open(o.db);
    if (!db.ok()) return fail(c, db.status().message());
    c.db = std::move(db).value();
  }
  Status st = c.spec.task == "gsm8k"        ? prepare_gsm8k(c)
              : c.spec.task == "ood"        ? prepare_ood(c)
              : c.spec.task == "provenance" ? prepare_provenance(c)
                                            : prepare_unlearning(c);
  if (!st.ok()) return fail(c, st.message(), st.code() == assay::Code::kInvalidArgument ? 2 : 1);
  c.inputs["backend"] = o.model_path.empty() ? json{{"bos_text", o.bos_text}} : json("native");
  c.id.suite_version = ev::versioned(c.spec.version, c.inputs);
  if (c.db && !o.force) {
    auto hit = ev::cached_results(*c.db, c.id);
    if (!hit.ok()) return fail(c, hit.status().message());
    if (*hit) {
      std::fprintf(stderr, "%scached: checkpoint %s, suite %s, version %s, seed %lld already in %s "
                   "(--force recomputes)\n", c.prefix.c_str(), c.id.checkpoint_hash.substr(0, 16).c_str(),
                   c.id.suite.c_str(), c.id.suite_version.c_str(), (long long)c.id.seed, o.db.c_str());
      std::printf("cached results\n");
      print_rows(c.id.suite, c.id.suite_version, **hit);
      c.backend_desc = "cached";
      st = finish(c, **hit, json(), true);
      return st.ok() ? 0 : fail(c, st.message());
    }
  }
  std::vector<ev::ResultRow> rows;
  auto doc = c.spec.task == "gsm8k"        ? run_gsm8k(c, &rows)
             : c.spec.task == "ood"        ? run_ood(c, &rows)
             : c.spec.task == "provenance" ? run_provenance(c, &rows)
                                           : run_unlearning(c, &rows);
  if (!doc.ok()) return fail(c, doc.status().message());
  for (auto& r : rows) r.suite_version = c.id.suite_version;
  if (c.spec.task != "gsm8k") print_rows(c.id.suite, c.id.suite_version, rows);
  st = finish(c, rows, *doc, false);
  return st.ok() ? 0 : fail(c, st.message());
}

void add_options(CLI::App* c, const std::shared_ptr<EvalOpts>& o) {
  c->add_option("suite", o->suite,
                "Suite: a shipped name (gsm8k, ood, provenance, unlearning; specs in " +
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
  c->add_option("--bos-text", o->bos_text, "Start text prepended to whole-text scoring over --endpoint (native models use their BOS token)")->capture_default_str();
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
  // ood
  c->add_option("--base", o->base, "ood: native checkpoint of the model before finetuning");
  c->add_option("--id", o->id_file, "ood: in-distribution texts (JSONL text or question/answer, or plain lines)");
  c->add_option("--ood", o->ood_file, "ood: out-of-distribution texts");
  c->add_option("--variant", o->variant, "ood: text (NLR/LR on whole texts) or qa (S_{a|q}); default: the spec's");
  // provenance
  c->add_option("--reference", o->reference, "provenance: native checkpoint independent of the training order");
  c->add_option("--transcript", o->transcript, "provenance: training transcript JSONL (example_id, order); default: the run's artifact in --db, or transcript.jsonl beside the checkpoint directory");
  c->add_option("--data", o->data, "provenance: data files holding the transcript's examples (default: train_config.json beside the transcript)");
  c->add_option("--permutations", o->permutations, "provenance: permutations of the exact test (default: the spec's)");
  c->add_option("--alpha", o->alpha, "provenance: significance level of the verdict (default: the spec's)");
  // unlearning
  c->add_option("--forget", o->forget, "unlearning: forget set (JSONL question/answer)");
  c->add_option("--retain", o->retain, "unlearning: retain set");
  c->add_option("--holdout", o->holdout, "unlearning: holdout set (never trained on)");
  c->add_option("--retain-model", o->retain_model, "unlearning: native checkpoint trained on retain only (PrivLeak, forget quality)");
  c->add_option("--perturbed", o->perturbed, "unlearning: JSONL question, paraphrased_answer, perturbed_answers (truth ratio, forget quality)");
}

void add_eval(CLI::App& app) {
  auto o = std::make_shared<EvalOpts>();
  auto* c = app.add_subcommand("eval", "Run an eval suite (gsm8k, ood, provenance, unlearning) on a model");
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
      "      --holdout holdout.jsonl --retain-model runs/retain/final");
  c->callback([o] { set_exit_code(run(*o)); });
}

}  // namespace

ASSAY_REGISTER_COMMAND(60, add_eval);
