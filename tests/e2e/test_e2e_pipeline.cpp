// The pipelined worker end to end: the real coordinator and real workers
// that lease runs ahead of their free slots and send reports in batches.
//   - a worker never runs more processes than its slots, though it holds
//     more leases than that;
//   - a run held ahead is handed back unstarted on drain (SIGINT) and on
//     preemption (SIGTERM): queued again, no attempt used up;
//   - a batch of reports for several runs is applied per run, and a replayed
//     batch doubles nothing;
//   - killing the coordinator (kill -9) while batches are in flight loses
//     nothing.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>

#include "e2e_harness.h"

namespace e2e {
namespace {

// A worker with `cpus` slots; the harness's start_worker fixes --cpus 4.
std::unique_ptr<Daemon> worker(Cluster& c, const std::string& id, int cpus,
                               const std::string& extra = "") {
  return std::make_unique<Daemon>(
      c.dir(), "worker-" + id,
      "worker --coordinator " + c.url() + " --token-file '" + (c.dir() / "worker.token").string() +
          "' --id " + id + " --gpus 0 --cpus " + std::to_string(cpus) +
          " --lease-wait 1 --kill-grace 1 --work-dir '" + (c.dir() / ("work-" + id)).string() +
          "' " + extra);
}

Json grid_sweep(const std::string& name, const std::string& command, int n) {
  Json vals = Json::array();
  for (int i = 0; i < n; ++i) vals.push_back(i);
  return {{"name", name}, {"command", command + " # {x}"}, {"max_attempts", 1},
          {"space", {{"x", {{"type", "grid"}, {"values", vals}}}}}};
}

std::string events_of(Db& db, int64_t run) {
  std::string t;
  for (auto& r : db.rows("SELECT kind, COALESCE(to_state, ''), detail FROM run_events WHERE run_id = " +
                         std::to_string(run) + " ORDER BY id"))
    t += r[0] + " " + r[1] + ": " + r[2] + "\n";
  return t;
}

TEST(E2EPipeline, NeverRunsMoreThanItsSlotsWhileHoldingLeasesAhead) {
  Cluster c("pipe-slots", 10.0);
  ASSERT_TRUE(c.start_coordinator());
  auto w = worker(c, "wslots", 2);
  const std::string d = c.dir().string();
  // Each run counts the runs alive beside it through marker files.
  const std::string cmd = "mkdir -p " + q(d + "/alive") + " && touch " + q(d + "/alive") +
                          "/$ASSAY_RUN_ID && ls " + q(d + "/alive") + " | wc -l >> " +
                          q(d + "/counts") + " && sleep 0.3 && rm " + q(d + "/alive") +
                          "/$ASSAY_RUN_ID";
  ASSERT_EQ(c.post("/v1/sweeps", grid_sweep("slots", cmd, 12)).status, 201);
  ASSERT_TRUE(c.wait_all("slots", "succeeded", 12, 60s)) << c.diagnostics() << w->logs();
  std::istringstream counts(slurp(c.dir() / "counts"));
  int n = 0, most = 0, seen = 0;
  while (counts >> n) {
    most = std::max(most, n);
    ++seen;
  }
  EXPECT_EQ(seen, 12);
  EXPECT_LE(most, 2) << "more processes than slots at once";
  // And it did hold leases ahead: some run was leased while two others ran
  // (running from the coordinator's `running` event until the exit).
  Db db(c.db_path());
  auto leased = db.rows("SELECT run_id, at FROM run_events WHERE to_state = 'leased'");
  auto ran = db.rows("SELECT e.run_id, e.at, r.finished_at FROM run_events e JOIN runs r ON "
                     "r.id = e.run_id WHERE e.to_state = 'running'");
  int most_ahead = 0;
  for (auto& l : leased) {
    double at = std::stod(l[1]);
    int busy = 0;
    for (auto& r : ran)
      if (r[0] != l[0] && std::stod(r[1]) <= at && at < std::stod(r[2])) ++busy;
    most_ahead = std::max(most_ahead, busy);
  }
  std::string seen_rows;
  for (auto& l : leased) seen_rows += "leased " + l[0] + " at " + l[1] + "\n";
  for (auto& r : ran) seen_rows += "ran " + r[0] + " " + r[1] + ".." + r[2] + "\n";
  EXPECT_EQ(most_ahead, 2) << "no run was leased while both slots were busy\n" << seen_rows;
}

// One slot, two runs: the second is leased ahead and held while the first
// runs. Drain or preemption hands it back unstarted.
void held_run_goes_back(int sig) {
  Cluster c(sig == SIGINT ? "pipe-drain" : "pipe-preempt", 10.0);
  ASSERT_TRUE(c.start_coordinator());
  auto w = worker(c, "wheld", 1, "--preempt-grace 5");
  ASSERT_EQ(c.post("/v1/sweeps", grid_sweep("held", "sleep 1.5", 2)).status, 201);
  Db db(c.db_path());
  ASSERT_TRUE(wait_for([&] { auto n = c.counts("held"); return n["running"] == 1 && n["leased"] == 1; },
                       20s))
      << "no run held ahead: " << c.diagnostics() << w->logs();
  const int64_t held = db.scalar("SELECT id FROM runs WHERE state = 'leased'");
  const int64_t ran = db.scalar("SELECT id FROM runs WHERE state = 'running'");
  w->signal(sig);
  ASSERT_TRUE(wait_for([&] {
    return db.scalar("SELECT state = 'queued' AND attempt = 2 FROM runs WHERE id = " +
                     std::to_string(held)) == 1;
  }, 20s)) << events_of(db, held) << w->logs();
  // Never started, and no attempt used up.
  EXPECT_EQ(db.scalar("SELECT COUNT(*) FROM run_events WHERE to_state = 'running' AND run_id = " +
                      std::to_string(held)), 0);
  EXPECT_EQ(db.scalar("SELECT attempt - preemptions FROM runs WHERE id = " + std::to_string(held)), 1);
  EXPECT_NE(events_of(db, held).find("handed back unstarted"), std::string::npos) << events_of(db, held);
  if (sig == SIGINT) {
    // Draining: the running run finishes.
    EXPECT_TRUE(wait_for([&] {
      return db.scalar("SELECT state = 'succeeded' FROM runs WHERE id = " + std::to_string(ran)) == 1;
    }, 20s)) << events_of(db, ran);
  } else {
    // Preempted: the running run is stopped and requeued too.
    EXPECT_TRUE(wait_for([&] {
      return db.scalar("SELECT state = 'queued' FROM runs WHERE id = " + std::to_string(ran)) == 1;
    }, 20s)) << events_of(db, ran);
  }
  EXPECT_TRUE(wait_for([&] { return !w->alive(); }, 20s)) << w->logs();
}

TEST(E2EPipeline, HeldLeaseIsHandedBackUnstartedOnDrain) { held_run_goes_back(SIGINT); }
TEST(E2EPipeline, HeldLeaseIsHandedBackUnstartedOnPreemption) { held_run_goes_back(SIGTERM); }

TEST(E2EPipeline, ReportBatchAppliesPerRunAndAReplayDoublesNothing) {
  Cluster c("pipe-batch", 30.0);
  ASSERT_TRUE(c.start_coordinator());
  const std::string wtok = trim(slurp(c.dir() / "worker.token"));
  auto wpost = [&](const std::string& path, const Json& body) {
    return http("POST", c.url() + path, wtok, body.dump());
  };
  ASSERT_EQ(wpost("/v1/worker/register", {{"worker_id", "wb"}, {"instance", "i1"}, {"cpus", 4}}).status,
            200);
  ASSERT_EQ(c.post("/v1/sweeps", grid_sweep("batch", "true", 3)).status, 201);
  std::vector<int64_t> ids;
  for (int tries = 0; tries < 5 && ids.size() < 3; ++tries) {
    Reply lease = wpost("/v1/worker/lease", {{"worker_id", "wb"}, {"max_runs", 3}, {"wait_s", 1}});
    ASSERT_EQ(lease.status, 200) << lease.body;
    const Json got = lease.json();
    for (auto& r : got["runs"]) ids.push_back(r["run_id"].get<int64_t>());
  }
  ASSERT_EQ(ids.size(), 3u) << c.diagnostics();
  auto rep = [](const char* op, int64_t run, Json body) {
    body["op"] = op;
    body["run_id"] = run;
    body["attempt"] = 1;
    return body;
  };
  Json points = Json::array({{{"key", "loss"}, {"step", 1}, {"value", 0.5}},
                             {{"key", "loss"}, {"step", 2}, {"value", 0.25}}});
  Json reports = Json::array({
      rep("started", ids[0], {{"pid", 10}}),
      rep("metrics", ids[0], {{"batch_seq", 0}, {"points", points}}),
      rep("finished", ids[0], {{"exit_code", 0}}),
      rep("started", ids[1], {{"pid", 11}}),
      // Refused (no outcome): changes nothing, and the batch goes on.
      rep("finished", ids[1], Json::object()),
      rep("metrics", ids[1], {{"batch_seq", 0}, {"points", points}}),
      rep("finished", ids[1], {{"exit_code", 3}}),
      rep("started", ids[2], {{"pid", 12}}),
  });
  Json batch = {{"worker_id", "wb"}, {"instance", "i1"}, {"reports", reports}};
  Reply first = wpost("/v1/worker/heartbeat", batch);
  ASSERT_EQ(first.status, 200) << first.body;
  Json res = first.json()["reports"];
  ASSERT_TRUE(res.is_array()) << first.body;
  ASSERT_EQ(res.size(), reports.size()) << first.body;
  std::vector<int> want = {200, 200, 200, 200, 400, 200, 200, 200};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(res[i]["status"], want[i]) << i << ": " << res[i];
  Db db(c.db_path());
  auto state = [&](int64_t id) {
    auto r = db.rows("SELECT state FROM runs WHERE id = " + std::to_string(id));
    return r.empty() ? std::string() : r[0][0];
  };
  EXPECT_EQ(state(ids[0]), "succeeded");
  EXPECT_EQ(state(ids[1]), "failed");
  EXPECT_EQ(state(ids[2]), "running");
  auto tally = [&] {
    return std::vector<int64_t>{db.scalar("SELECT COUNT(*) FROM metrics"),
                                db.scalar("SELECT COUNT(*) FROM run_events"),
                                db.scalar("SELECT COUNT(*) FROM metric_batches")};
  };
  auto before = tally();
  EXPECT_EQ(before[0], 4);
  // The same batch again (its answer was lost, say): nothing doubles.
  Reply again = wpost("/v1/worker/heartbeat", batch);
  ASSERT_EQ(again.status, 200) << again.body;
  const Json again_res = again.json()["reports"];
  ASSERT_EQ(again_res.size(), reports.size());
  for (auto& r : again_res) EXPECT_LT(r["status"].get<int>(), 500) << r;
  EXPECT_EQ(tally(), before);
  EXPECT_EQ(state(ids[0]), "succeeded");
  EXPECT_EQ(state(ids[1]), "failed");
  EXPECT_EQ(state(ids[2]), "running");
  // A single-run report is still taken as before.
  Reply single = wpost("/v1/worker/runs/" + std::to_string(ids[2]) + "/finished",
                       {{"worker_id", "wb"}, {"attempt", 1}, {"exit_code", 0}});
  EXPECT_EQ(single.status, 200) << single.body;
  EXPECT_EQ(state(ids[2]), "succeeded");
}

TEST(E2EPipeline, KillingTheCoordinatorWhileBatchesFlyLosesNothing) {
  Cluster c("pipe-kill", 10.0);
  ASSERT_TRUE(c.start_coordinator());
  auto a = worker(c, "wk1", 4);
  auto b = worker(c, "wk2", 4);
  const int runs = 150, points = 20;
  const std::string cmd = "i=0; while [ $i -lt " + std::to_string(points) +
                          " ]; do echo \"{{\\\"step\\\": $i, \\\"metrics\\\": {{\\\"loss\\\": 1}}}}\" "
                          ">&$ASSAY_METRICS_FD; i=$((i+1)); done";
  ASSERT_EQ(c.post("/v1/sweeps", grid_sweep("kill", cmd, runs)).status, 201);
  ASSERT_TRUE(wait_for([&] { return c.counts("kill")["succeeded"] >= 20; }, 30s)) << c.diagnostics();
  c.kill_coordinator();
  std::this_thread::sleep_for(1s);  // reports pile up in the spools meanwhile
  ASSERT_TRUE(c.start_coordinator());
  ASSERT_TRUE(c.wait_all("kill", "succeeded", runs, 90s))
      << c.diagnostics() << a->logs() << b->logs();
  Db db(c.db_path());
  EXPECT_EQ(db.scalar("SELECT COUNT(*) FROM metrics"), runs * points);
  // Each run: one counted attempt, one start, one end, its metric batches
  // once. A lease whose reply the kill swallowed is requeued after the lease
  // ttl as a new attempt that is not counted (it never started).
  EXPECT_EQ(db.scalar("SELECT COUNT(*) FROM runs WHERE attempt - preemptions != 1"), 0);
  EXPECT_EQ(db.scalar("SELECT COUNT(*) FROM run_events WHERE to_state = 'running'"), runs);
  EXPECT_EQ(db.scalar("SELECT COUNT(*) FROM run_events WHERE to_state = 'succeeded'"), runs);
  EXPECT_EQ(db.scalar("SELECT COUNT(*) FROM (SELECT run_id, attempt, batch_seq FROM metric_batches "
                      "GROUP BY 1, 2, 3 HAVING COUNT(*) > 1)"), 0);
}

}  // namespace
}  // namespace e2e
