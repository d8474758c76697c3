// unlearn: remove the forget split while keeping the retain split.
// loss = forget_weight * forget_term + retain_weight * retain_term, with
//   ga        forget_term = -NLL(forget)                 (no retain term)
//   graddiff  forget_term = -NLL(forget),   retain_term = NLL(retain)
//   kl        forget_term = -NLL(forget),   retain_term = KL(p_ref || q) on retain
//   npo       forget_term = NPO(beta) vs the frozen init, retain_term = NLL(retain)
//   simnpo    forget_term = SimNPO(beta, delta),          retain_term = NLL(retain)
//   loku      forget_term = IHL(forget) on LoRA adapters,  retain_term = NLL(retain)
//             (recipe_loku.cpp: adapters, FILA init, PEFT files)
// NLL terms are means over completion tokens (the answer, prompt masked).
// retain_loss (retain NLL) is logged for every method when data.retain is
// given: from the trained retain batch when retain_weight > 0, otherwise
// (ga, or retain_weight 0) from a retain batch scored without gradient at
// each metric line; such batches are not trained on and not in the transcript.
#include <algorithm>
#include <optional>

#include "assay/objectives.h"
#include "train_internal.h"

namespace assay::train::detail {

Result<Cfg> read_unlearn_data(Cfg& root, std::string* forget, std::string* retain,
                              std::string* holdout) {
  ASSAY_RETURN_IF_ERROR(root.required("data"));
  ASSAY_ASSIGN_OR_RETURN(Cfg data, root.object("data"));
  ASSAY_RETURN_IF_ERROR(data.required("forget"));
  ASSAY_RETURN_IF_ERROR(data.string("forget", *forget));
  ASSAY_RETURN_IF_ERROR(data.string("retain", *retain));
  ASSAY_RETURN_IF_ERROR(data.string("holdout", *holdout));
  ASSAY_RETURN_IF_ERROR(data.finish());
  return data;
}

namespace {

struct UnlearnConfig {
  std::string forget, retain, holdout, method = "npo";
  double beta = -1, delta = 0, forget_weight = 1, retain_weight = 1;
  int holdout_eval = 32;  // holdout examples scored at log steps
};

Status read_unlearn(Cfg& root, UnlearnConfig& u) {
  ASSAY_ASSIGN_OR_RETURN(Cfg data, read_unlearn_data(root, &u.forget, &u.retain, &u.holdout));
  ASSAY_RETURN_IF_ERROR(root.string("method", u.method, {"ga", "graddiff", "kl", "npo", "simnpo", "loku"}));
  ASSAY_ASSIGN_OR_RETURN(Cfg o, root.object("objective"));
  ASSAY_RETURN_IF_ERROR(o.number("beta", u.beta, 0, 1e6, true));
  ASSAY_RETURN_IF_ERROR(o.number("delta", u.delta, -1e6, 1e6));
  ASSAY_RETURN_IF_ERROR(o.number("forget_weight", u.forget_weight, 0, 1e6));
  // -1: not given. GA is gradient ascent on the forget split alone, so a
  // retain weight given with it is refused rather than silently dropped.
  u.retain_weight = -1;
  ASSAY_RETURN_IF_ERROR(o.number("retain_weight", u.retain_weight, 0, 1e6));
  if (u.method == "ga" && u.retain_weight > 0)
    return Status::Invalid(o.where("retain_weight") + ": method ga trains on the forget split alone; "
                           "got " + std::to_string(u.retain_weight) +
                           " (use graddiff for ascent on forget plus descent on retain)");
  if (u.retain_weight < 0) u.retain_weight = u.method == "ga" ? 0 : 1;
  ASSAY_RETURN_IF_ERROR(o.integer("holdout_eval", u.holdout_eval, 0, 1 << 20));
  ASSAY_RETURN_IF_ERROR(o.finish());
  if (u.beta < 0) u.beta = u.method == "simnpo" ? 4.5 : 0.1;
  if (u.retain_weight > 0 && u.retain.empty())
    return Status::Invalid(data.where("retain") + ": required by method " + u.method +
                           " (or set /objective/retain_weight to 0)");
  return Status::Ok();
}

}  // namespace

// Method loku trains LoRA adapters instead of the model (recipe_loku.cpp).
Result<RunSummary> recipe_unlearn_loku(Cfg& root, const std::string& text, const RunEnv& env);

Result<RunSummary> recipe_unlearn(Cfg& root, const std::string& text, const RunEnv& env) {
  {
    std::string method;
    ASSAY_RETURN_IF_ERROR(root.string("method", method));
    if (method == "loku") return recipe_unlearn_loku(root, text, env);
  }
  CommonConfig c;
  UnlearnConfig u;
  ASSAY_RETURN_IF_ERROR(read_common(root, c, /*init_required=*/true));
  ASSAY_RETURN_IF_ERROR(read_unlearn(root, u));
  ASSAY_RETURN_IF_ERROR(root.finish());

  ASSAY_ASSIGN_OR_RETURN(auto run, start_run("unlearn", c, text, env));
  const bool needs_ref = u.method == "npo" || u.method == "kl";
  std::optional<engine::GPT> ref;
  if (needs_ref) ref.emplace(run->model.clone(engine::Mode::kFrozen));
  run->meta_extra["method"] = u.method;
  if (needs_ref) run->meta_extra["reference"] = run->parent_hash;
  ASSAY_ASSIGN_OR_RETURN(auto forget, load_sequences(u.forget, *run->tok, c.seq_len));
  std::vector<Seq> retain, holdout;
  if (!u.retain.empty()) {
    ASSAY_ASSIGN_OR_RETURN(retain, load_sequences(u.retain, *run->tok, c.seq_len));
  }
  if (!u.holdout.empty()) {
    ASSAY_ASSIGN_OR_RETURN(holdout, load_sequences(u.holdout, *run->tok, c.seq_len));
  }
  run->reporter->note("method " + u.method + ": " + std::to_string(forget.size()) + " forget, " +
                      std::to_string(retain.size()) + " retain, " + std::to_string(holdout.size()) +
                      " holdout examples");
  Sampler fs(forget.size(), c.data_seed), rs(retain.empty() ? 1 : retain.size(), c.data_seed + 1);
  run->samplers = {&fs, &rs};  // their positions go into checkpoints (resume)
  std::vector<std::optional<double>> ref_logp(forget.size());
  const int V = run->model.config().vocab_size;
  const int bos = run->tok->bos_id(), eos = run->tok->eos_id();
  std::vector<float> dlogits;

  // Forget term on one batch: writes dlogits, returns (term, forget NLL).
  auto forget_step = [&](const std::vector<std::size_t>& idx, const Batch& b)
      -> Result<std::pair<double, double>> {
    ASSAY_ASSIGN_OR_RETURN(auto logits, policy_forward(*run, b));
    const obj::Logits z{logits.data(), b.B, b.T, V};
    dlogits.resize(z.size());
    const double g = u.forget_weight;
    if (u.method == "ga" || u.method == "graddiff" || u.method == "kl") {
      ASSAY_ASSIGN_OR_RETURN(auto ce, obj::cross_entropy(z, b.y, b.mask, {dlogits.data(), -g}));
      return std::make_pair(-g * ce.loss, ce.loss);
    }
    ASSAY_ASSIGN_OR_RETURN(auto ce, obj::cross_entropy(z, b.y, b.mask, {}));
    ASSAY_ASSIGN_OR_RETURN(auto lp, obj::sequence_logprobs(z, b.y, b.mask));
    obj::SeqObjective so;
    if (u.method == "npo") {
      std::vector<double> rl(idx.size());
      for (std::size_t k = 0; k < idx.size(); ++k) rl[k] = *ref_logp[idx[k]];
      ASSAY_ASSIGN_OR_RETURN(so, obj::npo_loss(lp.logp, rl, u.beta));
    } else {
      std::vector<double> len(lp.n_tokens);
      for (auto& x : len) x = std::max(1.0, x);
      ASSAY_ASSIGN_OR_RETURN(so, obj::simnpo_loss(lp.logp, len, u.beta, u.delta));
    }
    for (auto& x : so.coef) x *= g;
    ASSAY_RETURN_IF_ERROR(obj::sequence_logprobs_backward(z, b.y, b.mask, so.coef, {dlogits.data()}));
    return std::make_pair(g * so.loss, ce.loss);
  };

  // Retain NLL of a batch, without gradient (retain_weight 0).
  auto retain_nll = [&](const std::vector<std::size_t>& idx) -> Result<double> {
    std::vector<const Seq*> seqs;
    for (std::size_t i : idx) seqs.push_back(&retain[i]);
    Batch rb = make_batch(seqs, c.seq_len, bos, eos, true);
    ASSAY_ASSIGN_OR_RETURN(auto logits, policy_forward(*run, rb));
    ASSAY_ASSIGN_OR_RETURN(auto ce, obj::cross_entropy({logits.data(), rb.B, rb.T, V}, rb.y, rb.mask, {}));
    return ce.loss;
  };

  auto step_fn = [&](int64_t step) -> Result<StepOut> {
    StepOut out;
    const auto fidx = fs.next(c.batch_size);
    Batch fb = take_batch(*run, forget, fidx, step, true, "forget");
    if (u.method == "npo") {
      std::vector<std::size_t> missing;
      for (std::size_t i : fidx)
        if (!ref_logp[i] && std::find(missing.begin(), missing.end(), i) == missing.end()) missing.push_back(i);
      if (!missing.empty()) {
        std::vector<const Seq*> seqs;
        for (std::size_t i : missing) seqs.push_back(&forget[i]);
        Batch mb = make_batch(seqs, c.seq_len, bos, eos, true);
        ASSAY_ASSIGN_OR_RETURN(auto rlogits, forward(*ref, mb));
        ASSAY_ASSIGN_OR_RETURN(auto rl, obj::sequence_logprobs({rlogits.data(), mb.B, mb.T, V}, mb.y, mb.mask));
        for (std::size_t k = 0; k < missing.size(); ++k) ref_logp[missing[k]] = rl.logp[k];
      }
    }
    ASSAY_ASSIGN_OR_RETURN(auto fterm, forget_step(fidx, fb));
    ASSAY_RETURN_IF_ERROR(policy_backward(*run, dlogits.data()));
    out.loss = fterm.first;
    out.tokens = fb.tokens;
    out.extra["forget_loss"] = fterm.second;
    if (u.retain_weight > 0) {
      Batch rb = take_batch(*run, retain, rs.next(c.batch_size), step, true, "retain");
      std::span<const float> rlogits;
      if (u.method == "kl") {
        ASSAY_ASSIGN_OR_RETURN(rlogits, forward(*ref, rb));
      }
      ASSAY_ASSIGN_OR_RETURN(auto logits, policy_forward(*run, rb));
      const obj::Logits z{logits.data(), rb.B, rb.T, V};
      dlogits.resize(z.size());
      const double a = u.retain_weight;
      ASSAY_ASSIGN_OR_RETURN(auto ce, obj::cross_entropy(z, rb.y, rb.mask, {u.method == "kl" ? nullptr : dlogits.data(), a}));
      double term = ce.loss;
      if (u.method == "kl") {
        ASSAY_ASSIGN_OR_RETURN(auto kl, obj::distill(z, rlogits.data(), rb.mask, {}, {dlogits.data(), a}));
        term = kl.loss;
        out.extra["retain_kl"] = kl.loss;
      }
      ASSAY_RETURN_IF_ERROR(policy_backward(*run, dlogits.data()));
      out.loss += a * term;
      out.tokens += rb.tokens;
      out.extra["retain_loss"] = ce.loss;
    } else if (!retain.empty() && is_log_step(c, step)) {
      // After the forget backward, so the forward below cannot disturb it.
      ASSAY_ASSIGN_OR_RETURN(out.extra["retain_loss"], retain_nll(rs.next(c.batch_size)));
    }
    return out;
  };

  // Holdout NLL at log steps: the membership baseline the forget loss is compared with.
  auto on_log = [&](int64_t) -> Result<std::map<std::string, double>> {
    std::map<std::string, double> m;
    const std::size_t n = std::min(holdout.size(), static_cast<std::size_t>(u.holdout_eval));
    if (n == 0) return m;
    double sum = 0, tokens = 0;
    for (std::size_t at = 0; at < n; at += static_cast<std::size_t>(c.batch_size)) {
      std::vector<const Seq*> seqs;
      for (std::size_t i = at; i < std::min(n, at + static_cast<std::size_t>(c.batch_size)); ++i)
        seqs.push_back(&holdout[i]);
      Batch hb = make_batch(seqs, c.seq_len, bos, eos, true);
      ASSAY_ASSIGN_OR_RETURN(auto logits, policy_forward(*run, hb));
      ASSAY_ASSIGN_OR_RETURN(auto ce, obj::cross_entropy({logits.data(), hb.B, hb.T, V}, hb.y, hb.mask, {}));
      sum += ce.loss * ce.n_tokens;
      tokens += ce.n_tokens;
    }
    m["holdout_loss"] = tokens > 0 ? sum / tokens : 0.0;
    return m;
  };
  return train_loop(*run, step_fn, on_log);
}

}  // namespace assay::train::detail
