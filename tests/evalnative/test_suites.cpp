// Suites on tiny trained models: provenance (palimpsestic membership
// inference) separates a model finetuned in the transcript's order from one
// trained on the same data in another order; the OOD likelihood ratio of a
// model finetuned on in-domain text separates a generated OOD corpus.
#include <gtest/gtest.h>

#include "assay/datagen.h"
#include "assay/evals_native.h"
#include "assay/evals_results.h"
#include "tiny_models.h"

namespace assay::evals {
namespace {

using namespace testing;

std::unique_ptr<NativeBackend> wrap(const engine::GPT& m) {
  return std::make_unique<NativeBackend>(m.clone(engine::Mode::kFrozen),
                                         engine::make_byte_tokenizer(), "", "m", NativeOptions{});
}

TEST(EvalNativeSuites, ProvenanceDetectsTheTranscriptOrder) {
  engine::set_num_threads(1);
  // A base model learns the word vocabulary from 1024 sentences; three
  // copies are then finetuned on the same 256 other sentences (one pass, one
  // sentence per step), each in its own order. Recently seen sentences keep
  // a lower loss, so the derived model's NLL falls along Alice's order.
  const auto all = word_texts(256 + 1024, 6, 48, 5);
  const std::vector<std::string> texts(all.begin(), all.begin() + 256), pre(all.begin() + 256, all.end());
  const auto cfg = tiny_config(40, 32, 1);
  auto tok = engine::make_byte_tokenizer();
  engine::GPT base = random_model(cfg, 1);
  train_in_order(base, *tok, pre, shuffled(pre.size(), 9), 1, 3e-3f);
  const auto order_a = shuffled(texts.size(), 11), order_r = shuffled(texts.size(), 22),
             order_c = shuffled(texts.size(), 33);
  engine::GPT a = base.clone(engine::Mode::kTrain), r = base.clone(engine::Mode::kTrain),
              c = base.clone(engine::Mode::kTrain);
  train_in_order(a, *tok, texts, order_a, 1, 1e-3f);
  train_in_order(r, *tok, texts, order_r, 1, 1e-3f);
  train_in_order(c, *tok, texts, order_c, 1, 1e-3f);
  // Alice's transcript, one line per example seen.
  std::vector<std::pair<std::string, double>> transcript;
  for (size_t k = 0; k < order_a.size(); ++k)
    transcript.emplace_back("ex" + std::to_string(order_a[k]), static_cast<double>(k));
  std::vector<TextItem> items;
  for (size_t i = 0; i < texts.size(); ++i) items.push_back({"ex" + std::to_string(i), texts[i], "", ""});
  ProvenanceSuiteOptions po;
  po.permutations = 2000;
  po.seed = 3;
  auto ref = wrap(r), derived = wrap(a), independent = wrap(c);
  auto yes = run_provenance_suite(*derived, *ref, transcript, items, po, "provenance");
  ASSERT_TRUE(yes.ok()) << yes.status().message();
  auto no = run_provenance_suite(*independent, *ref, transcript, items, po, "provenance");
  ASSERT_TRUE(no.ok()) << no.status().message();
  EXPECT_EQ(yes->n, 256);
  EXPECT_LT(yes->rho, 0);
  EXPECT_LT(yes->p_t, 1e-3) << "rho " << yes->rho;
  EXPECT_LT(yes->p_perm, 1e-3) << "rho " << yes->rho;
  EXPECT_TRUE(yes->derived);
  EXPECT_GT(no->p_t, 0.05) << "rho " << no->rho;
  EXPECT_GT(no->p_perm, 0.05) << "rho " << no->rho;
  EXPECT_FALSE(no->derived);
  std::printf("provenance: derived rho %.3f p_t %.2g p_perm %.2g; independent rho %.3f p_t %.2g p_perm %.2g\n",
              yes->rho, yes->p_t, yes->p_perm, no->rho, no->p_t, no->p_perm);
}

TEST(EvalNativeSuites, OodLikelihoodRatioSeparatesGeneratedCorpus) {
  engine::set_num_threads(1);
  auto tok = engine::make_byte_tokenizer();
  data::GsmOptions g;
  g.n = 160;
  g.seed = 1;
  std::vector<std::string> train;
  for (const auto& p : data::generate_gsm8k(g)) train.push_back(p.question + " " + p.answer);
  g.n = 40;
  g.seed = 2;
  std::vector<TextItem> id_items, ood_items;
  for (const auto& p : data::generate_gsm8k(g)) id_items.push_back({p.id, p.question + " " + p.answer, "", ""});
  data::OodOptions oo;
  oo.n = 40;
  for (const auto& d : data::generate_ood(oo)) ood_items.push_back({d.id, d.text, "", ""});
  const auto cfg = tiny_config(64, 32, 1);
  engine::GPT base = random_model(cfg, 3);
  engine::GPT ft = base.clone(engine::Mode::kTrain);
  // One pass over 64-byte windows of the in-domain training texts.
  std::vector<std::string> windows;
  for (const auto& t : train)
    for (size_t at = 0; at < t.size(); at += 64) windows.push_back(t.substr(at, 64));
  train_in_order(ft, *tok, windows, shuffled(windows.size(), 4), 1, 3e-3f);
  auto b = wrap(base), f = wrap(ft);
  auto rows = run_ood_suite(*b, *f, id_items, ood_items, {}, "ood");
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  double nlr_auroc = -1, lr_auroc = -1;
  for (const auto& r : *rows) {
    if (r.metric == "nlr_auroc") nlr_auroc = r.value;
    if (r.metric == "lr_auroc") lr_auroc = r.value;
    EXPECT_EQ(r.n, 80);
  }
  std::printf("ood: nlr_auroc %.4f lr_auroc %.4f (%zu training windows)\n", nlr_auroc, lr_auroc,
              windows.size());
  EXPECT_GT(nlr_auroc, 0.9);
  EXPECT_GT(lr_auroc, 0.9);
}

TEST(EvalNativeSuites, LastOccurrenceOrderRanksExamples) {
  auto o = last_occurrence_order({{"a", 0}, {"b", 1}, {"a", 2}, {"c", 3}});
  ASSERT_EQ(o.size(), 3u);
  EXPECT_EQ(o[0].first, "b");
  EXPECT_EQ(o[1].first, "a");
  EXPECT_EQ(o[2].first, "c");
  EXPECT_EQ(o[2].second, 2.0);
}

}  // namespace
}  // namespace assay::evals
