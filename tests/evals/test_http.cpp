// HTTP backend against a real local server (fake_openai_server.py) on a free
// 127.0.0.1 port: a real HTTP exchange with canned, deterministic completions.
#include <gtest/gtest.h>

#include <cmath>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "assay/evals_gsm8k.h"
#include "assay/evals_http.h"
#include "fake_server.h"
#include "support/run_cmd.h"

namespace assay::evals {
namespace {

class EvalsHttp : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why = server_.start();
    if (!why.empty()) GTEST_SKIP() << "fake server: " << why;
    url_ = server_.url();
  }
  std::unique_ptr<HttpBackend> backend(const std::string& model, int concurrency = 2,
                                       const std::string& bos_text = "") {
    HttpBackendOptions o;
    o.base_url = url_;
    o.model = model;
    o.concurrency = concurrency;
    o.bos_text = bos_text;
    o.backoff_s = 0.01;
    o.timeout_s = 20;
    auto b = make_http_backend(o);
    EXPECT_TRUE(b.ok()) << b.status().to_string();
    return std::move(b).value();
  }
  nlohmann::json stats() { return server_.stats(); }

  testing::FakeOpenAiServer server_;
  std::string url_;
};

// Canned model: token i > 0 has log-prob -(0.1 len + 0.01 i).
double lp(const std::string& tok, int i) { return -(0.1 * tok.size() + 0.01 * i); }

TEST_F(EvalsHttp, LoglikelihoodFromEchoedLogprobs) {
  for (const char* model : {"echo-model", "tokens-model"}) {
    SCOPED_TRACE(model);
    auto b = backend(model);
    // tokens: "Question:" " eggs" "\nAnswer:" | " 18" " x9" | " gen"
    auto r = loglikelihood(*b, {{"Question: eggs\nAnswer:", " 18 x9"}, {"Answer:", " 5"}});
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_NEAR((*r)[0].logprob, lp(" 18", 3) + lp(" x9", 4), 1e-12);
    EXPECT_EQ((*r)[0].n_tokens, 2);
    EXPECT_FALSE((*r)[0].is_greedy);  // " x9" is not the top token
    EXPECT_NEAR((*r)[1].logprob, lp(" 5", 1), 1e-12);
    EXPECT_TRUE((*r)[1].is_greedy);
    // Whole text: the first token is unscored; mean over the other two.
    auto nll = mean_nll(*b, {"a bb ccc"});
    ASSERT_TRUE(nll.ok()) << nll.status().to_string();
    EXPECT_NEAR((*nll)[0], -(lp(" bb", 1) + lp(" ccc", 2)) / 2, 1e-12);
  }
}

TEST_F(EvalsHttp, MissingEchoIsAClearError) {
  auto r = backend("noecho-model")->score({{"Answer:", " 5"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("echo"), std::string::npos) << r.status().message();
}

TEST_F(EvalsHttp, RetriesAndConcurrency) {
  auto b = backend("flaky-model", 4);
  std::vector<ScoreRequest> reqs;
  for (int i = 0; i < 12; ++i) reqs.push_back({"Answer:", " " + std::to_string(i)});
  auto r = b->score(reqs);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_NEAR((*r)[11].logprobs.at(0), lp(" 11", 1), 1e-12);
  auto s = stats();
  EXPECT_EQ(s["requests"].get<int>(), 36);  // two 503s, then success, per prompt
  EXPECT_GE(s["max_inflight"].get<int>(), 2);
  EXPECT_LE(s["max_inflight"].get<int>(), 4);
}

TEST_F(EvalsHttp, UnreachableServerFailsAfterRetries) {
  HttpBackendOptions o;
  o.base_url = "http://127.0.0.1:1/v1";
  o.model = "m";
  o.max_retries = 1;
  o.backoff_s = 0.01;
  auto b = make_http_backend(o).value();
  auto r = b->generate({{"hi", {}, 4}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_NE(r.status().message().find("2 attempts"), std::string::npos) << r.status().message();
  EXPECT_FALSE(make_http_backend({"ftp://x", "m", "", 4, 5, 0.5, 600, ""}).ok());
}

// The sampling parameters of a request reach the server with the OpenAI
// names; top_k (an extension) only when it limits anything.
TEST_F(EvalsHttp, GenerationSendsSamplingParams) {
  auto b = backend("sampling-model");
  GenRequest greedy{"p", {}, 8};
  GenRequest sampled{"p", {}, 8, {0.7, 0.9, 0, 5}};
  GenRequest top_k{"p", {}, 8, {1.0, 1.0, 40, std::nullopt}};
  auto r = b->generate({greedy, sampled, top_k});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  auto g = nlohmann::json::parse((*r)[0]), s = nlohmann::json::parse((*r)[1]),
       k = nlohmann::json::parse((*r)[2]);
  EXPECT_EQ(g, (nlohmann::json{{"temperature", 0.0}, {"top_p", 1.0}}));
  EXPECT_EQ(s, (nlohmann::json{{"temperature", 0.7}, {"top_p", 0.9}, {"seed", 5}}));
  EXPECT_EQ(k, (nlohmann::json{{"temperature", 1.0}, {"top_p", 1.0}, {"top_k", 40}}));
}

// bos_text "auto": one /tokenize probe per backend decides. A server that
// adds BOS itself gets the bare text (bos-model refuses a second BOS); one
// that adds none, or has no /tokenize route (404), gets "<|endoftext|>". Both
// conventions score every token of the text, with the same numbers.
TEST_F(EvalsHttp, AutoBosTextProbesTheServer) {
  const double want = -(lp("a", 1) + lp(" bb", 2) + lp(" ccc", 3)) / 3;
  struct Case {
    const char* model;
    const char* bos;
    const char* why;
  } cases[] = {{"bos-model", "", "the server adds BOS itself"},
               {"echo-model", "<|endoftext|>", "the server adds no BOS"},
               {"other-model", "<|endoftext|>", "HTTP 404"}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.model);
    auto b = backend(c.model, 2, "auto");
    EXPECT_EQ(b->resolved_bos_text(), c.bos);
    EXPECT_NE(b->describe().find(std::string("bos_text=auto:") + (*c.bos ? c.bos : "none")),
              std::string::npos) << b->describe();
    EXPECT_NE(b->describe().find(c.why), std::string::npos) << b->describe();
    auto nll = mean_nll(*b, {"a bb ccc", "a bb ccc"});
    ASSERT_TRUE(nll.ok()) << nll.status().to_string();
    EXPECT_NEAR((*nll)[0], want, 1e-12);
  }
  EXPECT_EQ(stats()["tokenize"].get<int>(), 3);  // once per backend, not per request
  // A fixed bos_text is used as given, without a probe.
  auto fixed = backend("echo-model", 2, "<|endoftext|>");
  EXPECT_NEAR(mean_nll(*fixed, {"a bb ccc"}).value()[0], want, 1e-12);
  EXPECT_EQ(stats()["tokenize"].get<int>(), 3);
  EXPECT_EQ(server_root("http://h:8000/v1/"), "http://h:8000");
  EXPECT_EQ(server_root("http://h:8000/v1/completions"), "http://h:8000");
  EXPECT_EQ(server_root("http://h:8000"), "http://h:8000");
}

TEST_F(EvalsHttp, Gsm8kEndToEnd) {
  std::vector<Gsm8kDoc> train;
  for (int i = 0; i < 10; ++i)
    train.push_back({"Train question " + std::to_string(i) + "?", "Work.\n#### " + std::to_string(i)});
  std::vector<Gsm8kDoc> test{{"Janet has eggs. How much?", "9 * 2 = <<9*2=18>>18\n#### 18"},
                             {"How many cats?", "#### 8"},
                             {"How many dogs?", "#### 7"}};
  Gsm8kConfig cfg;
  cfg.num_fewshot = 2;
  auto b = backend("echo-model");
  auto r = run_gsm8k(*b, test, train, cfg);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->samples.size(), 3u);
  // The canned answer runs on into "Question: ..." and "</s>": both cut locally.
  EXPECT_EQ(r->samples[0].response, " She sells 9 eggs for $2 each: $18.\n#### 18\n\n");
  EXPECT_EQ(r->samples[1].response, " I think the answer is 7.");
  EXPECT_EQ(r->samples[0].filtered["strict-match"], "18");
  EXPECT_EQ(r->samples[1].filtered["flexible-extract"], "7.");
  EXPECT_EQ(r->samples[1].filtered["strict-match"], "[invalid]");
  EXPECT_NEAR(r->exact_match["strict-match"].mean, 1.0 / 3, 1e-15);
  EXPECT_NEAR(r->exact_match["flexible-extract"].mean, 2.0 / 3, 1e-15);
  EXPECT_EQ(r->results["n-shot"]["gsm8k"], 2);
  auto shots = gsm8k_fewshot_indices(3, 10, 2, 1234);
  std::string head = "Question: " + train[shots[2][0]].question + "\nAnswer: ";
  EXPECT_EQ(r->samples[2].prompt.substr(0, head.size()), head);
}

}  // namespace
}  // namespace assay::evals

namespace assay::evals {
namespace {

bool maps_libcurl() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line))
    if (line.find("libcurl") != std::string::npos) return true;
  return false;
}

}  // namespace

// libcurl is opened on the first HTTP backend request, not at start: the
// `assay` binary does not link it (commands that never use the HTTP backend
// do not map it or its ~29 dependencies), and in this process it appears
// only once a request has gone out.
TEST_F(EvalsHttp, LibcurlIsOpenedOnTheFirstRequestOnly) {
  namespace fs = std::filesystem;
  const fs::path d = fs::temp_directory_path() / ("assay-curl-load-" + std::to_string(getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  const auto r = assay::testing::run_cmd("env LD_DEBUG=files LD_DEBUG_OUTPUT=" + (d / "trace").string() +
                                         " " + ASSAY_EXE + " --version");
  ASSERT_EQ(r.code, 0) << r.out;
  std::string trace;
  for (const auto& f : fs::directory_iterator(d)) {
    std::ifstream in(f.path());
    trace.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  fs::remove_all(d);
  EXPECT_NE(trace.find("libc.so"), std::string::npos) << "no loader trace was written";
  EXPECT_EQ(trace.find("libcurl"), std::string::npos) << "assay --version mapped libcurl";

  const bool before = maps_libcurl();
  auto b = backend("echo-model");
  auto out = loglikelihood(*b, {{"Answer:", " 5"}});
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_TRUE(maps_libcurl()) << "a request went out without libcurl mapped";
  // Earlier tests in this process may have opened it already; run alone
  // (--gtest_filter) this also checks it was not mapped at start.
  if (::testing::UnitTest::GetInstance()->test_to_run_count() == 1) EXPECT_FALSE(before);
}

}  // namespace assay::evals
