#include <gtest/gtest.h>

#include "assay/eval_key.h"

namespace {

using assay::EvalKey;

TEST(EvalKey, FormatsAndParsesEveryStatistic) {
  EvalKey k;
  k.suite = "gsm8k";
  k.version = "3.0+1a2b3c4d";
  k.metric = "exact_match";
  k.filter = "strict-match";
  EXPECT_EQ(assay::format_eval_key(k), "gsm8k@3.0+1a2b3c4d/exact_match,strict-match");
  k.stat = EvalKey::Stat::kStderr;
  EXPECT_EQ(assay::format_eval_key(k), "gsm8k@3.0+1a2b3c4d/exact_match,strict-match:stderr");
  k.stat = EvalKey::Stat::kN;
  k.filter = "none";
  const std::string text = assay::format_eval_key(k);
  EXPECT_EQ(text, "gsm8k@3.0+1a2b3c4d/exact_match:n");
  EvalKey back;
  ASSERT_TRUE(assay::parse_eval_key(text, &back));
  EXPECT_EQ(back.suite, "gsm8k");
  EXPECT_EQ(back.version, "3.0+1a2b3c4d");
  EXPECT_EQ(back.metric, "exact_match");
  EXPECT_EQ(back.filter, "none");
  EXPECT_EQ(back.stat, EvalKey::Stat::kN);
}

TEST(EvalKey, LegacyKeysHaveVersionOne) {
  EvalKey k;
  ASSERT_TRUE(assay::parse_eval_key("ood/auroc,nlr", &k));
  EXPECT_EQ(k.version, assay::kLegacyEvalVersion);
  EXPECT_EQ(k.filter, "nlr");
  EXPECT_EQ(k.stat, EvalKey::Stat::kValue);
}

TEST(EvalKey, RejectsWhatIsNotAKey) {
  EvalKey k;
  for (const char* bad : {"loss", "/acc", "gsm8k/", "gsm8k@/acc", "gsm8k/acc:mean", "a/b/c",
                          "gsm8k/acc,", "@1/acc"})
    EXPECT_FALSE(assay::parse_eval_key(bad, &k)) << bad;
}

}  // namespace
