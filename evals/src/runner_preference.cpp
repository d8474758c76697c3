// The preference and diversity runners. preference: implicit reward and
// likelihood displacement of a policy (--model-path) against a reference
// (--reference) on held-out chosen/rejected pairs (--data FILE or
// data.pairs), plus diversity rows of sampled generations when
// options.samples_per_prompt > 0. diversity: the diversity rows alone, on
// the prompts of --data FILE or data.prompts.
// Options (spec "options"): beta (0.1), samples_per_prompt, diversity_prompts
// (0 = every distinct prompt). Generation: the spec's max_gen_tokens and stop,
// overridden by --gen-kwargs (max_gen_toks, until); sampling at temperature 1
// unless --gen-kwargs sets temperature or do_sample; sample j of prompt i is
// seeded from (seed, i, j) with seed = --gen-kwargs seed, else --seed.
#include "assay/engine.h"
#include "assay/evals_preference.h"
#include "runner_internal.h"

namespace assay::evals {

namespace {

using json = nlohmann::json;

std::vector<std::string> data_files(const EvalContext& c, const char* role) {
  if (!c.o.data.empty()) return c.o.data;
  const std::string p = data_path(c, "", role);
  return p.empty() ? std::vector<std::string>{} : std::vector<std::string>{p};
}

DiversityOptions diversity_options(const EvalContext& c) {
  DiversityOptions d;
  d.max_gen_toks = c.spec.max_gen_tokens;
  d.stop = c.spec.stop;
  d.seed = static_cast<uint64_t>(c.o.seed);
  d.sampling.temperature = 1.0;
  if (c.gen_kwargs) {
    const GenKwargs& g = *c.gen_kwargs;
    bool chose = false;
    for (const auto& [k, v] : g.given) chose = chose || k == "temperature" || k == "do_sample";
    d.sampling = g.sampling;
    if (!chose) d.sampling.temperature = 1.0;
    if (g.max_gen_toks) d.max_gen_toks = *g.max_gen_toks;
    if (g.until) d.stop = *g.until;
  }
  d.samples_per_prompt = static_cast<int>(option_int(c, "samples_per_prompt", 0, 0));
  return d;
}

json generation_json(const DiversityOptions& d) {
  return {{"samples_per_prompt", d.samples_per_prompt}, {"max_gen_toks", d.max_gen_toks},
          {"until", d.stop}, {"temperature", d.sampling.temperature}, {"top_p", d.sampling.top_p},
          {"top_k", d.sampling.top_k},
          {"seed", d.sampling.seed ? json(*d.sampling.seed) : json(d.seed)}};
}

Status add_files(EvalContext& c, const std::vector<std::string>& files, const char* role) {
  if (files.empty())
    return Status::Invalid(std::string("the ") + role + " data file is required (--data FILE, or data." +
                           role + " in the suite spec)");
  for (size_t i = 0; i < files.size(); ++i)
    ASSAY_RETURN_IF_ERROR(add_file_input(c, std::string(role) + std::to_string(i), files[i]));
  return Status::Ok();
}

Status check_generation(const DiversityOptions& d, bool needed) {
  if (!needed) return Status::Ok();
  if (d.samples_per_prompt < 1)
    return Status::Invalid("options.samples_per_prompt must be >= 1, got " +
                           std::to_string(d.samples_per_prompt));
  if (d.max_gen_toks < 1)
    return Status::Invalid("max_gen_toks must be >= 1, got " + std::to_string(d.max_gen_toks));
  return Status::Ok();
}

void note_greedy(const EvalContext& c, const DiversityOptions& d) {
  if (d.sampling.greedy() && d.samples_per_prompt > 1)
    c.log("warning: greedy decoding gives every sample of a prompt the same text");
}

}  // namespace

Status prepare_preference(EvalContext& c) {
  if (c.o.reference.empty())
    return Status::Invalid("--reference CKPT (the model the policy was trained from) is required");
  ASSAY_ASSIGN_OR_RETURN(c.inputs["reference"], engine::checkpoint_hash(c.o.reference));
  const auto files = data_files(c, "pairs");
  ASSAY_RETURN_IF_ERROR(add_files(c, files, "pairs"));
  const double beta = option_double(c, "beta", 0, PreferenceSuiteOptions{}.beta);
  if (!(beta > 0)) return Status::Invalid("options.beta must be > 0, got " + std::to_string(beta));
  const DiversityOptions d = diversity_options(c);
  ASSAY_RETURN_IF_ERROR(check_generation(d, d.samples_per_prompt != 0));
  const int64_t dprompts = option_int(c, "diversity_prompts", 0, 0);
  c.inputs["beta"] = beta;
  c.inputs["limit"] = c.o.limit;
  if (d.samples_per_prompt > 0) {
    c.inputs["generation"] = generation_json(d);
    c.inputs["diversity_prompts"] = dprompts;
  }
  c.task_config = {{"options", {{"beta", beta}, {"samples_per_prompt", d.samples_per_prompt},
                                {"diversity_prompts", dprompts}}},
                   {"reference", c.o.reference},
                   {"data", {{"pairs", files}}}};
  if (d.samples_per_prompt > 0) c.task_config["generation_kwargs"] = generation_json(d);
  return Status::Ok();
}

Result<TaskOutput> run_preference_task(EvalContext& c) {
  std::vector<PrefPair> pairs;
  for (const auto& f : data_files(c, "pairs")) {
    ASSAY_ASSIGN_OR_RETURN(auto part, load_pref_pairs(f));
    pairs.insert(pairs.end(), part.begin(), part.end());
  }
  const int64_t n_original = static_cast<int64_t>(pairs.size());
  if (c.o.limit > 0 && n_original > c.o.limit) pairs.resize(static_cast<size_t>(c.o.limit));
  ASSAY_ASSIGN_OR_RETURN(auto ref, load_native(c, c.o.reference));
  ASSAY_ASSIGN_OR_RETURN(auto policy, main_backend(c));
  c.backend_desc = policy->describe() + " reference=" + ref->describe();
  PreferenceSuiteOptions po;
  po.beta = c.inputs["beta"].get<double>();
  po.diversity = diversity_options(c);
  po.samples_per_prompt = po.diversity.samples_per_prompt;
  po.diversity_prompts = option_int(c, "diversity_prompts", 0, 0);
  if (po.samples_per_prompt > 0) note_greedy(c, po.diversity);
  TaskOutput out;
  ASSAY_ASSIGN_OR_RETURN(out.rows, run_preference_suite(*policy, *ref, pairs, po, c.id.suite));
  out.n_original = n_original;
  return out;
}

Status prepare_diversity(EvalContext& c) {
  const auto files = data_files(c, "prompts");
  ASSAY_RETURN_IF_ERROR(add_files(c, files, "prompts"));
  DiversityOptions d = diversity_options(c);
  if (d.samples_per_prompt == 0) d.samples_per_prompt = 4;
  ASSAY_RETURN_IF_ERROR(check_generation(d, true));
  c.inputs["generation"] = generation_json(d);
  c.inputs["limit"] = c.o.limit;
  c.task_config = {{"options", {{"samples_per_prompt", d.samples_per_prompt}}},
                   {"generation_kwargs", generation_json(d)},
                   {"data", {{"prompts", files}}}};
  return Status::Ok();
}

Result<TaskOutput> run_diversity_task(EvalContext& c) {
  std::vector<std::string> prompts;
  for (const auto& f : data_files(c, "prompts")) {
    ASSAY_ASSIGN_OR_RETURN(auto part, load_prompts(f));
    prompts.insert(prompts.end(), part.begin(), part.end());
  }
  const int64_t n_original = static_cast<int64_t>(prompts.size());
  if (c.o.limit > 0 && n_original > c.o.limit) prompts.resize(static_cast<size_t>(c.o.limit));
  ASSAY_ASSIGN_OR_RETURN(auto policy, main_backend(c));
  c.backend_desc = policy->describe();
  DiversityOptions d = diversity_options(c);
  if (d.samples_per_prompt == 0) d.samples_per_prompt = 4;
  note_greedy(c, d);
  ASSAY_ASSIGN_OR_RETURN(auto gens, sample_for_diversity(*policy, prompts, d));
  TaskOutput out;
  ASSAY_ASSIGN_OR_RETURN(out.rows, diversity_report(gens, c.id.suite));
  out.n_original = n_original;
  return out;
}

}  // namespace assay::evals
