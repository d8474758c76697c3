// Adaptive search end to end with the synthetic trainer examples/search/curve.py:
// `assay local` with ASHA and TPE (pruned runs really stop: their process
// groups are gone and they end `pruned` with the rung in the audit log; the
// best run survives), and a real coordinator killed with kill -9 between rung
// decisions and proposals (nothing lost, nothing decided or proposed twice).
#include <gtest/gtest.h>
#include <signal.h>

#include <cerrno>
#include <map>
#include <set>

#include "e2e_harness.h"
#include "support/run_cmd.h"

namespace e2e {
namespace {

const std::string kCurve = std::string(ASSAY_SOURCE_DIR) + "/examples/search/curve.py";

bool have_python() {
  return assay::testing::run_cmd(std::string(ASSAY_REF_PYTHON) + " -c 'import json, math'").code == 0;
}

std::string curve_command(int steps, double sleep_s) {
  return std::string(ASSAY_REF_PYTHON) + " " + q(kCurve) + " --lr {lr} --steps " +
         std::to_string(steps) + " --sleep " + std::to_string(sleep_s);
}

// The process group a run's worker started ("started, pid N" in its events).
int64_t pid_of(Db& db, const std::string& run) {
  auto rows = db.rows("SELECT detail FROM run_events WHERE run_id = " + run +
                      " AND to_state = 'running' ORDER BY id DESC LIMIT 1");
  if (rows.empty()) return -1;
  const std::string& d = rows[0][0];
  auto at = d.find("pid ");
  return at == std::string::npos ? -1 : std::stoll(d.substr(at + 4));
}

bool group_gone(int64_t pid) {
  return pid > 0 && kill(-static_cast<pid_t>(pid), 0) == -1 && errno == ESRCH;
}

// Every run's rung records are rungs 0..k of one bracket without a gap, at
// most one stop, and only as the last.
void expect_rung_records_consistent(Db& db) {
  std::map<std::string, std::vector<std::vector<std::string>>> by_run;
  for (auto& r : db.rows("SELECT run_id, bracket, rung, decision FROM search_rungs "
                         "ORDER BY run_id, bracket, rung"))
    by_run[r[0]].push_back(r);
  for (auto& [run, recs] : by_run) {
    for (size_t i = 0; i < recs.size(); ++i) {
      EXPECT_EQ(recs[i][1], recs[0][1]) << "run " << run << ": one bracket";
      EXPECT_EQ(recs[i][2], std::to_string(i)) << "run " << run << ": rungs without gaps";
      if (recs[i][3] == "stop") EXPECT_EQ(i + 1, recs.size()) << "run " << run << ": stop is last";
    }
  }
}

TEST(E2ESearch, LocalAshaTpePrunedRunsStopAndTheBestSurvives) {
  if (!have_python()) GTEST_SKIP() << ASSAY_REF_PYTHON << " cannot run curve.py";
  const fs::path dir = fs::temp_directory_path() / ("assay-e2e-search-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  // Rungs at steps 5, 15, 45 (eta 3); a full run takes 45 x 0.06 s.
  const int steps = 45;
  Json spec = {{"name", "local-asha"},
               {"command", curve_command(steps, 0.06)},
               {"space", {{"lr", {{"type", "loguniform"}, {"low", 1e-4}, {"high", 1e-1}}}}},
               {"search",
                {{"type", "asha"}, {"metric", "loss"}, {"mode", "min"}, {"min_step", 5},
                 {"max_step", steps}, {"reduction_factor", 3}}},
               {"sampler", "tpe"},
               {"tpe", {{"n_startup_trials", 4}}},
               {"samples", 10},
               {"max_concurrent", 4},
               {"seed", 3}};
  std::ofstream(dir / "sweep.json") << spec.dump(2);
  const fs::path db_path = dir / "assay.db";
  Daemon local(dir, "local",
               "local " + q((dir / "sweep.json").string()) + " --db " + q(db_path.string()) +
                   " --work-dir " + q((dir / "work").string()) + " --cpus 4 --lease-ttl 3");
  // While the sweep runs: each run that ends pruned has no process left.
  std::set<std::string> checked;
  ASSERT_TRUE(wait_for([&] {
    if (fs::exists(db_path)) {
      Db db(db_path);
      if (db.scalar("SELECT count(*) FROM sqlite_master WHERE name = 'search_samples'") <= 0)
        return false;  // not migrated yet
      for (auto& r : db.rows("SELECT id FROM runs WHERE state = 'pruned'")) {
        if (checked.count(r[0])) continue;
        const int64_t pid = pid_of(db, r[0]);
        EXPECT_TRUE(group_gone(pid)) << "pruned run " << r[0] << " still has process group " << pid;
        checked.insert(r[0]);
      }
    }
    return !local.alive();
  }, 60s)) << local.logs();
  Db db(db_path);
  EXPECT_EQ(db.scalar("SELECT count(*) FROM runs"), 10) << local.logs();
  EXPECT_EQ(db.scalar("SELECT count(*) FROM runs WHERE state NOT IN ('succeeded', 'pruned')"), 0)
      << local.logs();
  const int64_t pruned = db.scalar("SELECT count(*) FROM runs WHERE state = 'pruned'");
  EXPECT_GE(pruned, 3) << "ASHA keeps 1 in 3 at each rung";
  EXPECT_GE(db.scalar("SELECT count(*) FROM runs WHERE state = 'succeeded'"), 1);
  // Pruned runs stopped early, with the rung that stopped them in the audit log.
  for (auto& r : db.rows("SELECT id FROM runs WHERE state = 'pruned'")) {
    EXPECT_LT(db.scalar("SELECT max(step) FROM metrics WHERE run_id = " + r[0]), steps)
        << "run " << r[0] << " was not stopped";
    EXPECT_EQ(db.scalar("SELECT count(*) FROM run_events WHERE kind = 'rung' AND run_id = " + r[0] +
                        " AND detail LIKE '%stop%'"),
              1)
        << "run " << r[0];
    EXPECT_TRUE(checked.count(r[0]) || group_gone(pid_of(db, r[0])));
  }
  // The lowest final loss of the sweep belongs to a run that ran to the end.
  auto best = db.rows("SELECT r.state FROM run_metric_summary s JOIN runs r ON r.id = s.run_id "
                      "WHERE s.metric = 'loss' ORDER BY s.final LIMIT 1");
  ASSERT_EQ(best.size(), 1u);
  EXPECT_EQ(best[0][0], "succeeded");
  EXPECT_EQ(db.scalar("SELECT count(DISTINCT sample_index) FROM search_samples"), 10);
  expect_rung_records_consistent(db);
  if (!::testing::Test::HasFailure()) fs::remove_all(dir);
}

TEST(E2ESearch, CoordinatorKilledBetweenDecisionsLosesAndRepeatsNothing) {
  if (!have_python()) GTEST_SKIP() << ASSAY_REF_PYTHON << " cannot run curve.py";
  Cluster c("search-restart", 3.0);
  ASSERT_TRUE(c.start_coordinator());
  c.start_worker("w1", "");
  const int steps = 45;
  Json spec = {{"name", "restart"},
               {"command", curve_command(steps, 0.04)},
               {"space", {{"lr", {{"type", "loguniform"}, {"low", 1e-4}, {"high", 1e-1}}}}},
               {"search",
                {{"type", "asha"}, {"metric", "loss"}, {"mode", "min"}, {"min_step", 5},
                 {"max_step", steps}, {"reduction_factor", 3}}},
               {"sampler", "random"},
               {"samples", 8},
               {"max_concurrent", 3},
               {"seed", 11}};
  ASSERT_EQ(c.post("/v1/sweeps", spec).status, 201) << c.diagnostics();
  Db db(c.db_path());
  // Kill -9 once rung decisions exist, and again once a proposal was made.
  ASSERT_TRUE(wait_for([&] { return db.scalar("SELECT count(*) FROM search_rungs") >= 2; }, 30s))
      << c.diagnostics();
  c.kill_coordinator();
  const int64_t rungs_before = db.scalar("SELECT count(*) FROM search_rungs");
  std::this_thread::sleep_for(500ms);
  ASSERT_TRUE(c.start_coordinator());
  ASSERT_TRUE(wait_for([&] { return db.scalar("SELECT count(*) FROM runs") >= 5; }, 30s))
      << c.diagnostics();
  c.kill_coordinator();
  std::this_thread::sleep_for(300ms);
  ASSERT_TRUE(c.start_coordinator());
  ASSERT_TRUE(wait_for([&] {
    return db.scalar("SELECT count(*) FROM runs") == 8 &&
           db.scalar("SELECT count(*) FROM runs WHERE state IN ('queued','leased','running')") == 0;
  }, 60s)) << c.diagnostics();
  EXPECT_GE(db.scalar("SELECT count(*) FROM search_rungs"), rungs_before) << "no decision lost";
  EXPECT_EQ(db.scalar("SELECT count(*) FROM search_samples"), 8);
  EXPECT_EQ(db.scalar("SELECT count(DISTINCT sample_index) FROM search_samples"), 8);
  EXPECT_EQ(db.scalar("SELECT count(DISTINCT name) FROM runs"), 8) << "nothing proposed twice";
  EXPECT_EQ(db.scalar("SELECT count(*) FROM runs WHERE state NOT IN ('succeeded', 'pruned')"), 0)
      << c.diagnostics();
  // One 'rung' event per decision: none written twice across the restarts.
  EXPECT_EQ(db.scalar("SELECT count(*) FROM run_events WHERE kind = 'rung'"),
            db.scalar("SELECT count(*) FROM search_rungs"));
  expect_rung_records_consistent(db);

  // The CLI: `assay runs --pruned` lists exactly the pruned runs, and
  // `assay export` carries each run's rung history.
  const std::string conn = " --coordinator " + c.url() + " --token-file " +
                           q((c.dir() / "user.token").string());
  const std::string assay = q(ASSAY_EXE);
  auto runs = assay::testing::run_cmd(assay + " runs --sweep restart --pruned --json" + conn);
  ASSERT_EQ(runs.code, 0) << runs.out;
  Json listed = Json::parse(runs.out, nullptr, false);
  ASSERT_TRUE(listed.is_array()) << runs.out;
  EXPECT_EQ(static_cast<int64_t>(listed.size()),
            db.scalar("SELECT count(*) FROM runs WHERE state = 'pruned'"));
  EXPECT_GE(listed.size(), 1u) << "ASHA keeps 1 in 3 at each rung";
  for (auto& r : listed) EXPECT_EQ(r["state"], "pruned");
  auto exp = assay::testing::run_cmd(assay + " export --sweep restart --format json" + conn);
  ASSERT_EQ(exp.code, 0) << exp.out;
  Json rows = Json::parse(exp.out, nullptr, false);
  ASSERT_TRUE(rows.is_array() && rows.size() == 8u) << exp.out;
  for (auto& r : rows) {
    if (r["state"] != "pruned") continue;
    ASSERT_TRUE(r["rungs"].is_string()) << r.dump();
    Json hist = Json::parse(r["rungs"].get<std::string>(), nullptr, false);
    ASSERT_TRUE(hist.is_array() && !hist.empty()) << r.dump();
    EXPECT_EQ(hist.back()["decision"], "stop") << r.dump();
    EXPECT_TRUE(hist.back()["values"].is_array()) << r.dump();
  }
}

}  // namespace
}  // namespace e2e
