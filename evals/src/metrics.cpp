// Ranking metrics, rank correlation and mean/stderr. See evals_metrics.h.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "assay/evals_metrics.h"

namespace assay::evals {
namespace {

Status check_binary(const std::vector<double>& scores, const std::vector<int>& labels) {
  if (scores.size() != labels.size())
    return Status::Invalid("scores and labels must have the same length, got " +
                           std::to_string(scores.size()) + " and " +
                           std::to_string(labels.size()));
  int64_t pos = 0, neg = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] != 0 && labels[i] != 1)
      return Status::Invalid("labels[" + std::to_string(i) + "] must be 0 or 1, got " +
                             std::to_string(labels[i]));
    if (std::isnan(scores[i]))
      return Status::Invalid("scores[" + std::to_string(i) + "] is NaN");
    (labels[i] ? pos : neg)++;
  }
  if (pos == 0 || neg == 0)
    return Status::Invalid("ranking metrics need both classes, got " + std::to_string(pos) +
                           " positives and " + std::to_string(neg) + " negatives");
  return Status::Ok();
}

// Cumulative (fps, tps) at the end of each group of tied scores, scores
// descending: sklearn's _binary_clf_curve.
struct ClfCurve {
  std::vector<double> fps, tps, thresholds;
};

ClfCurve binary_clf_curve(const std::vector<double>& scores, const std::vector<int>& labels) {
  std::vector<size_t> idx(scores.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(),
                   [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  ClfCurve c;
  double tp = 0, fp = 0;
  for (size_t k = 0; k < idx.size(); ++k) {
    (labels[idx[k]] ? tp : fp) += 1;
    bool group_end = k + 1 == idx.size() || scores[idx[k + 1]] != scores[idx[k]];
    if (group_end) {
      c.fps.push_back(fp);
      c.tps.push_back(tp);
      c.thresholds.push_back(scores[idx[k]]);
    }
  }
  return c;
}

}  // namespace

Result<RocCurve> roc_curve(const std::vector<double>& scores, const std::vector<int>& labels) {
  ASSAY_RETURN_IF_ERROR(check_binary(scores, labels));
  ClfCurve c = binary_clf_curve(scores, labels);
  RocCurve r;
  r.fpr.push_back(0);
  r.tpr.push_back(0);
  r.thresholds.push_back(std::numeric_limits<double>::infinity());
  for (size_t i = 0; i < c.fps.size(); ++i) {
    r.fpr.push_back(c.fps[i] / c.fps.back());
    r.tpr.push_back(c.tps[i] / c.tps.back());
    r.thresholds.push_back(c.thresholds[i]);
  }
  return r;
}

Result<double> auroc(const std::vector<double>& scores, const std::vector<int>& labels) {
  ASSAY_ASSIGN_OR_RETURN(RocCurve r, roc_curve(scores, labels));
  double area = 0;
  for (size_t i = 1; i < r.fpr.size(); ++i)
    area += (r.fpr[i] - r.fpr[i - 1]) * (r.tpr[i] + r.tpr[i - 1]) / 2;
  return area;
}

Result<double> fpr_at_tpr(const std::vector<double>& scores, const std::vector<int>& labels,
                          double tpr_target) {
  ASSAY_ASSIGN_OR_RETURN(RocCurve r, roc_curve(scores, labels));
  const auto& x = r.tpr;
  const auto& y = r.fpr;
  if (tpr_target > x.back()) return 0.0;  // TPR never reaches the target
  if (tpr_target < x.front()) return y.front();
  // np.interp: j = last index with x[j] <= target (tpr is non-decreasing, so
  // a run of equal TPR values resolves to its last, largest FPR).
  size_t j = 0;
  while (j + 1 < x.size() && x[j + 1] <= tpr_target) ++j;
  if (x[j] == tpr_target || j + 1 == x.size()) return y[j];
  double slope = (y[j + 1] - y[j]) / (x[j + 1] - x[j]);
  return y[j] + slope * (tpr_target - x[j]);
}

namespace {
// Precision/recall at each threshold, thresholds descending (recall ascending).
void pr_points(const ClfCurve& c, std::vector<double>* precision, std::vector<double>* recall) {
  for (size_t i = 0; i < c.tps.size(); ++i) {
    double ps = c.tps[i] + c.fps[i];
    precision->push_back(ps > 0 ? c.tps[i] / ps : 0.0);
    recall->push_back(c.tps[i] / c.tps.back());
  }
}
}  // namespace

Result<double> aupr(const std::vector<double>& scores, const std::vector<int>& labels) {
  ASSAY_RETURN_IF_ERROR(check_binary(scores, labels));
  std::vector<double> p, r;
  pr_points(binary_clf_curve(scores, labels), &p, &r);
  // The curve starts at (recall 0, precision 1), as sklearn appends it.
  double area = 0, r_prev = 0, p_prev = 1;
  for (size_t i = 0; i < p.size(); ++i) {
    area += (r[i] - r_prev) * (p[i] + p_prev) / 2;
    r_prev = r[i];
    p_prev = p[i];
  }
  return area;
}

Result<double> average_precision(const std::vector<double>& scores,
                                 const std::vector<int>& labels) {
  ASSAY_RETURN_IF_ERROR(check_binary(scores, labels));
  std::vector<double> p, r;
  pr_points(binary_clf_curve(scores, labels), &p, &r);
  double ap = 0, r_prev = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    ap += (r[i] - r_prev) * p[i];
    r_prev = r[i];
  }
  return ap;
}

std::vector<double> average_ranks(const std::vector<double>& x) {
  std::vector<size_t> idx(x.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return x[a] < x[b]; });
  std::vector<double> ranks(x.size());
  size_t i = 0;
  while (i < idx.size()) {
    size_t j = i;
    while (j + 1 < idx.size() && x[idx[j + 1]] == x[idx[i]]) ++j;
    double r = (static_cast<double>(i) + static_cast<double>(j)) / 2 + 1;  // mean of i+1..j+1
    for (size_t k = i; k <= j; ++k) ranks[idx[k]] = r;
    i = j + 1;
  }
  return ranks;
}

double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  const size_t n = x.size();
  if (n == 0 || y.size() != n) return std::nan("");
  double mx = std::accumulate(x.begin(), x.end(), 0.0) / n;
  double my = std::accumulate(y.begin(), y.end(), 0.0) / n;
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < n; ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  if (sxx == 0 || syy == 0) return std::nan("");
  double r = sxy / std::sqrt(sxx * syy);
  return std::clamp(r, -1.0, 1.0);
}

Result<Alternative> parse_alternative(const std::string& s) {
  if (s == "less") return Alternative::kLess;
  if (s == "greater") return Alternative::kGreater;
  if (s == "two-sided") return Alternative::kTwoSided;
  return Status::Invalid("alternative must be \"less\", \"greater\" or \"two-sided\", got \"" +
                         s + "\"");
}

const char* to_string(Alternative a) {
  switch (a) {
    case Alternative::kLess: return "less";
    case Alternative::kGreater: return "greater";
    case Alternative::kTwoSided: return "two-sided";
  }
  return "two-sided";
}

Result<SpearmanResult> spearman(const std::vector<double>& x, const std::vector<double>& y,
                                Alternative alternative) {
  if (x.size() != y.size())
    return Status::Invalid("spearman: x and y must have the same length, got " +
                           std::to_string(x.size()) + " and " + std::to_string(y.size()));
  if (x.size() < 3)
    return Status::Invalid("spearman: need at least 3 pairs, got " + std::to_string(x.size()));
  for (size_t i = 0; i < x.size(); ++i)
    if (std::isnan(x[i]) || std::isnan(y[i]))
      return Status::Invalid("spearman: pair " + std::to_string(i) + " contains NaN");
  SpearmanResult s;
  s.n = static_cast<int64_t>(x.size());
  s.rho = pearson(average_ranks(x), average_ranks(y));
  if (std::isnan(s.rho)) return Status::Invalid("spearman: an input is constant");
  double dof = static_cast<double>(s.n - 2);
  // |rho| = 1 gives t = +-inf, where student_t_sf is 0 or 1.
  const double inf = std::numeric_limits<double>::infinity();
  const double t = s.rho >= 1.0    ? inf
                   : s.rho <= -1.0 ? -inf
                                   : s.rho * std::sqrt(dof / ((s.rho + 1.0) * (1.0 - s.rho)));
  switch (alternative) {
    case Alternative::kLess: s.p_value = student_t_sf(-t, dof); break;
    case Alternative::kGreater: s.p_value = student_t_sf(t, dof); break;
    case Alternative::kTwoSided: s.p_value = std::min(1.0, 2 * student_t_sf(std::fabs(t), dof)); break;
  }
  return s;
}

uint64_t SplitMix64::next() {
  uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t SplitMix64::below(uint64_t n) {
  // Reject the top partial block so every residue is equally likely.
  uint64_t limit = std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % n;
  uint64_t v;
  do v = next(); while (v >= limit);
  return v % n;
}

namespace {
// The test statistic of an alternative: larger = more extreme.
double phi_of(double rho, Alternative a) {
  switch (a) {
    case Alternative::kLess: return -rho;
    case Alternative::kGreater: return rho;
    case Alternative::kTwoSided: return std::fabs(rho);
  }
  return std::fabs(rho);
}
// Tolerance: phi values equal up to rounding must count as ">=".
constexpr double kPhiEps = 1e-12;
}  // namespace

Result<PermutationResult> spearman_permutation_test(const std::vector<double>& order,
                                                    const std::vector<double>& d,
                                                    int64_t permutations, uint64_t seed,
                                                    Alternative alternative) {
  if (permutations < 1)
    return Status::Invalid("permutation test: permutations must be >= 1, got " +
                           std::to_string(permutations));
  ASSAY_ASSIGN_OR_RETURN(SpearmanResult obs, spearman(order, d));
  PermutationResult r;
  r.alternative = alternative;
  r.phi_obs = phi_of(obs.rho, alternative);
  r.permutations = permutations;
  // Ranks are permutation-invariant as a multiset, so shuffle the ranks of
  // `order` once computed and correlate against the fixed ranks of d.
  std::vector<double> ro = average_ranks(order), rd = average_ranks(d);
  SplitMix64 rng(seed);
  for (int64_t t = 0; t < permutations; ++t) {
    for (size_t i = ro.size(); i > 1; --i) std::swap(ro[i - 1], ro[rng.below(i)]);
    if (phi_of(pearson(ro, rd), alternative) >= r.phi_obs - kPhiEps) ++r.n_ge;
  }
  const double denom = static_cast<double>(permutations) + 1.0;
  r.p_value = (1.0 + static_cast<double>(r.n_ge)) / denom;
  r.floor = 1.0 / denom;
  return r;
}

Result<double> spearman_exact_p(const std::vector<double>& order, const std::vector<double>& d,
                                Alternative alternative) {
  if (static_cast<int64_t>(order.size()) > kMaxExactSpearmanN)
    return Status::Invalid("exact Spearman p: enumeration is limited to n <= " +
                           std::to_string(kMaxExactSpearmanN) + " examples, got " +
                           std::to_string(order.size()));
  ASSAY_ASSIGN_OR_RETURN(SpearmanResult obs, spearman(order, d));
  const double phi_obs = phi_of(obs.rho, alternative);
  // Pearson of two rank vectors with fixed multisets: the means and sums of
  // squares do not change under permutation, only the cross sum does.
  std::vector<double> ro = average_ranks(order), rd = average_ranks(d);
  const size_t n = ro.size();
  const double mo = std::accumulate(ro.begin(), ro.end(), 0.0) / n;
  const double md = std::accumulate(rd.begin(), rd.end(), 0.0) / n;
  double soo = 0, sdd = 0;
  for (size_t i = 0; i < n; ++i) {
    ro[i] -= mo;
    rd[i] -= md;
    soo += ro[i] * ro[i];
    sdd += rd[i] * rd[i];
  }
  const double scale = std::sqrt(soo * sdd);
  // next_permutation walks each distinct arrangement of the (tied) ranks once;
  // every one stands for the same number of the n! orderings.
  std::sort(ro.begin(), ro.end());
  int64_t total = 0, ge = 0;
  do {
    double sxy = 0;
    for (size_t i = 0; i < n; ++i) sxy += ro[i] * rd[i];
    ++total;
    if (phi_of(std::clamp(sxy / scale, -1.0, 1.0), alternative) >= phi_obs - kPhiEps) ++ge;
  } while (std::next_permutation(ro.begin(), ro.end()));
  return static_cast<double>(ge) / static_cast<double>(total);
}

MeanStderr mean_stderr(const std::vector<double>& x) {
  MeanStderr m;
  m.n = static_cast<int64_t>(x.size());
  if (x.empty()) {
    m.mean = m.stderr_ = std::nan("");
    return m;
  }
  m.mean = std::accumulate(x.begin(), x.end(), 0.0) / x.size();
  if (x.size() < 2) {
    m.stderr_ = std::nan("");
    return m;
  }
  double ss = 0;
  for (double v : x) ss += (v - m.mean) * (v - m.mean);
  m.stderr_ = std::sqrt(ss / (x.size() - 1)) / std::sqrt(static_cast<double>(x.size()));
  return m;
}

}  // namespace assay::evals
