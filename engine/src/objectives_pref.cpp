// Sequence-level objectives: f-DPO preference losses and NPO / SimNPO
// unlearning. They work on summed completion log-probs and return per-sequence
// coefficients c = dL/dlogp, which sequence_logprobs_backward turns into
// per-token dlogits.
#include <algorithm>
#include <cmath>
#include <string>

#include "assay/objectives.h"

namespace assay::obj {

double log_sigmoid(double x) { return x >= 0 ? -std::log1p(std::exp(-x)) : x - std::log1p(std::exp(x)); }

double sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}

Result<PrefLoss> parse_pref_loss(const std::string& n) {
  if (n == "sigmoid" || n == "dpo") return PrefLoss::kSigmoid;
  if (n == "ipo") return PrefLoss::kIpo;
  if (n == "hinge") return PrefLoss::kHinge;
  if (n == "robust") return PrefLoss::kRobust;
  return Status::Invalid("preference loss: expected one of sigmoid, ipo, hinge, robust, got '" + n + "'");
}

Result<FDivergence> parse_fdivergence(const std::string& n) {
  if (n == "reverse_kl" || n == "rkl") return FDivergence::kReverseKL;
  if (n == "forward_kl" || n == "fkl") return FDivergence::kForwardKL;
  if (n == "js" || n == "jsd") return FDivergence::kJS;
  if (n == "alpha") return FDivergence::kAlpha;
  return Status::Invalid("f-divergence: expected one of reverse_kl, forward_kl, js, alpha, got '" + n + "'");
}

const char* pref_loss_name(PrefLoss l) {
  switch (l) {
    case PrefLoss::kSigmoid: return "sigmoid";
    case PrefLoss::kIpo: return "ipo";
    case PrefLoss::kHinge: return "hinge";
    case PrefLoss::kRobust: return "robust";
  }
  return "?";
}

const char* fdivergence_name(FDivergence f) {
  switch (f) {
    case FDivergence::kReverseKL: return "reverse_kl";
    case FDivergence::kForwardKL: return "forward_kl";
    case FDivergence::kJS: return "js";
    case FDivergence::kAlpha: return "alpha";
  }
  return "?";
}

namespace {

// The exact score and slope at log-ratio d. Only called with d >= -M for the
// exponential scores, so their exponents are at most M (<= 80) and finite;
// for large positive d they underflow harmlessly to 0.
FdivScore exact_score(FDivergence f, double d, double a) {
  switch (f) {
    case FDivergence::kReverseKL: return {d, 1.0, false};
    case FDivergence::kForwardKL: {
      const double e = std::exp(-d);  // u^-1 with u = pi/pi_ref = e^d
      return {-e, e, false};
    }
    case FDivergence::kJS: return {log_sigmoid(d), sigmoid(-d), false};
    case FDivergence::kAlpha: {
      const double e = std::exp((a - 1) * d);  // u^(a-1)
      return {e / (a - 1), e, false};
    }
  }
  return {};
}

bool exponential_score(FDivergence f) { return f == FDivergence::kForwardKL || f == FDivergence::kAlpha; }

}  // namespace

FdivScore fdiv_score_at(FDivergence f, double d, double a, double max_log_ratio) {
  const double m = max_log_ratio;
  if (!exponential_score(f) || !(d < -m)) return exact_score(f, d, a);
  // Tangent continuation below -M: value and slope continuous at -M, slope
  // constant (bounded) beyond it.
  FdivScore at = exact_score(f, -m, a);
  return {at.s + at.ds * (d + m), at.ds, true};
}

double fdiv_score(FDivergence f, double d, double a, double m) { return fdiv_score_at(f, d, a, m).s; }

double fdiv_score_grad(FDivergence f, double d, double a, double m) { return fdiv_score_at(f, d, a, m).ds; }

namespace {

Status check_pref_options(const PrefOptions& o) {
  if (!(o.beta > 0)) return Status::Invalid("preference: beta must be > 0, got " + std::to_string(o.beta));
  if (o.loss == PrefLoss::kRobust && !(o.robust_eps >= 0 && o.robust_eps < 0.5))
    return Status::Invalid("preference: robust eps must be in [0, 0.5), got " + std::to_string(o.robust_eps));
  if (o.div == FDivergence::kAlpha && !(o.alpha > 0 && o.alpha < 1))
    return Status::Invalid("preference: alpha-divergence a must be in (0, 1), got " + std::to_string(o.alpha));
  if (!(o.max_log_ratio > 0 && o.max_log_ratio <= kMaxLogRatioLimit))
    return Status::Invalid("preference: max_log_ratio must be in (0, " + std::to_string(kMaxLogRatioLimit) +
                           "], got " + std::to_string(o.max_log_ratio));
  return Status::Ok();
}

}  // namespace

Result<PrefResult> preference_loss(std::span<const PrefPair> pairs, const PrefOptions& o) {
  ASSAY_RETURN_IF_ERROR(check_pref_options(o));
  PrefResult out;
  const std::size_t P = pairs.size();
  if (P == 0) return Status::Invalid("preference: no pairs");
  out.c_w.assign(P, 0.0);
  out.c_l.assign(P, 0.0);
  const double beta = o.beta, inv_p = 1.0 / static_cast<double>(P);
  for (std::size_t i = 0; i < P; ++i) {
    const PrefPair& p = pairs[i];
    if (!(p.len_w > 0) || !(p.len_l > 0))
      return Status::Invalid("preference: pair " + std::to_string(i) + " has an empty completion");
    const double dw = p.policy_w - p.ref_w, dl = p.policy_l - p.ref_l;
    const FdivScore fw = fdiv_score_at(o.div, dw, o.alpha, o.max_log_ratio);
    const FdivScore fl = fdiv_score_at(o.div, dl, o.alpha, o.max_log_ratio);
    const double sw = fw.s, sl = fl.s, gw = fw.ds, gl = fl.ds;
    out.clamped_frac += ((fw.clamped ? 1.0 : 0.0) + (fl.clamped ? 1.0 : 0.0)) * 0.5 * inv_p;
    const double delta = sw - sl;
    double loss = 0, dLd = 0;  // dL/ddelta (unused by IPO)
    switch (o.loss) {
      case PrefLoss::kSigmoid:
        loss = -log_sigmoid(beta * delta);
        dLd = -beta * sigmoid(-beta * delta);
        break;
      case PrefLoss::kHinge:
        loss = std::max(0.0, 1.0 - beta * delta);
        dLd = beta * delta < 1.0 ? -beta : 0.0;
        break;
      case PrefLoss::kRobust: {
        const double e = o.robust_eps;
        loss = (-(1 - e) * log_sigmoid(beta * delta) + e * log_sigmoid(-beta * delta)) / (1 - 2 * e);
        dLd = -beta * ((1 - e) * sigmoid(-beta * delta) + e * sigmoid(beta * delta)) / (1 - 2 * e);
        break;
      }
      case PrefLoss::kIpo: {
        const double dbar = sw / p.len_w - sl / p.len_l;
        const double h = dbar - 1.0 / (2 * beta);
        loss = h * h;
        out.c_w[i] = 2 * h / p.len_w * gw * inv_p;
        out.c_l[i] = -2 * h / p.len_l * gl * inv_p;
        break;
      }
    }
    if (o.loss != PrefLoss::kIpo) {
      out.c_w[i] = dLd * gw * inv_p;
      out.c_l[i] = -dLd * gl * inv_p;
    }
    out.loss += loss * inv_p;
    out.reward_chosen += beta * dw * inv_p;
    out.reward_rejected += beta * dl * inv_p;
    out.accuracy += (delta > 0 ? 1.0 : 0.0) * inv_p;
    out.chosen_logratio += dw * inv_p;
  }
  out.margin = out.reward_chosen - out.reward_rejected;
  return out;
}

Result<SeqObjective> npo_loss(std::span<const double> logp, std::span<const double> ref, double beta) {
  if (!(beta > 0)) return Status::Invalid("npo: beta must be > 0, got " + std::to_string(beta));
  if (logp.size() != ref.size() || logp.empty())
    return Status::Invalid("npo: expected equal, non-empty policy and reference batches, got " +
                           std::to_string(logp.size()) + " and " + std::to_string(ref.size()));
  SeqObjective out;
  const double inv_b = 1.0 / static_cast<double>(logp.size());
  out.coef.resize(logp.size());
  for (std::size_t b = 0; b < logp.size(); ++b) {
    const double d = logp[b] - ref[b];
    out.loss += -(2.0 / beta) * log_sigmoid(-beta * d) * inv_b;
    out.coef[b] = 2.0 * sigmoid(beta * d) * inv_b;
  }
  return out;
}

Result<SeqObjective> simnpo_loss(std::span<const double> logp, std::span<const double> lengths,
                                 double beta, double delta) {
  if (!(beta > 0)) return Status::Invalid("simnpo: beta must be > 0, got " + std::to_string(beta));
  if (logp.size() != lengths.size() || logp.empty())
    return Status::Invalid("simnpo: expected equal, non-empty log-prob and length batches, got " +
                           std::to_string(logp.size()) + " and " + std::to_string(lengths.size()));
  SeqObjective out;
  const double inv_b = 1.0 / static_cast<double>(logp.size());
  out.coef.resize(logp.size());
  for (std::size_t b = 0; b < logp.size(); ++b) {
    if (!(lengths[b] > 0))
      return Status::Invalid("simnpo: sequence " + std::to_string(b) + " has no completion tokens");
    const double a = -logp[b] / lengths[b] - delta;
    out.loss += -(2.0 / beta) * log_sigmoid(beta * a) * inv_b;
    // dL/da = -2 sigma(-beta a); da/dlogp = -1/len.
    out.coef[b] = 2.0 * sigmoid(-beta * a) / lengths[b] * inv_b;
  }
  return out;
}

}  // namespace assay::obj
