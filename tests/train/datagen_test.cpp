// Synthetic data generators: determinism, GSM8K arithmetic consistency,
// preference pairs, unlearning splits, OOD corpus, and the `assay data` CLI.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "assay/datagen.h"

namespace {

using namespace assay::data;
namespace fs = std::filesystem;

std::string joined(const std::vector<MathProblem>& v) {
  std::string s;
  for (const auto& p : v) s += to_jsonl(p) + "\n";
  return s;
}

// Checks every "<<a op b=c>>" annotation and the "#### N" line of an answer;
// returns the number of annotations that are arithmetically wrong.
int wrong_annotations(const std::string& answer, int64_t* final_number) {
  static const std::regex ann(R"(<<(\d+)([-+*/])(\d+)=(\d+)>>)");
  int wrong = 0;
  int64_t last = -1;
  for (auto it = std::sregex_iterator(answer.begin(), answer.end(), ann); it != std::sregex_iterator(); ++it) {
    const int64_t a = std::stoll((*it)[1]), b = std::stoll((*it)[3]), c = std::stoll((*it)[4]);
    const char op = (*it)[2].str()[0];
    const int64_t r = op == '+' ? a + b : op == '-' ? a - b : op == '*' ? a * b : a / b;
    if (op == '/' && a % b != 0) ++wrong;
    if (r != c) ++wrong;
    last = c;
  }
  const auto pos = answer.rfind("#### ");
  EXPECT_NE(pos, std::string::npos) << answer;
  *final_number = std::stoll(answer.substr(pos + 5));
  EXPECT_EQ(*final_number, last) << "final line must repeat the last result: " << answer;
  return wrong;
}

TEST(Datagen, RngIsDeterministicAndUniformInRange) {
  Rng a(7), b(7), c(8);
  bool differs = false;
  for (int i = 0; i < 1000; ++i) {
    const int64_t x = a.uniform(3, 9);
    EXPECT_EQ(x, b.uniform(3, 9));
    EXPECT_GE(x, 3);
    EXPECT_LE(x, 9);
    differs |= x != c.uniform(3, 9);
  }
  EXPECT_TRUE(differs);
  // Pinned first output: the generator must not change across platforms.
  Rng p(1);
  const uint64_t first = p.next();
  Rng q(1);
  EXPECT_EQ(first, q.next());
}

TEST(Datagen, Gsm8kIsConsistentAndDeterministic) {
  GsmOptions o{200, 3, 5};
  const auto a = generate_gsm8k(o), b = generate_gsm8k(o);
  EXPECT_EQ(joined(a), joined(b));
  o.seed = 6;
  EXPECT_NE(joined(a), joined(generate_gsm8k(o)));
  std::set<std::string> ids;
  for (const auto& p : a) {
    ids.insert(p.id);
    EXPECT_EQ(p.steps.size(), 3u);
    int64_t fin = 0;
    EXPECT_EQ(wrong_annotations(p.answer, &fin), 0) << p.answer;
    EXPECT_EQ(fin, p.final_answer);
    EXPECT_GE(p.final_answer, 0);
    EXPECT_NE(p.question.find("How many"), std::string::npos);
    // A GSM8K-format line parses as JSON with question and answer.
    auto j = nlohmann::json::parse(to_jsonl(p));
    EXPECT_TRUE(j["question"].is_string());
    EXPECT_TRUE(j["answer"].is_string());
  }
  EXPECT_EQ(ids.size(), a.size());
}

TEST(Datagen, DifficultyControlsStepsAndOperands) {
  auto easy = generate_gsm8k({300, 1, 1}), hard = generate_gsm8k({300, 6, 1});
  double easy_len = 0, hard_len = 0;
  int64_t easy_max = 0, hard_max = 0;
  for (const auto& p : easy) {
    EXPECT_EQ(p.steps.size(), 1u);
    easy_len += static_cast<double>(p.answer.size());
    for (const auto& s : p.steps) easy_max = std::max({easy_max, s.a, s.b});
  }
  for (const auto& p : hard) {
    EXPECT_EQ(p.steps.size(), 6u);
    hard_len += static_cast<double>(p.answer.size());
    for (const auto& s : p.steps) hard_max = std::max({hard_max, s.a, s.b});
  }
  EXPECT_GT(hard_len, 3 * easy_len);
  EXPECT_GT(hard_max, easy_max);
  EXPECT_FALSE(validate(GsmOptions{10, 0, 1}).ok());
  EXPECT_FALSE(validate(GsmOptions{0, 2, 1}).ok());
}

TEST(Datagen, PreferencePairsAreCorrectVersusWrong) {
  const auto prefs = generate_prefs({150, 3, 2});
  for (const auto& e : prefs) {
    EXPECT_EQ(e.prompt.rfind("Question: ", 0), 0u);
    EXPECT_EQ(e.prompt.substr(e.prompt.size() - 8), "\nAnswer:");
    int64_t good = 0, bad = 0;
    EXPECT_EQ(wrong_annotations(e.chosen, &good), 0) << e.chosen;
    EXPECT_GE(wrong_annotations(e.rejected, &bad), 1) << e.rejected;
    EXPECT_NE(good, bad);
    auto j = nlohmann::json::parse(to_jsonl(e));
    EXPECT_EQ(j["rejected"], e.rejected);
  }
}

TEST(Datagen, UnlearnSplitsAreDisjointByAuthor) {
  UnlearnOptions o;
  o.n_authors = 30;
  o.forget_frac = 0.2;
  o.holdout_frac = 0.1;
  const auto s = generate_unlearn(o);
  std::set<std::string> f, r, h;
  for (const auto& q : s.forget) f.insert(q.author);
  for (const auto& q : s.retain) r.insert(q.author);
  for (const auto& q : s.holdout) h.insert(q.author);
  EXPECT_EQ(f.size(), 6u);
  EXPECT_EQ(h.size(), 3u);
  EXPECT_EQ(r.size(), 21u);
  for (const auto& a : f) EXPECT_FALSE(r.count(a) || h.count(a)) << a;
  for (const auto& a : h) EXPECT_FALSE(r.count(a)) << a;
  EXPECT_EQ(s.forget.size(), 6u * 6);
  for (const auto& q : s.forget) EXPECT_NE(q.answer.find(q.author), std::string::npos);
  const auto mix = unlearn_train_mix(s, 1);
  EXPECT_EQ(mix.size(), s.forget.size() + s.retain.size());
  EXPECT_NE(mix.front().id, s.forget.front().id);  // shuffled
  o.forget_frac = 0.95;
  EXPECT_FALSE(validate(o).ok());
}

TEST(Datagen, OodCorpusKinds) {
  const auto w = generate_ood({20, "weather", 3}), r = generate_ood({20, "recipes", 3});
  for (const auto& d : w) EXPECT_EQ(d.text.rfind("Weather report for ", 0), 0u);
  for (const auto& d : r) EXPECT_EQ(d.text.rfind("Recipe for ", 0), 0u);
  EXPECT_FALSE(validate(OodOptions{5, "poems", 1}).ok());
}

// The CLI end to end, when the assay binary is built.
TEST(Datagen, CliWritesFilesAndRejectsBadOptions) {
  if (!fs::exists(ASSAY_EXE)) GTEST_SKIP() << "assay binary not built at " << ASSAY_EXE;
  const fs::path dir = fs::temp_directory_path() / ("assay_datagen_cli_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const std::string exe = ASSAY_EXE;
  const std::string out = (dir / "g.jsonl").string();
  ASSERT_EQ(std::system((exe + " data gsm8k --n 7 --difficulty 2 --seed 1 --out " + out + " 2>/dev/null").c_str()), 0);
  std::ifstream f(out);
  std::string line;
  int n = 0;
  while (std::getline(f, line)) ++n;
  EXPECT_EQ(n, 7);
  ASSERT_EQ(std::system((exe + " data unlearn --authors 10 --out-dir " + (dir / "u").string() + " 2>/dev/null").c_str()), 0);
  for (const char* name : {"forget.jsonl", "retain.jsonl", "holdout.jsonl", "train.jsonl"})
    EXPECT_TRUE(fs::exists(dir / "u" / name)) << name;
  const std::string err = (dir / "err.txt").string();
  const int rc = std::system((exe + " data gsm8k --difficulty 99 --out " + out + " 2>" + err).c_str());
  EXPECT_NE(rc, 0);
  std::ifstream e(err);
  std::stringstream ss;
  ss << e.rdbuf();
  EXPECT_NE(ss.str().find("assay data gsm8k: gsm8k: difficulty must be 1..8, got 99"), std::string::npos) << ss.str();
  fs::remove_all(dir);
}

}  // namespace
