// Pure metric code of the preference, diversity and on-policy evals, and the
// OOD loss-alone baselines: hand-computed values and Python references
// (a pure-Python nltk-equivalent BLEU, nltk itself when importable, scipy,
// sklearn).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "assay/evals_diversity.h"
#include "assay/evals_onpolicy.h"
#include "assay/evals_preference.h"
#include "assay/evals_scores.h"
#include "assay/evals_suite.h"
#include "pyref.h"
#include "support/temp_dir.h"

namespace assay::evals {
namespace {

using json = nlohmann::json;

const ResultRow& find_row(const std::vector<ResultRow>& rows, const std::string& metric,
                          const std::string& filter = "none") {
  for (const auto& r : rows)
    if (r.metric == metric && r.filter == filter) return r;
  static ResultRow none;
  ADD_FAILURE() << "no row " << metric << "," << filter;
  return none;
}

// ---- preference ---------------------------------------------------------------

TEST(PreferenceReport, RewardsAndDisplacementByHand) {
  // A: chosen up 1, rejected down 1 (correctly ranked). B: chosen down 1,
  // rejected up 2 (displaced). C: nothing moves (a tie counts as 0).
  const std::vector<PrefLogps> pairs = {
      {-10, -12, -11, -11}, {-15, -14, -14, -16}, {-20, -20, -20, -20}};
  auto rows = preference_report(pairs, 0.1, "preference").value();
  const double third_se = std::sqrt(1.0 / 3.0) / std::sqrt(3.0);  // [1,0,0]: sd sqrt(1/3)
  EXPECT_NEAR(find_row(rows, "reward_accuracy").value, 1.0 / 3, 1e-12);
  EXPECT_NEAR(*find_row(rows, "reward_accuracy").stderr_, third_se, 1e-12);
  EXPECT_EQ(find_row(rows, "reward_accuracy").n, 3);
  // margins 0.1*(1-(-1)) = 0.2, 0.1*(-1-2) = -0.3, 0.
  EXPECT_NEAR(find_row(rows, "reward_margin").value, (0.2 - 0.3) / 3, 1e-12);
  EXPECT_NEAR(find_row(rows, "reward_chosen").value, (0.1 - 0.1 + 0) / 3, 1e-12);
  EXPECT_NEAR(find_row(rows, "reward_rejected").value, (-0.1 + 0.2 + 0) / 3, 1e-12);
  EXPECT_NEAR(find_row(rows, "chosen_logp_change").value, 0.0, 1e-12);
  EXPECT_NEAR(find_row(rows, "rejected_logp_change").value, 1.0 / 3, 1e-12);
  EXPECT_NEAR(find_row(rows, "chosen_logp_decreased").value, 1.0 / 3, 1e-12);
  EXPECT_NEAR(find_row(rows, "logp_accuracy").value, 1.0 / 3, 1e-12);
  EXPECT_NEAR(find_row(rows, "logp_chosen").value, -15, 1e-12);
  EXPECT_NEAR(find_row(rows, "logp_rejected").value, -46.0 / 3, 1e-12);
  // The displacement numbers agree with the existing DPO helper.
  auto d = likelihood_displacement({-10, -15, -20}, {-11, -14, -20}).value();
  EXPECT_NEAR(find_row(rows, "chosen_logp_decreased").value, d.fraction_negative, 1e-12);
  EXPECT_NEAR(find_row(rows, "chosen_logp_change").value, d.mean_delta, 1e-12);
  // Accuracy does not depend on beta; the margin scales with it.
  auto rows10 = preference_report(pairs, 1.0, "preference").value();
  EXPECT_EQ(find_row(rows10, "reward_accuracy").value, find_row(rows, "reward_accuracy").value);
  EXPECT_NEAR(find_row(rows10, "reward_margin").value, 10 * find_row(rows, "reward_margin").value, 1e-12);
  EXPECT_FALSE(preference_report(pairs, 0, "p").ok());
  EXPECT_FALSE(preference_report({}, 0.1, "p").ok());
  EXPECT_FALSE(preference_report({{NAN, 0, 0, 0}}, 0.1, "p").ok());
}

TEST(PreferenceReport, LoadsPairsAsDataPrefsWritesThem) {
  assay::testing::TempDir dir("prefs");
  const std::string path = dir.file("prefs_pairs.jsonl");
  std::ofstream(path) << R"({"id":"a","prompt":"Question: q\nAnswer:","chosen":" 1","rejected":" 2"})" "\n"
                      << R"({"prompt":"P","chosen":"c","rejected":"r"})" "\n";
  auto pairs = load_pref_pairs(path);
  ASSERT_TRUE(pairs.ok()) << pairs.status().message();
  ASSERT_EQ(pairs->size(), 2u);
  EXPECT_EQ((*pairs)[0].id, "a");
  EXPECT_EQ((*pairs)[0].chosen, " 1");
  EXPECT_EQ((*pairs)[1].id, "2");
  std::ofstream(path) << R"({"prompt":"P","chosen":"c"})" "\n";
  auto bad = load_pref_pairs(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("rejected"), std::string::npos) << bad.status().message();
}

TEST(PreferenceSuiteSpec, ShippedSpecsValidate) {
  std::string dir;
  auto p = find_suite_spec("preference", &dir);
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(p->task, "preference");
  EXPECT_EQ(p->options["beta"], 0.1);
  auto d = find_suite_spec("diversity", &dir);
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->task, "diversity");
}

// ---- diversity ----------------------------------------------------------------

TEST(Diversity, DistinctNCountsNgramsOverAllSamples) {
  auto d1 = distinct_n({split_words("a b a b")}, 1);
  EXPECT_EQ(d1.unique, 2);
  EXPECT_EQ(d1.total, 4);
  EXPECT_DOUBLE_EQ(d1.value, 0.5);
  EXPECT_NEAR(distinct_n({split_words("a b a b")}, 2).value, 2.0 / 3, 1e-15);
  // Pooled: "a b" appears in both samples and counts once among 1 + 2 bigrams.
  auto pooled = distinct_n({split_words("a b"), split_words(" a  b\tc\n")}, 2);
  EXPECT_EQ(pooled.unique, 2);
  EXPECT_EQ(pooled.total, 3);
  EXPECT_EQ(distinct_n({{}, split_words("x")}, 2).value, 0.0);  // no bigram at all
}

const char* kBleuScript = R"PY(
import math
from collections import Counter
def ngrams(ws, n): return [tuple(ws[i:i+n]) for i in range(len(ws)-n+1)]
def bleu(refs, hyp, N=4):
    nums, dens = [], []
    for n in range(1, N+1):
        hc = Counter(ngrams(hyp, n)); mx = {}
        for r in refs:
            for g, c in Counter(ngrams(r, n)).items(): mx[g] = max(mx.get(g, 0), c)
        nums.append(sum(min(c, mx.get(g, 0)) for g, c in hc.items()))
        dens.append(max(1, sum(hc.values())))
    if nums[0] == 0: return 0.0
    c = len(hyp); r = min((len(x) for x in refs), key=lambda l: (abs(l-c), l))
    bp = 1.0 if c > r else (0.0 if c == 0 else math.exp(1 - r/c))
    ps = [(0.1/d if k == 0 else k/d) for k, d in zip(nums, dens)]
    return bp * math.exp(math.fsum(math.log(p)/N for p in ps))
def self_bleu(samples):
    return sum(bleu(samples[:i] + samples[i+1:], samples[i]) for i in range(len(samples))) / len(samples)
cases = args['cases']
out = {'pure': [bleu(c['refs'], c['hyp']) for c in cases],
       'self': [self_bleu(s) for s in args['groups']]}
try:
    from nltk.translate.bleu_score import sentence_bleu, SmoothingFunction
    m1 = SmoothingFunction().method1
    out['nltk'] = [float(sentence_bleu(c['refs'], c['hyp'], smoothing_function=m1)) for c in cases]
except ImportError:
    out['nltk'] = None
print(json.dumps(out))
)PY";

TEST(Diversity, SentenceBleuMatchesNltkMethod1) {
  struct Case {
    std::vector<std::string> refs;
    std::string hyp;
  };
  const std::vector<Case> cases = {
      {{"the cat sat on the mat", "a cat was on the mat"}, "the cat sat on a mat"},
      {{"the cat sat on the mat"}, "the cat the cat on the mat"},             // clipping
      {{"one two three four five six seven"}, "one two x three four"},       // brevity, zero 3/4-grams
      {{"a b c", "a b c d e f"}, "a b"},                                    // shorter than 4, bp
      {{"a b c d"}, "e f g h"},                                             // no unigram match: 0
      {{"a b c d e", "a b c d e f g"}, "a b c d e f"},                      // length tie -> shorter
      {{"x y z"}, "x y z w v u t s"},                                       // longer than refs: bp 1
  };
  const std::vector<std::vector<std::string>> groups = {
      {"the cat sat on the mat", "the cat sat on a mat", "a dog ran in the park"},
      {"same words here", "same words here"},
      {"alpha beta gamma delta", "beta gamma delta alpha", "gamma", "delta alpha beta gamma epsilon"}};
  json jc = json::array();
  for (const auto& c : cases) {
    json refs = json::array();
    for (const auto& r : c.refs) refs.push_back(split_words(r));
    jc.push_back({{"refs", refs}, {"hyp", split_words(c.hyp)}});
  }
  json jg = json::array();
  for (const auto& g : groups) {
    json s = json::array();
    for (const auto& t : g) s.push_back(split_words(t));
    jg.push_back(s);
  }
  const std::string script = "args = json.loads(r\"\"\"" + json{{"cases", jc}, {"groups", jg}}.dump() +
                             "\"\"\")" + kBleuScript;
  ASSAY_PYREF_OR_SKIP(ref, script);
  for (size_t i = 0; i < cases.size(); ++i) {
    std::vector<std::vector<std::string>> refs;
    for (const auto& r : cases[i].refs) refs.push_back(split_words(r));
    const double mine = sentence_bleu(refs, split_words(cases[i].hyp));
    EXPECT_NEAR(mine, ref["pure"][i].get<double>(), 1e-12) << "case " << i;
    if (!ref["nltk"].is_null()) EXPECT_NEAR(mine, ref["nltk"][i].get<double>(), 1e-12) << "nltk, case " << i;
  }
  if (ref["nltk"].is_null()) std::printf("nltk not importable: checked against the pure-Python BLEU only\n");
  EXPECT_EQ(sentence_bleu({split_words("a b c d")}, split_words("e f g h")), 0.0);
  for (size_t g = 0; g < groups.size(); ++g) {
    std::vector<std::vector<std::string>> s;
    for (const auto& t : groups[g]) s.push_back(split_words(t));
    EXPECT_NEAR(self_bleu(s), ref["self"][g].get<double>(), 1e-12) << "group " << g;
  }
  // Identical samples of 4+ words: 1. Of 3 words: no 4-gram, so p4 = 0.1 (method1): 0.1^(1/4).
  EXPECT_NEAR(self_bleu({split_words("the same four words"), split_words("the same four words")}), 1.0, 1e-12);
  EXPECT_NEAR(self_bleu({split_words("same words here"), split_words("same words here")}),
              std::pow(0.1, 0.25), 1e-12);
  EXPECT_TRUE(std::isnan(self_bleu({split_words("alone")})));
}

const char* kEntropyScript = R"PY(
import numpy as np
from scipy.stats import entropy
from scipy.special import softmax
print(json.dumps({'words': float(entropy(args['counts'])),
                  'logits': [float(entropy(softmax(np.array(z, dtype=np.float64)))) for z in args['logits']]}))
)PY";

TEST(Diversity, EntropiesMatchScipy) {
  // Words: a x3, b x2, c x1 over two samples.
  const std::vector<std::vector<std::string>> samples = {split_words("a b a"), split_words("c a b")};
  const std::vector<std::vector<float>> logits = {{0, 0, 0, 0}, {10, -3, 2.5f, 0.25f}, {-50, 40, 39.5f, -1}};
  const std::string script = "args = json.loads(r\"\"\"" +
                             json{{"counts", {3, 2, 1}}, {"logits", logits}}.dump() + "\"\"\")" +
                             kEntropyScript;
  ASSAY_PYREF_OR_SKIP(ref, script);
  EXPECT_NEAR(word_entropy(samples), ref["words"].get<double>(), 1e-12);
  EXPECT_EQ(word_entropy({{}}), 0.0);
  for (size_t i = 0; i < logits.size(); ++i)
    EXPECT_NEAR(logits_entropy(logits[i].data(), 4), ref["logits"][i].get<double>(), 1e-6) << i;
  EXPECT_NEAR(logits_entropy(logits[0].data(), 4), std::log(4.0), 1e-12);
}

TEST(Diversity, ReportRowsAndSeeds) {
  DiversityInputs in;
  in.texts = {{"a b c", "a b c"}, {"d e", "f g", "h"}, {"lonely"}};
  in.predictive_entropy = {{1.0, 2.0}, {3.0, 4.0, NAN}, {5.0}};
  auto rows = diversity_report(in, "preference").value();
  EXPECT_NEAR(find_row(rows, "distinct_1").value, 9.0 / 12, 1e-12);  // a b c d e f g h lonely / 12 words
  EXPECT_NEAR(find_row(rows, "distinct_2").value, 4.0 / 6, 1e-12);   // ab bc de fg / 6 bigrams
  const ResultRow& sb = find_row(rows, "self_bleu");
  EXPECT_EQ(sb.n, 2);  // the one-sample prompt has no self-BLEU
  EXPECT_NEAR(sb.value, (std::pow(0.1, 0.25) + self_bleu({{"d", "e"}, {"f", "g"}, {"h"}})) / 2, 1e-12);
  EXPECT_EQ(find_row(rows, "word_entropy").n, 12);
  EXPECT_NEAR(find_row(rows, "sample_words").value, 12.0 / 6, 1e-12);
  EXPECT_NEAR(find_row(rows, "predictive_entropy").value, 3.0, 1e-12);  // NaN (no token) left out
  EXPECT_EQ(find_row(rows, "predictive_entropy").n, 5);
  EXPECT_FALSE(diversity_report({}, "d").ok());
  // Seeds: stable, distinct across samples and prompts, independent of other prompts.
  EXPECT_EQ(sample_seed(7, 3, 4, 1), sample_seed(7, 3, 4, 1));
  EXPECT_NE(sample_seed(7, 3, 4, 1), sample_seed(7, 3, 4, 2));
  EXPECT_NE(sample_seed(7, 3, 4, 1), sample_seed(7, 2, 4, 1));
  EXPECT_NE(sample_seed(7, 3, 4, 1), sample_seed(8, 3, 4, 1));
}

// ---- on-policy pairs ------------------------------------------------------------

TEST(OnPolicy, ContrastPairsAndOptions) {
  const VerifiedPrompt p{"q1", "Question: x\nAnswer:", "#### 3"};
  auto s = [](const char* t, bool ok) { return OnPolicySample{t, "", ok}; };
  // Distinct correct {A, C} vs distinct incorrect {B, D}: the duplicate B adds nothing.
  const std::vector<OnPolicySample> samples = {s(" A", true), s(" B", false), s(" B", false),
                                               s(" C", true), s(" D", false)};
  auto one = contrast_pairs(p, samples, 1);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].id, "q1");
  EXPECT_EQ(one[0].prompt, p.prompt);
  EXPECT_EQ(one[0].chosen, " A");
  EXPECT_EQ(one[0].rejected, " B");
  auto many = contrast_pairs(p, samples, 5);
  ASSERT_EQ(many.size(), 2u);
  EXPECT_EQ(many[1].id, "q1-1");
  EXPECT_EQ(many[1].chosen, " C");
  EXPECT_EQ(many[1].rejected, " D");
  EXPECT_TRUE(contrast_pairs(p, {s(" A", true), s(" C", true)}, 3).empty());
  EXPECT_TRUE(contrast_pairs(p, {s(" B", false)}, 3).empty());

  OnPolicyOptions o;
  EXPECT_TRUE(validate(o).ok());
  EXPECT_EQ(o.sampling.temperature, 1.0);
  o.verifier = "math";
  EXPECT_FALSE(validate(o).ok());
  o = {};
  o.samples_per_prompt = 1;
  EXPECT_FALSE(validate(o).ok());
  o = {};
  o.filter = "none";
  EXPECT_FALSE(validate(o).ok());
  o = {};
  ASSERT_TRUE(apply_gen_kwargs("seed=5,max_gen_toks=32,top_p=0.9", &o).ok());
  EXPECT_EQ(o.sampling.temperature, 1.0);  // sampling unless told otherwise
  EXPECT_EQ(*o.sampling.seed, 5u);
  EXPECT_EQ(o.max_gen_toks, 32);
  EXPECT_DOUBLE_EQ(o.sampling.top_p, 0.9);
  ASSERT_TRUE(apply_gen_kwargs("temperature=0", &o).ok());
  EXPECT_TRUE(o.sampling.greedy());
  EXPECT_FALSE(apply_gen_kwargs("bogus=1", &o).ok());
  OnPolicyResult r;
  r.prompts = 3;
  r.prompts_all_wrong = 1;
  EXPECT_NE(summary(r).find("3 prompts"), std::string::npos);
}

// ---- OOD loss-alone baselines -------------------------------------------------------

const char* kOodLossScript = R"PY(
import numpy as np
from sklearn.metrics import roc_auc_score
b = np.array(args['base']); f = np.array(args['ft']); y = np.array(args['labels'])
def ms(x): return [float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x)))]
print(json.dumps({'auroc_base': float(roc_auc_score(y, b)), 'auroc_ft': float(roc_auc_score(y, f)),
                  'id_base': ms(b[y == 0]), 'id_ft': ms(f[y == 0]),
                  'ood_base': ms(b[y == 1]), 'ood_ft': ms(f[y == 1])}))
)PY";

TEST(OodLossReport, BaseLossBaselineAndMeanLossesMatchSklearn) {
  // Ties included (2.0 twice across classes).
  const std::vector<double> base = {2.0, 2.5, 1.5, 3.0, 2.0, 2.8, 3.5};
  const std::vector<double> ft = {1.0, 1.2, 0.9, 2.9, 3.1, 1.1, 3.3};
  const std::vector<int> labels = {0, 0, 0, 1, 1, 1, 1};
  std::vector<OodText> texts;
  for (size_t i = 0; i < base.size(); ++i) texts.push_back({base[i], ft[i], 10, labels[i]});
  const std::string script = "args = json.loads(r\"\"\"" +
                             json{{"base", base}, {"ft", ft}, {"labels", labels}}.dump() + "\"\"\")" +
                             kOodLossScript;
  ASSAY_PYREF_OR_SKIP(ref, script);
  auto rows = ood_loss_report(texts, "ood");
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  EXPECT_NEAR(find_row(*rows, "base_loss_auroc").value, ref["auroc_base"].get<double>(), 1e-12);
  for (const char* m : {"base_loss_aupr", "base_loss_ap", "base_loss_fpr95"}) find_row(*rows, m);
  // The finetuned loss alone is ood_report's loss_auroc.
  auto main_rows = ood_report(texts, "ood").value();
  EXPECT_NEAR(find_row(main_rows, "loss_auroc").value, ref["auroc_ft"].get<double>(), 1e-12);
  for (const auto& [filter, key] : std::vector<std::pair<std::string, std::string>>{
           {"id_base", "id_base"}, {"id_finetuned", "id_ft"}, {"ood_base", "ood_base"}, {"ood_finetuned", "ood_ft"}}) {
    const ResultRow& r = find_row(*rows, "mean_loss", filter);
    EXPECT_NEAR(r.value, ref[key][0].get<double>(), 1e-12) << filter;
    EXPECT_NEAR(*r.stderr_, ref[key][1].get<double>(), 1e-12) << filter;
    EXPECT_EQ(r.n, filter.rfind("id", 0) == 0 ? 3 : 4);
  }
  texts[0].label = 2;
  EXPECT_FALSE(ood_loss_report(texts, "ood").ok());
}

}  // namespace
}  // namespace assay::evals
