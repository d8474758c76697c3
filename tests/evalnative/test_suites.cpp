// Suites on tiny trained models: provenance (palimpsestic membership
// inference) separates a model finetuned in the transcript's order from one
// trained on the same data in another order; the OOD likelihood ratio of a
// model finetuned on in-domain text separates a generated OOD corpus.
#include <gtest/gtest.h>

#include <fstream>

#include "assay/datagen.h"
#include "assay/evals_native.h"
#include "assay/evals_data.h"
#include "assay/evals_report.h"
#include "assay/evals_store.h"
#include "assay/evals_tasks.h"
#include "../evals/pyref.h"
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
  // Every permutation is beaten: p_perm sits at its floor 1/(T+1), and the
  // verdict's p_value is the t approximation below it.
  EXPECT_DOUBLE_EQ(yes->p_perm_floor, 1.0 / 2001);
  EXPECT_DOUBLE_EQ(yes->p_perm, yes->p_perm_floor);
  EXPECT_DOUBLE_EQ(yes->p_value, std::min(yes->p_perm_floor, yes->p_t));
  EXPECT_LT(yes->p_value, 1e-6);
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
    if (r.metric != "mean_loss") EXPECT_EQ(r.n, 80);  // mean_loss rows count one set
  }
  std::printf("ood: nlr_auroc %.4f lr_auroc %.4f (%zu training windows)\n", nlr_auroc, lr_auroc,
              windows.size());
  EXPECT_GT(nlr_auroc, 0.9);
  EXPECT_GT(lr_auroc, 0.9);
}

// The finetune's own training items are in-distribution, unseen items of the
// same kind are OOD: every score is "higher = more OOD", so the QA variant's
// AUROCs must lie above 0.5 as the text variant's do.
TEST(EvalNativeSuites, OodQaVariantRanksTrainingItemsAsInDistribution) {
  engine::set_num_threads(1);
  const auto words = word_texts(64 + 64 + 256, 13, 48, 7);
  auto item = [&](size_t i) {
    // Question: the first 3 words; answer: the other 10.
    const std::string& w = words[i];
    size_t cut = 0;
    for (int k = 0; k < 3; ++k) cut = w.find(' ', cut + 1);
    TextItem it{"q" + std::to_string(i), "", w.substr(0, cut), w.substr(cut + 1)};
    it.text = it.question + "\n" + it.answer + "\n";  // the form the QA scores read
    return it;
  };
  std::vector<TextItem> id_items, ood_items;
  for (size_t i = 0; i < 64; ++i) id_items.push_back(item(i));
  for (size_t i = 64; i < 128; ++i) ood_items.push_back(item(i));
  const std::vector<std::string> pre(words.begin() + 128, words.end());
  const auto cfg = tiny_config(96, 32, 1);
  auto tok = engine::make_byte_tokenizer();
  engine::GPT base = random_model(cfg, 5);
  train_in_order(base, *tok, pre, shuffled(pre.size(), 1), 1, 3e-3f);
  engine::GPT ft = base.clone(engine::Mode::kTrain);
  std::vector<std::string> train;
  // Each item as the QA scores read it, "q\na\n", and its answer alone: a
  // model this small memorizes an answer only where it saw it, and s_a scores
  // the answer at the start of a text.
  for (const auto& it : id_items) {
    train.push_back(it.text);
    train.push_back(it.answer + "\n");
  }
  train_in_order(ft, *tok, train, shuffled(train.size(), 2), 20, 3e-3f);
  auto b = wrap(base), f = wrap(ft);
  auto metric = [](const std::vector<ResultRow>& rows, const std::string& m) {
    for (const auto& r : rows)
      if (r.metric == m) return r.value;
    ADD_FAILURE() << "no row " << m;
    return -1.0;
  };
  OodSuiteOptions text, qa;
  qa.variant = "qa";
  auto rt = run_ood_suite(*b, *f, id_items, ood_items, text, "ood");
  ASSERT_TRUE(rt.ok()) << rt.status().message();
  auto rq = run_ood_suite(*b, *f, id_items, ood_items, qa, "ood");
  ASSERT_TRUE(rq.ok()) << rq.status().message();
  const double nlr = metric(*rt, "nlr_auroc");
  std::printf("ood qa: nlr_auroc %.4f s_a_given_q %.4f s_qa %.4f s_a %.4f\n", nlr,
              metric(*rq, "s_a_given_q_auroc"), metric(*rq, "s_qa_auroc"), metric(*rq, "s_a_auroc"));
  ASSERT_GT(nlr, 0.8);
  for (const char* m : {"s_a_given_q_auroc", "s_qa_auroc", "s_a_auroc"}) EXPECT_GT(metric(*rq, m), 0.8) << m;
  EXPECT_LT(metric(*rq, "s_qa_fpr95"), 0.5);
}

// Transcript positions that tie (four examples per step, as a batched run
// logs them) share their average rank: rho and its t-approximation p equal
// scipy's spearmanr on the last positions, and the permutation test ranks
// the same way. Every p follows the alternative (default: less, the paper's).
const char* kTiedSpearmanScript = R"PY(
from scipy.stats import spearmanr
out = {}
for alt in ['less', 'greater', 'two-sided']:
    r = spearmanr(args['order'], args['d'], alternative=alt)
    out[alt] = {'rho': float(r.correlation), 'p': float(r.pvalue)}
print(json.dumps(out))
)PY";

// 24 examples, four per step (order = step); ex0..ex3 are seen again in the
// last step, so they are placed there and tie with ex20..ex23. Two random
// models score them; `order` and `d` are the suite's vectors, in the suite's
// order (by last step, then by id), so that seeded permutations match.
struct TiedCase {
  std::vector<std::string> texts;
  std::vector<TextItem> items;
  std::vector<std::pair<std::string, double>> transcript;
  std::unique_ptr<NativeBackend> test, ref;
  std::vector<double> order, d;  // all 24, suite order

  TiedCase() {
    texts = word_texts(24, 5, 30, 9);
    const auto cfg = tiny_config(40, 32, 1);
    engine::GPT a = random_model(cfg, 1), r = random_model(cfg, 2);
    test = wrap(a), ref = wrap(r);
    for (size_t i = 0; i < texts.size(); ++i) items.push_back({"ex" + std::to_string(i), texts[i], "", ""});
    for (size_t i = 0; i < texts.size(); ++i) transcript.emplace_back("ex" + std::to_string(i), double(i / 4));
    for (size_t i = 0; i < 4; ++i) transcript.emplace_back("ex" + std::to_string(i), 5.0);
    std::map<std::string, size_t> by_id;
    for (size_t i = 0; i < texts.size(); ++i) by_id["ex" + std::to_string(i)] = i;
    std::vector<size_t> idx;
    for (const auto& [id, i] : by_id) idx.push_back(i);
    auto last_step = [](size_t i) { return i < 4 ? 5.0 : double(i / 4); };
    std::stable_sort(idx.begin(), idx.end(), [&](size_t x, size_t y) { return last_step(x) < last_step(y); });
    auto nt = mean_nll(*test, texts).value(), nr = mean_nll(*ref, texts).value();
    for (size_t i : idx) {
      order.push_back(last_step(i));
      d.push_back(nt[i] - nr[i]);
    }
  }
  // The last k of the suite's vectors.
  std::pair<std::vector<double>, std::vector<double>> last(size_t k) const {
    return {std::vector<double>(order.end() - k, order.end()), std::vector<double>(d.end() - k, d.end())};
  }
  static std::string script(const std::vector<double>& o, const std::vector<double>& dd) {
    return "args = json.loads(r\"\"\"" + nlohmann::json{{"order", o}, {"d", dd}}.dump() + "\"\"\")" +
           kTiedSpearmanScript;
  }
};

TEST(EvalNativeSuites, ProvenanceTiedOrdersShareAverageRanks) {
  engine::set_num_threads(1);
  TiedCase tc;
  ProvenanceSuiteOptions po;
  po.permutations = 4000;
  po.seed = 5;
  auto res = run_provenance_suite(*tc.test, *tc.ref, tc.transcript, tc.items, po, "provenance");
  ASSERT_TRUE(res.ok()) << res.status().message();
  EXPECT_EQ(res->n, 24);
  EXPECT_EQ(res->alternative, Alternative::kLess);
  ASSAY_PYREF_OR_SKIP(ref_json, TiedCase::script(tc.order, tc.d));
  EXPECT_NEAR(res->rho, ref_json["less"]["rho"].get<double>(), 1e-12);
  EXPECT_NEAR(res->p_t, ref_json["less"]["p"].get<double>(), 1e-10);
  // The permutation test shuffles the same average ranks with the same seed.
  auto perm = spearman_permutation_test(tc.order, tc.d, po.permutations, po.seed).value();
  EXPECT_EQ(res->p_perm, perm.p_value);
  EXPECT_NEAR(perm.phi_obs, -res->rho, 1e-12);
  // --limit keeps the first examples by last position.
  po.limit = 8;
  auto lim = run_provenance_suite(*tc.test, *tc.ref, tc.transcript, tc.items, po, "provenance");
  ASSERT_TRUE(lim.ok()) << lim.status().message();
  EXPECT_EQ(lim->n, 8);
}

// window = K keeps the last K examples by last position (the end of
// training); each alternative gives scipy's p_t on them and the permutation
// test of the same statistic; rows carry the alternative as their filter.
TEST(EvalNativeSuites, ProvenanceWindowAndAlternativeMatchScipy) {
  engine::set_num_threads(1);
  TiedCase tc;
  const auto [o12, d12] = tc.last(12);  // steps 4 and 5
  ASSAY_PYREF_OR_SKIP(ref_json, TiedCase::script(o12, d12));
  for (const char* name : {"less", "greater", "two-sided"}) {
    ProvenanceSuiteOptions po;
    po.permutations = 1000;
    po.seed = 2;
    po.window = 12;
    po.alternative = parse_alternative(name).value();
    auto res = run_provenance_suite(*tc.test, *tc.ref, tc.transcript, tc.items, po, "provenance");
    ASSERT_TRUE(res.ok()) << res.status().message();
    EXPECT_EQ(res->n, 12) << name;
    EXPECT_NEAR(res->rho, ref_json[name]["rho"].get<double>(), 1e-12) << name;
    EXPECT_NEAR(res->p_t, ref_json[name]["p"].get<double>(), 1e-10) << name;
    auto perm = spearman_permutation_test(o12, d12, po.permutations, po.seed, po.alternative).value();
    EXPECT_EQ(res->p_perm, perm.p_value) << name;
    EXPECT_DOUBLE_EQ(res->p_perm_floor, 1.0 / 1001);
    EXPECT_FALSE(res->p_exact.has_value());
    for (const auto& row : res->rows) {
      EXPECT_EQ(row.suite, "provenance");
      EXPECT_EQ(row.n, 12);
      EXPECT_EQ(row.filter, row.metric == "spearman_rho" ? std::string("none") : std::string(name))
          << row.metric;
    }
  }
  // A window of 10 (n <= 10) adds the exact p over all orderings, and it is
  // the verdict's p.
  ProvenanceSuiteOptions po;
  po.window = 10;
  auto ten = run_provenance_suite(*tc.test, *tc.ref, tc.transcript, tc.items, po, "provenance");
  ASSERT_TRUE(ten.ok()) << ten.status().message();
  ASSERT_TRUE(ten->p_exact.has_value());
  const auto [o10, d10] = tc.last(10);
  EXPECT_DOUBLE_EQ(*ten->p_exact, spearman_exact_p(o10, d10, Alternative::kLess).value());
  EXPECT_DOUBLE_EQ(ten->p_value, *ten->p_exact);
  // A window past the transcript keeps everything; one under 3 is refused,
  // and window and limit compose (the first 6 of the last 12).
  po.window = 100;
  EXPECT_EQ(run_provenance_suite(*tc.test, *tc.ref, tc.transcript, tc.items, po, "provenance")->n, 24);
  po.window = 2;
  auto two = run_provenance_suite(*tc.test, *tc.ref, tc.transcript, tc.items, po, "provenance");
  ASSERT_FALSE(two.ok());
  EXPECT_NE(two.status().message().find("(window 2)"), std::string::npos) << two.status().message();
  po.window = 12;
  po.limit = 6;
  auto both = run_provenance_suite(*tc.test, *tc.ref, tc.transcript, tc.items, po, "provenance");
  ASSERT_TRUE(both.ok()) << both.status().message();
  EXPECT_EQ(both->n, 6);
  EXPECT_NEAR(both->rho, spearman(std::vector<double>(o12.begin(), o12.begin() + 6),
                                  std::vector<double>(d12.begin(), d12.begin() + 6)).value().rho, 1e-12);
}

}  // namespace
}  // namespace assay::evals
