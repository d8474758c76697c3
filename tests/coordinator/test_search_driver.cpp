// Adaptive search through the request handler on a real SQLite file: ASHA
// rung decisions on reported metrics and on eval results of intermediate
// checkpoints, pruning through the cancel path to the `pruned` state, lazy
// proposals of sampled sweeps, and restarts that lose and repeat nothing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include <nlohmann/json.hpp>

#include "assay/coordinator.h"
#include "handler_fixture.h"

using namespace assay::coordinator;
using Json = nlohmann::json;

namespace {

using test_util::kWorker;

class SearchDriver : public test_util::HandlerTest {
 public:
  using test_util::HandlerTest::user;
  void configure(Options& o) override { o.assay_exe = "/opt/assay/bin/assay"; }
  Json worker(const std::string& t, const Json& b, int st = 200) {
    return call("POST", t, b, kWorker, st);
  }
  static std::string url(int64_t id, const char* op) {
    return "/v1/worker/runs/" + std::to_string(id) + "/" + op;
  }
  // Leases everything queued to worker w1 and reports the runs started.
  std::vector<int64_t> lease_and_start() {
    worker("/v1/worker/register", {{"worker_id", "w1"}, {"instance", "i1"}, {"cpus", 16}});
    Json l = worker("/v1/worker/lease", {{"worker_id", "w1"}, {"max_runs", 16}});
    std::vector<int64_t> ids;
    for (auto& r : l["runs"]) {
      ids.push_back(r["run_id"].get<int64_t>());
      worker(url(ids.back(), "started"), {{"worker_id", "w1"}, {"attempt", 1}});
    }
    return ids;
  }
  void metric(int64_t id, int64_t step, double v, const std::string& key = "loss") {
    worker(url(id, "metrics"),
           {{"worker_id", "w1"},
            {"attempt", 1},
            {"batch_seq", seq_++},
            {"points", {{{"key", key}, {"step", step}, {"value", v}}}}});
  }
  Json finish(int64_t id, const Json& extra) {
    Json b = {{"worker_id", "w1"}, {"attempt", 1}};
    b.update(extra);
    return worker(url(id, "finished"), b);
  }
  Json query(const std::string& sql) { return user("POST", "/v1/query", {{"sql", sql}}); }
  int64_t scalar(const std::string& sql) { return query(sql)["rows"][0][0].get<int64_t>(); }
  std::string state(int64_t id) {
    return user("GET", "/v1/runs/" + std::to_string(id))["run"]["state"].get<std::string>();
  }
  static Json asha_sweep(const std::string& name, int n_runs) {
    Json lrs = Json::array();
    for (int i = 0; i < n_runs; ++i) lrs.push_back(0.1 * (i + 1));
    return {{"name", name},
            {"command", "train --lr {lr}"},
            {"space", {{"lr", {{"type", "grid"}, {"values", lrs}}}}},
            {"search",
             {{"type", "asha"}, {"metric", "loss"}, {"mode", "min"}, {"min_step", 10},
              {"max_step", 90}, {"reduction_factor", 3}}}};
  }
  int64_t seq_ = 0;
};

}  // namespace

TEST_F(SearchDriver, RungStopsRunThroughCancelAndItEndsPruned) {
  Json sub = user("POST", "/v1/sweeps", asha_sweep("asha", 3), 201);
  auto ids = lease_and_start();
  ASSERT_EQ(ids.size(), 3u);
  // Rungs at 10, 30, 90. Run 0 records first and continues (n = 1); run 1 is
  // worse (n = 2, keep 1): stop. A report past the rung (step 12) counts.
  metric(ids[0], 5, 0.9);
  EXPECT_EQ(scalar("SELECT count(*) FROM search_rungs"), 0);
  metric(ids[0], 10, 0.5);
  metric(ids[1], 12, 0.7);
  EXPECT_EQ(scalar("SELECT count(*) FROM search_rungs"), 2);
  EXPECT_EQ(scalar("SELECT count(*) FROM search_rungs WHERE run_id = " + std::to_string(ids[1]) +
                   " AND decision = 'stop' AND rung = 0 AND step = 10 AND reported_step = 12"),
            1);
  EXPECT_EQ(scalar("SELECT count(*) FROM run_events WHERE kind = 'cancel_requested' AND run_id = " +
                   std::to_string(ids[1])),
            1);
  Json hb = worker("/v1/worker/heartbeat", {{"worker_id", "w1"}, {"instance", "i1"}});
  EXPECT_EQ(hb["cancel"], Json::array({ids[1]}));
  // A re-sent point decides nothing again; the worker stops the run.
  metric(ids[1], 12, 0.7);
  EXPECT_EQ(scalar("SELECT count(*) FROM search_rungs"), 2);
  Json end = finish(ids[1], {{"cancelled", true}, {"signal", 15}});
  EXPECT_EQ(end["state"], "pruned");
  EXPECT_EQ(end["failure_reason"], nullptr);
  EXPECT_EQ(state(ids[1]), "pruned");
  Json ev = query("SELECT detail FROM run_events WHERE kind = 'rung' AND run_id = " +
                  std::to_string(ids[1]));
  ASSERT_EQ(ev["rows"].size(), 1u);
  const std::string detail = ev["rows"][0][0];
  EXPECT_NE(detail.find("stop"), std::string::npos) << detail;
  EXPECT_NE(detail.find("0.5"), std::string::npos) << "names the cut-off: " << detail;
  // The survivor finishes; only succeeded runs are on the Pareto front.
  metric(ids[0], 90, 0.2);
  EXPECT_EQ(finish(ids[0], {{"exit_code", 0}})["state"], "succeeded");
  EXPECT_EQ(scalar("SELECT run_id FROM sweep_pareto WHERE sweep = 'asha'"), ids[0]);
  Json pruned = user("GET", "/v1/runs?sweep=asha&state=pruned");
  ASSERT_EQ(pruned["runs"].size(), 1u);
  EXPECT_EQ(pruned["runs"][0]["id"], ids[1]);
}

TEST_F(SearchDriver, RestartRebuildsRungsFromTheDatabase) {
  user("POST", "/v1/sweeps", asha_sweep("re", 4), 201);
  auto ids = lease_and_start();
  ASSERT_EQ(ids.size(), 4u);
  metric(ids[0], 10, 0.3);
  metric(ids[1], 10, 0.2);  // better: continues (n = 2, keep 1, none better)
  open();                   // a restart between decisions
  metric(ids[1], 10, 0.2);  // re-sent: already decided
  EXPECT_EQ(scalar("SELECT count(*) FROM search_rungs"), 2);
  // n = 3, keep 1: 0.25 has 0.2 better: stop, which needs the records of
  // before the restart.
  metric(ids[2], 10, 0.25);
  EXPECT_EQ(scalar("SELECT count(*) FROM search_rungs WHERE decision = 'stop' AND run_id = " +
                   std::to_string(ids[2])),
            1);
  // A NaN loss is the worst value: stop.
  worker(url(ids[3], "metrics"), {{"worker_id", "w1"},
                                  {"attempt", 1},
                                  {"points", {{{"key", "loss"}, {"step", 10}, {"value", nullptr}}}}});
  EXPECT_EQ(scalar("SELECT count(*) FROM search_rungs WHERE decision = 'stop' AND run_id = " +
                   std::to_string(ids[3]) + " AND values_json = '[null]'"),
            1);
}

TEST_F(SearchDriver, SampledSweepProposesLazilyAndNothingTwice) {
  Json spec = {{"name", "tpe"},
               {"command", "train --lr {lr}"},
               {"space", {{"lr", {{"type", "loguniform"}, {"low", 1e-4}, {"high", 1e-1}}}}},
               {"search", {{"type", "none"}, {"metric", "loss"}, {"mode", "min"}}},
               {"sampler", "tpe"},
               {"tpe", {{"n_startup_trials", 2}}},
               {"samples", 5},
               {"max_concurrent", 2},
               {"seed", 7}};
  Json sub = user("POST", "/v1/sweeps", spec, 201);
  ASSERT_EQ(sub["runs"].size(), 2u) << "max_concurrent runs at first";
  std::set<int64_t> finished;
  int restarts = 0;
  for (int round = 0; round < 10; ++round) {
    auto ids = lease_and_start();
    if (ids.empty()) break;
    for (int64_t id : ids) {
      Json r = user("GET", "/v1/runs/" + std::to_string(id))["run"];
      double lr = r["params"]["lr"];
      metric(id, 100, (std::log10(lr) + 2.5) * (std::log10(lr) + 2.5));
      EXPECT_LE(scalar("SELECT count(*) FROM runs WHERE state IN ('queued','leased','running')"), 2);
      finish(id, {{"exit_code", 0}});
      finished.insert(id);
      if (restarts++ % 2 == 0) open();  // restart between proposals
    }
  }
  EXPECT_EQ(finished.size(), 5u) << "the budget, no more";
  EXPECT_EQ(scalar("SELECT count(*) FROM runs"), 5);
  EXPECT_EQ(scalar("SELECT count(DISTINCT sample_index) FROM search_samples"), 5);
  EXPECT_EQ(scalar("SELECT max(sample_index) FROM search_samples"), 4);
  EXPECT_EQ(scalar("SELECT count(*) FROM search_samples s JOIN runs r ON r.id = s.run_id "
                   "WHERE r.params_json = s.params_json"),
            5);
  EXPECT_EQ(scalar("SELECT count(*) FROM run_events WHERE kind = 'proposed'"), 3);
}

// A run lost with no attempts left (its worker stopped heartbeating) ends
// failed in the coordinator, not through a report: the sweep must still
// propose its next sample instead of stalling with nothing in flight.
TEST_F(SearchDriver, LostLastRunInFlightStillProposesTheNext) {
  Json spec = {{"name", "lost"},
               {"command", "train --lr {lr}"},
               {"space", {{"lr", {{"type", "uniform"}, {"low", 0.0}, {"high", 1.0}}}}},
               {"sampler", "random"},
               {"samples", 3},
               {"max_concurrent", 1},
               {"max_attempts", 1},
               {"seed", 3}};
  Json sub = user("POST", "/v1/sweeps", spec, 201);
  ASSERT_EQ(sub["runs"].size(), 1u);
  auto first = lease_and_start();
  ASSERT_EQ(first.size(), 1u);
  now_ += 1000;  // far past the lease ttl: the worker is lost
  coord_->tick();
  EXPECT_EQ(state(first[0]), "failed");
  EXPECT_EQ(scalar("SELECT count(*) FROM runs WHERE state = 'queued'"), 1)
      << "the next sample was proposed after the lost run";
  EXPECT_EQ(scalar("SELECT count(DISTINCT sample_index) FROM search_samples"), 2);
}

// The params a TPE sweep proposes when its runs end one at a time, each
// reporting a quadratic in log10(lr) with its optimum at 10^-2.5.
std::vector<double> tpe_params(SearchDriver& t, const std::string& name) {
  Json spec = {{"name", name},
               {"command", "train --lr {lr}"},
               {"space", {{"lr", {{"type", "loguniform"}, {"low", 1e-4}, {"high", 1e-1}}}}},
               {"search", {{"type", "none"}, {"metric", "loss"}, {"mode", "min"}}},
               {"sampler", "tpe"},
               {"tpe", {{"n_startup_trials", 3}}},
               {"samples", 8},
               {"max_concurrent", 1},
               {"seed", 5}};
  t.user("POST", "/v1/sweeps", spec, 201);
  std::vector<double> out;
  for (int round = 0; round < 10; ++round) {
    auto ids = t.lease_and_start();
    if (ids.empty()) break;
    for (int64_t id : ids) {
      double lr = t.user("GET", "/v1/runs/" + std::to_string(id))["run"]["params"]["lr"];
      out.push_back(lr);
      t.metric(id, 100, (std::log10(lr) + 2.5) * (std::log10(lr) + 2.5));
      t.finish(id, {{"exit_code", 0}});
    }
  }
  return out;
}

TEST_F(SearchDriver, SameSeedAndResultOrderGiveTheSameProposals) {
  auto a = tpe_params(*this, "tpe-a");
  auto b = tpe_params(*this, "tpe-b");
  ASSERT_EQ(a.size(), 8u);
  EXPECT_EQ(a, b);
}

TEST_F(SearchDriver, CancellingASampledSweepProposesNothingMore) {
  Json spec = {{"name", "cx"},
               {"command", "train --lr {lr}"},
               {"space", {{"lr", {{"type", "uniform"}, {"low", 0.0}, {"high", 1.0}}}}},
               {"sampler", "random"},
               {"samples", 6},
               {"max_concurrent", 2}};
  user("POST", "/v1/sweeps", spec, 201);
  auto ids = lease_and_start();
  ASSERT_EQ(ids.size(), 2u);
  user("POST", "/v1/sweeps/cx/cancel", Json::object());
  for (int64_t id : ids) EXPECT_EQ(finish(id, {{"cancelled", true}, {"signal", 15}})["state"], "cancelled");
  EXPECT_EQ(scalar("SELECT count(*) FROM runs"), 2);
}

TEST_F(SearchDriver, EvalRungWaitsForItsEvalAndAFailedEvalIsTheWorst) {
  Json spec = asha_sweep("ev", 2);
  spec["search"].erase("metric");
  spec["search"].erase("mode");
  spec["search"]["objectives"] = Json::array({{{"metric", "qa/score"}, {"mode", "max"}}});
  spec["evals"] = Json::array({{{"suite", "qa"}, {"on", "every"}}});
  user("POST", "/v1/sweeps", spec, 201);
  auto ids = lease_and_start();
  ASSERT_EQ(ids.size(), 2u);
  auto checkpoint = [&](int64_t id, const std::string& hash, int64_t step) {
    worker(url(id, "artifacts"), {{"worker_id", "w1"},
                                  {"attempt", 1},
                                  {"path", "/ck/" + hash},
                                  {"content_hash", hash},
                                  {"step", step}});
  };
  checkpoint(ids[0], "a10", 10);
  checkpoint(ids[1], "b12", 12);
  auto evals = lease_and_start();
  ASSERT_EQ(evals.size(), 2u);
  EXPECT_EQ(scalar("SELECT count(*) FROM search_rungs"), 0) << "rungs wait for their evals";
  const int64_t eval_a = scalar("SELECT eval_run_id FROM eval_hook_runs WHERE checkpoint_hash = 'a10'");
  const int64_t eval_b = scalar("SELECT eval_run_id FROM eval_hook_runs WHERE checkpoint_hash = 'b12'");
  metric(eval_a, 0, 0.8, "qa@1/score");
  finish(eval_a, {{"exit_code", 0}});
  EXPECT_EQ(scalar("SELECT count(*) FROM search_rungs WHERE decision = 'continue' AND run_id = " +
                   std::to_string(ids[0])),
            1);
  finish(eval_b, {{"exit_code", 1}});  // a failed eval: the worst value, not a hang
  EXPECT_EQ(scalar("SELECT count(*) FROM search_rungs WHERE decision = 'stop' AND run_id = " +
                   std::to_string(ids[1]) + " AND reported_step = 12"),
            1);
  EXPECT_EQ(finish(ids[1], {{"cancelled", true}, {"signal", 15}})["state"], "pruned");
}

TEST_F(SearchDriver, BadSearchSpecsNameFieldValueAndExpectation) {
  Json spec = asha_sweep("bad", 2);
  spec["search"]["reduction_factor"] = 1;
  Json e = user("POST", "/v1/sweeps", spec, 400);
  std::string m = e["error"]["message"];
  EXPECT_NE(m.find("/search/reduction_factor"), std::string::npos) << m;
  EXPECT_NE(m.find("1"), std::string::npos) << m;

  Json tpe = {{"name", "bad2"},
              {"command", "train --lr {lr}"},
              {"space", {{"lr", {{"type", "uniform"}, {"low", 0.0}, {"high", 1.0}}}}},
              {"search", {{"type", "none"}, {"metric", "loss"}, {"mode", "min"}}},
              {"sampler", "tpe"},
              {"seeds", {1, 2}}};
  m = user("POST", "/v1/sweeps", tpe, 400)["error"]["message"];
  EXPECT_NE(m.find("/seeds"), std::string::npos) << m;
  EXPECT_NE(m.find("[1,2]"), std::string::npos) << m;

  tpe.erase("seeds");
  tpe["sampler"] = "bayes";
  m = user("POST", "/v1/sweeps", tpe, 400)["error"]["message"];
  EXPECT_NE(m.find("/sampler"), std::string::npos) << m;
  EXPECT_NE(m.find("bayes"), std::string::npos) << m;
}
