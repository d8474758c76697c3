// OOD likelihood ratio, provenance and unlearning computations on hand values.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "assay/evals_scores.h"
#include "support/temp_dir.h"

namespace assay::evals {
namespace {

TEST(EvalsScores, OodScoresAndReport) {
  OodText t{2.0, 2.5, 10, 1};
  EXPECT_DOUBLE_EQ(ood_nlr(t), 0.5);
  EXPECT_DOUBLE_EQ(ood_lr(t), 5.0);
  EXPECT_DOUBLE_EQ(ood_loss(t), 2.5);
  EXPECT_DOUBLE_EQ(ood_total_loss(t), 25.0);
  // NLR separates perfectly; raw loss does not (ID text 3 is hard for both models).
  std::vector<OodText> texts{{2.0, 2.6, 10, 1}, {1.0, 1.5, 40, 1}, {2.0, 2.1, 10, 0},
                             {4.0, 4.0, 10, 0}, {1.5, 1.6, 20, 0}};
  auto rows = ood_report(texts).value();
  auto find = [&](const std::string& m) {
    for (const auto& r : rows)
      if (r.metric == m) return r.value;
    ADD_FAILURE() << "no row " << m;
    return std::nan("");
  };
  EXPECT_DOUBLE_EQ(find("nlr_auroc"), 1.0);
  EXPECT_DOUBLE_EQ(find("nlr_fpr95"), 0.0);
  EXPECT_DOUBLE_EQ(find("nlr_aupr"), 1.0);
  // loss_ft: OOD {2.6, 1.5} vs ID {2.1, 4.0, 1.6}: 2.6 beats 2.1 and 1.6, 1.5 beats
  // none, so 2 of 6 pairs.
  EXPECT_NEAR(find("loss_auroc"), 2.0 / 6, 1e-15);
  EXPECT_EQ(rows.size(), 16u);
  texts[0].label = 0, texts[1].label = 0;
  EXPECT_FALSE(ood_report(texts).ok());  // no OOD texts
}

TEST(EvalsScores, OodQaVariant) {
  QaLogliks base{-10, -6, -15}, ft{-9, -4, -12};
  auto s = ood_qa_scores(base, ft);
  EXPECT_DOUBLE_EQ(s.s_q, -1);
  EXPECT_DOUBLE_EQ(s.s_a, -2);
  EXPECT_DOUBLE_EQ(s.s_qa, -3);
  EXPECT_DOUBLE_EQ(s.s_a_given_q, (-15 + 10) - (-12 + 9));  // -5 - -3 = -2
}

std::vector<ProvenanceExample> synthetic(double slope, uint64_t seed) {
  SplitMix64 rng(seed);
  std::vector<ProvenanceExample> ex;
  for (int i = 0; i < 200; ++i) {
    double noise = static_cast<double>(rng.below(1000000)) / 1e6 - 0.5;
    ex.push_back({"ex" + std::to_string(i), static_cast<double>(i), 3.0 + slope * i + noise, 3.0});
  }
  return ex;
}

TEST(EvalsScores, ProvenanceDetectsOrderEffect) {
  auto derived = provenance_test(synthetic(-0.004, 5), 999, 17, 0.01).value();
  EXPECT_LT(derived.rho, -0.5);
  EXPECT_LT(derived.p_t, 1e-10);
  EXPECT_DOUBLE_EQ(derived.p_perm, 1.0 / 1000);
  EXPECT_TRUE(derived.derived);
  auto independent = provenance_test(synthetic(0.0, 5), 999, 17, 0.01).value();
  EXPECT_GT(independent.p_perm, 0.01);
  EXPECT_FALSE(independent.derived);
  // spearman_rho, p_t, p_perm, p_perm_floor, p_value, derived (no p_exact past n = 10).
  std::vector<std::string> names;
  for (const auto& r : independent.rows) names.push_back(r.metric);
  EXPECT_EQ(names, (std::vector<std::string>{"spearman_rho", "p_t", "p_perm", "p_perm_floor",
                                             "p_value", "derived"}));
  EXPECT_FALSE(provenance_test(synthetic(0.0, 5), 999, 17, 1.5).ok());
}

TEST(EvalsScores, ReshuffleAndDisplacement) {
  auto r = reshuffle_test(10.0, {1.0, 3.0, 2.0, 12.0}).value();
  EXPECT_NEAR(r.z, (10.0 - 4.5) / (std::sqrt(77.0 / 4) + 1e-6), 1e-12);  // ddof 0
  EXPECT_DOUBLE_EQ(r.p_value, 2.0 / 5);
  EXPECT_FALSE(reshuffle_test(1.0, {}).ok());
  auto d = likelihood_displacement({-5, -3, -10}, {-4, -3.5, -9}).value();
  EXPECT_NEAR(d.fraction_negative, 2.0 / 3, 1e-15);
  EXPECT_NEAR(d.mean_delta, (-1 + 0.5 - 1) / 3.0, 1e-15);
  EXPECT_FALSE(likelihood_displacement({-1}, {}).ok());
}

TEST(EvalsScores, TranscriptReader) {
  assay::testing::TempDir dir("scores");
  std::string path = dir.file("transcript.jsonl");
  std::ofstream(path) << "{\"example_id\": \"a\", \"step\": 3}\n\n{\"example_id\": 7, \"step\": 1}\n";
  auto t = read_transcript_jsonl(path, "example_id", "step").value();
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].first, "a");
  EXPECT_EQ(t[1].first, "7");
  EXPECT_DOUBLE_EQ(t[1].second, 1);
  auto joined = join_provenance(t, {{"a", 2.0}, {"7", 2.5}}, {{"a", 1.0}, {"7", 1.0}}).value();
  EXPECT_EQ(joined[1].id, "7");
  EXPECT_DOUBLE_EQ(joined[1].nll_test, 2.5);
  auto missing = join_provenance(t, {{"a", 2.0}}, {{"a", 1.0}, {"7", 1.0}});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("\"7\""), std::string::npos);
  auto bad = read_transcript_jsonl(path, "example_id", "order");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(":1: field \"order\""), std::string::npos)
      << bad.status().message();
}

TEST(EvalsScores, UnlearningPrimitives) {
  EXPECT_DOUBLE_EQ(min_k_score({-1, -2, -3, -4, -5}, 0.4), 4.5);  // lowest 2 of 5
  EXPECT_DOUBLE_EQ(min_k_score({-1, -2}, 0.4), 2.0);               // at least one token
  AnswerScores s{{-0.5, -1.5, -0.1, -0.3}, {1, 0, 1, 1}};
  EXPECT_DOUBLE_EQ(answer_nll(s), 0.6);
  EXPECT_DOUBLE_EQ(answer_prob(s), std::exp(-0.6));
  EXPECT_DOUBLE_EQ(token_accuracy(s), 0.75);
  EXPECT_DOUBLE_EQ(extraction_strength(s), 0.5);  // greedy from position 2 on
  EXPECT_DOUBLE_EQ(extraction_strength({{-1, -1}, {1, 1}}), 1.0);
  EXPECT_DOUBLE_EQ(extraction_strength({{-1, -1}, {1, 0}}), 0.0);
  EXPECT_DOUBLE_EQ(truth_ratio(1.0, {0.5, 1.5}), 1.0);
  EXPECT_DOUBLE_EQ(truth_ratio(1.0, {2.0}), std::exp(-1.0));
}

TEST(EvalsScores, UnlearningReport) {
  UnlearningInputs in;
  // Forget answers are memorized (high log-probs), holdout answers are not.
  in.forget = {{{-0.1, -0.2, -0.1}, {1, 1, 1}}, {{-0.3, -0.1}, {1, 1}}};
  in.holdout = {{{-2.0, -3.0, -1.0}, {0, 1, 0}}, {{-0.2, -2.5}, {1, 0}}};
  in.retain = {{{-0.4}, {1}}};
  in.retain_model_auc = 0.5;
  in.truth_ratio_unlearned = {0.2, 0.3, 0.4};
  in.truth_ratio_retain = {0.6, 0.7, 0.8};
  auto r = unlearning_report(in).value();
  EXPECT_DOUBLE_EQ(r.mia_auc, 1.0);
  ASSERT_TRUE(r.privleak.has_value());
  EXPECT_DOUBLE_EQ(*r.privleak, 100.0);
  ASSERT_TRUE(r.forget_quality.has_value());
  EXPECT_DOUBLE_EQ(r.forget_quality->statistic, 1.0);
  EXPECT_NEAR(r.forget_quality->p_value, 0.1, 1e-12);  // 2 / C(6,3)
  EXPECT_NEAR(r.forget.token_accuracy.mean, 1.0, 1e-15);
  EXPECT_NEAR(r.holdout.token_accuracy.mean, (1.0 / 3 + 0.5) / 2, 1e-15);
  bool has_fq = false;
  for (const auto& row : r.rows) has_fq |= row.metric == "forget_quality";
  EXPECT_TRUE(has_fq);
  in.holdout.clear();
  EXPECT_FALSE(unlearning_report(in).ok());
}

}  // namespace
}  // namespace assay::evals
