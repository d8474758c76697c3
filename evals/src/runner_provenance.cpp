// The provenance runner: Spearman correlation between the training order of
// a transcript's examples and the test model's NLL gap to a reference model,
// with a permutation test. Options (spec "options", overridden by flags):
// permutations, alpha, window (last K examples; 0 = all) and alternative
// (less | greater | two-sided, of every p-value); all are in the cache key.
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "assay/json_limits.h"
#include "assay/engine.h"
#include "assay/evals_scores.h"
#include "assay/evals_tasks.h"
#include "runner_internal.h"

namespace assay::evals {

namespace {

namespace fs = std::filesystem;

std::string fmt_g(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3g", v);
  return b;
}

// The transcript: --transcript; else an artifact of kind 'transcript' of the
// run that produced the checkpoint (DB); else transcript.jsonl next to the
// checkpoint directory.
Result<std::string> find_transcript(const EvalContext& c) {
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
Result<std::vector<std::string>> find_train_data(const EvalContext& c, const std::string& transcript) {
  if (!c.o.data.empty()) return c.o.data;
  if (c.spec.data.count("train")) return std::vector<std::string>{data_path(c, "", "train")};
  const fs::path dir = fs::path(transcript).parent_path();
  const fs::path cfg = dir / "train_config.json";
  std::ifstream in(cfg);
  if (!in)
    return Status::NotFound("no training data: pass --data FILE (the examples named in " +
                            transcript + ")");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto parsed = parse_json(text, cfg.string());
  if (!parsed.ok()) return Status::Invalid(parsed.status().message() + "; pass --data FILE");
  const nlohmann::json& j = *parsed;
  if (!j.is_object() || !j.contains("data") || !j["data"].is_object() || !j["data"].contains("train"))
    return Status::Invalid(cfg.string() + ": expected data.train; pass --data FILE");
  std::vector<std::string> raw;
  const nlohmann::json& t = j["data"]["train"];
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

// The log line of a result: rho, the p-values under the alternative, and
// which p the verdict read (see ProvenanceResult::p_value).
std::string verdict_text(const ProvenanceResult& r) {
  const char* source = r.p_exact                ? "exact enumeration"
                       : r.p_value == r.p_perm  ? "permutations"
                                                : "t approximation: every permutation was beaten";
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "rho = %.4f (n = %lld), alternative %s: p_t = %.3g, p_perm = %.3g (%lld "
                "permutations, floor %.3g)%s%s, p = %.3g (%s): %s at alpha %g",
                r.rho, (long long)r.n, to_string(r.alternative), r.p_t, r.p_perm,
                (long long)r.permutations, r.p_perm_floor, r.p_exact ? ", p_exact = " : "",
                r.p_exact ? fmt_g(*r.p_exact).c_str() : "", r.p_value, source,
                r.derived ? "DERIVED from the transcript's run" : "no evidence of derivation",
                r.alpha);
  return buf;
}

// --window: the flag when given (>= 0), else spec options.window, else 0.
Result<int64_t> window_option(const EvalContext& c) {
  int64_t w = ProvenanceSuiteOptions{}.window;
  if (c.o.window >= 0) {
    w = c.o.window;
  } else if (c.spec.options.contains("window")) {
    const nlohmann::json& v = c.spec.options["window"];
    if (!v.is_number_integer() || v.get<int64_t>() < 0)
      return Status::Invalid("suite spec options.window: expected an integer >= 0 (0 = all "
                             "examples), got " + v.dump());
    w = v.get<int64_t>();
  }
  if (w == 1 || w == 2)
    return Status::Invalid("--window " + std::to_string(w) +
                           ": the Spearman test needs at least 3 examples (0 = all)");
  return w;
}

// --alternative: the flag when given, else spec options.alternative, else "less".
Result<Alternative> alternative_option(const EvalContext& c) {
  std::string a = to_string(ProvenanceSuiteOptions{}.alternative);
  if (!c.o.alternative.empty()) {
    a = c.o.alternative;
  } else if (c.spec.options.contains("alternative")) {
    const nlohmann::json& v = c.spec.options["alternative"];
    if (!v.is_string())
      return Status::Invalid("suite spec options.alternative: expected \"less\", \"greater\" or "
                             "\"two-sided\", got " + v.dump());
    a = v.get<std::string>();
  }
  auto parsed = parse_alternative(a);
  if (!parsed.ok()) return parsed.status().with_context("--alternative");
  return *parsed;
}

}  // namespace

Status prepare_provenance(EvalContext& c) {
  if (c.o.reference.empty())
    return Status::Invalid("--reference CKPT (a model independent of the training order) is required");
  ASSAY_ASSIGN_OR_RETURN(c.inputs["reference"], engine::checkpoint_hash(c.o.reference));
  ASSAY_ASSIGN_OR_RETURN(std::string transcript, find_transcript(c));
  ASSAY_ASSIGN_OR_RETURN(auto data, find_train_data(c, transcript));
  c.o.transcript = transcript;
  c.o.data = data;
  ASSAY_RETURN_IF_ERROR(add_file_input(c, "transcript", transcript));
  for (size_t i = 0; i < data.size(); ++i)
    ASSAY_RETURN_IF_ERROR(add_file_input(c, "data" + std::to_string(i), data[i]));
  // Defaults: ProvenanceSuiteOptions, overridden by the spec, then the flags.
  const ProvenanceSuiteOptions defaults;
  const int64_t permutations = option_int(c, "permutations", c.o.permutations, defaults.permutations);
  const double alpha = option_double(c, "alpha", c.o.alpha, defaults.alpha);
  if (alpha <= 0 || alpha >= 1)
    return Status::Invalid("--alpha must be in (0, 1), got " + std::to_string(alpha));
  ASSAY_ASSIGN_OR_RETURN(const int64_t window, window_option(c));
  ASSAY_ASSIGN_OR_RETURN(const Alternative alternative, alternative_option(c));
  c.inputs["permutations"] = permutations;
  c.inputs["alpha"] = alpha;
  c.inputs["limit"] = c.o.limit;
  c.inputs["window"] = window;
  c.inputs["alternative"] = to_string(alternative);
  c.task_config = {{"options", {{"permutations", permutations},
                                {"alpha", alpha},
                                {"window", window},
                                {"alternative", to_string(alternative)}}},
                   {"reference", c.o.reference},
                   {"transcript", transcript},
                   {"data", {{"train", data}}}};
  return Status::Ok();
}

Result<TaskOutput> run_provenance_task(EvalContext& c) {
  c.log("transcript " + c.o.transcript);
  ASSAY_ASSIGN_OR_RETURN(auto transcript, read_transcript_jsonl(c.o.transcript, "example_id", "order"));
  std::vector<TextItem> items;
  for (const auto& d : c.o.data) {
    ASSAY_ASSIGN_OR_RETURN(auto part, load_text_items(d));
    items.insert(items.end(), part.begin(), part.end());
  }
  ASSAY_ASSIGN_OR_RETURN(auto ref, load_native(c, c.o.reference));
  ASSAY_ASSIGN_OR_RETURN(auto test, main_backend(c));
  c.backend_desc = test->describe() + " reference=" + ref->describe();
  ProvenanceSuiteOptions po;
  po.permutations = c.inputs["permutations"].get<int64_t>();
  po.alpha = c.inputs["alpha"].get<double>();
  po.seed = static_cast<uint64_t>(c.o.seed);
  po.limit = c.o.limit;
  po.window = c.inputs["window"].get<int64_t>();
  ASSAY_ASSIGN_OR_RETURN(po.alternative, parse_alternative(c.inputs["alternative"].get<std::string>()));
  if (po.window > 0) c.log("window: the last " + std::to_string(po.window) + " examples by last position");
  ASSAY_ASSIGN_OR_RETURN(auto r, run_provenance_suite(*test, *ref, transcript, items, po, c.id.suite));
  c.log(verdict_text(r));
  return TaskOutput{std::move(r.rows), nullptr};
}

}  // namespace assay::evals
