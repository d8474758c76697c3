// GSM8K: Python-compatible sampling, prompts, filters and exact_match.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "assay/evals_gsm8k.h"
#include "assay/evals_pyrandom.h"
#include "pyref.h"

namespace assay::evals {
namespace {

const std::string kRef = "Step one.\nShe has 1,000 + 18 = <<1000+18=1018>>1018.\n#### 1,018";

// The worked cases of the reference table.
TEST(EvalsGsm8k, WorkedCases) {
  EXPECT_EQ(gsm8k_normalize(kRef), "1018");
  struct Case {
    std::string response;
    double strict, flexible;
  } cases[] = {{" She earns $1,018.", 0, 1},
               {" The answer is 1018. Question", 0, 1},
               {"...\n#### 1,018", 1, 1}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.response);
    EXPECT_EQ(gsm8k_exact_match(filter_strict_match(c.response), kRef), c.strict == 1);
    EXPECT_EQ(gsm8k_exact_match(filter_flexible_extract(c.response), kRef), c.flexible == 1);
  }
  EXPECT_EQ(filter_strict_match(" She earns $1,018."), "[invalid]");
  EXPECT_EQ(filter_flexible_extract(" She earns $1,018."), "$1,018.");
  EXPECT_EQ(filter_flexible_extract("no digits here"), "[invalid]");
  EXPECT_EQ(filter_strict_match("#### -12.5\n#### 3"), "-12.5");
}

TEST(EvalsGsm8k, AggregateAndResultsJson) {
  Gsm8kConfig cfg;
  std::vector<std::string> responses{" She earns $1,018.", " The answer is 1018. Question",
                                     "...\n#### 1,018", "#### 7"};
  std::vector<std::string> refs(4, kRef);
  auto r = score_gsm8k(responses, refs, cfg).value();
  // strict: 0,0,1,0 -> mean 0.25, sample std 0.5, stderr 0.25
  EXPECT_DOUBLE_EQ(r.exact_match["strict-match"].mean, 0.25);
  EXPECT_NEAR(r.exact_match["strict-match"].stderr_, 0.25, 1e-15);
  EXPECT_DOUBLE_EQ(r.exact_match["flexible-extract"].mean, 0.75);
  const auto& res = r.results["results"]["gsm8k"];
  EXPECT_DOUBLE_EQ(res["exact_match,strict-match"].get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(res["exact_match,flexible-extract"].get<double>(), 0.75);
  EXPECT_NEAR(res["exact_match_stderr,flexible-extract"].get<double>(), 0.25, 1e-15);
  EXPECT_EQ(r.results["n-shot"]["gsm8k"], 5);
  EXPECT_EQ(r.results["versions"]["gsm8k"], 3.0);
  EXPECT_EQ(r.results["higher_is_better"]["gsm8k"]["exact_match"], true);
  EXPECT_EQ(r.results["configs"]["gsm8k"]["generation_kwargs"]["until"][0], "Question:");
  ASSERT_EQ(r.rows.size(), 2u);
  EXPECT_EQ(r.rows[0].metric, "exact_match");
  EXPECT_EQ(r.rows[0].filter, "strict-match");
  EXPECT_EQ(r.rows[0].n, 4);
  EXPECT_EQ(r.rows[0].suite_version, "3.0");
  EXPECT_FALSE(score_gsm8k({"a"}, {"b", "c"}, cfg).ok());
  cfg.filters = {"nonsense"};
  EXPECT_FALSE(score_gsm8k({"a"}, {"b"}, cfg).ok());
}

const char* kRandomScript = R"PY(
import random
r = random.Random(1234)
gsm = [r.sample(range(7473), 5) for _ in range(5)]
r = random.Random(0)
small = [r.sample(range(10), 3) for _ in range(3)]
r = random.Random(2**40 + 5)
mid = [r.sample(range(100), 20), r.getrandbits(40), r.getrandbits(7), r.random()]
print(json.dumps(dict(gsm=gsm, small=small, mid=mid)))
)PY";

TEST(EvalsGsm8k, PyRandomMatchesCPython) {
  ASSAY_PYREF_OR_SKIP(ref, kRandomScript);
  auto shots = gsm8k_fewshot_indices(5, 7473, 5, 1234);
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(shots[i], ref["gsm"][i].get<std::vector<uint64_t>>()) << "doc " << i;
  PyRandom small(0);
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(small.sample(10, 3), ref["small"][i].get<std::vector<uint64_t>>());
  PyRandom mid((1ull << 40) + 5);
  EXPECT_EQ(mid.sample(100, 20), ref["mid"][0].get<std::vector<uint64_t>>());
  EXPECT_EQ(mid.getrandbits(40), ref["mid"][1].get<uint64_t>());
  EXPECT_EQ(mid.getrandbits(7), ref["mid"][2].get<uint64_t>());
  EXPECT_DOUBLE_EQ(mid.random(), ref["mid"][3].get<double>());
}

// The hand-written filters and normalizer against Python's `re` running the
// very regexes of the task config, on tricky strings.
const char* kRegexScript = R"PY(
import re
cases = ["#### 5", "#### -5", "#### -", "x #### $5", "#### 1,234.50.", "a -3 b -$4 c $5.",
         "1 2 3", "-.5 and -7", "$$", "4.", "Total: -1,000,000\n", "#### 1\n#### 2",
         "no number", "3 apples ... 12.\n", "x.\n", "-", "7-8", "a 5,,", "A1B", "\n#### 9\nQuestion"]
strict = re.compile(r"#### (\-?[0-9\.\,]+)")
flex = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
def filt(rx, s, sel):
    m = rx.findall(s)
    if not m: return "[invalid]"
    m = m[sel]
    if isinstance(m, tuple):
        m = [x for x in m if x]
        m = m[0] if m else "[invalid]"
    return m.strip()
def norm(s):
    for r in [",", "\\$", "(?s).*#### ", "\\.$"]:
        s = re.sub(r, "", s)
    return s.lower()
print(json.dumps([dict(s=c, strict=filt(strict, c, 0), flex=filt(flex, c, -1), norm=norm(c)) for c in cases]))
)PY";

TEST(EvalsGsm8k, FiltersMatchPythonRegex) {
  ASSAY_PYREF_OR_SKIP(ref, kRegexScript);
  for (const auto& c : ref) {
    std::string s = c["s"];
    SCOPED_TRACE(s);
    EXPECT_EQ(filter_strict_match(s), c["strict"].get<std::string>());
    EXPECT_EQ(filter_flexible_extract(s), c["flex"].get<std::string>());
    EXPECT_EQ(gsm8k_normalize(s), c["norm"].get<std::string>());
  }
}

TEST(EvalsGsm8k, PromptFromShippedData) {
  std::string dir = std::string(ASSAY_SOURCE_DIR) + "/evals/data/gsm8k/";
  auto test = load_gsm8k_jsonl(dir + "test.jsonl");
  auto train = load_gsm8k_jsonl(dir + "train.jsonl");
  ASSERT_TRUE(test.ok()) << test.status().to_string();
  ASSERT_TRUE(train.ok()) << train.status().to_string();
  EXPECT_EQ(test->size(), 1319u);
  EXPECT_EQ(train->size(), 7473u);
  auto shots = gsm8k_fewshot_indices(1, train->size(), 5, 1234);
  std::vector<const Gsm8kDoc*> docs;
  for (auto k : shots[0]) docs.push_back(&(*train)[k]);
  std::string p = gsm8k_prompt((*test)[0], docs);
  std::string first = "Question: " + (*train)[6374].question + "\nAnswer: " +
                      (*train)[6374].answer + "\n\nQuestion: " + (*train)[3610].question;
  EXPECT_EQ(p.substr(0, first.size()), first);
  std::string tail = "\n\nQuestion: " + (*test)[0].question + "\nAnswer:";
  ASSERT_GE(p.size(), tail.size());
  EXPECT_EQ(p.substr(p.size() - tail.size()), tail);
  EXPECT_FALSE(load_gsm8k_jsonl(dir + "missing.jsonl").ok());
}

}  // namespace
}  // namespace assay::evals
