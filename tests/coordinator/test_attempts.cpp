// Through the coordinator's handler: a run whose first worker died keeps that
// attempt's points apart from the attempt that finished, and a `finished`
// report delivered late records the process's exit time.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "assay/coordinator.h"
#include "handler_fixture.h"

using namespace assay::coordinator;
using Json = nlohmann::json;

namespace {

using test_util::kWorker;

class Attempts : public test_util::HandlerTest {
 protected:
  Json worker(const std::string& m, const std::string& t, const Json& b, int st = 200) {
    return call(m, t, b, kWorker, st);
  }
  int64_t submit() {
    Json spec = {{"name", "a"},
                 {"command", "echo {x}"},
                 {"max_attempts", 2},
                 {"space", {{"x", {{"type", "grid"}, {"values", {1}}}}}}};
    return user("POST", "/v1/sweeps", spec, 201)["runs"][0];
  }
  void start(const std::string& w, int64_t id, int attempt) {
    worker("POST", "/v1/worker/register", {{"worker_id", w}, {"instance", w}, {"cpus", 4}});
    Json l = worker("POST", "/v1/worker/lease", {{"worker_id", w}, {"max_runs", 1}});
    ASSERT_EQ(l["runs"].size(), 1u);
    ASSERT_EQ(l["runs"][0]["attempt"], attempt);
    worker("POST", "/v1/worker/runs/" + std::to_string(id) + "/started",
           {{"worker_id", w}, {"attempt", attempt}});
  }
  // Steps [from, to] of "loss" = base + step / 1000, as the worker's batcher
  // sends them (the parser's fast path).
  void send(const std::string& w, int64_t id, int attempt, int seq, int from, int to,
            double base) {
    Json pts = Json::array();
    for (int s = from; s <= to; ++s)
      pts.push_back({{"key", "loss"}, {"step", s}, {"value", base + s / 1000.0}, {"time", now_}});
    worker("POST", "/v1/worker/runs/" + std::to_string(id) + "/metrics",
           {{"worker_id", w}, {"attempt", attempt}, {"batch_seq", seq}, {"points", pts}});
  }
  Json points(int64_t id, const std::string& query = "") {
    return user("GET", "/v1/runs/" + std::to_string(id) + "/metrics" + query);
  }
};

}  // namespace

// Issue 11 item 6: attempt 1 wrote steps 50..196, its worker died, attempt 2
// wrote steps 0..49 and succeeded.
TEST_F(Attempts, DeadAttemptsPointsAreKeptApartFromTheFinishedAttempt) {
  const int64_t id = submit();
  start("w1", id, 1);
  send("w1", id, 1, 0, 0, 49, 9.0);
  send("w1", id, 1, 1, 50, 196, 9.0);
  now_ += 31;  // w1 goes silent: the lease expires, attempt 2 is queued
  coord_->tick();
  start("w2", id, 2);
  send("w2", id, 2, 0, 0, 49, 1.0);  // same batch_seq as attempt 1: a different batch
  worker("POST", "/v1/worker/runs/" + std::to_string(id) + "/finished",
         {{"worker_id", "w2"}, {"attempt", 2}, {"exit_code", 0}});

  Json cur = points(id);
  EXPECT_EQ(cur["attempt"], 2);
  ASSERT_EQ(cur["points"].size(), 50u);
  EXPECT_EQ(cur["points"].back()["step"], 49);
  EXPECT_EQ(cur["points"].back()["attempt"], 2);
  EXPECT_DOUBLE_EQ(cur["points"].back()["value"].get<double>(), 1.049);
  EXPECT_EQ(points(id, "?attempt=1")["points"].size(), 197u);
  Json all = points(id, "?attempt=all&key=loss");
  ASSERT_EQ(all["points"].size(), 247u);  // nothing deleted
  EXPECT_EQ(all["points"][0]["attempt"], 1);
  for (const char* bad : {"?attempt=3", "?attempt=0", "?attempt=x"}) {
    Json e = user("GET", "/v1/runs/" + std::to_string(id) + "/metrics" + bad, nullptr, 400);
    EXPECT_NE(e["error"]["message"].get<std::string>().find("attempt"), std::string::npos);
  }

  Json q = user("POST", "/v1/query",
                {{"sql", "SELECT final, last_step, points, attempt FROM run_metric_summary "
                         "WHERE run_id = " + std::to_string(id)}});
  ASSERT_EQ(q["rows"].size(), 1u) << q.dump();
  EXPECT_DOUBLE_EQ(q["rows"][0][0].get<double>(), 1.049);
  EXPECT_EQ(q["rows"][0][1], 49);
  EXPECT_EQ(q["rows"][0][2], 50);
  EXPECT_EQ(q["rows"][0][3], 2);
  Json w = user("POST", "/v1/query",
                {{"sql", "SELECT loss_final, loss_max FROM runs_wide WHERE run_id = " +
                             std::to_string(id)}});
  ASSERT_EQ(w["rows"].size(), 1u) << w.dump();
  EXPECT_DOUBLE_EQ(w["rows"][0][0].get<double>(), 1.049);
  EXPECT_DOUBLE_EQ(w["rows"][0][1].get<double>(), 1.049);
}

// The general (DOM) path of the metrics handler stores the attempt too.
TEST_F(Attempts, EscapedKeysTakeTheGeneralPathAndKeepTheirAttempt) {
  const int64_t id = submit();
  start("w1", id, 1);
  worker("POST", "/v1/worker/runs/" + std::to_string(id) + "/metrics",
         {{"worker_id", "w1"},
          {"attempt", 1},
          {"points", {{{"key", "l\u00e9"}, {"step", 1}, {"value", 2.0}}}}});
  Json p = points(id);
  ASSERT_EQ(p["points"].size(), 1u);
  EXPECT_EQ(p["points"][0]["attempt"], 1);
}

// Issue 11 item 7: the report reached the coordinator 7.5 s after the exit.
TEST_F(Attempts, LateFinishedReportRecordsExitTimeAndReportTime) {
  const int64_t id = submit();
  start("w1", id, 1);
  const double started = now_;
  now_ += 10;
  const double exited = now_;
  now_ += 7.5;  // spooled through an outage
  worker("POST", "/v1/worker/runs/" + std::to_string(id) + "/finished",
         {{"worker_id", "w1"}, {"attempt", 1}, {"exit_code", 0}, {"exited_at", exited}});
  Json r = user("GET", "/v1/runs/" + std::to_string(id))["run"];
  EXPECT_DOUBLE_EQ(r["finished_at"].get<double>(), exited);
  EXPECT_DOUBLE_EQ(r["reported_at"].get<double>(), now_);
  EXPECT_DOUBLE_EQ(r["started_at"].get<double>(), started);
  Json q = user("POST", "/v1/query", {{"sql", "SELECT duration_s FROM run_summary"}});
  EXPECT_DOUBLE_EQ(q["rows"][0][0].get<double>(), 10.0);
}

TEST_F(Attempts, FinishedWithoutExitTimeOrWithABadOne) {
  const int64_t a = submit();
  start("w1", a, 1);
  for (Json bad : {Json("soon"), Json(-1), Json(0)}) {
    Json e = worker("POST", "/v1/worker/runs/" + std::to_string(a) + "/finished",
                    {{"worker_id", "w1"}, {"attempt", 1}, {"exit_code", 0}, {"exited_at", bad}},
                    400);
    EXPECT_NE(e["error"]["message"].get<std::string>().find("exited_at"), std::string::npos);
  }
  now_ += 3;
  // An older worker: the time of the report stands in for both.
  worker("POST", "/v1/worker/runs/" + std::to_string(a) + "/finished",
         {{"worker_id", "w1"}, {"attempt", 1}, {"exit_code", 0}});
  Json r = user("GET", "/v1/runs/" + std::to_string(a))["run"];
  EXPECT_DOUBLE_EQ(r["finished_at"].get<double>(), now_);
  EXPECT_DOUBLE_EQ(r["reported_at"].get<double>(), now_);
}

// A lease whose reply never reached the worker (the coordinator was killed
// after committing it, say): the worker's heartbeats never list the run, so
// after a lease ttl it is requeued. It never started, so it does not use up
// the run's only attempt; a run that started and was then lost does.
TEST_F(Attempts, LeaseLostBeforeTheRunStartedDoesNotUseUpAnAttempt) {
  Json spec = {{"name", "once"},
               {"command", "echo {x}"},
               {"max_attempts", 1},
               {"space", {{"x", {{"type", "grid"}, {"values", {1}}}}}}};
  const int64_t id = user("POST", "/v1/sweeps", spec, 201)["runs"][0];
  worker("POST", "/v1/worker/register", {{"worker_id", "w1"}, {"instance", "w1"}, {"cpus", 4}});
  Json l = worker("POST", "/v1/worker/lease", {{"worker_id", "w1"}, {"max_runs", 1}});
  ASSERT_EQ(l["runs"].size(), 1u);  // ... and the reply is lost
  auto beat = [&] {
    worker("POST", "/v1/worker/heartbeat",
           {{"worker_id", "w1"}, {"instance", "w1"}, {"active", Json::array()}});
  };
  beat();
  now_ += 31;  // past the 30 s lease ttl, the worker still heartbeating
  beat();
  Json r = user("GET", "/v1/runs/" + std::to_string(id))["run"];
  EXPECT_EQ(r["state"], "queued") << r.dump();
  EXPECT_EQ(r["attempt"], 2);
  // The second lease starts and its worker is lost: that one counts.
  start("w1", id, 2);
  now_ += 31;
  coord_->tick();
  r = user("GET", "/v1/runs/" + std::to_string(id))["run"];
  EXPECT_EQ(r["state"], "failed") << r.dump();
  EXPECT_EQ(r["failure_reason"], "lost_worker");
}
