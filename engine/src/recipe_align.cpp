// align: preference optimisation (DPO family x f-divergence) on
// prompt/chosen/rejected JSONL. The reference model is a frozen copy of the
// init checkpoint; its completion log-probs are computed once per pair and
// cached.
#include <optional>

#include "assay/objectives.h"
#include "train_internal.h"

namespace assay::train::detail {

namespace {

Status read_pref_objective(Cfg& root, obj::PrefOptions& p) {
  ASSAY_ASSIGN_OR_RETURN(Cfg o, root.object("objective"));
  std::string loss = "sigmoid", div = "reverse_kl";
  ASSAY_RETURN_IF_ERROR(o.string("loss", loss, {"sigmoid", "ipo", "hinge", "robust"}));
  ASSAY_RETURN_IF_ERROR(o.string("divergence", div, {"reverse_kl", "forward_kl", "js", "alpha"}));
  p.loss = obj::parse_pref_loss(loss).value();
  p.div = obj::parse_fdivergence(div).value();
  ASSAY_RETURN_IF_ERROR(o.number("beta", p.beta, 0, 1e6, true));
  ASSAY_RETURN_IF_ERROR(o.number("robust_eps", p.robust_eps, 0, 0.5));
  if (p.robust_eps >= 0.5) return o.error("robust_eps", "a number in [0, 0.5)");
  ASSAY_RETURN_IF_ERROR(o.number("alpha", p.alpha, 0, 1, true));
  if (p.alpha >= 1) return o.error("alpha", "a number in (0, 1)");
  ASSAY_RETURN_IF_ERROR(o.number("max_log_ratio", p.max_log_ratio, 0, obj::kMaxLogRatioLimit, true));
  return o.finish();
}

// Summed completion log-probs of a batch laid out [chosen_1..P, rejected_1..P].
Result<obj::SeqLogProbs> batch_logprobs(engine::GPT& m, const Batch& b, int V) {
  ASSAY_ASSIGN_OR_RETURN(auto logits, forward(m, b));
  return obj::sequence_logprobs({logits.data(), b.B, b.T, V}, b.y, b.mask);
}

}  // namespace

Result<RunSummary> recipe_align(Cfg& root, const std::string& text, const RunEnv& env) {
  CommonConfig c;
  obj::PrefOptions po;
  std::string train_path;
  ASSAY_RETURN_IF_ERROR(read_common(root, c, /*init_required=*/true));
  ASSAY_RETURN_IF_ERROR(root.required("data"));
  ASSAY_ASSIGN_OR_RETURN(Cfg data, root.object("data"));
  ASSAY_RETURN_IF_ERROR(data.required("train"));
  ASSAY_RETURN_IF_ERROR(data.string("train", train_path));
  ASSAY_RETURN_IF_ERROR(data.finish());
  ASSAY_RETURN_IF_ERROR(read_pref_objective(root, po));
  ASSAY_RETURN_IF_ERROR(root.finish());

  ASSAY_ASSIGN_OR_RETURN(auto run, start_run("align", c, text, env));
  engine::GPT ref = run->model.clone(engine::Mode::kFrozen);
  run->meta_extra["reference"] = run->parent_hash;
  run->meta_extra["objective"] = std::string(obj::pref_loss_name(po.loss)) + "/" + obj::fdivergence_name(po.div);
  ASSAY_ASSIGN_OR_RETURN(auto pairs, load_prefs(train_path, *run->tok));
  run->reporter->note(std::to_string(pairs.size()) + " preference pairs from " + train_path + ", loss " +
                      obj::pref_loss_name(po.loss) + ", divergence " + obj::fdivergence_name(po.div));
  // Each pair becomes two sequences sharing the prompt.
  std::vector<Seq> chosen(pairs.size()), rejected(pairs.size());
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    chosen[i] = {pairs[i].id, pairs[i].prompt, pairs[i].chosen};
    rejected[i] = {pairs[i].id, pairs[i].prompt, pairs[i].rejected};
  }
  std::vector<std::optional<std::pair<double, double>>> ref_cache(pairs.size());
  const int V = run->model.config().vocab_size;
  auto build = [&](const std::vector<std::size_t>& idx) {
    std::vector<const Seq*> seqs;
    for (std::size_t i : idx) seqs.push_back(&chosen[i]);
    for (std::size_t i : idx) seqs.push_back(&rejected[i]);
    return make_batch(seqs, c.seq_len, run->tok->bos_id(), run->tok->eos_id(), /*mask_prompt=*/true);
  };
  Sampler sampler(pairs.size(), c.data_seed);
  run->samplers = {&sampler};  // its position goes into checkpoints (resume)
  // Clamping is reported as the mean clamped fraction over the steps since
  // the previous metric line, so a clamp between log steps is not hidden.
  bool warned_clamp = false;
  double clamp_sum = 0;
  int64_t clamp_steps = 0;
  std::vector<float> dlogits;

  auto step_fn = [&](int64_t step) -> Result<StepOut> {
    const auto idx = sampler.next(c.batch_size);
    const int P = static_cast<int>(idx.size());
    for (std::size_t i : idx) run->transcript.record(step, pairs[i].id);
    // Reference log-probs for pairs not seen before (all of them in epoch 1,
    // so the reference then sees exactly the policy's batch).
    std::vector<std::size_t> missing;
    for (std::size_t i : idx)
      if (!ref_cache[i] && std::find(missing.begin(), missing.end(), i) == missing.end()) missing.push_back(i);
    if (!missing.empty()) {
      ASSAY_ASSIGN_OR_RETURN(auto rl, batch_logprobs(ref, build(missing), V));
      const std::size_t M = missing.size();
      for (std::size_t k = 0; k < M; ++k) ref_cache[missing[k]] = std::make_pair(rl.logp[k], rl.logp[M + k]);
    }
    Batch b = build(idx);
    ASSAY_ASSIGN_OR_RETURN(auto plogits, policy_forward(*run, b));
    ASSAY_ASSIGN_OR_RETURN(auto lp, obj::sequence_logprobs({plogits.data(), b.B, b.T, V}, b.y, b.mask));
    std::vector<obj::PrefPair> pp(static_cast<std::size_t>(P));
    for (int k = 0; k < P; ++k) {
      const auto& r = *ref_cache[idx[static_cast<std::size_t>(k)]];
      pp[static_cast<std::size_t>(k)] = {lp.logp[k], lp.logp[P + k], r.first, r.second,
                                         std::max(1.0, lp.n_tokens[k]), std::max(1.0, lp.n_tokens[P + k])};
    }
    ASSAY_ASSIGN_OR_RETURN(auto pr, obj::preference_loss(pp, po));
    std::vector<double> coef(pr.c_w);
    coef.insert(coef.end(), pr.c_l.begin(), pr.c_l.end());
    const obj::Logits z{plogits.data(), b.B, b.T, V};
    dlogits.resize(z.size());
    ASSAY_RETURN_IF_ERROR(obj::sequence_logprobs_backward(z, b.y, b.mask, coef, {dlogits.data()}));
    ASSAY_RETURN_IF_ERROR(policy_backward(*run, dlogits.data()));
    StepOut out;
    out.loss = pr.loss;
    out.tokens = b.tokens;
    out.extra = {{"reward_chosen", pr.reward_chosen}, {"reward_rejected", pr.reward_rejected},
                 {"margin", pr.margin}, {"accuracy", pr.accuracy}, {"chosen_logratio", pr.chosen_logratio},
                 {"clamped_frac", 0.0}};
    clamp_sum += pr.clamped_frac;
    ++clamp_steps;
    if (is_log_step(c, step)) {
      out.extra["clamped_frac"] = clamp_sum / static_cast<double>(clamp_steps);
      clamp_sum = 0;
      clamp_steps = 0;
    }
    if (pr.clamped_frac > 0 && !warned_clamp) {
      warned_clamp = true;
      run->reporter->note("warning: step " + std::to_string(step) + ": " + obj::fdivergence_name(po.div) +
                          " score clamped for " + std::to_string(pr.clamped_frac) +
                          " of the completions (log-ratio below -max_log_ratio = -" +
                          std::to_string(po.max_log_ratio) + "); see clamped_frac in the metrics");
    }
    return out;
  };
  return train_loop(*run, step_fn);
}

}  // namespace assay::train::detail
