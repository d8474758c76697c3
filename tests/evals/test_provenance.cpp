// The provenance test's p-values on hand vectors: the alternative hypothesis
// (less / greater / two-sided) applies alike to the t approximation, the
// permutation test and the exact enumeration; the permutation p's floor
// 1/(T+1) is reported, and when every permutation is beaten the verdict reads
// a p below it. References: scipy.stats.spearmanr(alternative=) and
// scipy.stats.permutation_test (exact, permutation_type='pairings').
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "assay/evals_metrics.h"
#include "assay/evals_scores.h"
#include "pyref.h"

namespace assay::evals {
namespace {

// Eight examples; the order has ties (two per step), d falls along it with
// noise and one tie of its own.
const std::vector<double> kOrder = {0, 0, 1, 1, 2, 2, 3, 3};
const std::vector<double> kD = {0.9, 0.4, 0.7, 0.2, 0.3, 0.3, -0.1, 0.0};

std::string args_json(const std::vector<double>& x, const std::vector<double>& y) {
  return "args = json.loads(r\"\"\"" + nlohmann::json{{"x", x}, {"y", y}}.dump() + "\"\"\")\n";
}

const char* kSpearmanAlternatives = R"PY(
from scipy.stats import spearmanr
out = {}
for alt in ['less', 'greater', 'two-sided']:
    r = spearmanr(args['x'], args['y'], alternative=alt)
    out[alt] = {'rho': float(r.correlation), 'p': float(r.pvalue)}
print(json.dumps(out))
)PY";

TEST(EvalsProvenance, SpearmanAlternativesMatchScipy) {
  ASSAY_PYREF_OR_SKIP(ref, args_json(kOrder, kD) + kSpearmanAlternatives);
  for (const char* name : {"less", "greater", "two-sided"}) {
    const Alternative alt = parse_alternative(name).value();
    EXPECT_STREQ(to_string(alt), name);
    auto s = spearman(kOrder, kD, alt).value();
    EXPECT_NEAR(s.rho, ref[name]["rho"].get<double>(), 1e-12) << name;
    EXPECT_NEAR(s.p_value, ref[name]["p"].get<double>(), 1e-10) << name;
  }
  // The default stays scipy's two-sided.
  EXPECT_EQ(spearman(kOrder, kD).value().p_value,
            spearman(kOrder, kD, Alternative::kTwoSided).value().p_value);
  EXPECT_FALSE(parse_alternative("lower").ok());
  // |rho| = 1: t is infinite.
  const std::vector<double> up = {1, 2, 3, 4}, down = {4, 3, 2, 1};
  EXPECT_EQ(spearman(up, down, Alternative::kLess).value().p_value, 0.0);
  EXPECT_EQ(spearman(up, down, Alternative::kGreater).value().p_value, 1.0);
  EXPECT_EQ(spearman(up, down, Alternative::kTwoSided).value().p_value, 0.0);
}

// scipy's exact permutation null of Spearman's rho (all 8! pairings); the
// two-sided statistic here is |rho|, so it is checked as 'greater' on |rho|.
const char* kExactNull = R"PY(
import numpy as np
from scipy.stats import spearmanr, permutation_test, rankdata
x, y = np.array(args['x']), np.array(args['y'])
ry = rankdata(y) - rankdata(y).mean()
def rho(a, axis=-1):
    # Spearman's rho of each resample (Pearson on average ranks), vectorized.
    ra = rankdata(a, axis=axis)
    ra = ra - ra.mean(axis=axis, keepdims=True)
    return (ra * ry).sum(axis=axis) / np.sqrt((ra ** 2).sum(axis=axis) * (ry ** 2).sum())
assert abs(rho(x) - spearmanr(x, y).correlation) < 1e-12
exact = dict(permutation_type='pairings', vectorized=True, n_resamples=np.inf)
out = {alt: float(permutation_test((x,), rho, alternative=alt, **exact).pvalue)
       for alt in ['less', 'greater']}
out['two-sided'] = float(permutation_test((x,), lambda a, axis=-1: abs(rho(a, axis)),
                                          alternative='greater', **exact).pvalue)
print(json.dumps(out))
)PY";

TEST(EvalsProvenance, ExactPermutationPMatchesScipy) {
  ASSAY_PYREF_OR_SKIP(ref, args_json(kOrder, kD) + kExactNull);
  for (const char* name : {"less", "greater", "two-sided"}) {
    const Alternative alt = parse_alternative(name).value();
    EXPECT_NEAR(spearman_exact_p(kOrder, kD, alt).value(), ref[name].get<double>(), 1e-12) << name;
  }
}

TEST(EvalsProvenance, ExactPermutationPByHand) {
  // n = 4, no ties, d perfectly decreasing along the order: only the
  // observed ordering reaches rho = -1, so p = 1/4!; two-sided adds rho = +1.
  const std::vector<double> o = {0, 1, 2, 3}, d = {4, 3, 2, 1};
  EXPECT_DOUBLE_EQ(spearman_exact_p(o, d, Alternative::kLess).value(), 1.0 / 24);
  EXPECT_DOUBLE_EQ(spearman_exact_p(o, d, Alternative::kTwoSided).value(), 2.0 / 24);
  EXPECT_DOUBLE_EQ(spearman_exact_p(o, d, Alternative::kGreater).value(), 1.0);
  // Ties in the order: {0, 0, 1}: 3 distinct arrangements stand for 3! = 6
  // orderings, two each. d = {2, 1, 0}: observed rho is the most negative
  // one, shared by the arrangements with the lone "1" last: p = 1/3.
  EXPECT_DOUBLE_EQ(spearman_exact_p({0, 0, 1}, {2, 1, 0}, Alternative::kLess).value(), 1.0 / 3);
  std::vector<double> big(kMaxExactSpearmanN + 1), bd(kMaxExactSpearmanN + 1);
  for (size_t i = 0; i < big.size(); ++i) big[i] = double(i), bd[i] = -double(i);
  EXPECT_FALSE(spearman_exact_p(big, bd, Alternative::kLess).ok());
}

// The permutation statistic follows the alternative on the same shuffles.
TEST(EvalsProvenance, PermutationTestFollowsTheAlternative) {
  const int64_t T = 4000;
  auto less = spearman_permutation_test(kOrder, kD, T, 7, Alternative::kLess).value();
  auto greater = spearman_permutation_test(kOrder, kD, T, 7, Alternative::kGreater).value();
  auto two = spearman_permutation_test(kOrder, kD, T, 7, Alternative::kTwoSided).value();
  const double rho = spearman(kOrder, kD).value().rho;
  EXPECT_LT(rho, 0);
  EXPECT_DOUBLE_EQ(less.phi_obs, -rho);
  EXPECT_DOUBLE_EQ(greater.phi_obs, rho);
  EXPECT_DOUBLE_EQ(two.phi_obs, std::fabs(rho));
  for (const auto* r : {&less, &greater, &two}) EXPECT_DOUBLE_EQ(r->floor, 1.0 / (T + 1));
  // Against the exact p of each alternative: Monte Carlo within 4 binomial sd.
  for (auto [r, alt] : {std::pair{&less, Alternative::kLess}, std::pair{&greater, Alternative::kGreater},
                        std::pair{&two, Alternative::kTwoSided}}) {
    const double p = spearman_exact_p(kOrder, kD, alt).value();
    EXPECT_NEAR(r->p_value, p, 4 * std::sqrt(p * (1 - p) / T) + 1.0 / T) << to_string(alt);
  }
  EXPECT_LT(less.p_value, 0.05);
  EXPECT_GT(greater.p_value, 0.9);
  // Omitting the alternative keeps the paper's one-sided test (phi = -rho).
  auto dflt = spearman_permutation_test(kOrder, kD, T, 7).value();
  EXPECT_EQ(dflt.n_ge, less.n_ge);
}

std::vector<ProvenanceExample> examples(int n, double slope) {
  SplitMix64 rng(3);
  std::vector<ProvenanceExample> ex;
  for (int i = 0; i < n; ++i) {
    const double noise = static_cast<double>(rng.below(1000000)) / 1e6 - 0.5;
    ex.push_back({"ex" + std::to_string(i), double(i), 3.0 + slope * i + noise, 3.0});
  }
  return ex;
}

std::map<std::string, ResultRow> by_metric(const ProvenanceResult& r) {
  std::map<std::string, ResultRow> m;
  for (const auto& row : r.rows) m[row.metric] = row;
  return m;
}

// 200 examples with a strong order effect: every one of 999 permutations is
// beaten, p_perm sits at its floor 1/1000, and the verdict's p_value is the
// t approximation far below it, so alpha = 1e-6 can be met.
TEST(EvalsProvenance, FloorIsReportedAndBeatenByTheAnalyticP) {
  auto r = provenance_test(examples(200, -0.004), 999, 17, 1e-6).value();
  EXPECT_EQ(r.alternative, Alternative::kLess);
  EXPECT_DOUBLE_EQ(r.p_perm_floor, 1.0 / 1000);
  EXPECT_DOUBLE_EQ(r.p_perm, r.p_perm_floor);
  EXPECT_FALSE(r.p_exact.has_value()) << "n = 200 is past exact enumeration";
  EXPECT_LT(r.p_t, 1e-10);
  EXPECT_DOUBLE_EQ(r.p_value, r.p_t);
  EXPECT_TRUE(r.derived) << "p_perm alone could never reach alpha 1e-6";
  auto rows = by_metric(r);
  ASSERT_EQ(r.rows.size(), 6u);
  EXPECT_EQ(rows["spearman_rho"].filter, "none");
  for (const char* m : {"p_t", "p_perm", "p_perm_floor", "p_value", "derived"})
    EXPECT_EQ(rows[m].filter, "less") << m;
  EXPECT_DOUBLE_EQ(rows["p_perm_floor"].value, 1.0 / 1000);
  EXPECT_DOUBLE_EQ(rows["p_value"].value, r.p_t);
  EXPECT_EQ(rows["derived"].value, 1.0);

  // No effect: p_value is p_perm, above its floor.
  auto flat = provenance_test(examples(200, 0.0), 999, 17, 0.01).value();
  EXPECT_GT(flat.p_perm, flat.p_perm_floor);
  EXPECT_DOUBLE_EQ(flat.p_value, flat.p_perm);
  EXPECT_FALSE(flat.derived);

  // The same data under 'greater': the effect is in the other direction.
  auto g = provenance_test(examples(200, -0.004), 999, 17, 0.01, Alternative::kGreater).value();
  EXPECT_GT(g.p_t, 0.99);
  EXPECT_GT(g.p_perm, 0.99);
  EXPECT_FALSE(g.derived);
  EXPECT_EQ(by_metric(g)["p_t"].filter, "greater");
}

// n <= 10: the exact p is computed and is the verdict's p.
TEST(EvalsProvenance, SmallTranscriptsGetTheExactP) {
  auto r = provenance_test(examples(8, -2.0), 200, 1, 0.01).value();
  ASSERT_TRUE(r.p_exact.has_value());
  EXPECT_DOUBLE_EQ(*r.p_exact, 1.0 / 40320) << "8 examples, perfectly ordered: only 1 of 8!";
  EXPECT_DOUBLE_EQ(r.p_perm, 1.0 / 201);
  EXPECT_DOUBLE_EQ(r.p_value, *r.p_exact);
  EXPECT_TRUE(r.derived);
  auto rows = by_metric(r);
  ASSERT_EQ(r.rows.size(), 7u);
  EXPECT_EQ(rows["p_exact"].filter, "less");
  EXPECT_DOUBLE_EQ(rows["p_exact"].value, 1.0 / 40320);
}

}  // namespace
}  // namespace assay::evals
