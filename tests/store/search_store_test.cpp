// Migration 0008 (runs rebuilt for the `pruned` state, with foreign keys off
// around it) on a populated database, the pruned state, and the rung and
// sample tables behind Store.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <string>

#include "assay/store.h"
#include "migrations.h"
#include "temp_dir.h"

namespace st = assay::store;

namespace {

int64_t count(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr), SQLITE_OK) << sql;
  int64_t n = -1;
  if (sqlite3_step(s) == SQLITE_ROW) n = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  return n;
}

void exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK)
      << (err ? err : "") << "\n" << sql;
}

// A database at version 7 with a sweep, runs in several states, events,
// metrics on two attempts, a resume, artifacts, an eval result and a hook row.
// The rows are written at version 6 and migrated to 7, whose metric summary
// table is filled by its backfill (the store fills it on ingest).
void populate_v7(const std::string& path) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  auto r = st::apply_migrations(db, st::embedded_migrations(), 6, 1.0);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(*r, 6);
  exec(db, "PRAGMA foreign_keys=ON");
  exec(db, R"sql(
    INSERT INTO sweeps VALUES (1, 'sw', '{"name":"sw","objectives":[{"metric":"loss","mode":"min"},{"metric":"acc","mode":"max"}]}', 'h', 1);
    INSERT INTO workers(id, host, registered_at, last_heartbeat) VALUES ('w1', 'h', 1, 1);
    INSERT INTO runs(id, sweep_id, name, spec_json, params_json, command, state, attempt,
                     max_attempts, worker_id, created_at, started_at, finished_at, reported_at,
                     peak_gpu_mem_mb, gpu_mem_source, preemptions, resume, failure_reason)
    VALUES (1, 1, 'a', '{}', '{"lr":0.1}', 'true', 'succeeded', 2, 3, NULL, 1, 2, 3, 3, 100, 'process', 1, 1, NULL),
           (2, 1, 'b', '{}', '{"lr":0.2}', 'true', 'succeeded', 1, 1, NULL, 1, 2, 3, 3, NULL, NULL, 0, 0, NULL),
           (3, 1, 'c', '{}', '{"lr":0.3}', 'true', 'running', 1, 1, 'w1', 1, 2, NULL, NULL, NULL, NULL, 0, 0, NULL),
           (4, NULL, 'd', '{}', '{}', 'false', 'failed', 1, 1, NULL, 1, 2, 3, 3, NULL, NULL, 0, 0, 'exit_code');
    INSERT INTO run_events(run_id, at, actor, kind, detail) VALUES (1, 1, 'u', 'note', 'x'), (3, 1, 'u', 'note', 'y');
    INSERT INTO metric_keys VALUES (1, 'loss'), (2, 'acc');
    INSERT INTO metrics VALUES (1, 1, 1, 0, 1.0, 1), (1, 2, 1, 5, 0.5, 2), (1, 2, 2, 5, 0.7, 2),
                               (2, 1, 1, 5, 0.4, 2), (2, 1, 2, 5, 0.6, 2),
                               (3, 1, 1, 1, 0.9, 2);
    INSERT INTO run_resumes VALUES (1, 2, 0, '/ck', 1);
    INSERT INTO artifacts(id, run_id, content_hash, path, step, created_at) VALUES (1, 1, 'ck1', '/ck', 5, 1);
    INSERT INTO eval_results(run_id, suite, metric, value, suite_version, checkpoint_hash, created_at)
      VALUES (4, 's', 'm', 0.5, 'v', 'ck1', 1);
    INSERT INTO eval_hook_runs VALUES (1, 'ck1', 's', 4, 5, 0, 1);
    INSERT INTO run_placement VALUES (3, 'w1', 1, '[]', 1, 1);
    INSERT INTO run_cancel_requests VALUES (3, 1);
  )sql");
  r = st::apply_migrations(db, st::embedded_migrations(), 7, 1.0);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(*r, 7);
  sqlite3_close(db);
}

}  // namespace

TEST(SearchMigration, PopulatedVersion7KeepsEveryRowAndViews) {
  TempDir d;
  const std::string path = d.file("v7.db");
  populate_v7(path);
  auto store = st::Store::open(path);
  ASSERT_TRUE(store.ok()) << store.status().to_string();
  auto v = (*store)->schema_version();
  ASSERT_TRUE(v.ok());
  EXPECT_GE(*v, 8);

  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  EXPECT_EQ(count(db, "SELECT count(*) FROM runs"), 4);
  EXPECT_EQ(count(db, "SELECT count(*) FROM run_events"), 2);
  EXPECT_EQ(count(db, "SELECT count(*) FROM metrics"), 6);
  EXPECT_EQ(count(db, "SELECT count(*) FROM artifacts"), 1);
  EXPECT_EQ(count(db, "SELECT count(*) FROM eval_results"), 1);
  EXPECT_EQ(count(db, "SELECT count(*) FROM eval_hook_runs"), 1);
  EXPECT_EQ(count(db, "SELECT count(*) FROM run_placement"), 1);
  EXPECT_EQ(count(db, "SELECT count(*) FROM run_cancel_requests"), 1);
  EXPECT_EQ(count(db, "SELECT count(*) FROM run_resumes"), 1);
  // Columns of later migrations came along.
  EXPECT_EQ(count(db, "SELECT peak_gpu_mem_mb + preemptions + resume FROM runs WHERE id = 1"), 102);
  EXPECT_EQ(count(db, "SELECT count(*) FROM runs WHERE worker_id = 'w1' AND state = 'running'"), 1);
  // Views over runs still read it.
  EXPECT_EQ(count(db, "SELECT count(*) FROM run_summary WHERE sweep = 'sw'"), 3);
  EXPECT_EQ(count(db, "SELECT count(*) FROM run_metric_summary"), 5);  // run 1: loss, acc; 2: loss, acc; 3: loss
  EXPECT_EQ(count(db, "SELECT count(*) FROM eval_summary WHERE producer_run_id = 1"), 1);
  EXPECT_EQ(count(db, "SELECT count(*) FROM runs_wide"), 4);
  // Run 1 (loss 0.5, acc 0.7) and run 2 (loss 0.4, acc 0.6) trade off: both
  // are non-dominated; run 3 is still running.
  EXPECT_EQ(count(db, "SELECT count(*) FROM sweep_pareto WHERE sweep = 'sw'"), 2);
  EXPECT_EQ(count(db, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
  // Foreign keys are back on for the store's connection: deleting a sweep
  // cascades to its runs' events.
  sqlite3_close(db);
  auto& s = *store;
  ASSERT_TRUE(s->transition({.run_id = 3, .to = st::RunState::kPruned,
                             .expect_from = st::RunState::kRunning, .actor = "coordinator"})
                  .ok());
  auto r3 = s->get_run(3);
  ASSERT_TRUE(r3.ok());
  EXPECT_EQ(r3->state, st::RunState::kPruned);
  EXPECT_TRUE(r3->finished_at.has_value());
}

TEST(SearchMigration, DanglingReferenceFailsTheCheckAndRollsBack) {
  TempDir d;
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(d.file("f.db").c_str(), &db), SQLITE_OK);
  std::vector<st::Migration> ms = st::embedded_migrations();
  const int good = int(ms.size());
  ms.push_back({good + 1, "9999_dangling",
                "INSERT INTO run_events(run_id, at, actor, kind) VALUES (12345, 1, 'x', 'note');"});
  auto r = st::apply_migrations(db, ms, -1, 1.0);
  ASSERT_FALSE(r.ok());
  const std::string& m = r.status().message();
  EXPECT_NE(m.find("9999_dangling"), std::string::npos) << m;
  EXPECT_NE(m.find("foreign key check failed: table run_events"), std::string::npos) << m;
  EXPECT_EQ(count(db, "SELECT count(*) FROM run_events"), 0);
  EXPECT_EQ(count(db, "SELECT max(version) FROM schema_migrations"), good);
  sqlite3_close(db);
}

TEST(PrunedState, OnlyFromLeasedOrRunningAndFinal) {
  using S = st::RunState;
  EXPECT_TRUE(st::can_transition(S::kRunning, S::kPruned));
  EXPECT_TRUE(st::can_transition(S::kLeased, S::kPruned));
  EXPECT_FALSE(st::can_transition(S::kQueued, S::kPruned));
  EXPECT_FALSE(st::can_transition(S::kSucceeded, S::kPruned));
  EXPECT_FALSE(st::can_transition(S::kPruned, S::kQueued));
  EXPECT_TRUE(st::is_terminal(S::kPruned));
  auto p = st::parse_run_state("pruned");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p, S::kPruned);
  EXPECT_EQ(st::to_string(S::kPruned), "pruned");
}

TEST(SearchStore, RungDecisionWritesItsEventOnceAndSamplesAreUnique) {
  TempDir d;
  auto store = st::Store::open(d.file("s.db"));
  ASSERT_TRUE(store.ok()) << store.status().to_string();
  auto& s = *store;
  auto sw = s->insert_sweep("sw", "{}", "h");
  ASSERT_TRUE(sw.ok());
  st::NewRun nr;
  nr.sweep_id = *sw;
  nr.command = "true";
  auto run = s->insert_run(nr, "user");
  ASSERT_TRUE(run.ok());
  st::RungRow r{.sweep_id = *sw, .run_id = *run, .bracket = 0, .rung = 1, .step = 30,
                .reported_step = 31, .values_json = "[0.5]", .cutoff_json = "0.4",
                .proceed = false};
  auto first = s->record_rung(r, "coordinator", "rung 1 (step 30): stop");
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  EXPECT_TRUE(*first);
  auto again = s->record_rung(r, "coordinator", "rung 1 (step 30): stop");
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(*again);
  auto rows = s->rungs(*sw);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_FALSE((*rows)[0].proceed);
  EXPECT_EQ((*rows)[0].reported_step, 31);
  auto ev = s->events(*run);
  ASSERT_TRUE(ev.ok());
  int rung_events = 0;
  for (auto& e : *ev) rung_events += e.kind == "rung";
  EXPECT_EQ(rung_events, 1);

  ASSERT_TRUE(s->put_sample({*sw, 0, "{\"lr\":1}", *run, 0}).ok());
  EXPECT_FALSE(s->put_sample({*sw, 0, "{\"lr\":2}", *run, 0}).ok());
  auto samples = s->samples(*sw);
  ASSERT_TRUE(samples.ok());
  ASSERT_EQ(samples->size(), 1u);
  EXPECT_EQ((*samples)[0].params_json, "{\"lr\":1}");
}
