// Training objectives as pure functions on logits.
//
// Layout and conventions shared by every function here:
// - logits are row-major [B, T, V] floats; row (b, t) predicts targets[b*T + t]
//   (targets are already shifted by one, as in llm.c).
// - mask is [B, T] with weights (normally 0/1): 0 for prompt and padding
//   positions. A null mask means every position counts. Token losses divide by
//   the mask sum; sequence losses average over sequences or pairs.
// - Internally every row is computed in double, so losses are returned as
//   double and finite differences on the float inputs are meaningful.
// - Gradients go to a GradSink: dlogits [B, T, V] (same layout as logits),
//   scaled by `scale`, either overwriting or accumulating. A null `data` skips
//   the backward pass.
// - Rows are independent, so work is split over OpenMP threads and partial
//   sums are reduced in row order: results are bit-identical for any thread
//   count.
//
// Temperature convention (distillation): both student and teacher logits are
// divided by tau and the divergence is NOT rescaled by tau^2. Gradients carry
// the 1/tau factor of the softmax chain rule. To get Hinton-style scaling,
// multiply the objective weight by tau^2.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "assay/status.h"

namespace assay::obj {

// Shape and inputs of a batch of logits.
struct Logits {
  const float* data = nullptr;  // [B, T, V]
  int B = 0, T = 0, V = 0;
  std::size_t rows() const { return static_cast<std::size_t>(B) * T; }
  std::size_t size() const { return rows() * static_cast<std::size_t>(V); }
};

// Where dL/dlogits goes: out = (accumulate ? out : 0) + scale * dL/dlogits.
struct GradSink {
  float* data = nullptr;  // [B, T, V] or null for forward only
  double scale = 1.0;
  bool accumulate = false;
};

// Checks sizes of the optional arrays against the logits shape.
Status check_shapes(const Logits& z, std::span<const int> targets, std::span<const float> mask);

// ---------------------------------------------------------------------------
// Cross-entropy (SFT, pretraining, gradient ascent with scale = -1).

struct TokenLoss {
  double loss = 0;      // mean over valid tokens (sum(mask) in the denominator)
  double n_tokens = 0;  // sum of the mask
};

// L = sum_t mask_t * (-log softmax(z_t)[y_t]) / sum(mask); dz = (q - onehot(y))/N.
// targets: [B, T] in [0, V); positions with target < 0 are ignored like mask 0.
Result<TokenLoss> cross_entropy(const Logits& z, std::span<const int> targets,
                                std::span<const float> mask, GradSink grad);

// Inverted hinge loss (LoKU unlearning), per valid token with p = softmax(z_t)
// and m = argmax_{v != y_t} p[v] (the first index on ties):
//   IHL_t = 1 + p[y_t] - p[m]  in [0, 2];  L = sum_t mask_t IHL_t / sum(mask)
//   dIHL_t/dz_k = p_y (onehot(y)_k - p_k) - p_m (onehot(m)_k - p_k)
// Descending it lowers the target's probability and raises the runner-up's.
Result<TokenLoss> inverted_hinge(const Logits& z, std::span<const int> targets,
                                 std::span<const float> mask, GradSink grad);

// ---------------------------------------------------------------------------
// Token-level distillation against teacher logits of the same shape.

enum class Divergence {
  kForwardKL,   // KL(p || q)
  kReverseKL,   // KL(q || p)
  kJSD,         // generalized JSD(beta); beta=0 -> forward KL, beta=1 -> reverse KL
  kTV,          // total variation 1/2 sum |p - q|
  kSkewKL,      // KL(p || alpha p + (1-alpha) q)
  kSkewReverseKL,  // KL(q || (1-alpha) p + alpha q)
};

// "fkl", "rkl", "jsd", "tv", "skl", "srkl" (also the long names
// "forward_kl", "reverse_kl", "total_variation", "skew_kl", "skew_reverse_kl").
Result<Divergence> parse_divergence(const std::string& name);
const char* divergence_name(Divergence d);

struct DistillOptions {
  Divergence div = Divergence::kForwardKL;
  double tau = 1.0;    // temperature applied to both logit sets
  double beta = 0.5;   // JSD mixing weight
  double alpha = 0.1;  // skew weight
};

struct DistillLoss {
  double loss = 0;          // mean divergence over valid tokens
  double kl_to_teacher = 0; // mean KL(p || q) at tau = 1, comparable across objectives
  double n_tokens = 0;
};

// Per-position divergence between q = softmax(z/tau) and p = softmax(zT/tau),
// averaged over valid positions. The teacher gets no gradient.
Result<DistillLoss> distill(const Logits& student, const float* teacher_logits,
                            std::span<const float> mask, const DistillOptions& opt,
                            GradSink grad);

// Batch-wise Sinkhorn distillation (SinKD).
//
// Each valid position gives a student row s_i = softmax(z_i/tau) and a teacher
// row t_j = softmax(zT_j/tau). Rows are grouped (see coupling), and in each
// group of N rows: W_ij = ||s_i - t_j||_1 over the full vocabulary, K =
// exp(-W/eps), n_iters times row-normalise then column-normalise to get P;
// group loss = sum P*W. The loss is the mean over groups times `weight`, and
// the gradient flows through the unrolled normalisations (all iterates are
// diagonal scalings of K, so only the scaling vectors are kept: memory
// O(n_iters * N) besides one N x N matrix).
enum class SinkhornCoupling {
  kSequence,  // one group per sequence: its valid positions (cost O(B T^2 V))
  kBatch,     // one group: all valid positions of the batch (cost O((BT)^2 V))
};

struct SinkhornOptions {
  double tau = 2.0;
  double eps = 0.1;
  int n_iters = 20;
  double weight = 1.0;
  SinkhornCoupling coupling = SinkhornCoupling::kSequence;
};

struct SinkhornLoss {
  double loss = 0;     // weight * mean over groups of sum(P * W)
  int n_groups = 0;
};

Result<SinkhornLoss> sinkhorn(const Logits& student, const float* teacher_logits,
                              std::span<const float> mask, const SinkhornOptions& opt,
                              GradSink grad);

// ---------------------------------------------------------------------------
// Sequence log-likelihoods: the bridge between sequence-level objectives
// (DPO, NPO, SimNPO) and per-token gradients.

struct SeqLogProbs {
  std::vector<double> logp;    // [B] sum over valid t of log softmax(z_t)[y_t]
  std::vector<double> n_tokens;// [B] mask sum per sequence
};

Result<SeqLogProbs> sequence_logprobs(const Logits& z, std::span<const int> targets,
                                      std::span<const float> mask);

// Given c_b = dL/d logp_b per sequence, writes the chain rule
// dL/dz_t = c_b * mask_t * (onehot(y_t) - q_t), i.e. the fused softmax/CE
// backward (q - onehot) with per-token dloss -c_b * mask_t. A positive c_b
// (NPO, SimNPO) therefore pushes the sequence's likelihood down.
Status sequence_logprobs_backward(const Logits& z, std::span<const int> targets,
                                  std::span<const float> mask, std::span<const double> coef,
                                  GradSink grad);

// ---------------------------------------------------------------------------
// Preference alignment: DPO family x f-divergence score (f-DPO).

enum class PrefLoss { kSigmoid, kIpo, kHinge, kRobust };
enum class FDivergence { kReverseKL, kForwardKL, kJS, kAlpha };

Result<PrefLoss> parse_pref_loss(const std::string& name);  // sigmoid|ipo|hinge|robust
Result<FDivergence> parse_fdivergence(const std::string& name);  // reverse_kl|forward_kl|js|alpha
const char* pref_loss_name(PrefLoss l);
const char* fdivergence_name(FDivergence f);

// Log-ratio bound of the exponential f-divergence scores (forward KL, alpha).
//
// Their scores grow like e^(-Delta) and e^((1-a) |Delta|) as the summed
// completion log-ratio Delta = logp_policy - logp_ref falls, so a chosen
// completion whose likelihood dropped by a few tens of nats (ordinary
// likelihood displacement) gives losses ~1e4 and gradient norms ~1e7 before
// clipping. Below Delta = -M (M = max_log_ratio) the score is continued by
// its tangent at -M:
//   s_M(Delta) = s(-M) + s'(-M) (Delta + M),   s_M'(Delta) = s'(-M),
// so the score is C^1 (value and slope continuous at -M, no dead zone), its
// slope is bounded by e^M (forward KL) or e^((1-a) M) (alpha), and the loss
// grows at most linearly in Delta. Above -M the score is exact, so in the
// normal range results equal the unclamped formulas. The reverse-KL and JS
// scores have slopes in (0, 1] and are never clamped.
// M = 10 bounds the score slope at e^10 ~ 2.2e4 times DPO's; the largest
// accepted M, 80, keeps e^M (5.5e34) and the per-token gradients inside
// float range (FLT_MAX ~ e^88.7) for beta and 1/P factors up to ~1e3.
inline constexpr double kDefaultMaxLogRatio = 10.0;
inline constexpr double kMaxLogRatioLimit = 80.0;

struct PrefOptions {
  PrefLoss loss = PrefLoss::kSigmoid;
  FDivergence div = FDivergence::kReverseKL;
  double beta = 0.1;
  double robust_eps = 0.1;  // label-noise rate for kRobust, in [0, 0.5)
  double alpha = 0.5;       // a in (0, 1) for kAlpha
  double max_log_ratio = kDefaultMaxLogRatio;  // M above, in (0, kMaxLogRatioLimit]
};

// One preference pair: summed completion log-probs under policy and reference,
// and completion lengths (used by IPO's length normalisation).
struct PrefPair {
  double policy_w = 0, policy_l = 0;
  double ref_w = 0, ref_l = 0;
  double len_w = 1, len_l = 1;
};

struct PrefResult {
  double loss = 0;             // mean over pairs
  std::vector<double> c_w;     // [P] dL/d policy_w (already divided by P)
  std::vector<double> c_l;     // [P] dL/d policy_l
  double reward_chosen = 0;    // mean beta * Delta_w
  double reward_rejected = 0;  // mean beta * Delta_l
  double margin = 0;           // reward_chosen - reward_rejected
  double accuracy = 0;         // fraction of pairs with delta = s_w - s_l > 0
  double chosen_logratio = 0;  // mean Delta_w; < 0 with growing margin = likelihood displacement
  // Fraction of the 2P completions (chosen and rejected) whose log-ratio lay
  // below -max_log_ratio, i.e. whose score used the linear continuation.
  double clamped_frac = 0;
};

Result<PrefResult> preference_loss(std::span<const PrefPair> pairs, const PrefOptions& opt);

// f-divergence score s(Delta) and s'(Delta) computed from the log-ratio
// Delta, with the linear continuation below -max_log_ratio described above
// (clamped = true when Delta < -max_log_ratio and the score is exponential).
struct FdivScore {
  double s = 0, ds = 0;
  bool clamped = false;
};
FdivScore fdiv_score_at(FDivergence f, double delta, double alpha,
                        double max_log_ratio = kDefaultMaxLogRatio);
double fdiv_score(FDivergence f, double delta, double alpha, double max_log_ratio = kDefaultMaxLogRatio);
double fdiv_score_grad(FDivergence f, double delta, double alpha,
                       double max_log_ratio = kDefaultMaxLogRatio);

// ---------------------------------------------------------------------------
// Unlearning objectives on per-sequence forget log-likelihoods.

struct SeqObjective {
  double loss = 0;           // mean over sequences
  std::vector<double> coef;  // [B] dL/d logp_b (already divided by B)
};

// NPO(beta): L = mean_b -(2/beta) log sigmoid(-beta (logp_b - ref_b)).
Result<SeqObjective> npo_loss(std::span<const double> logp, std::span<const double> ref_logp,
                              double beta);

// SimNPO(beta, delta): a_b = -logp_b/len_b - delta;
// L = mean_b -(2/beta) log sigmoid(beta a_b). No reference model.
Result<SeqObjective> simnpo_loss(std::span<const double> logp, std::span<const double> lengths,
                                 double beta, double delta);

// Numerically stable helpers, exposed for tests.
double log_sigmoid(double x);
double sigmoid(double x);

}  // namespace assay::obj
