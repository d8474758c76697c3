// The real `assay worker` against a stand-in coordinator whose replies are
// malformed or of the wrong types: the worker logs what it could not
// understand and keeps heartbeating, leasing and delivering.
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "assay/worker_process.h"
#include "fake_coordinator.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using worker_test::FakeCoordinator;
using worker_test::FakeReply;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class WorkerPeer : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/assay_worker_peer_XXXXXX";
    dir_ = mkdtemp(tmpl);
    std::ofstream(dir_ / "worker.token") << "w0123456789abcdef\n";
  }
  void TearDown() override {
    stop();
    if (!HasFailure()) fs::remove_all(dir_);
  }
  void start(const std::string& url) {
    assay::worker::LaunchSpec s;
    s.command = "exec '" + std::string(ASSAY_EXE) + "' worker --coordinator " + url +
                " --token-file '" + (dir_ / "worker.token").string() +
                "' --id peer1 --gpus 0 --cpus 2 --lease-wait 1 --kill-grace 1 --work-dir '" +
                (dir_ / "work").string() + "'";
    s.stdout_path = (dir_ / "worker.out").string();
    s.stderr_path = (dir_ / "worker.err").string();
    s.metrics_pipe = false;
    auto p = assay::worker::Process::spawn(s);
    ASSERT_TRUE(p.ok()) << p.status().message();
    proc_ = std::move(p).value();
  }
  bool alive() {
    proc_->tick();
    return !proc_->leader_status().has_value();
  }
  void stop() {
    if (!proc_) return;
    kill(proc_->pid(), SIGTERM);
    if (!proc_->wait_finished(3s)) kill(proc_->pid(), SIGTERM);
    if (!proc_->wait_finished(3s)) proc_->signal_group(SIGKILL);
    proc_->wait_finished(3s);
    proc_.reset();
  }
  std::string logs() { return slurp(dir_ / "worker.out") + slurp(dir_ / "worker.err"); }

  fs::path dir_;
  std::unique_ptr<assay::worker::Process> proc_;
};

// Every reply of the wrong shape that a coordinator (or anything listening on
// its port) could send to the control plane.
TEST_F(WorkerPeer, MalformedAndWrongTypedRepliesAreLoggedAndTheWorkerKeepsRunning) {
  std::atomic<int> leases{0};
  FakeCoordinator fake([&](const std::string& path, const std::string&) -> FakeReply {
    if (path == "/v1/worker/register") return {200, R"({"heartbeat_s": 0.1, "requeued": "x"})"};
    if (path == "/v1/worker/heartbeat")
      return {200, R"({"cancel": ["seven", {"x": 1}], "abort": "all", "lease_ttl_s": "soon"})"};
    if (path == "/v1/worker/lease") {
      switch (leases++ % 4) {
        case 0: return {200, R"({"runs": [{"run_id": "x"}, 17, {"run_id": 5, "command": 12}]})"};
        case 1: return {200, std::string(100000, '[') + std::string(100000, ']')};
        case 2: return {200, R"({"runs": "none"})"};
        default: return {400, R"({"error": {"code": 7, "message": ["x"]}})"};
      }
    }
    if (path.find("/logs") != std::string::npos) return {200, R"({"next_offset": "far"})"};
    return {200, R"({"ok": true, "cancel": "maybe"})"};
  });
  start(fake.url());
  // Heartbeats every 0.1 s: a dozen or more in three seconds, unless the
  // worker died on the first reply.
  auto end = std::chrono::steady_clock::now() + 3s;
  while (std::chrono::steady_clock::now() < end && alive()) std::this_thread::sleep_for(50ms);
  ASSERT_TRUE(alive()) << logs();
  EXPECT_GE(fake.hits("/v1/worker/heartbeat"), 5) << logs();
  EXPECT_GE(fake.hits("/v1/worker/lease"), 3) << logs();
  const std::string log = logs();
  EXPECT_NE(log.find("heartbeat: reply not understood, ignoring: cancel: expected a run id, got \"seven\""),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("lease: reply not understood"), std::string::npos) << log;
  EXPECT_NE(log.find("JSON nested deeper than the limit of 64 levels"), std::string::npos) << log;
  // The run whose lease entry was unreadable is ended as a spawn error, not
  // left leased.
  EXPECT_GE(fake.hits("/v1/worker/runs/5/finished"), 1) << log;
  EXPECT_EQ(log.find("terminate"), std::string::npos) << log;
}

}  // namespace

namespace {

// A 4xx for one metric batch is recorded on the run as a `report_rejected`
// event and delivery goes on: the next batch and `finished` still arrive.
TEST_F(WorkerPeer, RejectedBatchBecomesAnEventAndDeliveryGoesOn) {
  std::atomic<int> leases{0}, batches{0};
  const std::string line1 = R"({\"step\": 1, \"metrics\": {\"loss\": 1}})";
  const std::string line2 = R"({\"step\": 2, \"metrics\": {\"loss\": 2}})";
  const std::string cmd = "echo \"" + line1 + "\" >&3; sleep 1; echo \"" + line2 + "\" >&3";
  FakeCoordinator fake([&](const std::string& path, const std::string&) -> FakeReply {
    if (path == "/v1/worker/register") return {200, R"({"heartbeat_s": 1})"};
    if (path == "/v1/worker/lease") {
      if (leases++ == 0)
        return {200, nlohmann::json{{"runs", {{{"run_id", 9}, {"attempt", 1}, {"command", cmd}}}}}.dump()};
      return {200, R"({"runs": []})"};
    }
    if (path == "/v1/worker/runs/9/metrics") {
      if (batches++ == 0)
        return {400, R"({"error": {"code": "bad_request", "message": "points[0].key: refused"}})"};
      return {200, R"({"accepted": 1, "duplicate": false})"};
    }
    return {200, R"({"ok": true})"};
  });
  start(fake.url());
  auto end = std::chrono::steady_clock::now() + 15s;
  while (std::chrono::steady_clock::now() < end && fake.hits("/v1/worker/runs/9/finished") == 0)
    std::this_thread::sleep_for(50ms);
  ASSERT_GE(fake.hits("/v1/worker/runs/9/finished"), 1) << logs();
  auto metrics = fake.bodies("/v1/worker/runs/9/metrics");
  ASSERT_EQ(metrics.size(), 2u) << logs();
  EXPECT_NE(metrics[1].find("\"step\":2"), std::string::npos) << metrics[1];
  bool noted = false;
  for (const auto& b : fake.bodies("/v1/worker/runs/9/events")) {
    auto j = nlohmann::json::parse(b, nullptr, false);
    if (j.is_object() && j.value("kind", "") == "report_rejected") {
      noted = true;
      EXPECT_NE(j.value("detail", "").find("refused with HTTP 400: points[0].key: refused"),
                std::string::npos)
          << b;
    }
  }
  EXPECT_TRUE(noted) << logs();
}

}  // namespace

namespace {

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The coordinator is away when the run ends: `finished` waits in the spool
// and, once delivered, still says when the process exited.
TEST_F(WorkerPeer, FinishedReportCarriesTheExitTimeThroughAnOutage) {
  std::atomic<int> leases{0};
  std::atomic<double> first_finished{0}, accepted_at{0};
  FakeCoordinator fake([&](const std::string& path, const std::string&) -> FakeReply {
    if (path == "/v1/worker/register") return {200, R"({"heartbeat_s": 1})"};
    if (path == "/v1/worker/lease") {
      if (leases++ == 0)
        return {200, nlohmann::json{{"runs", {{{"run_id", 4}, {"attempt", 1},
                                               {"command", "sleep 0.2"}}}}}.dump()};
      return {200, R"({"runs": []})"};
    }
    if (path == "/v1/worker/runs/4/finished") {
      const double t = unix_now();
      double zero = 0;
      first_finished.compare_exchange_strong(zero, t);
      if (t - first_finished.load() < 3.0)
        return {503, R"({"error": {"code": "unavailable", "message": "restarting"}})"};
      accepted_at = t;
      return {200, R"({"state": "succeeded", "failure_reason": null})"};
    }
    return {200, R"({"ok": true})"};
  });
  const double t0 = unix_now();
  start(fake.url());
  auto end = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < end && accepted_at.load() == 0)
    std::this_thread::sleep_for(50ms);
  ASSERT_GT(accepted_at.load(), 0) << logs();
  auto bodies = fake.bodies("/v1/worker/runs/4/finished");
  auto j = nlohmann::json::parse(bodies.back(), nullptr, false);
  ASSERT_TRUE(j.is_object() && j.contains("exited_at") && j["exited_at"].is_number())
      << bodies.back();
  const double exited = j["exited_at"].get<double>();
  EXPECT_GT(exited, t0 + 0.2) << "after the run's 0.2 s";
  EXPECT_LE(exited, first_finished.load()) << "recorded at the exit, not at delivery";
  EXPECT_GE(accepted_at.load() - exited, 2.5);
  // Every resend carried the same time (it is spooled with the report).
  for (const auto& b : bodies)
    EXPECT_EQ(nlohmann::json::parse(b, nullptr, false).value("exited_at", 0.0), exited) << b;
}

}  // namespace
