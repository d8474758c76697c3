// Metric primitives shared by every eval suite: ranking metrics, rank
// correlation, two-sample tests and mean/stderr. Pure functions over vectors.
//
// Reference semantics (tested against scipy 1.10 / sklearn 1.2):
//   auroc             = sklearn roc_auc_score (ties count 1/2)
//   aupr              = sklearn auc(recall, precision) over precision_recall_curve
//   average_precision = sklearn average_precision_score
//   fpr_at_tpr        = np.interp(0.95, tpr, fpr) over sklearn roc_curve
//   spearman          = scipy.stats.spearmanr (average ranks, t-approx p, alternative=)
//   ks_2samp          = scipy.stats.ks_2samp, two-sided, mode 'auto'
// Labels: 1 = positive class, 0 = negative; higher scores mean "more positive".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "assay/status.h"

namespace assay::evals {

// ---- ranking metrics ------------------------------------------------------

// Area under the ROC curve. Needs at least one positive and one negative.
Result<double> auroc(const std::vector<double>& scores, const std::vector<int>& labels);

// Points of the ROC curve at each distinct threshold, scores descending,
// starting at (0, 0). Equal to sklearn roc_curve(drop_intermediate=False).
struct RocCurve {
  std::vector<double> fpr, tpr, thresholds;  // thresholds[0] = +inf
};
Result<RocCurve> roc_curve(const std::vector<double>& scores, const std::vector<int>& labels);

// FPR where TPR first reaches `tpr_target` along the ROC curve, linearly
// interpolated as np.interp(tpr_target, tpr, fpr); 0 when TPR never reaches it.
Result<double> fpr_at_tpr(const std::vector<double>& scores, const std::vector<int>& labels,
                          double tpr_target = 0.95);

// Trapezoid area under recall (x) / precision (y), sklearn's auc(recall, precision).
Result<double> aupr(const std::vector<double>& scores, const std::vector<int>& labels);

// sum_n (R_n - R_{n-1}) P_n over thresholds (step interpolation).
Result<double> average_precision(const std::vector<double>& scores,
                                 const std::vector<int>& labels);

// ---- correlation ----------------------------------------------------------

// 1-based ranks; ties share the mean of the ranks they span.
std::vector<double> average_ranks(const std::vector<double>& x);

// Pearson correlation; NaN when either vector is constant.
double pearson(const std::vector<double>& x, const std::vector<double>& y);

// The alternative hypothesis of a rank-correlation test, named for rho as
// scipy.stats.spearmanr(x, y, alternative=...) names it: kLess (rho < 0),
// kGreater (rho > 0), kTwoSided (rho != 0).
enum class Alternative { kLess, kGreater, kTwoSided };
// "less", "greater", "two-sided"; anything else is InvalidArgument.
Result<Alternative> parse_alternative(const std::string& s);
const char* to_string(Alternative a);

struct SpearmanResult {
  double rho = 0;       // Pearson on average ranks
  double p_value = 1;   // t approximation with n-2 dof (as scipy), under `alternative`
  int64_t n = 0;
};
// p under the alternative: t = r sqrt((n-2) / ((1+r)(1-r))); two-sided
// 2 sf(|t|), less cdf(t) = sf(-t), greater sf(t) (sf of Student t, n-2 dof).
Result<SpearmanResult> spearman(const std::vector<double>& x, const std::vector<double>& y,
                                Alternative alternative = Alternative::kTwoSided);

// Monte Carlo permutation test of the association between `order` and `d`.
// The statistic phi follows the alternative: -rho (less: later examples have
// the lower d), rho (greater), |rho| (two-sided). p = (1 + #{phi_perm >=
// phi_obs}) / (T + 1), where each of the T permutations shuffles `order`
// with a generator seeded by `seed` (the same shuffles for every alternative).
// The smallest p it can report is floor = 1 / (T + 1): reached when the
// observed statistic beats every permutation (n_ge == 0); the true p may be
// far smaller (see spearman_exact_p, and the t approximation).
struct PermutationResult {
  double phi_obs = 0;
  double p_value = 1;
  double floor = 1;  // 1 / (T + 1)
  int64_t permutations = 0;
  int64_t n_ge = 0;  // #{phi_perm >= phi_obs}
  Alternative alternative = Alternative::kLess;
};
Result<PermutationResult> spearman_permutation_test(const std::vector<double>& order,
                                                    const std::vector<double>& d,
                                                    int64_t permutations, uint64_t seed,
                                                    Alternative alternative = Alternative::kLess);

// Exact permutation p of the same statistic: the share of ALL n! orderings of
// `order` (its distinct arrangements when ranks tie, each standing for the
// same number of orderings) whose phi is >= phi_obs; the observed ordering
// counts, so p >= 1 / n!. Enumeration costs n! / (tie multiplicities) Pearson
// sums: allowed for n <= kMaxExactSpearmanN (10! = 3,628,800), else
// InvalidArgument. Equals scipy.stats.permutation_test(..., permutation_type=
// 'pairings', n_resamples=inf) on the Spearman statistic.
inline constexpr int64_t kMaxExactSpearmanN = 10;
Result<double> spearman_exact_p(const std::vector<double>& order, const std::vector<double>& d,
                                Alternative alternative);

// ---- distributions --------------------------------------------------------

// Regularized incomplete beta I_x(a, b), a, b > 0, 0 <= x <= 1.
double betainc(double a, double b, double x);
// Student-t survival function P(T > t) with `df` degrees of freedom.
double student_t_sf(double t, double df);
// One-sample two-sided Kolmogorov-Smirnov survival P(D_n >= d) (scipy kstwo.sf).
double kstwo_sf(double d, int64_t n);
// One-sided one-sample Smirnov survival P(D+_n >= d) (scipy.special.smirnov).
double smirnov_sf(int64_t n, double d);

// ---- two-sample tests -----------------------------------------------------

struct KsResult {
  double statistic = 0;  // D = max |ECDF1 - ECDF2| over the pooled sample
  double p_value = 1;    // two-sided
  bool exact = false;    // exact lattice-path p (max(n1, n2) <= 10000)
};
Result<KsResult> ks_2samp(const std::vector<double>& a, const std::vector<double>& b);

// ---- means ----------------------------------------------------------------

struct MeanStderr {
  double mean = 0;
  double stderr_ = 0;  // sample std (n-1 denominator) / sqrt(n); NaN for n < 2
  int64_t n = 0;
};
MeanStderr mean_stderr(const std::vector<double>& x);

// Deterministic 64-bit generator (splitmix64) for reproducible shuffles.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : s_(seed) {}
  uint64_t next();
  // Uniform integer in [0, n), unbiased (rejection sampling); n > 0.
  uint64_t below(uint64_t n);

 private:
  uint64_t s_;
};

}  // namespace assay::evals
