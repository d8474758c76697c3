// `assay coordinator --durability full|normal`: the real binary on
// 127.0.0.1 says which mode is in force in /v1/health and in its metric and
// finished acknowledgements, and a point it acknowledged is in the database
// after kill -9, in both modes.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "assay/coord_client.h"
#include "assay/coordinator.h"
#include "assay/store.h"
#include "support/run_cmd.h"

extern char** environ;

using namespace assay::coordinator;
using Json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct Coord {
  pid_t pid = -1;
  int port = 0;
  ~Coord() { kill9(); }
  void kill9() {
    if (pid <= 0) return;
    ::kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    pid = -1;
  }
};

class Durability : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/assay_durability_XXXXXX";
    dir_ = mkdtemp(tmpl);
    auto init = assay::testing::run_cmd(std::string(ASSAY_EXE) + " coordinator init --dir " + dir_);
    ASSERT_EQ(init.code, 0) << init.out;
    user_ = read_token_file(dir_ + "/user.token").value();
    worker_ = read_token_file(dir_ + "/worker.token").value();
  }
  void TearDown() override {
    coord_.kill9();
    fs::remove_all(dir_);
  }
  void start(const std::string& durability) {
    std::vector<std::string> args{ASSAY_EXE, "coordinator", "--db", db(), "--listen",
                                  "127.0.0.1:0", "--port-file", dir_ + "/port", "--durability",
                                  durability};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    const std::string log = dir_ + "/coordinator.log";
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    ASSERT_EQ(posix_spawn(&coord_.pid, argv[0], &fa, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; i < 400 && !fs::exists(dir_ + "/port"); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    ASSERT_TRUE(fs::exists(dir_ + "/port")) << "coordinator did not start; see " << log;
    std::ifstream(dir_ + "/port") >> coord_.port;
  }
  Json call(const std::string& token, const std::string& method, const std::string& target,
            const Json& body = nullptr) {
    HttpClient c(Endpoint{"127.0.0.1", coord_.port}, token, 10);
    auto r = c.call(method, target, body.is_null() ? nullptr : &body);
    EXPECT_TRUE(r.ok()) << method << " " << target << ": " << r.status().to_string();
    return r.ok() ? *r : Json();
  }
  std::string db() const { return dir_ + "/results.db"; }

  std::string dir_, user_, worker_;
  Coord coord_;
};

}  // namespace

TEST_P(Durability, AcksNameTheModeAndAnAckedPointSurvivesKill9) {
  const std::string mode = GetParam();
  start(mode);
  EXPECT_EQ(call("", "GET", "/v1/health")["durability"], mode);
  Json spec = {{"name", "dur"}, {"command", "true {x}"},
               {"space", {{"x", {{"type", "grid"}, {"values", {1, 2}}}}}}};
  ASSERT_EQ(call(user_, "POST", "/v1/sweeps", spec)["runs"].size(), 2u);
  call(worker_, "POST", "/v1/worker/register", {{"worker_id", "w1"}, {"instance", "a"}, {"cpus", 2}});
  Json l = call(worker_, "POST", "/v1/worker/lease", {{"worker_id", "w1"}, {"max_runs", 2}});
  ASSERT_EQ(l["runs"].size(), 2u);
  const int64_t r1 = l["runs"][0]["run_id"], r2 = l["runs"][1]["run_id"];
  const std::string base1 = "/v1/worker/runs/" + std::to_string(r1);
  call(worker_, "POST", base1 + "/started", {{"worker_id", "w1"}, {"attempt", 1}});
  Json batch = {{"worker_id", "w1"}, {"attempt", 1}, {"batch_seq", 0}, {"points", Json::array()}};
  for (int s = 0; s < 50; ++s)
    batch["points"].push_back({{"key", "loss"}, {"step", s}, {"value", 10.0 - s * 0.125}});
  Json ack = call(worker_, "POST", base1 + "/metrics", batch);
  EXPECT_EQ(ack["accepted"], 50);
  EXPECT_EQ(ack["durability"], mode);
  Json fin = call(worker_, "POST", base1 + "/finished",
                  {{"worker_id", "w1"}, {"attempt", 1}, {"exit_code", 0}});
  EXPECT_EQ(fin["state"], "succeeded");
  EXPECT_EQ(fin["durability"], mode);
  // The last acknowledged write, then kill -9 right after its answer.
  Json last = {{"worker_id", "w1"}, {"attempt", 1}, {"batch_seq", 0},
               {"points", {{{"key", "acc"}, {"step", 7}, {"value", 0.75}}}}};
  const std::string base2 = "/v1/worker/runs/" + std::to_string(r2);
  EXPECT_EQ(call(worker_, "POST", base2 + "/metrics", last)["durability"], mode);
  coord_.kill9();

  auto q = assay::store::query_readonly(
      db(), "SELECT run_id, metric, points, last_step, final FROM run_metric_summary ORDER BY run_id");
  ASSERT_TRUE(q.ok()) << q.status().to_string();
  ASSERT_EQ(q->rows.size(), 2u);
  EXPECT_EQ(std::get<int64_t>(q->rows[0][2]), 50);
  EXPECT_EQ(std::get<double>(q->rows[0][4]), 10.0 - 49 * 0.125);
  EXPECT_EQ(std::get<std::string>(q->rows[1][1]), "acc");
  EXPECT_EQ(std::get<double>(q->rows[1][4]), 0.75);
  auto run = assay::store::query_readonly(db(), "SELECT state FROM runs WHERE id = " + std::to_string(r1));
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(std::get<std::string>(run->rows[0][0]), "succeeded");
  // Reopened by a Store asked for the same mode, the connection runs it.
  assay::store::OpenOptions o;
  o.durability = *assay::store::parse_durability(mode);
  auto s = assay::store::Store::open(db(), o);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_EQ(*(*s)->synchronous_pragma(), mode == "full" ? 2 : 1);
}

INSTANTIATE_TEST_SUITE_P(Modes, Durability, ::testing::Values("full", "normal"));

TEST(DurabilityOption, UnknownModeIsRefused) {
  auto r = assay::testing::run_cmd(std::string(ASSAY_EXE) +
                                   " coordinator --db /tmp/none.db --durability extra");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("--durability"), std::string::npos) << r.out;
  Options o;
  o.db_path = ::testing::TempDir() + "assay_durability_refused.db";
  o.durability = "off";
  auto c = Coordinator::open(o);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("'off'"), std::string::npos) << c.status().to_string();
  EXPECT_FALSE(fs::exists(o.db_path));
}

TEST(DurabilityOption, TheDefaultIsNormalAndTheHelpSaysSo) {
  EXPECT_EQ(Options{}.durability, "normal");
  auto h = assay::testing::run_cmd(std::string(ASSAY_EXE) + " coordinator --help");
  EXPECT_NE(h.out.find("--durability"), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("{full,normal}=normal"), std::string::npos) << h.out;
}
