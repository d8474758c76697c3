// The real `assay coordinator` binary over HTTP on 127.0.0.1: token files,
// limits, a sweep submitted through the API, kill -9 and restart on the same
// database, and lease expiry on the real clock.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "assay/coord_client.h"
#include "assay/coordinator.h"

extern char** environ;

using namespace assay::coordinator;
using Json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

class Proc {
 public:
  Proc(const std::vector<std::string>& args, const std::string& log) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    if (posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
  }
  ~Proc() { kill9(); }
  void kill9() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int st;
      waitpid(pid_, &st, 0);
      pid_ = -1;
    }
  }
  int terminate() {
    int st = -1;
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      waitpid(pid_, &st, 0);
      pid_ = -1;
    }
    return st;
  }
  bool alive() const { return pid_ > 0 && waitpid(pid_, nullptr, WNOHANG) == 0; }

 private:
  pid_t pid_ = -1;
};

class Http : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/assay_coord_http_XXXXXX";
    dir_ = mkdtemp(tmpl);
    std::string cmd = std::string(ASSAY_EXE) + " coordinator init --dir " + dir_ + " > /dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    user_ = read_token_file(dir_ + "/user.token").value();
    worker_ = read_token_file(dir_ + "/worker.token").value();
  }
  void TearDown() override {
    proc_.reset();
    fs::remove_all(dir_);
  }
  // Starts the coordinator and waits until it listens.
  void start(double ttl) {
    fs::remove(dir_ + "/port");
    proc_ = std::make_unique<Proc>(
        std::vector<std::string>{ASSAY_EXE, "coordinator", "--db", dir_ + "/results.db",
                                 "--listen", "127.0.0.1:0", "--port-file", dir_ + "/port",
                                 "--lease-ttl", std::to_string(ttl), "--max-body-mb", "1"},
        dir_ + "/coordinator.log");
    for (int i = 0; i < 200 && !fs::exists(dir_ + "/port"); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    ASSERT_TRUE(fs::exists(dir_ + "/port")) << "coordinator did not start; see " << dir_;
    std::ifstream(dir_ + "/port") >> port_;
    user_client_ = std::make_unique<HttpClient>(Endpoint{"127.0.0.1", port_}, user_, 10);
    worker_client_ = std::make_unique<HttpClient>(Endpoint{"127.0.0.1", port_}, worker_, 10);
  }
  Json u(const std::string& m, const std::string& t, const Json& b = nullptr) {
    auto r = user_client_->call(m, t, b.is_null() ? nullptr : &b);
    EXPECT_TRUE(r.ok()) << m << " " << t << ": " << r.status().to_string();
    return r.ok() ? *r : Json();
  }
  Json w(const std::string& m, const std::string& t, const Json& b) {
    auto r = worker_client_->call(m, t, &b);
    EXPECT_TRUE(r.ok()) << m << " " << t << ": " << r.status().to_string();
    return r.ok() ? *r : Json();
  }

  std::string dir_, user_, worker_;
  int port_ = 0;
  std::unique_ptr<Proc> proc_;
  std::unique_ptr<HttpClient> user_client_, worker_client_;
};

Json sweep_spec() {
  return {{"name", "http-sweep"},
          {"command", "echo {x}"},
          {"max_attempts", 3},
          {"space", {{"x", {{"type", "grid"}, {"values", {1, 2, 3, 4, 5}}}}}}};
}

}  // namespace

TEST_F(Http, TokensArePrivateAndRolesAndLimitsHoldOverTheWire) {
  struct stat st{};
  ASSERT_EQ(stat((dir_ + "/user.token").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  EXPECT_EQ(user_.size(), 64u);
  EXPECT_NE(user_, worker_);
  // init refuses to overwrite.
  std::string again = std::string(ASSAY_EXE) + " coordinator init --dir " + dir_ + " 2>/dev/null";
  EXPECT_NE(std::system(again.c_str()), 0);

  start(30);
  HttpClient anon(Endpoint{"127.0.0.1", port_}, "", 10);
  auto r = anon.request("GET", "/v1/runs");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 401);
  EXPECT_NE(r->body.find("\"unauthenticated\""), std::string::npos);
  auto wrong = worker_client_->request("GET", "/v1/runs");
  ASSERT_TRUE(wrong.ok());
  EXPECT_EQ(wrong->status, 403);
  // 2 MiB body against a 1 MiB limit: refused from the header, nothing stored.
  auto big = user_client_->request("POST", "/v1/sweeps", std::string(2 << 20, '{'));
  ASSERT_TRUE(big.ok()) << big.status().to_string();
  EXPECT_EQ(big->status, 413);
  auto bad = user_client_->request("POST", "/v1/sweeps", "{not json");
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad->status, 400);
  EXPECT_EQ(u("GET", "/v1/runs")["runs"].size(), 0u);
  EXPECT_EQ(u("GET", "/v1/health")["ok"], true);
}

TEST_F(Http, Kill9AndRestartLosesNothing) {
  start(2);
  Json sub = u("POST", "/v1/sweeps", sweep_spec());
  ASSERT_EQ(sub["runs"].size(), 5u);
  w("POST", "/v1/worker/register", {{"worker_id", "w1"}, {"instance", "a"}, {"cpus", 2}});
  Json l = w("POST", "/v1/worker/lease", {{"worker_id", "w1"}, {"max_runs", 2}});
  ASSERT_EQ(l["runs"].size(), 2u);
  int64_t r1 = l["runs"][0]["run_id"], r2 = l["runs"][1]["run_id"];
  w("POST", "/v1/worker/runs/" + std::to_string(r1) + "/started", {{"worker_id", "w1"}, {"attempt", 1}});
  Json batch = {{"worker_id", "w1"}, {"attempt", 1}, {"batch_seq", 0}, {"points", Json::array()}};
  for (int s = 0; s < 100; ++s) batch["points"].push_back({{"key", "loss"}, {"step", s}, {"value", s * 0.5}});
  EXPECT_EQ(w("POST", "/v1/worker/runs/" + std::to_string(r1) + "/metrics", batch)["accepted"], 100);

  proc_->kill9();
  start(2);
  // The worker reconnects within the ttl and keeps its runs.
  w("POST", "/v1/worker/heartbeat", {{"worker_id", "w1"}, {"instance", "a"},
                                     {"active", {{{"run_id", r1}, {"attempt", 1}}, {{"run_id", r2}, {"attempt", 1}}}}});
  Json counts = u("GET", "/v1/sweeps/http-sweep")["counts"];
  EXPECT_EQ(counts["queued"], 3);
  EXPECT_EQ(counts["running"], 1);
  EXPECT_EQ(counts["leased"], 1);
  Json pts = u("GET", "/v1/runs/" + std::to_string(r1) + "/metrics");
  EXPECT_EQ(pts["points"].size(), 100u);
  // The re-sent batch (its ack may have been lost in the crash) is not doubled.
  EXPECT_EQ(w("POST", "/v1/worker/runs/" + std::to_string(r1) + "/metrics", batch)["duplicate"], true);
  w("POST", "/v1/worker/runs/" + std::to_string(r1) + "/finished", {{"worker_id", "w1"}, {"attempt", 1}, {"exit_code", 0}});

  // Now the worker falls silent: after the 2 s ttl its remaining lease expires.
  std::this_thread::sleep_for(std::chrono::milliseconds(3500));
  Json r2j = u("GET", "/v1/runs/" + std::to_string(r2))["run"];
  EXPECT_EQ(r2j["state"], "queued");
  EXPECT_EQ(r2j["attempt"], 2);
  counts = u("GET", "/v1/sweeps/http-sweep")["counts"];
  EXPECT_EQ(counts["succeeded"], 1);
  EXPECT_EQ(counts["queued"], 4);
  // SIGTERM shuts down cleanly.
  EXPECT_EQ(proc_->terminate(), 0);
}

// Group commit over the wire, with a toy handler: requests that wrote are
// answered only after a commit that covers them, one commit serves many
// concurrent requests, a failed commit turns its batch's answers into 503s,
// and a request that wrote nothing waits for no commit.
TEST(GroupCommit, AnswersFollowTheCommitThatCoversThem) {
  int64_t handled = 0;               // requests that wrote, in order (io thread only)
  std::atomic<int64_t> durable{0};   // highest request number committed
  std::atomic<int> commits{0};
  std::atomic<bool> fail_next{false};
  bool pending = false;
  HttpHandler handler = [&](const Request& req) {
    Response r;
    if (req.target == "/read") {
      r.body = Json{{"durable", durable.load()}}.dump();
      return r;
    }
    pending = true;
    r.body = Json{{"n", ++handled}}.dump();
    return r;
  };
  CommitHooks hooks{[&] { return pending; },
                    [&]() -> assay::Status {
                      pending = false;
                      ++commits;
                      if (fail_next.exchange(false)) return assay::Status::IoError("disk full (test)");
                      durable = handled;
                      return assay::Status::Ok();
                    }};
  std::atomic<bool> stop{false};
  std::atomic<int> port{0};
  ServerOptions so;
  so.port = 0;
  so.on_listening = [&](int p) { port = p; };
  std::thread server([&] { (void)serve_http(handler, so, 1 << 20, &stop, {}, hooks); });
  while (port == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));

  constexpr int kClients = 16, kEach = 25;
  std::atomic<int> bad{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&] {
      HttpClient cl(Endpoint{"127.0.0.1", port.load()}, "t", 10);
      for (int i = 0; i < kEach; ++i) {
        auto r = cl.request("POST", "/w", "{}");
        if (!r.ok() || r->status != 200) { ++bad; continue; }
        int64_t n = Json::parse(r->body)["n"].get<int64_t>();
        if (durable.load() < n) ++bad;  // answered before its commit
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(durable.load(), kClients * kEach);
  EXPECT_GE(commits.load(), 1);
  EXPECT_LT(commits.load(), kClients * kEach) << "no two requests ever shared a commit";

  HttpClient cl(Endpoint{"127.0.0.1", port.load()}, "t", 10);
  int before = commits.load();
  auto rd = cl.request("GET", "/read");
  ASSERT_TRUE(rd.ok());
  EXPECT_EQ(rd->status, 200);
  EXPECT_EQ(commits.load(), before) << "a read waited for a commit";
  fail_next = true;
  auto failed = cl.request("POST", "/w", "{}");
  ASSERT_TRUE(failed.ok());
  EXPECT_EQ(failed->status, 503);
  EXPECT_NE(failed->body.find("disk full (test)"), std::string::npos) << failed->body;
  auto after = cl.request("POST", "/w", "{}");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->status, 200);
  stop = true;
  server.join();
}
