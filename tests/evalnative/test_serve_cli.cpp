// `assay serve` and `assay eval` end to end: the OpenAI-compatible API over a
// native checkpoint, the HTTP backend against a real `assay serve` process
// (same log-likelihoods as the native backend within 1e-4), and suite results
// stored in SQLite with a second identical eval served from the cache.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "assay/evals_http.h"
#include "assay/evals_native.h"
#include "assay/store.h"
#include "tiny_models.h"

namespace assay::evals {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct CmdResult {
  int code = -1;
  std::string out;
};

CmdResult run_cmd(const std::string& cmd) {
  CmdResult r;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int st = pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

class EvalNativeServeCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    engine::set_num_threads(1);
    dir_ = new fs::path(fs::temp_directory_path() / ("evalnative-" + std::to_string(getpid())));
    fs::create_directories(*dir_);
    auto tok = engine::make_byte_tokenizer();
    const auto cfg = testing::tiny_config(48);
    // Two "runs": a has a transcript and train config beside its checkpoint.
    const auto texts = testing::random_texts(40, 20, 9);
    std::ofstream data(*dir_ / "data.jsonl");
    for (size_t i = 0; i < texts.size(); ++i)
      data << json{{"id", "ex" + std::to_string(i)}, {"text", texts[i]}}.dump() << "\n";
    data.close();
    engine::GPT a = testing::random_model(cfg, 21), r = testing::random_model(cfg, 22);
    testing::train_in_order(a, *tok, texts, testing::shuffled(texts.size(), 1), 1, 3e-3f);
    ASSERT_TRUE(engine::save_checkpoint((*dir_ / "runA/final").string(), a, *tok, {}).ok());
    ASSERT_TRUE(engine::save_checkpoint((*dir_ / "runR/final").string(), r, *tok, {}).ok());
    std::ofstream tr(*dir_ / "runA/transcript.jsonl");
    const auto order = testing::shuffled(texts.size(), 1);
    for (size_t k = 0; k < order.size(); ++k)
      tr << json{{"step", k + 1}, {"example_id", "ex" + std::to_string(order[k])}, {"order", k}}.dump() << "\n";
    std::ofstream(*dir_ / "runA/train_config.json") << json{{"data", {{"train", "data.jsonl"}}}}.dump();
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(*dir_, ec);
    delete dir_;
  }
  static std::string path(const std::string& rel) { return (*dir_ / rel).string(); }
  static fs::path* dir_;
};
fs::path* EvalNativeServeCli::dir_ = nullptr;

TEST_F(EvalNativeServeCli, ApiHandlesPromptsEchoLogprobsAndErrors) {
  auto be = load_native_backend(path("runA/final"));
  ASSERT_TRUE(be.ok()) << be.status().message();
  auto call = [&](const json& body) {
    ApiReply r = handle_openai_request(**be, "tiny", "POST", "/v1/completions", body.dump());
    return std::make_pair(r.status, json::parse(r.body));
  };
  auto models = handle_openai_request(**be, "tiny", "GET", "/v1/models", "");
  EXPECT_EQ(models.status, 200);
  EXPECT_EQ(json::parse(models.body)["data"][0]["id"], "tiny");
  auto [s1, j1] = call({{"model", "tiny"}, {"prompt", "Hi there"}, {"max_tokens", 1},
                        {"echo", true}, {"logprobs", 1}, {"temperature", 0}});
  ASSERT_EQ(s1, 200) << j1.dump();
  const json& lp = j1["choices"][0]["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), 9u);  // 8 prompt bytes + 1 generated
  EXPECT_TRUE(lp["token_logprobs"][0].is_null());
  EXPECT_TRUE(lp["token_logprobs"][1].is_number());
  EXPECT_EQ(lp["text_offset"][8], 8);
  EXPECT_EQ(lp["top_logprobs"][3].size(), 1u);
  EXPECT_EQ(j1["choices"][0]["text"].get<std::string>().substr(0, 8), "Hi there");
  // Token-id prompts, a list of prompts, stop given as a string.
  auto [s2, j2] = call({{"prompt", json::array({json::array({72, 105}), "ab"})}, {"max_tokens", 3},
                        {"stop", "\n"}});
  ASSERT_EQ(s2, 200) << j2.dump();
  EXPECT_EQ(j2["choices"].size(), 2u);
  EXPECT_EQ(j2["usage"]["prompt_tokens"], 4);
  auto [s3, j3] = call({{"prompt", "x"}, {"temperature", 0.7}});
  EXPECT_EQ(s3, 400);
  EXPECT_NE(j3["error"]["message"].get<std::string>().find("temperature"), std::string::npos);
  EXPECT_EQ(call({{"prompt", "x"}, {"model", "other"}}).first, 404);
  EXPECT_EQ(call({{"prompt", json::array({300})}}).first, 400);
  EXPECT_EQ(handle_openai_request(**be, "tiny", "GET", "/v1/completions", "").status, 405);
}

TEST_F(EvalNativeServeCli, HttpBackendAgainstAssayServeMatchesNative) {
  const std::string port_file = path("port"), log = path("serve.log");
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    FILE* f = std::freopen(log.c_str(), "w", stdout);
    (void)f;
    dup2(fileno(stdout), 2);
    const std::string ckpt = path("runA/final");
    execl(ASSAY_EXE, ASSAY_EXE, "serve", ckpt.c_str(), "--port", "0", "--port-file",
          port_file.c_str(), "--model-name", "tiny", "--threads", "1", (char*)nullptr);
    _exit(127);
  }
  int port = 0;
  for (int i = 0; i < 300 && port == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::ifstream pf(port_file);
    pf >> port;
  }
  ASSERT_GT(port, 0) << "assay serve did not start";
  HttpBackendOptions ho;
  ho.base_url = "http://127.0.0.1:" + std::to_string(port) + "/v1";
  ho.model = "tiny";
  ho.bos_text = "<|endoftext|>";
  ho.concurrency = 2;
  auto http = make_http_backend(ho);
  ASSERT_TRUE(http.ok());
  auto native = load_native_backend(path("runA/final"));
  ASSERT_TRUE(native.ok());
  std::vector<ScoreRequest> reqs = {{"Question: 1+1\nAnswer:", " 2"}, {"abc", " defg hij"},
                                    {"", "whole text scored after the start token"},
                                    {"", std::string(70, 'k') + " longer than the window"}};
  auto a = loglikelihood(**http, reqs);
  ASSERT_TRUE(a.ok()) << a.status().message();
  auto b = loglikelihood(**native, reqs);
  ASSERT_TRUE(b.ok());
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_NEAR((*a)[i].logprob, (*b)[i].logprob, 1e-4) << "request " << i;
    EXPECT_EQ((*a)[i].n_tokens, (*b)[i].n_tokens) << "request " << i;
    EXPECT_EQ((*a)[i].is_greedy, (*b)[i].is_greedy) << "request " << i;
  }
  std::vector<GenRequest> g = {{"Question: x\nAnswer:", {"\n"}, 8}, {"hello", {}, 5}};
  auto ga = (*http)->generate(g), gb = (*native)->generate(g);
  ASSERT_TRUE(ga.ok() && gb.ok());
  EXPECT_EQ(*ga, *gb);
  kill(pid, SIGTERM);
  int st = 0;
  waitpid(pid, &st, 0);
  EXPECT_TRUE(WIFEXITED(st)) << "assay serve did not exit on SIGTERM";
}

TEST_F(EvalNativeServeCli, EvalStoresRowsAndServesRepeatsFromTheDatabase) {
  const std::string db = path("results.db"), out = path("prov.json");
  const std::string cmd = std::string(ASSAY_EXE) + " eval provenance --model-path " +
                          path("runA/final") + " --reference " + path("runR/final") +
                          " --permutations 200 --threads 1 --db " + db + " --output " + out;
  CmdResult r1 = run_cmd(cmd);
  ASSERT_EQ(r1.code, 0) << r1.out;
  EXPECT_NE(r1.out.find("transcript " + path("runA/transcript.jsonl")), std::string::npos) << r1.out;
  EXPECT_EQ(r1.out.find("cached"), std::string::npos) << r1.out;
  auto q = store::query_readonly(db, "SELECT metric, value, n, suite_version, checkpoint_hash FROM "
                                     "eval_results WHERE suite = 'provenance' ORDER BY metric");
  ASSERT_TRUE(q.ok()) << q.status().message();
  ASSERT_EQ(q->rows.size(), 4u);
  EXPECT_EQ(std::get<std::string>(q->rows[0][0]), "derived");
  EXPECT_EQ(std::get<int64_t>(q->rows[0][2]), 40);
  auto hash = engine::checkpoint_hash(path("runA/final"));
  ASSERT_TRUE(hash.ok());
  EXPECT_EQ(std::get<std::string>(q->rows[0][4]), *hash);
  EXPECT_EQ(std::get<std::string>(q->rows[0][3]).substr(0, 4), "1.0+");
  std::ifstream f(out);
  json doc = json::parse(f);
  EXPECT_TRUE(doc["results"]["provenance"].contains("p_perm,none"));
  EXPECT_FALSE(doc["assay"]["cached"].get<bool>());
  // The same eval again: served from the database.
  CmdResult r2 = run_cmd(cmd);
  ASSERT_EQ(r2.code, 0) << r2.out;
  EXPECT_NE(r2.out.find("cached"), std::string::npos) << r2.out;
  std::ifstream f2(out);
  json doc2 = json::parse(f2);
  EXPECT_TRUE(doc2["assay"]["cached"].get<bool>());
  EXPECT_EQ(doc2["results"]["provenance"]["p_perm,none"], doc["results"]["provenance"]["p_perm,none"]);
  // A different seed is a different eval; --force recomputes.
  CmdResult r3 = run_cmd(cmd + " --seed 5");
  EXPECT_EQ(r3.out.find("cached"), std::string::npos) << r3.out;
  CmdResult r4 = run_cmd(cmd + " --force");
  EXPECT_EQ(r4.out.find("cached"), std::string::npos) << r4.out;
  auto q2 = store::query_readonly(db, "SELECT COUNT(*) FROM eval_results");
  ASSERT_TRUE(q2.ok());
  EXPECT_EQ(std::get<int64_t>(q2->rows[0][0]), 8);
}

TEST_F(EvalNativeServeCli, Gsm8kWithNativeCheckpoint) {
  const std::string db = path("gsm.db"), metrics = path("metrics.jsonl");
  // As a worker runs it: metric lines on ASSAY_METRICS_FD, a run id this
  // database does not know (rows are kept without it).
  CmdResult r = run_cmd("ASSAY_METRICS_FD=3 ASSAY_RUN_ID=77 " + std::string(ASSAY_EXE) +
                        " eval gsm8k --model-path " + path("runR/final") +
                        " --limit 2 --max-gen-toks 4 --threads 1 --db " + db + " 3>" + metrics);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("run 77 is not in"), std::string::npos) << r.out;
  std::ifstream mf(metrics);
  std::string line;
  ASSERT_TRUE(std::getline(mf, line));
  json m = json::parse(line);
  EXPECT_EQ(m["step"], 0);
  EXPECT_TRUE(m["metrics"].contains("gsm8k/exact_match,strict-match")) << line;
  EXPECT_NE(r.out.find("exact_match  strict-match"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("gsm8k: generate 2/2 (100%)"), std::string::npos) << r.out;
  auto q = store::query_readonly(db, "SELECT COUNT(*) FROM eval_results WHERE suite = 'gsm8k' AND n = 2");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(std::get<int64_t>(q->rows[0][0]), 2);
  CmdResult bad = run_cmd(std::string(ASSAY_EXE) + " eval nosuch --model-path x");
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.out.find("known: "), std::string::npos) << bad.out;
}

}  // namespace
}  // namespace assay::evals
