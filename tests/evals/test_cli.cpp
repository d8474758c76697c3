// `assay eval gsm8k` end to end: predictions files and an HTTP endpoint.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "fake_server.h"
#include "support/run_cmd.h"
#include "support/temp_dir.h"

namespace {

using assay::testing::CmdResult;

CmdResult run_assay(const std::string& args) {
  return assay::testing::run_cmd(std::string(ASSAY_EXE) + " " + args);
}

// Files of this program's tests, in a directory removed when it exits.
std::string tmp(const std::string& name) {
  static assay::testing::TempDir dir("evals-cli");
  return dir.file(name);
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str(), nullptr, false);
}

TEST(EvalsCli, PredictionsWorkedCases) {
  std::string preds = tmp("assay_cli_preds.jsonl");
  std::ofstream(preds)
      << R"({"response": " She earns $1,018.", "answer": "She works.\n#### 1,018"})" "\n"
      << R"({"response": " The answer is 1018. Question", "answer": "#### 1,018"})" "\n"
      << R"({"response": "...\n#### 1,018", "answer": "#### 1,018"})" "\n";
  std::string out = tmp("assay_cli_results.json"), samples = tmp("assay_cli_samples.jsonl");
  CmdResult r = run_assay("eval gsm8k --predictions " + preds + " --output " + out + " --samples " + samples);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("flexible-extract  1.0000"), std::string::npos) << r.out;
  auto j = read_json(out);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_NEAR(j["results"]["gsm8k"]["exact_match,strict-match"].get<double>(), 1.0 / 3, 1e-12);
  EXPECT_DOUBLE_EQ(j["results"]["gsm8k"]["exact_match,flexible-extract"].get<double>(), 1.0);
  EXPECT_EQ(j["versions"]["gsm8k"], 3.0);
  // lm-eval's samples layout: one line per document per filter.
  std::ifstream s(samples);
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(s, line);) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_EQ(lines[0]["filter"], "strict-match");
  EXPECT_EQ(lines[0]["filtered_resps"][0], "[invalid]");
  EXPECT_EQ(lines[3]["filter"], "flexible-extract");
  EXPECT_EQ(lines[3]["filtered_resps"][0], "$1,018.");
  EXPECT_EQ(lines[3]["exact_match"], 1.0);

  // --limit, custom field names, one filter.
  std::ofstream(preds) << R"({"out": ["#### 5"], "gold": 5})" "\n" << R"({"out": ["#### 6"], "gold": 5})" "\n";
  r = run_assay("eval gsm8k --predictions " + preds +
                " --pred-field out --ref-field gold --filter strict-match --limit 1 --output " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  j = read_json(out);
  EXPECT_DOUBLE_EQ(j["results"]["gsm8k"]["exact_match,strict-match"].get<double>(), 1.0);
  EXPECT_FALSE(j["results"]["gsm8k"].contains("exact_match,flexible-extract"));
  EXPECT_EQ(j["n-samples"]["gsm8k"]["effective"], 1);
}

// lm-eval's own samples file (one line per document per filter) counts each
// document once: n = 2 and the stderr of two documents.
TEST(EvalsCli, LmEvalSamplesFileAsPredictions) {
  std::string preds = tmp("assay_cli_lmeval_samples.jsonl");
  std::ofstream out(preds);
  for (const char* filter : {"strict-match", "flexible-extract"})
    for (int doc = 0; doc < 2; ++doc)
      out << nlohmann::json{{"doc_id", doc},
                            {"doc", {{"question", "q"}, {"answer", "#### 5"}}},
                            {"target", "#### 5"},
                            {"arguments", {{"gen_args_0", {{"arg_0", "Question: q\nAnswer:"}}}}},
                            {"resps", {{doc == 0 ? "#### 5" : "#### 6"}}},
                            {"filtered_resps", {doc == 0 ? "5" : "6"}},
                            {"filter", filter},
                            {"metrics", {"exact_match"}},
                            {"exact_match", doc == 0 ? 1.0 : 0.0}}
                 .dump()
          << "\n";
  out.close();
  std::string results = tmp("assay_cli_lmeval_results.json");
  CmdResult r = run_assay("eval gsm8k --predictions " + preds + " --output " + results);
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = read_json(results);
  EXPECT_EQ(j["n-samples"]["gsm8k"]["effective"], 2);
  EXPECT_DOUBLE_EQ(j["results"]["gsm8k"]["exact_match,strict-match"].get<double>(), 0.5);
  EXPECT_NEAR(j["results"]["gsm8k"]["exact_match_stderr,strict-match"].get<double>(), 0.5, 1e-12);
}

TEST(EvalsCli, RefsFromShippedTestSplit) {
  // Test doc 0 (the ducks) has answer 18; doc 1 (the robe) has answer 3.
  std::string preds = tmp("assay_cli_docs.jsonl");
  std::ofstream(preds) << R"({"doc_id": 1, "resps": [["#### 3"]]})" "\n"
                       << R"({"doc_id": 0, "resps": [["#### 17"]]})" "\n";
  CmdResult r = run_assay("eval gsm8k --predictions " + preds + " --pred-field resps --refs-from-test");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("strict-match      0.5000"), std::string::npos) << r.out;
}

TEST(EvalsCli, ErrorsAndUsage) {
  std::string preds = tmp("assay_cli_bad.jsonl");
  std::ofstream(preds) << R"({"text": "#### 5", "answer": "#### 5"})" "\n";
  CmdResult r = run_assay("eval gsm8k --predictions " + preds);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("assay eval gsm8k: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(":1: missing prediction field \"response\""), std::string::npos) << r.out;
  r = run_assay("eval gsm8k --predictions " + preds + " --endpoint http://127.0.0.1:1/v1");
  EXPECT_EQ(r.code, 2) << r.out;
  // A missing checkpoint is named in the error.
  r = run_assay("eval gsm8k --model-path /nonexistent/ckpt/");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("/nonexistent/ckpt"), std::string::npos) << r.out;
  r = run_assay("eval gsm8k --help");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("Examples:"), std::string::npos);
}

TEST(EvalsCli, EndpointAgainstLocalServer) {
  assay::evals::testing::FakeOpenAiServer server;
  std::string why = server.start();
  if (!why.empty()) GTEST_SKIP() << "fake server: " << why;
  // The canned model answers the ducks question (test doc 0) correctly with
  // "#### 18" and says 7 to everything else.
  std::string out = tmp("assay_cli_http.json");
  CmdResult r = run_assay("eval gsm8k --endpoint " + server.url() +
                    " --model echo-model --limit 2 --concurrency 2 --output " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = read_json(out);
  EXPECT_DOUBLE_EQ(j["results"]["gsm8k"]["exact_match,strict-match"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(j["results"]["gsm8k"]["exact_match,flexible-extract"].get<double>(), 0.5);
  EXPECT_EQ(j["n-shot"]["gsm8k"], 5);
  EXPECT_EQ(j["n-samples"]["gsm8k"]["original"], 1319);
  EXPECT_EQ(server.stats()["requests"], 2);
}

}  // namespace
