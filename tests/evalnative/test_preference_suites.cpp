// Preference, diversity and OOD-baseline suites on tiny models: the suite's
// numbers equal the same quantities computed from the backend's own scores;
// a policy finetuned on the chosen answers wins on reward accuracy; the
// predictive entropy re-scored from logits equals the entropy of the full
// next-token distribution that generation reports; a sharp model is less
// diverse than a random one.
#include <gtest/gtest.h>

#include <cmath>

#include "assay/datagen.h"
#include "assay/evals_diversity.h"
#include "assay/evals_native.h"
#include "assay/evals_preference.h"
#include "assay/evals_tasks.h"
#include "tiny_models.h"

namespace assay::evals {
namespace {

using namespace testing;

std::unique_ptr<NativeBackend> wrap(const engine::GPT& m) {
  auto tok = engine::make_byte_tokenizer();
  tok->set_add_bos_token(true);  // as every trained checkpoint declares
  return std::make_unique<NativeBackend>(m.clone(engine::Mode::kFrozen), std::move(tok), "", "m",
                                         NativeOptions{});
}

double metric(const std::vector<ResultRow>& rows, const std::string& m, const std::string& f = "none") {
  for (const auto& r : rows)
    if (r.metric == m && r.filter == f) return r.value;
  ADD_FAILURE() << "no row " << m << "," << f;
  return NAN;
}

TEST(EvalNativePreference, PolicyTrainedOnChosenWinsAndRowsMatchScores) {
  engine::set_num_threads(1);
  data::GsmOptions g;
  g.n = 12;
  g.difficulty = 1;
  g.seed = 3;
  std::vector<PrefPair> pairs;
  std::vector<std::string> chosen_texts;
  for (const auto& p : data::generate_prefs(g)) {
    pairs.push_back({p.id, p.prompt, p.chosen, p.rejected});
    chosen_texts.push_back(p.prompt + p.chosen);
  }
  const auto cfg = tiny_config(192, 32, 1);
  auto tok = engine::make_byte_tokenizer();
  engine::GPT ref = random_model(cfg, 2);
  engine::GPT pol = ref.clone(engine::Mode::kTrain);
  train_in_order(pol, *tok, chosen_texts, shuffled(chosen_texts.size(), 1), 40, 3e-3f);
  auto r = wrap(ref), p = wrap(pol);
  PreferenceSuiteOptions po;
  po.beta = 0.5;
  auto rows = run_preference_suite(*p, *r, pairs, po, "preference");
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  // The same quantities from the backends' own log-likelihoods.
  std::vector<ScoreRequest> reqs;
  for (const auto& x : pairs) reqs.push_back({x.prompt, x.chosen}), reqs.push_back({x.prompt, x.rejected});
  auto lp = loglikelihood(*p, reqs).value(), lr = loglikelihood(*r, reqs).value();
  double acc = 0, margin = 0, dc = 0, dec = 0;
  for (size_t i = 0; i < pairs.size(); ++i) {
    const double c = lp[2 * i].logprob - lr[2 * i].logprob, w = lp[2 * i + 1].logprob - lr[2 * i + 1].logprob;
    acc += 0.5 * c > 0.5 * w;
    margin += 0.5 * (c - w);
    dc += c;
    dec += c < 0;
  }
  const double n = static_cast<double>(pairs.size());
  EXPECT_NEAR(metric(*rows, "reward_accuracy"), acc / n, 1e-12);
  EXPECT_NEAR(metric(*rows, "reward_margin"), margin / n, 1e-9);
  EXPECT_NEAR(metric(*rows, "chosen_logp_change"), dc / n, 1e-9);
  EXPECT_NEAR(metric(*rows, "chosen_logp_decreased"), dec / n, 1e-12);
  std::printf("preference: reward_accuracy %.3f margin %.3f chosen change %.3f rejected change %.3f\n",
              metric(*rows, "reward_accuracy"), metric(*rows, "reward_margin"),
              metric(*rows, "chosen_logp_change"), metric(*rows, "rejected_logp_change"));
  EXPECT_GT(metric(*rows, "chosen_logp_change"), 0);  // SFT on chosen raises it
  EXPECT_EQ(metric(*rows, "chosen_logp_decreased"), 0);
  EXPECT_GT(metric(*rows, "reward_accuracy"), 0.5);
  EXPECT_GT(metric(*rows, "reward_margin"), 0);
  // Sampling adds the diversity rows.
  po.samples_per_prompt = 3;
  po.diversity_prompts = 4;
  po.diversity.max_gen_toks = 24;
  po.diversity.sampling.temperature = 1.0;
  auto with_div = run_preference_suite(*p, *r, pairs, po, "preference");
  ASSERT_TRUE(with_div.ok()) << with_div.status().message();
  for (const char* m : {"distinct_1", "distinct_2", "self_bleu", "word_entropy", "predictive_entropy"})
    EXPECT_TRUE(std::isfinite(metric(*with_div, m))) << m;
  for (const auto& row : *with_div)
    if (row.metric == "self_bleu") EXPECT_EQ(row.n, 4);
}

TEST(EvalNativeDiversity, PredictiveEntropyEqualsEntropyOfTheFullDistribution) {
  engine::set_num_threads(1);
  const auto cfg = tiny_config(48, 32, 1);
  auto tok = engine::make_byte_tokenizer();
  engine::GPT m = random_model(cfg, 4);
  const auto texts = word_texts(64, 6, 12, 3);
  train_in_order(m, *tok, texts, shuffled(texts.size(), 2), 1, 3e-3f);
  auto b = wrap(m);
  const std::vector<std::string> prompts = {"abc", "the words"};
  DiversityOptions o;
  o.samples_per_prompt = 2;
  o.max_gen_toks = 20;
  o.sampling.temperature = 0.9;
  o.seed = 11;
  auto d = sample_for_diversity(*b, prompts, o);
  ASSERT_TRUE(d.ok()) << d.status().message();
  // The same requests through the generator, with every token's full
  // distribution (top_logprobs = vocabulary size).
  std::vector<TokenGenRequest> reqs;
  for (size_t i = 0; i < prompts.size(); ++i)
    for (int j = 0; j < 2; ++j) {
      TokenGenRequest r;
      r.prompt = b->encode_prompt(prompts[i]);
      r.max_tokens = 20;
      r.sampling = o.sampling;
      r.sampling.seed = sample_seed(11, static_cast<int64_t>(i), 2, j);
      r.top_logprobs = cfg.vocab_size;
      reqs.push_back(r);
    }
  auto gens = b->generate_tokens(reqs).value();
  for (size_t i = 0; i < prompts.size(); ++i)
    for (size_t j = 0; j < 2; ++j) {
      const Generation& g = gens[i * 2 + j];
      EXPECT_EQ(d->texts[i][j], g.text);
      size_t m_tok = g.tokens.size();
      if (m_tok && g.tokens.back() == tok->eos_id()) --m_tok;
      double sum = 0;
      for (size_t t = 0; t < m_tok; ++t) {
        double h = 0;
        for (const auto& alt : g.top[t]) h -= std::exp(alt.logprob) * alt.logprob;
        sum += h;
      }
      ASSERT_GT(m_tok, 0u);
      EXPECT_NEAR(d->predictive_entropy[i][j], sum / m_tok, 1e-4) << i << "," << j;
    }
}

TEST(EvalNativeDiversity, SharpModelIsLessDiverseThanRandomOne) {
  engine::set_num_threads(1);
  const auto cfg = tiny_config(48, 32, 1);
  auto tok = engine::make_byte_tokenizer();
  engine::GPT rnd = random_model(cfg, 5);
  engine::GPT sharp = rnd.clone(engine::Mode::kTrain);
  const std::vector<std::string> one = {"go to the park and sit down"};
  train_in_order(sharp, *tok, one, {0}, 150, 3e-3f);
  auto a = wrap(rnd), s = wrap(sharp);
  DiversityOptions o;
  o.samples_per_prompt = 4;
  o.max_gen_toks = 24;
  o.sampling.temperature = 1.0;
  const std::vector<std::string> prompts = {"go to", "go"};
  auto ra = diversity_report(sample_for_diversity(*a, prompts, o).value(), "diversity").value();
  auto rs = diversity_report(sample_for_diversity(*s, prompts, o).value(), "diversity").value();
  std::printf("random: H %.3f self_bleu %.3f distinct_2 %.3f; sharp: H %.3f self_bleu %.3f distinct_2 %.3f\n",
              metric(ra, "predictive_entropy"), metric(ra, "self_bleu"), metric(ra, "distinct_2"),
              metric(rs, "predictive_entropy"), metric(rs, "self_bleu"), metric(rs, "distinct_2"));
  EXPECT_NEAR(metric(ra, "predictive_entropy"), std::log(257.0), 0.2);  // near uniform
  EXPECT_LT(metric(rs, "predictive_entropy"), 1.0);
  EXPECT_GT(metric(rs, "self_bleu"), metric(ra, "self_bleu"));
  EXPECT_LT(metric(rs, "distinct_2"), metric(ra, "distinct_2"));
}

TEST(EvalNativeOod, LossBaselinesAndMeanLossesComeWithTheRatio) {
  engine::set_num_threads(1);
  const auto cfg = tiny_config(48, 32, 1);
  engine::GPT base = random_model(cfg, 6), ft = random_model(cfg, 7);
  auto b = wrap(base), f = wrap(ft);
  const auto id_t = word_texts(6, 5, 10, 1), ood_t = random_texts(5, 30, 2);
  std::vector<TextItem> id_items, ood_items;
  for (size_t i = 0; i < id_t.size(); ++i) id_items.push_back({"i" + std::to_string(i), id_t[i], "", ""});
  for (size_t i = 0; i < ood_t.size(); ++i) ood_items.push_back({"o" + std::to_string(i), ood_t[i], "", ""});
  auto rows = run_ood_suite(*b, *f, id_items, ood_items, {}, "ood");
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  auto mean = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return s / static_cast<double>(v.size());
  };
  EXPECT_NEAR(metric(*rows, "mean_loss", "id_base"), mean(mean_nll(*b, id_t).value()), 1e-9);
  EXPECT_NEAR(metric(*rows, "mean_loss", "id_finetuned"), mean(mean_nll(*f, id_t).value()), 1e-9);
  EXPECT_NEAR(metric(*rows, "mean_loss", "ood_base"), mean(mean_nll(*b, ood_t).value()), 1e-9);
  EXPECT_NEAR(metric(*rows, "mean_loss", "ood_finetuned"), mean(mean_nll(*f, ood_t).value()), 1e-9);
  for (const char* m : {"nlr_auroc", "loss_auroc", "base_loss_auroc"}) EXPECT_TRUE(std::isfinite(metric(*rows, m))) << m;
  // The QA variant carries its likelihood-alone baselines too.
  std::vector<TextItem> qa_id, qa_ood;
  for (size_t i = 0; i < 4; ++i) {
    qa_id.push_back({"a" + std::to_string(i), "", id_t[i], id_t[i + 1]});
    qa_ood.push_back({"b" + std::to_string(i), "", ood_t[i], ood_t[i + 1]});
  }
  OodSuiteOptions qa;
  qa.variant = "qa";
  auto qrows = run_ood_suite(*b, *f, qa_id, qa_ood, qa, "ood");
  ASSERT_TRUE(qrows.ok()) << qrows.status().message();
  for (const char* m : {"ft_nll_qa_auroc", "base_nll_qa_auroc", "s_a_given_q_auroc"})
    EXPECT_TRUE(std::isfinite(metric(*qrows, m))) << m;
}

}  // namespace
}  // namespace assay::evals
