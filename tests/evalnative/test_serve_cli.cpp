// `assay serve` and `assay eval` end to end: the OpenAI-compatible API over a
// native checkpoint, the HTTP backend against a real `assay serve` process
// (same log-likelihoods as the native backend within 1e-4), and suite results
// stored in SQLite with a second identical eval served from the cache.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <set>
#include <thread>

#include "assay/evals_http.h"
#include "assay/evals_native.h"
#include "assay/store.h"
#include "support/run_cmd.h"
#include "tiny_models.h"

namespace assay::evals {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

using assay::testing::CmdResult;
using assay::testing::run_cmd;

// One HTTP/1.1 exchange on a fresh connection (Connection: close): status and body.
std::pair<int, std::string> http_call(int port, const std::string& method, const std::string& target,
                                      const std::string& body = "") {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    if (fd >= 0) close(fd);
    return {-1, "connect failed"};
  }
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  if (!body.empty() || method == "POST")
    req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  for (size_t off = 0; off < req.size();) {
    ssize_t n = write(fd, req.data() + off, req.size() - off);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  std::string resp;
  char buf[8192];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) resp.append(buf, static_cast<size_t>(n));
  close(fd);
  const size_t sp = resp.find(' '), hdr_end = resp.find("\r\n\r\n");
  if (sp == std::string::npos || hdr_end == std::string::npos) return {-1, resp};
  return {std::stoi(resp.substr(sp + 1, 3)), resp.substr(hdr_end + 4)};
}

// A real `assay serve` process on a free port, stopped with SIGTERM.
class ServeProcess {
 public:
  ServeProcess(const std::string& ckpt, const std::string& dir, const std::string& tag,
               const std::vector<std::string>& extra = {}) {
    port_file_ = dir + "/port-" + tag;
    const std::string log = dir + "/serve-" + tag + ".log";
    std::filesystem::remove(port_file_);
    pid_ = fork();
    if (pid_ == 0) {
      FILE* f = std::freopen(log.c_str(), "w", stdout);
      (void)f;
      dup2(fileno(stdout), 2);
      std::vector<std::string> args = {ASSAY_EXE, "serve", ckpt, "--port", "0", "--port-file",
                                       port_file_, "--model-name", "tiny", "--threads", "1"};
      args.insert(args.end(), extra.begin(), extra.end());
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(ASSAY_EXE, argv.data());
      _exit(127);
    }
    for (int i = 0; i < 300 && port_ == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      std::ifstream pf(port_file_);
      pf >> port_;
    }
  }
  ~ServeProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int st = 0;
      waitpid(pid_, &st, 0);
    }
  }
  int port() const { return port_; }
  std::pair<int, json> post(const std::string& target, const json& body) const {
    auto [code, text] = http_call(port_, "POST", target, body.dump());
    return {code, json::parse(text, nullptr, false)};
  }
  std::pair<int, json> get(const std::string& target) const {
    auto [code, text] = http_call(port_, "GET", target);
    return {code, json::parse(text, nullptr, false)};
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::string port_file_;
};

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
    // runB declares add_bos_token, as every `assay train` checkpoint does.
    auto tok_bos = engine::make_byte_tokenizer();
    tok_bos->set_add_bos_token(true);
    ASSERT_TRUE(engine::save_checkpoint((*dir_ / "runB/final").string(), a, *tok_bos, {}).ok());
    // A model whose vocabulary is padded past the tokenizer's 257 ids.
    auto padded = testing::tiny_config(48);
    padded.vocab_size = 300;
    engine::GPT p = testing::random_model(padded, 23);
    ASSERT_TRUE(engine::save_checkpoint((*dir_ / "padded/final").string(), p, *tok, {}).ok());
    // Wide and long enough that a long generation takes a noticeable time.
    auto big = testing::tiny_config(512, 256, 4);
    engine::GPT g = testing::random_model(big, 24);
    ASSERT_TRUE(engine::save_checkpoint((*dir_ / "big/final").string(), g, *tok, {}).ok());
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
  // The most likely token and the prompt token itself (one entry when they agree).
  EXPECT_GE(lp["top_logprobs"][3].size(), 1u);
  EXPECT_LE(lp["top_logprobs"][3].size(), 2u);
  EXPECT_TRUE(lp["top_logprobs"][3].contains(lp["tokens"][3].get<std::string>()));
  EXPECT_EQ(j1["choices"][0]["text"].get<std::string>().substr(0, 8), "Hi there");
  // Token-id prompts, a list of prompts, stop given as a string.
  auto [s2, j2] = call({{"prompt", json::array({json::array({72, 105}), "ab"})}, {"max_tokens", 3},
                        {"stop", "\n"}});
  ASSERT_EQ(s2, 200) << j2.dump();
  EXPECT_EQ(j2["choices"].size(), 2u);
  EXPECT_EQ(j2["usage"]["prompt_tokens"], 4);
  auto [s3, j3] = call({{"prompt", "x"}, {"temperature", -0.5}});
  EXPECT_EQ(s3, 400);
  EXPECT_EQ(j3["error"]["param"], "temperature");
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
  ASSERT_EQ(q->rows.size(), 6u);
  EXPECT_EQ(std::get<std::string>(q->rows[0][0]), "derived");
  EXPECT_EQ(std::get<int64_t>(q->rows[0][2]), 40);
  auto hash = engine::checkpoint_hash(path("runA/final"));
  ASSERT_TRUE(hash.ok());
  EXPECT_EQ(std::get<std::string>(q->rows[0][4]), *hash);
  EXPECT_EQ(std::get<std::string>(q->rows[0][3]).substr(0, 4), "1.1+");
  std::ifstream f(out);
  json doc = json::parse(f);
  EXPECT_TRUE(doc["results"]["provenance"].contains("p_perm,less"));
  EXPECT_FALSE(doc["assay"]["cached"].get<bool>());
  // The same eval again: served from the database.
  CmdResult r2 = run_cmd(cmd);
  ASSERT_EQ(r2.code, 0) << r2.out;
  EXPECT_NE(r2.out.find("cached"), std::string::npos) << r2.out;
  std::ifstream f2(out);
  json doc2 = json::parse(f2);
  EXPECT_TRUE(doc2["assay"]["cached"].get<bool>());
  EXPECT_EQ(doc2["results"]["provenance"]["p_perm,less"], doc["results"]["provenance"]["p_perm,less"]);
  // A different seed is a different eval; --force recomputes.
  CmdResult r3 = run_cmd(cmd + " --seed 5");
  EXPECT_EQ(r3.out.find("cached"), std::string::npos) << r3.out;
  CmdResult r4 = run_cmd(cmd + " --force");
  EXPECT_EQ(r4.out.find("cached"), std::string::npos) << r4.out;
  auto q2 = store::query_readonly(db, "SELECT COUNT(*) FROM eval_results");
  ASSERT_TRUE(q2.ok());
  EXPECT_EQ(std::get<int64_t>(q2->rows[0][0]), 12);
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
  // Eval keys (eval_key.h): the stored version, with stderr and n.
  std::string value_key;
  for (auto it = m["metrics"].begin(); it != m["metrics"].end(); ++it)
    if (it.key().rfind("gsm8k@3.0+", 0) == 0 && it.key().find("/exact_match,strict-match") != std::string::npos &&
        it.key().find(':') == std::string::npos)
      value_key = it.key();
  ASSERT_FALSE(value_key.empty()) << line;
  EXPECT_EQ(m["metrics"][value_key + ":n"], 2) << line;
  EXPECT_TRUE(m["metrics"].contains(value_key + ":stderr")) << line;
  EXPECT_NE(r.out.find("exact_match              strict-match"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("gsm8k: generate 2/2 (100%)"), std::string::npos) << r.out;
  auto q = store::query_readonly(db, "SELECT COUNT(*) FROM eval_results WHERE suite = 'gsm8k' AND n = 2");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(std::get<int64_t>(q->rows[0][0]), 2);
  CmdResult bad = run_cmd(std::string(ASSAY_EXE) + " eval nosuch --model-path x");
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.out.find("known: "), std::string::npos) << bad.out;
}


// --gen-kwargs (lm-eval's syntax) samples GSM8K generations: the same seed
// gives the same samples, another seed other ones, and sampling settings are
// part of the cache key (a new suite version, not the greedy rows).
TEST_F(EvalNativeServeCli, Gsm8kGenKwargsSampleReproducibly) {
  auto run = [&](const std::string& kw, const std::string& samples) {
    return run_cmd(std::string(ASSAY_EXE) + " eval gsm8k --model-path " + path("runR/final") +
                   " --limit 3 --num-fewshot 0 --max-gen-toks 6 --threads 1" +
                   (kw.empty() ? "" : " --gen-kwargs " + kw) + " --samples " + samples);
  };
  auto slurp = [](const std::string& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  CmdResult a = run("temperature=1.5,top_k=50,seed=3", path("s3a.jsonl"));
  ASSERT_EQ(a.code, 0) << a.out;
  CmdResult b = run("temperature=1.5,top_k=50,seed=3", path("s3b.jsonl"));
  ASSERT_EQ(b.code, 0) << b.out;
  CmdResult other = run("temperature=1.5,top_k=50,seed=4", path("s4.jsonl"));
  ASSERT_EQ(other.code, 0) << other.out;
  CmdResult greedy = run("", path("g.jsonl"));
  ASSERT_EQ(greedy.code, 0) << greedy.out;
  EXPECT_EQ(slurp(path("s3a.jsonl")), slurp(path("s3b.jsonl")));
  EXPECT_NE(slurp(path("s3a.jsonl")), slurp(path("s4.jsonl")));
  EXPECT_NE(slurp(path("s3a.jsonl")), slurp(path("g.jsonl")));
  // The printed header "gsm8k (<suite version>)".
  auto version = [](const std::string& out) {
    const size_t at = out.find("\ngsm8k (");
    return at == std::string::npos ? std::string() : out.substr(at, out.find(')', at) - at);
  };
  EXPECT_FALSE(version(a.out).empty()) << a.out;
  EXPECT_NE(version(a.out), version(greedy.out)) << a.out << greedy.out;
  CmdResult bad = run("temprature=1", path("bad.jsonl"));
  EXPECT_EQ(bad.code, 2) << bad.out;
  EXPECT_NE(bad.out.find("temprature"), std::string::npos) << bad.out;
}

// Text prompts start with [bos] when the checkpoint declares add_bos_token:
// echoed first (logprob null, offset 0, no text), scored and continued as
// native scoring and generation do; token-id prompts are taken as given.
TEST_F(EvalNativeServeCli, BosFirstWhenTheCheckpointDeclaresIt) {
  ServeProcess srv(path("runB/final"), dir_->string(), "bos");
  ASSERT_GT(srv.port(), 0) << "assay serve did not start";
  auto [code, j] = srv.post("/v1/completions", {{"model", "tiny"}, {"prompt", "Hi there"},
                                                {"max_tokens", 1}, {"echo", true}, {"logprobs", 1},
                                                {"temperature", 0}});
  ASSERT_EQ(code, 200) << j.dump();
  const json& lp = j["choices"][0]["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), 10u);  // [bos] + 8 bytes + 1 generated
  EXPECT_EQ(lp["tokens"][0], "<|endoftext|>");
  EXPECT_TRUE(lp["token_logprobs"][0].is_null());
  EXPECT_EQ(lp["text_offset"][0], 0);
  EXPECT_EQ(lp["text_offset"][1], 0);
  EXPECT_EQ(lp["text_offset"][2], 1);
  EXPECT_EQ(lp["text_offset"][9], 8);
  EXPECT_EQ(j["choices"][0]["text"].get<std::string>().substr(0, 8), "Hi there");
  EXPECT_EQ(j["usage"]["prompt_tokens"], 9);
  auto native = load_native_backend(path("runB/final"));
  ASSERT_TRUE(native.ok());
  auto s = (*native)->score({{"", "Hi there"}});
  ASSERT_TRUE(s.ok());
  ASSERT_EQ((*s)[0].logprobs.size(), 8u);
  for (size_t t = 0; t < 8; ++t)
    EXPECT_NEAR(lp["token_logprobs"][1 + t].get<double>(), (*s)[0].logprobs[t], 1e-4) << t;
  auto gen = (*native)->generate({{"Hi", {}, 6}});
  ASSERT_TRUE(gen.ok());
  auto [c3, j3] = srv.post("/v1/completions", {{"prompt", "Hi"}, {"max_tokens", 6}});
  ASSERT_EQ(c3, 200);
  EXPECT_EQ(j3["choices"][0]["text"], (*gen)[0]);
  auto [c2, j2] = srv.post("/v1/completions", {{"prompt", json::array({72, 105})}, {"max_tokens", 1},
                                               {"echo", true}, {"logprobs", 1}});
  ASSERT_EQ(c2, 200) << j2.dump();
  ASSERT_EQ(j2["choices"][0]["logprobs"]["tokens"].size(), 3u);
  EXPECT_EQ(j2["choices"][0]["logprobs"]["tokens"][0], "H");
}

// A hostile body (100,000 nested arrays) is a 400 naming the depth limit,
// on every JSON route, and the server goes on answering.
TEST_F(EvalNativeServeCli, DeeplyNestedBodiesAreRefusedNotFatal) {
  ServeProcess srv(path("padded/final"), dir_->string(), "padded");
  ASSERT_GT(srv.port(), 0);
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  for (const char* target : {"/v1/completions", "/tokenize", "/detokenize"}) {
    auto [code, text] = http_call(srv.port(), "POST", target, deep);
    EXPECT_EQ(code, 400) << target << ": " << text.substr(0, 200);
    EXPECT_NE(text.find("64"), std::string::npos) << target << ": " << text.substr(0, 200);
  }
  EXPECT_EQ(srv.post("/v1/completions", {{"prompt", "Hi"}, {"max_tokens", 1}}).first, 200);
}

TEST_F(EvalNativeServeCli, TokenIdsAreCheckedAgainstTheModelVocabulary) {
  ServeProcess srv(path("padded/final"), dir_->string(), "padded");
  ASSERT_GT(srv.port(), 0);
  // 280 is past the tokenizer's 257 ids but inside the model's 300.
  auto [c1, j1] = srv.post("/v1/completions", {{"prompt", json::array({280, 72})}, {"max_tokens", 2},
                                               {"echo", true}, {"logprobs", 1}});
  EXPECT_EQ(c1, 200) << j1.dump();
  auto [c2, j2] = srv.post("/v1/completions", {{"prompt", json::array({300})}});
  EXPECT_EQ(c2, 400);
  EXPECT_EQ(j2["error"]["param"], "prompt");
  EXPECT_NE(j2["error"]["message"].get<std::string>().find("0..299"), std::string::npos) << j2.dump();
  EXPECT_EQ(srv.post("/detokenize", {{"tokens", json::array({299})}}).first, 200);
}

// A prompt past n_positions: each echoed token's score equals native
// scoring's for any context/continuation split of the same text.
TEST_F(EvalNativeServeCli, EchoedScoresEqualNativeScoresPastTheWindow) {
  ServeProcess srv(path("runA/final"), dir_->string(), "long");
  ASSERT_GT(srv.port(), 0);
  std::string text;
  for (int i = 0; i < 110; ++i) text += static_cast<char>('a' + (i * 7 + i / 5) % 26);
  auto [code, j] = srv.post("/v1/completions", {{"prompt", text}, {"max_tokens", 1}, {"echo", true},
                                                {"logprobs", 1}, {"temperature", 0}});
  ASSERT_EQ(code, 200) << j.dump();
  const json& tl = j["choices"][0]["logprobs"]["token_logprobs"];
  ASSERT_EQ(tl.size(), 111u);  // byte tokens: token t is character t
  auto native = load_native_backend(path("runA/final"));
  ASSERT_TRUE(native.ok());
  for (size_t c : {5, 40, 62, 70, 95, 109}) {
    auto s = (*native)->score({{text.substr(0, c), text.substr(c)}});
    ASSERT_TRUE(s.ok());
    ASSERT_EQ((*s)[0].logprobs.size(), text.size() - c);
    for (size_t k = 0; k < text.size() - c; ++k)
      ASSERT_NEAR(tl[c + k].get<double>(), (*s)[0].logprobs[k], 1e-4) << "split " << c << " token " << c + k;
  }
}

TEST_F(EvalNativeServeCli, SamplingParametersWithOpenAiMeanings) {
  ServeProcess srv(path("runA/final"), dir_->string(), "sample");
  ASSERT_GT(srv.port(), 0);
  const json req{{"prompt", json::array({"Once", "abc"})}, {"max_tokens", 12}, {"temperature", 1.0},
                 {"top_p", 0.95}, {"top_k", 40}, {"seed", 1234}, {"n", 3}, {"logprobs", 3}};
  auto [c1, j1] = srv.post("/v1/completions", req);
  auto [c2, j2] = srv.post("/v1/completions", req);
  ASSERT_EQ(c1, 200) << j1.dump();
  ASSERT_EQ(c2, 200);
  ASSERT_EQ(j1["choices"].size(), 6u);
  EXPECT_EQ(j1["choices"], j2["choices"]) << "a fixed seed must reproduce the output";
  std::set<std::string> texts;
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(j1["choices"][i]["index"], i);
    if (i < 3) texts.insert(j1["choices"][i]["text"].get<std::string>());
    const json& lp = j1["choices"][i]["logprobs"];
    for (size_t t = 0; t < lp["tokens"].size(); ++t) {
      EXPECT_GE(lp["top_logprobs"][t].size(), 3u);
      EXPECT_TRUE(lp["top_logprobs"][t].contains(lp["tokens"][t].get<std::string>()));
    }
  }
  EXPECT_GT(texts.size(), 1u) << "the choices of one prompt must differ";
  // Prompt "abc" alone with n = 1: choice 0 of that prompt (index 1 * n + 0).
  json one = req;
  one["prompt"] = "abc";
  one["n"] = 1;
  auto [c3, j3] = srv.post("/v1/completions", one);
  ASSERT_EQ(c3, 200);
  EXPECT_EQ(j3["choices"][0]["text"], j1["choices"][3]["text"]);
  one["seed"] = 99;
  EXPECT_NE(srv.post("/v1/completions", one).second["choices"][0]["text"], j1["choices"][3]["text"]);
  // Temperature 0 is greedy whatever the seed.
  json g0{{"prompt", "abc"}, {"max_tokens", 12}};
  json g1 = g0;
  g1["temperature"] = 0;
  g1["seed"] = 5;
  EXPECT_EQ(srv.post("/v1/completions", g0).second["choices"], srv.post("/v1/completions", g1).second["choices"]);
  const std::vector<std::pair<std::string, json>> bad = {
      {"temperature", -1}, {"temperature", 3},   {"top_p", 0},     {"top_p", 1.5},
      {"top_k", -2},       {"n", 0},             {"seed", "x"},    {"logprobs", 21},
      {"max_tokens", 48},  {"max_tokens", -1},   {"stop", 5},      {"echo", "yes"},
      {"best_of", 4},      {"presence_penalty", 0.5}};
  for (const auto& [key, value] : bad) {
    json b{{"prompt", "abc"}};
    b[key] = value;
    auto [c, e] = srv.post("/v1/completions", b);
    EXPECT_EQ(c, 400) << key << "=" << value.dump();
    EXPECT_EQ(e["error"]["param"], key) << e.dump();
  }
}

// What lm-eval's remote tokenizer sends (lm_eval/utils.py RemoteTokenizer):
// GET {base}/tokenizer_info (needs eos_token), POST {base}/tokenize with
// {"prompt", "add_special_tokens": false} reading "tokens", POST
// {base}/detokenize with {"tokens"} reading "prompt"; bos_token_id is
// tokenize(bos_token)[0].
TEST_F(EvalNativeServeCli, TokenizeEndpointsAsLmEvalRemoteTokenizerUsesThem) {
  ServeProcess srv(path("runB/final"), dir_->string(), "tok");
  ASSERT_GT(srv.port(), 0);
  auto [c0, info] = srv.get("/tokenizer_info");
  ASSERT_EQ(c0, 200) << info.dump();
  EXPECT_EQ(info["eos_token"], "<|endoftext|>");
  EXPECT_EQ(info["bos_token"], "<|endoftext|>");
  EXPECT_TRUE(info.contains("pad_token"));
  EXPECT_EQ(info["add_bos_token"], true);
  auto [c1, t1] = srv.post("/tokenize", {{"prompt", "test"}, {"add_special_tokens", false}});
  ASSERT_EQ(c1, 200) << t1.dump();
  EXPECT_EQ(t1["tokens"], json::array({116, 101, 115, 116}));
  EXPECT_EQ(t1["count"], 4);
  EXPECT_EQ(t1["max_model_len"], 48);
  auto [c2, t2] = srv.post("/tokenize", {{"prompt", info["bos_token"]}, {"add_special_tokens", false}});
  ASSERT_EQ(c2, 200);
  EXPECT_EQ(t2["tokens"], json::array({256}));
  // add_special_tokens defaults to true: the checkpoint's [bos] first.
  auto [c3, t3] = srv.post("/v1/tokenize", {{"prompt", "test"}, {"return_token_strs", true}});
  ASSERT_EQ(c3, 200);
  EXPECT_EQ(t3["tokens"], json::array({256, 116, 101, 115, 116}));
  EXPECT_EQ(t3["token_strs"][1], "t");
  auto [c4, d4] = srv.post("/detokenize", {{"tokens", json::array({116, 101, 115, 116})}});
  ASSERT_EQ(c4, 200);
  EXPECT_EQ(d4["prompt"], "test");
  auto [c5, d5] = srv.post("/v1/detokenize", {{"tokens", json::array({257})}});
  EXPECT_EQ(c5, 400);
  EXPECT_EQ(d5["error"]["param"], "tokens");
  EXPECT_EQ(srv.get("/tokenize").first, 405);
}

// Inference runs off the HTTP thread: light routes answer while a long
// generation runs, and completions that arrive meanwhile run as one batch,
// each with the same output it gets alone.
TEST_F(EvalNativeServeCli, AnswersWhileALongGenerationRunsAndBatchesWaitingRequests) {
  ServeProcess srv(path("big/final"), dir_->string(), "big");
  ASSERT_GT(srv.port(), 0);
  std::atomic<bool> long_done{false};
  json long_usage;
  std::thread long_req([&] {
    auto [c, j] = srv.post("/v1/completions", {{"prompt", "x"}, {"max_tokens", 500}, {"n", 12},
                                               {"temperature", 0.7}, {"top_k", 5}, {"seed", 1}});
    EXPECT_EQ(c, 200);
    long_usage = j["usage"];
    long_done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(srv.get("/health").first, 200);
  EXPECT_EQ(srv.get("/v1/models").first, 200);
  EXPECT_EQ(srv.post("/tokenize", {{"prompt", "abc"}}).first, 200);
  const double light_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_FALSE(long_done.load()) << "the long generation ended before the light requests were "
                                    "answered (they took " << light_s << " s)";
  auto short_req = [](int i) {
    return json{{"prompt", "q" + std::to_string(i)}, {"max_tokens", 8}, {"temperature", 0.8},
                {"seed", 100 + i}};
  };
  std::vector<json> batched(8);
  std::vector<std::thread> clients;
  for (int i = 0; i < 8; ++i)
    clients.emplace_back([&, i] {
      auto [c, j] = srv.post("/v1/completions", short_req(i));
      EXPECT_EQ(c, 200);
      batched[i] = j["choices"];
    });
  for (auto& t : clients) t.join();
  long_req.join();
  EXPECT_GT(long_usage["completion_tokens"].get<int>(), 2000) << long_usage.dump();
  auto [hc, h] = srv.get("/health");
  ASSERT_EQ(hc, 200);
  EXPECT_EQ(h["completions"], 9);
  EXPECT_LE(h["batches"].get<int>(), 3) << "the 8 waiting requests were not batched: " << h.dump();
  for (int i = 0; i < 8; ++i)
    EXPECT_EQ(srv.post("/v1/completions", short_req(i)).second["choices"], batched[i]) << i;
}

}  // namespace
}  // namespace assay::evals
