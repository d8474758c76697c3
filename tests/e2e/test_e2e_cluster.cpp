// End to end: the real coordinator and workers as processes on 127.0.0.1,
// shell and Python trainers speaking the metric protocol, and the results
// checked in the coordinator's SQLite database.
#include "../support/run_cmd.h"
#include "assay/hash.h"
#include "e2e_harness.h"

namespace e2e {
namespace {

// Twelve GPU runs over two workers (three GPUs): every metric point lands
// exactly once, every checkpoint is an artifact with the right hash, every
// malformed line is an event with its line number, logs reach the coordinator.
TEST(E2E, GridOfTwelveRunsOnTwoWorkers) {
  Cluster c("grid", 3.0);
  ASSERT_TRUE(c.start_coordinator());
  c.start_worker("w1", "2");
  c.start_worker("w2", "0:80GB");
  Json sweep = {{"name", "grid12"},
                {"command", "sh " + q((c.dir() / "trainer.sh").string()) + " 10 0.02 {lr} {seed}"},
                {"space", {{"lr", {{"type", "grid"}, {"values", {0.1, 0.01, 0.001, 0.0001}}}}}},
                {"seeds", {1, 2, 3}},
                {"resources", {{"gpus", 1}, {"cpus", 1}}}};
  auto rep = c.post("/v1/sweeps", sweep);
  ASSERT_EQ(rep.status, 201) << rep.body;
  ASSERT_TRUE(c.wait_all("grid12", "succeeded", 12, 40s)) << c.diagnostics();

  Db db(c.db_path());
  const std::string in_sweep =
      " FROM metrics m JOIN metric_keys k ON k.id = m.key_id JOIN runs r ON r.id = m.run_id "
      "JOIN sweeps s ON s.id = r.sweep_id WHERE s.name = 'grid12'";
  EXPECT_EQ(db.scalar("SELECT COUNT(*)" + in_sweep), 12 * 10 * 2);
  // Per run: steps 0..9 of loss, each once, with the values written.
  auto per_run = db.rows("SELECT m.run_id, COUNT(*), COUNT(DISTINCT m.step), MIN(m.step), "
                         "MAX(m.step), SUM(m.value)" + in_sweep +
                         " AND k.name = 'loss' GROUP BY m.run_id");
  ASSERT_EQ(per_run.size(), 12u);
  for (auto& r : per_run) {
    EXPECT_EQ(r[1], "10") << "run " << r[0];
    EXPECT_EQ(r[2], "10");
    EXPECT_EQ(r[3], "0");
    EXPECT_EQ(r[4], "9");
    EXPECT_DOUBLE_EQ(std::stod(r[5]), 50.0);  // sum of i + 0.5 for i < 10
  }
  // Both workers took runs; no run needed a second attempt.
  EXPECT_EQ(db.scalar("SELECT COUNT(DISTINCT worker_id) FROM run_placement"), 2);
  EXPECT_EQ(db.scalar("SELECT MAX(attempt) FROM runs"), 1);
  // Checkpoints: a directory holding w.bin = "<run id>\n".
  auto arts = db.rows("SELECT run_id, content_hash, step FROM artifacts WHERE kind = 'checkpoint'");
  ASSERT_EQ(arts.size(), 12u);
  for (auto& a : arts) {
    assay::Sha256 h;
    h.update("w.bin");
    h.update(std::string_view("\0", 1));
    h.update(assay::sha256_hex(a[0] + "\n"));
    h.update("\n");
    EXPECT_EQ(a[1], h.hex_digest()) << "run " << a[0];
    EXPECT_EQ(a[2], "10");
  }
  // The malformed line is line 11 of each run's metric stream.
  EXPECT_EQ(db.scalar("SELECT COUNT(*) FROM run_events WHERE kind = 'malformed_metric' "
                      "AND detail LIKE 'line 11:%'"),
            12);
  // stdout reached the coordinator; each run saw exactly one GPU.
  int64_t id = run_id_of(db, "grid12");
  auto log = slurp(c.dir() / "assay.db.logs" / std::to_string(id) / "1.stdout.log");
  EXPECT_NE(log.find("run " + std::to_string(id) + " done on GPUs ["), std::string::npos) << log;
  EXPECT_EQ(log.find(','), std::string::npos) << log;
}

// kill -9 of the coordinator while runs write metrics: the worker spools,
// resends after the restart, and the database ends with exactly the points
// the trainers wrote; the runs stay with their worker (attempt 1).
TEST(E2E, CoordinatorKill9MidSweepLosesAndDoublesNothing) {
  if (!fs::exists(ASSAY_REF_PYTHON)) GTEST_SKIP() << ASSAY_REF_PYTHON << " is missing";
  Cluster c("coordkill", 5.0);
  ASSERT_TRUE(c.start_coordinator());
  auto& w = c.start_worker("w1", "2");
  Json sweep = {{"name", "ck"},
                {"command", std::string(ASSAY_REF_PYTHON) + " " +
                                q((c.dir() / "trainer.py").string()) + " 40 0.04 {lr}"},
                {"space", {{"lr", {{"type", "grid"}, {"values", {0.1, 0.2, 0.3, 0.4}}}}}},
                {"resources", {{"gpus", 1}}}};
  ASSERT_EQ(c.post("/v1/sweeps", sweep).status, 201);
  {
    Db db(c.db_path());
    ASSERT_TRUE(wait_for([&] { return db.scalar("SELECT COUNT(*) FROM metrics") >= 10; }, 20s))
        << c.diagnostics();
  }
  c.kill_coordinator();
  std::this_thread::sleep_for(1500ms);  // the trainers keep writing; the worker spools
  ASSERT_TRUE(c.start_coordinator());
  ASSERT_TRUE(c.wait_all("ck", "succeeded", 4, 40s)) << c.diagnostics();
  EXPECT_NE(w.logs().find("spooling"), std::string::npos) << w.logs();

  Db db(c.db_path());
  EXPECT_EQ(db.scalar("SELECT COUNT(*) FROM metrics"), 4 * 40 * 2);
  auto per_run = db.rows("SELECT m.run_id, COUNT(DISTINCT m.step), MIN(m.step), MAX(m.step) "
                         "FROM metrics m JOIN metric_keys k ON k.id = m.key_id "
                         "WHERE k.name = 'loss' GROUP BY m.run_id");
  ASSERT_EQ(per_run.size(), 4u);
  for (auto& r : per_run) {
    EXPECT_EQ(r[1], "40") << "run " << r[0];
    EXPECT_EQ(r[2], "0");
    EXPECT_EQ(r[3], "39");
  }
  // Batches: numbered 0..n-1 per run with no gap, and their points add up
  // to the stored points (no batch applied twice).
  auto batches = db.rows("SELECT run_id, COUNT(*), MAX(batch_seq), SUM(points) FROM metric_batches "
                         "GROUP BY run_id, attempt");
  ASSERT_EQ(batches.size(), 4u);
  for (auto& b : batches) {
    EXPECT_EQ(std::stoll(b[1]), std::stoll(b[2]) + 1) << "run " << b[0];
    EXPECT_EQ(b[3], "80") << "run " << b[0];
  }
  EXPECT_EQ(db.scalar("SELECT MAX(attempt) FROM runs"), 1);
}

// The coordinator is down when a run ends: the `finished` report waits in
// the worker's spool, and finished_at is still the process's exit time;
// reported_at is when the report arrived.
TEST(E2E, RunEndingDuringACoordinatorOutageKeepsItsExitTime) {
  Cluster c("outage", 30.0);
  ASSERT_TRUE(c.start_coordinator());
  c.start_worker("w1", "0");
  Json run = {{"name", "out"}, {"command", "sleep 1"}, {"max_attempts", 1}};
  ASSERT_EQ(c.post("/v1/sweeps", run).status, 201);
  {
    Db db(c.db_path());
    ASSERT_TRUE(wait_for([&] { return db.scalar("SELECT COUNT(*) FROM runs WHERE state = 'running'") == 1; },
                         20s))
        << c.diagnostics();
  }
  c.kill_coordinator();
  std::this_thread::sleep_for(4s);  // the run ends about 1 s in; its report is spooled
  ASSERT_TRUE(c.start_coordinator());
  ASSERT_TRUE(c.wait_all("out", "succeeded", 1, 30s)) << c.diagnostics();
  Db db(c.db_path());
  auto r = db.rows("SELECT started_at, finished_at, reported_at FROM runs");
  ASSERT_EQ(r.size(), 1u);
  const double started = std::stod(r[0][0]), finished = std::stod(r[0][1]),
               reported = std::stod(r[0][2]);
  EXPECT_GT(finished - started, 0.5) << "the run sleeps 1 s";
  EXPECT_LT(finished - started, 2.5) << "finished_at is the exit, not the delivery";
  EXPECT_GT(reported - finished, 2.0) << "delivered after the outage";
}

// kill -9 of a worker mid-run: after the lease TTL the run is requeued with
// attempt 2 and finishes on another worker, with every step exactly once.
TEST(E2E, WorkerKill9RequeuesTheRunOntoAnotherWorker) {
  Cluster c("workerkill", 2.0);
  ASSERT_TRUE(c.start_coordinator());
  auto& a = c.start_worker("wa", "1");
  Json sweep = {{"name", "wk"},
                {"command", "sh " + q((c.dir() / "trainer.sh").string()) + " 30 0.05"},
                {"resources", {{"gpus", 1}}},
                {"max_attempts", 2}};
  ASSERT_EQ(c.post("/v1/sweeps", sweep).status, 201);
  Db db(c.db_path());
  ASSERT_TRUE(wait_for([&] { return db.scalar("SELECT COUNT(*) FROM metrics") >= 8; }, 20s))
      << c.diagnostics();
  a.kill9();
  c.start_worker("wb", "1");
  ASSERT_TRUE(c.wait_all("wk", "succeeded", 1, 30s)) << c.diagnostics();
  int64_t id = run_id_of(db, "wk");
  auto run = db.rows("SELECT r.attempt, p.worker_id FROM runs r JOIN run_placement p ON p.run_id = r.id "
                     "WHERE r.id = " + std::to_string(id));
  ASSERT_EQ(run.size(), 1u);
  EXPECT_EQ(run[0][0], "2");
  EXPECT_EQ(run[0][1], "wb");
  auto steps = db.rows("SELECT COUNT(*), COUNT(DISTINCT m.step), MIN(m.step), MAX(m.step) "
                       "FROM metrics m JOIN metric_keys k ON k.id = m.key_id "
                       "WHERE k.name = 'loss' AND m.attempt = 2 AND m.run_id = " +
                       std::to_string(id));
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0], (std::vector<std::string>{"30", "30", "0", "29"}));
  // The dead attempt's points are kept, apart: the summary is attempt 2's.
  const int64_t dead = db.scalar("SELECT COUNT(*) FROM metrics m JOIN metric_keys k ON "
                                 "k.id = m.key_id WHERE k.name = 'loss' AND m.attempt = 1");
  EXPECT_GE(dead, 1);
  EXPECT_EQ(db.scalar("SELECT points FROM run_metric_summary WHERE metric = 'loss'"), 30);
  const std::string cli = "'" + std::string(ASSAY_EXE) + "' metrics " + std::to_string(id) +
                          " --key loss --json --coordinator " + c.url() + " --token-file '" +
                          (c.dir() / "user.token").string() + "'";
  auto cur = assay::testing::run_cmd(cli);
  auto all = assay::testing::run_cmd(cli + " --all-attempts");
  auto one = assay::testing::run_cmd(cli + " --attempt 1");
  ASSERT_EQ(cur.code, 0) << cur.out;
  ASSERT_EQ(all.code, 0) << all.out;
  ASSERT_EQ(one.code, 0) << one.out;
  EXPECT_EQ(Json::parse(cur.out).size(), 30u) << cur.out;
  EXPECT_EQ(Json::parse(all.out).size(), 30u + dead) << all.out;
  EXPECT_EQ(Json::parse(one.out).size(), size_t(dead)) << one.out;
  EXPECT_GE(db.scalar("SELECT COUNT(*) FROM run_events WHERE run_id = " + std::to_string(id) +
                      " AND (kind LIKE '%lease%' OR detail LIKE '%lease%')"),
            1);
}

// A process forked by a run survives a kill -9 of its worker (only the run's
// direct child dies with the worker). The worker, started again over the
// same work directory, kills it before leasing anything.
TEST(E2E, RestartedWorkerKillsWhatItsKilledSelfLeftRunning) {
  Cluster c("leftover", 30.0);
  ASSERT_TRUE(c.start_coordinator());
  auto& a = c.start_worker("wl", "0");
  std::string pidfile = (c.dir() / "grandchild.pid").string();
  Json run = {{"name", "lo"},
              {"command", "sleep 300 & echo $! > " + q(pidfile) + "; wait"},
              {"max_attempts", 1}};
  ASSERT_EQ(c.post("/v1/sweeps", run).status, 201);
  ASSERT_TRUE(wait_for([&] { return !trim(slurp(pidfile)).empty(); }, 20s)) << c.diagnostics();
  pid_t gc = std::stoi(trim(slurp(pidfile)));
  auto alive = [&] {
    std::string stat = slurp("/proc/" + std::to_string(gc) + "/stat");
    size_t close = stat.rfind(')');
    return close != std::string::npos && stat.compare(close + 2, 1, "Z") != 0;
  };
  a.kill9();
  std::this_thread::sleep_for(500ms);
  ASSERT_TRUE(alive()) << "the grandchild died with its worker: nothing left to test";
  auto& again = c.start_worker("wl", "0");
  EXPECT_TRUE(wait_for([&] { return !alive(); }, 15s)) << "pid " << gc << " survived\n"
                                                      << c.diagnostics();
  EXPECT_NE(again.logs().find("left running by an earlier start"), std::string::npos)
      << again.logs();
  if (alive()) kill(gc, SIGKILL);
}

// A worker that stalls (SIGSTOP) past the lease TTL loses its run to another
// worker; once it resumes, the coordinator tells it the lease is gone and it
// kills its copy of the run. The run's metrics come from one attempt, once.
TEST(E2E, StalledWorkerKillsTheRunItNoLongerHolds) {
  Cluster c("stall", 2.0);
  ASSERT_TRUE(c.start_coordinator());
  auto& a = c.start_worker("wa", "1");
  std::string pids = (c.dir() / "pids").string();
  Json sweep = {{"name", "st"},
                {"command", "echo $$ >> " + q(pids) + "; exec sh " +
                                q((c.dir() / "trainer.sh").string()) + " 30 0.05"},
                {"resources", {{"gpus", 1}}},
                {"max_attempts", 3}};
  ASSERT_EQ(c.post("/v1/sweeps", sweep).status, 201);
  Db db(c.db_path());
  ASSERT_TRUE(wait_for([&] { return db.scalar("SELECT COUNT(*) FROM metrics") >= 4; }, 20s))
      << c.diagnostics();
  pid_t first = std::stoi(slurp(pids));
  a.signal(SIGSTOP);
  c.start_worker("wb", "1");
  ASSERT_TRUE(wait_for([&] { return db.scalar("SELECT MAX(attempt) FROM runs") == 2; }, 15s))
      << c.diagnostics();
  a.signal(SIGCONT);
  EXPECT_TRUE(wait_for([&] { return kill(first, 0) != 0; }, 10s))
      << "attempt 1 (pid " << first << ") still runs\n" << c.diagnostics();
  ASSERT_TRUE(c.wait_all("st", "succeeded", 1, 30s)) << c.diagnostics();
  // Attempt 2 usually lands on wb; it may land on wa too when wa's lease
  // long-poll was already waiting at the coordinator as it stalled.
  EXPECT_GE(db.scalar("SELECT attempt FROM runs"), 2);
  auto steps = db.rows("SELECT COUNT(*), COUNT(DISTINCT m.step), MIN(m.step), MAX(m.step) "
                       "FROM metrics m JOIN metric_keys k ON k.id = m.key_id "
                       "JOIN runs r ON r.id = m.run_id AND m.attempt = r.attempt "
                       "WHERE k.name = 'loss'");
  EXPECT_EQ(steps.at(0), (std::vector<std::string>{"30", "30", "0", "29"}));
}

// Cancel and timeout each end a run with their own reason, and the worker
// stops the whole process group.
TEST(E2E, CancelAndTimeoutEndRunsWithTheRightReason) {
  Cluster c("cancel", 3.0);
  ASSERT_TRUE(c.start_coordinator());
  c.start_worker("cpu", "0");
  auto pidfile = [&](const std::string& n) { return (c.dir() / n).string(); };
  auto t = c.post("/v1/runs", {{"name", "slow-timeout"},
                               {"command", "sleep 300 & echo $! > " + q(pidfile("t.pid")) + "; wait"},
                               {"timeout", 1.0},
                               {"resources", {{"cpus", 1}}}});
  ASSERT_EQ(t.status, 201) << t.body;
  auto k = c.post("/v1/runs", {{"name", "slow-cancel"},
                               {"command", "sleep 300 & echo $! > " + q(pidfile("k.pid")) + "; wait"},
                               {"resources", {{"cpus", 1}}}});
  ASSERT_EQ(k.status, 201) << k.body;
  int64_t tid = t.json()["run"]["id"].get<int64_t>();
  int64_t kid = k.json()["run"]["id"].get<int64_t>();
  Db db(c.db_path());
  auto state = [&](int64_t id) {
    auto r = db.rows("SELECT state, COALESCE(failure_reason, '') FROM runs WHERE id = " +
                     std::to_string(id));
    return r.empty() ? std::vector<std::string>{} : r[0];
  };
  ASSERT_TRUE(wait_for([&] { return state(kid).at(0) == "running" && fs::exists(pidfile("k.pid")); },
                       20s))
      << c.diagnostics();
  auto cancel = c.post("/v1/runs/" + std::to_string(kid) + "/cancel", Json::object());
  ASSERT_EQ(cancel.status, 200) << cancel.body;
  ASSERT_TRUE(wait_for([&] { return state(kid).at(0) == "cancelled"; }, 15s)) << c.diagnostics();
  EXPECT_EQ(state(kid).at(1), "cancelled");
  ASSERT_TRUE(wait_for([&] { return state(tid).at(0) == "failed"; }, 15s)) << c.diagnostics();
  EXPECT_EQ(state(tid).at(1), "timeout");
  // The sleeps (grandchildren of the worker) went with their groups.
  for (const char* f : {"t.pid", "k.pid"}) {
    pid_t p = std::stoi(slurp(pidfile(f)));
    EXPECT_TRUE(wait_for([&] { return kill(p, 0) != 0; }, 3s)) << f << " pid " << p << " survived";
  }
}

}  // namespace
}  // namespace e2e
