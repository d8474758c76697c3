// Metric points per attempt (migration 0005), exit vs report times, and the
// coordinator's bookkeeping tables behind the Store API.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include "assay/store.h"
#include "migrations.h"
#include "temp_dir.h"

namespace st = assay::store;

namespace {

struct AttemptsTest : ::testing::Test {
  TempDir dir;
  double t = 1000.0;
  std::unique_ptr<st::Store> store;
  void SetUp() override {
    auto r = st::Store::open(dir.file("t.db"), {.clock = [this] { return t; }});
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    store = std::move(r).value();
    st::Worker w;
    w.id = "w";
    w.host = "h";
    ASSERT_TRUE(store->upsert_worker(w).ok());
  }
  int64_t add_run() {
    st::NewRun nr;
    nr.name = "r";
    nr.command = "true";
    nr.max_attempts = 3;
    auto id = store->insert_run(nr, "test");
    EXPECT_TRUE(id.ok()) << id.status().to_string();
    return id.ok() ? *id : -1;
  }
  void go(int64_t id, st::RunState to, bool bump = false, std::optional<double> exited = {}) {
    st::Transition tr;
    tr.run_id = id;
    tr.to = to;
    tr.actor = "test";
    tr.bump_attempt = bump;
    tr.exited_at = exited;
    if (to == st::RunState::kLeased) tr.worker_id = "w";
    Status s = store->transition(tr);
    ASSERT_TRUE(s.ok()) << s.to_string();
  }
  // Points of `key` at steps [from, to], value = base + step / 1000.
  std::vector<st::MetricPoint> points(int64_t id, int attempt, int from, int to, double base) {
    std::vector<st::MetricPoint> out;
    for (int s = from; s <= to; ++s) out.push_back({id, "loss", s, base + s / 1000.0, t, attempt});
    return out;
  }
  st::QueryResult query(const std::string& sql) {
    auto q = st::query_readonly(dir.file("t.db"), sql);
    EXPECT_TRUE(q.ok()) << q.status().to_string();
    return q.ok() ? *q : st::QueryResult{};
  }
  using Status = assay::Status;
};

double num(const st::Cell& c) {
  if (auto* d = std::get_if<double>(&c)) return *d;
  if (auto* i = std::get_if<int64_t>(&c)) return double(*i);
  ADD_FAILURE() << "not a number";
  return -1;
}

}  // namespace

// The reproduction of issue 11 item 6: attempt 1 wrote steps 50..196 before
// its worker died, attempt 2 steps 0..49; the run's final value is attempt 2's.
TEST_F(AttemptsTest, DeadAttemptPointsStayButDoNotBecomeTheRunsResults) {
  const int64_t id = add_run();
  go(id, st::RunState::kLeased);
  go(id, st::RunState::kRunning);
  ASSERT_TRUE(store->put_metrics(points(id, 0, 50, 196, 9.0)).ok());  // 0: current = 1
  go(id, st::RunState::kQueued, /*bump=*/true);                       // lease lost
  go(id, st::RunState::kLeased);
  go(id, st::RunState::kRunning);
  ASSERT_TRUE(store->put_metrics(points(id, 2, 0, 49, 1.0)).ok());
  go(id, st::RunState::kSucceeded);

  auto cur = store->metrics(id);
  ASSERT_TRUE(cur.ok());
  ASSERT_EQ(cur->size(), 50u);
  EXPECT_EQ(cur->back().step, 49);
  EXPECT_EQ(cur->back().attempt, 2);
  EXPECT_EQ(store->metrics(id, "", 1)->size(), 147u);
  EXPECT_EQ(store->metrics(id, "", 1)->front().attempt, 1);
  EXPECT_EQ(store->metrics(id, "loss", st::kAllAttempts)->size(), 197u);
  EXPECT_FALSE(store->metrics(id, "", -7).ok());

  auto s = query("SELECT points, last_step, final, max, attempt FROM run_metric_summary");
  ASSERT_EQ(s.rows.size(), 1u);
  EXPECT_EQ(num(s.rows[0][0]), 50);
  EXPECT_EQ(num(s.rows[0][1]), 49);
  EXPECT_DOUBLE_EQ(num(s.rows[0][2]), 1.049);
  EXPECT_DOUBLE_EQ(num(s.rows[0][3]), 1.049);
  EXPECT_EQ(num(s.rows[0][4]), 2);
  auto w = query("SELECT loss_final, loss_max FROM runs_wide");
  ASSERT_EQ(w.rows.size(), 1u);
  EXPECT_DOUBLE_EQ(num(w.rows[0][0]), 1.049);
  EXPECT_DOUBLE_EQ(num(w.rows[0][1]), 1.049);
  auto b = query("SELECT attempt, current, points, final FROM run_metric_summary_by_attempt "
                 "ORDER BY attempt");
  ASSERT_EQ(b.rows.size(), 2u);
  EXPECT_EQ(num(b.rows[0][1]), 0);
  EXPECT_EQ(num(b.rows[0][2]), 147);
  EXPECT_DOUBLE_EQ(num(b.rows[0][3]), 9.196);
  EXPECT_EQ(num(b.rows[1][1]), 1);
}

TEST_F(AttemptsTest, RedeliveryDedupsWithinAnAttemptOnly) {
  const int64_t id = add_run();
  ASSERT_TRUE(store->put_metrics(points(id, 1, 0, 9, 5.0)).ok());
  ASSERT_TRUE(store->put_metrics(points(id, 1, 0, 9, 5.0)).ok());
  ASSERT_TRUE(store->put_metrics(points(id, 2, 0, 9, 6.0)).ok());
  EXPECT_EQ(store->metrics(id, "", st::kAllAttempts)->size(), 20u);
  EXPECT_DOUBLE_EQ(store->metrics(id, "", 1)->front().value, 5.0);
}

// finished_at is the exit time the worker reported, reported_at the time of
// recording; a skewed worker clock cannot put the end before the start or
// in the future.
TEST_F(AttemptsTest, ExitTimeIsFinishedAtAndTheReportTimeIsKeptToo) {
  const int64_t a = add_run(), b = add_run(), c = add_run();
  for (int64_t id : {a, b, c}) {
    go(id, st::RunState::kLeased);
    go(id, st::RunState::kRunning);  // started_at = 1000
  }
  t = 1010;
  go(a, st::RunState::kSucceeded, false, 1002.5);  // delivered 7.5 s late
  go(b, st::RunState::kFailed, false, 900.0);      // worker clock far behind
  go(c, st::RunState::kFailed, false, 5000.0);     // worker clock far ahead
  auto ra = store->get_run(a), rb = store->get_run(b), rc = store->get_run(c);
  ASSERT_TRUE(ra.ok() && rb.ok() && rc.ok());
  EXPECT_DOUBLE_EQ(*ra->finished_at, 1002.5);
  EXPECT_DOUBLE_EQ(*ra->reported_at, 1010);
  EXPECT_DOUBLE_EQ(*rb->finished_at, 1000);
  EXPECT_DOUBLE_EQ(*rc->finished_at, 1010);
  auto d = query("SELECT rs.duration_s, r.reported_at FROM run_summary rs JOIN runs r "
                 "ON r.id = rs.run_id WHERE rs.run_id = " + std::to_string(a));
  ASSERT_EQ(d.rows.size(), 1u);
  EXPECT_DOUBLE_EQ(num(d.rows[0][0]), 2.5);
  EXPECT_DOUBLE_EQ(num(d.rows[0][1]), 1010);
  // Requeued: both cleared.
  go(b, st::RunState::kQueued, true);
  EXPECT_FALSE(store->get_run(b)->finished_at.has_value());
  EXPECT_FALSE(store->get_run(b)->reported_at.has_value());
}

// A version-4 database: points did not know their attempt. The migration
// assigns those emitted before the current attempt's lease to the attempt
// before it, and rebuilds the views.
TEST(Migration0005, BackfillsAttemptsFromTheLastPlacement) {
  TempDir d;
  const std::string path = d.file("v4.db");
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_TRUE(st::apply_migrations(db, st::embedded_migrations(), 4, 1.0).ok());
  const char* seed =
      "INSERT INTO runs(id, command, spec_json, state, attempt, max_attempts, created_at, "
      "  started_at, finished_at) VALUES "
      " (1, 'x', '{}', 'succeeded', 2, 3, 1, 1000, 1200),"
      " (2, 'x', '{}', 'running', 1, 1, 1, 1000, NULL),"
      " (3, 'x', '{}', 'succeeded', 1, 1, 1, 10, 20);"
      "INSERT INTO run_placement(run_id, worker_id, attempt, leased_at) VALUES "
      " (1, 'w', 2, 1000), (2, 'w', 1, 1000);"
      "INSERT INTO metric_keys(id, name) VALUES (1, 'loss');"
      // run 1: steps 50..52 from the dead attempt (before the lease), 0..1 after
      "INSERT INTO metrics(run_id, key_id, step, value, wall_time) VALUES "
      " (1, 1, 50, 9.0, 900), (1, 1, 51, 9.1, 901), (1, 1, 52, 9.2, 902),"
      " (1, 1, 0, 1.0, 1100), (1, 1, 1, 0.5, 1101),"
      " (2, 1, 0, 3.0, 1001),"
      " (3, 1, 0, 4.0, 15);";
  char* err = nullptr;
  ASSERT_EQ(sqlite3_exec(db, seed, nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
  sqlite3_close(db);

  auto opened = st::Store::open(path);
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  auto& s = **opened;
  EXPECT_EQ(*s.schema_version(), st::latest_schema_version());
  auto all = s.metrics(1, "", st::kAllAttempts);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 5u);
  for (auto& p : *all) EXPECT_EQ(p.attempt, p.step >= 50 ? 1 : 2) << "step " << p.step;
  EXPECT_EQ(s.metrics(2)->size(), 1u);
  EXPECT_EQ(s.metrics(2)->front().attempt, 1);
  EXPECT_EQ(s.metrics(3)->front().attempt, 1);  // never placed: its current attempt
  EXPECT_DOUBLE_EQ(*s.get_run(1)->reported_at, 1200);
  EXPECT_DOUBLE_EQ(*s.get_run(1)->finished_at, 1200);
  EXPECT_FALSE(s.get_run(2)->reported_at.has_value());

  auto q = st::query_readonly(path, "SELECT run_id, final, last_step FROM run_metric_summary "
                                    "ORDER BY run_id");
  ASSERT_TRUE(q.ok()) << q.status().to_string();
  ASSERT_EQ(q->rows.size(), 3u);
  EXPECT_DOUBLE_EQ(num(q->rows[0][1]), 0.5);
  EXPECT_EQ(num(q->rows[0][2]), 1);
  auto w = st::query_readonly(path, "SELECT loss_final FROM runs_wide WHERE run_id = 1");
  ASSERT_TRUE(w.ok()) << "runs_wide rebuilt after the migration: " << w.status().to_string();
  ASSERT_EQ(w->rows.size(), 1u);
  EXPECT_DOUBLE_EQ(num(w->rows[0][0]), 0.5);
}

TEST_F(AttemptsTest, BookkeepingTablesRoundTripThroughTheApi) {
  const int64_t id = add_run();
  auto sw = store->insert_sweep("s", "{}", "h");
  ASSERT_TRUE(sw.ok());
  ASSERT_TRUE(store->put_placement({id, "w1", 1, {0, 2}, 4}, 5.0).ok());
  auto p = store->placement(id);
  ASSERT_TRUE(p.ok() && p->has_value());
  EXPECT_EQ((*p)->worker_id, "w1");
  EXPECT_EQ((*p)->gpus, (std::vector<int>{0, 2}));
  EXPECT_EQ((*p)->cpus, 4);
  EXPECT_TRUE(store->held_placements()->empty());  // the run is queued
  go(id, st::RunState::kLeased);
  EXPECT_EQ(store->held_placements()->size(), 1u);
  EXPECT_FALSE(store->placement(id + 1)->has_value());

  ASSERT_TRUE(store->set_cancel_request(id, 6.0).ok());
  ASSERT_TRUE(store->set_cancel_request(id, 7.0).ok());
  EXPECT_EQ(*store->cancel_requests(), (std::set<int64_t>{id}));
  ASSERT_TRUE(store->clear_cancel_request(id).ok());
  EXPECT_TRUE(store->cancel_requests()->empty());

  EXPECT_TRUE(*store->note_metric_batch(id, 1, 0, 10, 8.0));
  EXPECT_FALSE(*store->note_metric_batch(id, 1, 0, 10, 9.0));
  EXPECT_TRUE(*store->note_metric_batch(id, 2, 0, 10, 9.0));

  ASSERT_TRUE(store->put_worker_instance("w1", {"inst-a", 3}, 1.0).ok());
  ASSERT_TRUE(store->put_worker_instance("w1", {"inst-b", 5}, 2.0).ok());
  auto wi = store->worker_instances();
  ASSERT_TRUE(wi.ok());
  EXPECT_EQ(wi->at("w1").instance, "inst-b");
  EXPECT_EQ(wi->at("w1").max_runs, 5);

  const int64_t ev = add_run();
  ASSERT_TRUE(store->put_eval_hook_run({id, "abc", "gsm8k", ev, 100, 7}, 3.0).ok());
  EXPECT_EQ(**store->eval_hook_run(id, "abc", "gsm8k"), ev);
  EXPECT_FALSE(store->eval_hook_run(id, "abc", "other")->has_value());
  auto hook = store->eval_hook_of(ev);
  ASSERT_TRUE(hook.ok() && hook->has_value());
  EXPECT_EQ((*hook)->step, 100);
  EXPECT_EQ((*hook)->seed, 7);
  EXPECT_FALSE(store->eval_hook_of(id)->has_value());

  auto counts = store->sweep_counts(std::nullopt);
  ASSERT_TRUE(counts.ok());
  ASSERT_EQ(counts->size(), 1u);
  EXPECT_EQ((*counts)[0].name, "s");
  EXPECT_EQ(store->sweep_names()->at(*sw), "s");
  EXPECT_TRUE(store->sweep_counts(*sw + 1)->empty());
}
