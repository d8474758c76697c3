// The per-(run, attempt, metric) summary kept on ingest (migration 0007):
// equal to a full scan of the points under every write the store allows
// (resumed attempts, late points of earlier attempts, NaN and infinite
// values, re-logged steps), backfilled by the migration, written in the
// ingest's transaction, and what leaderboards read.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cmath>
#include <limits>
#include <random>

#include "assay/store.h"
#include "migrations.h"
#include "temp_dir.h"

namespace st = assay::store;
using assay::Status;

namespace {

// run_metric_summary as migration 0006 defined it: a scan of the curve.
constexpr const char* kCurveScan =
    "SELECT * FROM (SELECT c.run_id, k.name AS metric, COUNT(*) AS points, MAX(c.step) AS last_step,"
    " (SELECT c2.value FROM metric_curve c2 WHERE c2.run_id = c.run_id AND c2.key_id = c.key_id"
    "   ORDER BY c2.step DESC LIMIT 1) AS final,"
    " MIN(c.value) AS min, MAX(c.value) AS max, r.attempt AS attempt"
    " FROM metric_curve c JOIN runs r ON r.id = c.run_id JOIN metric_keys k ON k.id = c.key_id"
    " GROUP BY c.run_id, c.key_id) ORDER BY run_id, metric";
// run_metric_summary_by_attempt as migration 0005 defined it.
constexpr const char* kAttemptScan =
    "SELECT * FROM (SELECT m.run_id, m.attempt, (m.attempt = r.attempt) AS current,"
    " k.name AS metric, COUNT(*) AS points, MAX(m.step) AS last_step,"
    " (SELECT m2.value FROM metrics m2 WHERE m2.run_id = m.run_id AND m2.attempt = m.attempt"
    "   AND m2.key_id = m.key_id ORDER BY m2.step DESC LIMIT 1) AS final,"
    " MIN(m.value) AS min, MAX(m.value) AS max"
    " FROM metrics m JOIN runs r ON r.id = m.run_id JOIN metric_keys k ON k.id = m.key_id"
    " GROUP BY m.run_id, m.attempt, m.key_id) ORDER BY run_id, attempt, metric";
// The table itself, for the current attempts: what the views read.
constexpr const char* kTable =
    "SELECT s.run_id, k.name, s.curve_points, s.curve_last_step, s.final, s.curve_min,"
    " s.curve_max, r.attempt FROM metric_summary s JOIN runs r ON r.id = s.run_id"
    " AND r.attempt = s.attempt JOIN metric_keys k ON k.id = s.key_id ORDER BY s.run_id, k.name";

std::string render(const st::QueryResult& q) {
  std::string out;
  for (const auto& row : q.rows) {
    for (const auto& c : row) {
      if (std::holds_alternative<std::monostate>(c)) out += "NULL";
      else if (auto* i = std::get_if<int64_t>(&c)) out += "i" + std::to_string(*i);
      else if (auto* d = std::get_if<double>(&c)) {
        char b[40];
        std::snprintf(b, sizeof b, "d%a", *d);  // exact bits
        out += b;
      } else out += "'" + std::get<std::string>(c) + "'";
      out += " ";
    }
    out += "\n";
  }
  return out;
}

struct SummaryTest : ::testing::Test {
  TempDir dir;
  std::unique_ptr<st::Store> store;
  std::string path() { return dir.file("t.db"); }
  void SetUp() override {
    auto r = st::Store::open(path());
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    store = std::move(r).value();
    st::Worker w;
    w.id = "w";
    w.host = "h";
    ASSERT_TRUE(store->upsert_worker(w).ok());
  }
  std::string q(const std::string& sql) {
    auto r = st::query_readonly(path(), sql);
    EXPECT_TRUE(r.ok()) << sql << ": " << r.status().to_string();
    return r.ok() ? render(*r) : "error";
  }
  int64_t add_run() {
    st::NewRun nr;
    nr.command = "true";
    nr.max_attempts = 100;
    auto id = store->insert_run(nr, "test");
    EXPECT_TRUE(id.ok());
    return *id;
  }
  void go(int64_t id, st::RunState to, bool bump = false) {
    st::Transition tr;
    tr.run_id = id;
    tr.to = to;
    tr.actor = "test";
    tr.bump_attempt = bump;
    if (to == st::RunState::kLeased) tr.worker_id = "w";
    Status s = store->transition(tr);
    ASSERT_TRUE(s.ok()) << s.to_string();
  }
  // The summary, read three ways, equals the scans.
  void expect_equal_to_scans(const std::string& when) {
    const std::string scan = q(kCurveScan);
    EXPECT_EQ(q("SELECT * FROM run_metric_summary ORDER BY run_id, metric"), scan) << when;
    EXPECT_EQ(q(kTable), scan) << when;
    EXPECT_EQ(q("SELECT * FROM run_metric_summary_by_attempt ORDER BY run_id, attempt, metric"),
              q(kAttemptScan)) << when;
    EXPECT_EQ(q("SELECT count(*) FROM metric_summary WHERE points = 0 AND prior_points = 0"),
              "i0 \n") << when;
  }
};

}  // namespace

// Random batches across runs whose attempts die, resume from checkpoints at
// random steps and get late points, with NaN, infinite and re-logged values:
// after every write the summary equals the full scans of 0005/0006.
TEST_F(SummaryTest, EqualsAFullScanOnRandomizedRunsWithResumes) {
  for (unsigned seed : {1u, 2u, 3u}) {
    std::mt19937 rng(seed);
    auto pick = [&](int n) { return int(rng() % unsigned(n)); };
    std::vector<int64_t> runs;
    std::vector<int> attempt;
    for (int i = 0; i < 4; ++i) {
      runs.push_back(add_run());
      attempt.push_back(1);
      go(runs.back(), st::RunState::kLeased);
      go(runs.back(), st::RunState::kRunning);
    }
    const char* keys[] = {"loss", "acc", "lr"};
    for (int op = 0; op < 80; ++op) {
      const int r = pick(int(runs.size()));
      const int kind = pick(10);
      std::string what = "seed " + std::to_string(seed) + " op " + std::to_string(op);
      if (kind < 6) {  // a batch for the current attempt (or, 1 in 5, an earlier one)
        int a = attempt[r];
        if (a > 1 && pick(5) == 0) a = 1 + pick(a - 1);
        std::vector<st::MetricPoint> pts;
        const int n = 1 + pick(25);
        for (int i = 0; i < n; ++i) {
          double v = double(pick(1000)) / 7.0 - 50;
          const int odd = pick(20);
          if (odd == 0) v = std::numeric_limits<double>::quiet_NaN();
          if (odd == 1) v = std::numeric_limits<double>::infinity();
          if (odd == 2) v = -std::numeric_limits<double>::infinity();
          pts.push_back({runs[r], keys[pick(3)], pick(40), v, 1.0, pick(2) ? a : 0});
          if (pts.back().attempt == 0 && a != attempt[r]) pts.back().attempt = a;
        }
        ASSERT_TRUE(store->put_metrics(pts).ok());
        what += ": " + std::to_string(n) + " points, attempt " + std::to_string(a);
      } else if (kind < 9) {  // the attempt dies; the next one may resume
        go(runs[r], st::RunState::kQueued, /*bump=*/true);
        ++attempt[r];
        go(runs[r], st::RunState::kLeased);
        go(runs[r], st::RunState::kRunning);
        if (pick(3) != 0) {
          ASSERT_TRUE(store->put_resume(runs[r], attempt[r], pick(40), "ckpt").ok());
        }
        what += ": attempt " + std::to_string(attempt[r]);
      } else {  // a late resume record for the current attempt (after its points)
        ASSERT_TRUE(store->put_resume(runs[r], attempt[r], pick(40), "ckpt").ok());
        what += ": late resume";
      }
      expect_equal_to_scans(what);
      if (HasFailure()) return;
    }
  }
}

// Re-logged steps: the same value (nothing changes), a different one (the
// old value was the max), NaN over a value and a value over NaN.
TEST_F(SummaryTest, ReloggedStepsAndNaNKeepTheScanResults) {
  const int64_t id = add_run();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  ASSERT_TRUE(store->put_metrics({{id, "loss", 1, 5.0, 1}, {id, "loss", 2, 9.0, 1},
                                  {id, "loss", 3, 1.0, 1}}).ok());
  expect_equal_to_scans("first");
  ASSERT_TRUE(store->put_metrics({{id, "loss", 2, 9.0, 2}}).ok());
  expect_equal_to_scans("same value");
  ASSERT_TRUE(store->put_metrics({{id, "loss", 2, 4.0, 2}, {id, "loss", 2, 3.0, 2}}).ok());
  EXPECT_EQ(q("SELECT points, final, min, max FROM run_metric_summary"), "i3 d0x1p+0 d0x1p+0 d0x1.4p+2 \n");
  expect_equal_to_scans("lower value, twice in one batch");
  ASSERT_TRUE(store->put_metrics({{id, "loss", 3, nan, 3}}).ok());
  EXPECT_EQ(q("SELECT points, final, min, max FROM run_metric_summary"), "i3 NULL d0x1.8p+1 d0x1.4p+2 \n");
  expect_equal_to_scans("NaN at the last step");
  ASSERT_TRUE(store->put_metrics({{id, "loss", 3, -2.0, 4}, {id, "acc", 0, nan, 4}}).ok());
  expect_equal_to_scans("a value over NaN; a metric of NaN only");
}

// A version-6 database with points, a dead attempt and a resumed one: the
// migration fills the summary so that run_metric_summary answers exactly
// what it answered at version 6.
TEST(SummaryMigration, BackfillOnAVersion6DatabaseKeepsTheViewsResults) {
  TempDir dir;
  const std::string path = dir.file("v6.db");
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  auto v = st::apply_migrations(db, st::embedded_migrations(), 6, 1.0);
  ASSERT_TRUE(v.ok()) << v.status().to_string();
  ASSERT_EQ(*v, 6);
  const char* data =
      "INSERT INTO runs(id, spec_json, command, created_at, attempt) VALUES"
      " (1, '{}', 'x', 0, 3), (2, '{}', 'x', 0, 1), (3, '{}', 'x', 0, 2);"
      "INSERT INTO metric_keys(id, name) VALUES (1, 'loss'), (2, 'acc');"
      "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 30)"
      " INSERT INTO metrics SELECT 1, 1, 1, i, 100 + i, 0 FROM n WHERE i <= 9"
      " UNION ALL SELECT 1, 2, 1, i, 200 - i, 0 FROM n WHERE i BETWEEN 6 AND 12"
      " UNION ALL SELECT 1, 3, 1, i, 300 + i, 0 FROM n WHERE i BETWEEN 11 AND 15"
      " UNION ALL SELECT 3, 1, 1, i, i * 0.5, 0 FROM n"
      " UNION ALL SELECT 3, 2, 1, i, -i, 0 FROM n WHERE i < 5;"
      "INSERT INTO metrics VALUES (1, 1, 2, 3, NULL, 0), (2, 1, 1, 5, 1.5, 0),"
      " (2, 1, 1, 7, NULL, 0), (2, 1, 2, 1, 2.5, 0);"
      // Attempt 2 of run 1 resumed at step 5, attempt 3 at step 10; run 3's
      // attempt 2 started over (no resume).
      "INSERT INTO run_resumes VALUES (1, 2, 5, 'c', 0), (1, 3, 10, 'c', 0);";
  char* err = nullptr;
  ASSERT_EQ(sqlite3_exec(db, data, nullptr, nullptr, &err), SQLITE_OK) << err;
  sqlite3_close(db);
  auto before = st::query_readonly(path, "SELECT * FROM run_metric_summary ORDER BY run_id, metric");
  ASSERT_TRUE(before.ok()) << before.status().to_string();
  auto by_attempt = st::query_readonly(
      path, "SELECT * FROM run_metric_summary_by_attempt ORDER BY run_id, attempt, metric");
  ASSERT_TRUE(by_attempt.ok());
  ASSERT_EQ(before->rows.size(), 5u);

  auto s = st::Store::open(path);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  auto after = st::query_readonly(path, "SELECT * FROM run_metric_summary ORDER BY run_id, metric");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(render(*after), render(*before));
  auto table = st::query_readonly(path, kTable);
  ASSERT_TRUE(table.ok()) << table.status().to_string();
  EXPECT_EQ(render(*table), render(*before));
  auto by_attempt_after = st::query_readonly(
      path, "SELECT * FROM run_metric_summary_by_attempt ORDER BY run_id, attempt, metric");
  ASSERT_TRUE(by_attempt_after.ok());
  EXPECT_EQ(render(*by_attempt_after), render(*by_attempt));
  // Run 1's curve: attempt 1 to step 5, attempt 2 to step 10, then attempt 3.
  auto one = st::query_readonly(path, "SELECT points, last_step, final, min, max FROM "
                                      "run_metric_summary WHERE run_id = 1 AND metric = 'loss'");
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(render(*one), "i16 i15 d0x1.3bp+8 d0x1.9p+6 d0x1.3bp+8 \n");  // 16, 15, 315, 100, 315
  // The wide view, rebuilt at open, reads the same finals.
  auto wide = st::query_readonly(path, "SELECT loss_final, acc_final FROM runs_wide ORDER BY run_id");
  ASSERT_TRUE(wide.ok()) << wide.status().to_string();
  EXPECT_EQ(render(*wide), "d0x1.3bp+8 NULL \nNULL d0x1.4p+1 \nd-0x1p+2 NULL \n");  // 315; 2.5; -4
}

// The summary is written in the ingest's transaction: a batch that fails
// half way, or a transaction that fails after the batch, leaves it as it was.
TEST_F(SummaryTest, AFailedIngestLeavesTheSummaryUnchanged) {
  const int64_t id = add_run();
  ASSERT_TRUE(store->put_metrics({{id, "loss", 1, 2.0, 1}, {id, "loss", 2, 1.0, 1}}).ok());
  const std::string table = q("SELECT * FROM metric_summary");
  ASSERT_NE(table, "");
  // The second point's run does not exist: a foreign key failure.
  EXPECT_FALSE(store->put_metrics({{id, "loss", 3, -7.0, 1}, {id + 99, "loss", 1, 1, 1}}).ok());
  EXPECT_EQ(q("SELECT * FROM metric_summary"), table);
  Status s = store->transaction([&]() -> Status {
    Status put = store->put_metrics({{id, "loss", 4, -9.0, 1}, {id, "acc", 1, 3.0, 1}});
    if (!put.ok()) return put;
    return Status::Invalid("a later step of the request failed");
  });
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(q("SELECT * FROM metric_summary"), table);
  EXPECT_EQ(q("SELECT points, final, min FROM run_metric_summary"), "i2 d0x1p+0 d0x1p+0 \n");
  expect_equal_to_scans("after the failures");
}

// A top-k leaderboard by final value walks the index, reading no point.
TEST_F(SummaryTest, LeaderboardReadsTheIndexByFinalValue) {
  for (int i = 0; i < 50; ++i) {
    const int64_t id = add_run();
    ASSERT_TRUE(store->put_metrics({{id, "loss", 1, 10.0, 1}, {id, "loss", 2, 1.0 / (i + 1), 1},
                                    {id, "acc", 2, double(i), 1}}).ok());
  }
  const std::string sql = "SELECT run_id, final FROM run_metric_summary WHERE metric = 'loss' "
                          "ORDER BY final LIMIT 3";
  auto plan = st::query_readonly(path(), "EXPLAIN QUERY PLAN " + sql);
  ASSERT_TRUE(plan.ok()) << plan.status().to_string();
  const std::string p = render(*plan);
  EXPECT_NE(p.find("metric_summary_by_final"), std::string::npos) << p;
  EXPECT_EQ(p.find("metrics"), std::string::npos) << p;
  EXPECT_EQ(p.find("TEMP B-TREE"), std::string::npos) << p;  // no sort
  std::string want;
  for (int i : {50, 49, 48}) {
    char b[64];
    std::snprintf(b, sizeof b, "i%d d%a \n", i, 1.0 / i);
    want += b;
  }
  EXPECT_EQ(q(sql), want);
}

// The durability asked for is what the connection does.
TEST(StoreDurability, PragmaSynchronousIsWhatWasAskedFor) {
  TempDir dir;
  for (auto d : {st::Durability::kFull, st::Durability::kNormal}) {
    st::OpenOptions o;
    o.durability = d;
    auto s = st::Store::open(dir.file("d.db"), o);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    EXPECT_EQ((*s)->durability(), d);
    auto sync = (*s)->synchronous_pragma();
    ASSERT_TRUE(sync.ok());
    EXPECT_EQ(*sync, d == st::Durability::kFull ? 2 : 1) << st::to_string(d);
  }
  EXPECT_EQ(*st::parse_durability("full"), st::Durability::kFull);
  EXPECT_EQ(*st::parse_durability("normal"), st::Durability::kNormal);
  auto bad = st::parse_durability("extra");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'extra'"), std::string::npos);
}
