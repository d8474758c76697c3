// assay query must never write: every kind of write attempt is refused and
// the database bytes are unchanged afterwards.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "assay/store.h"
#include "temp_dir.h"

namespace st = assay::store;

namespace {

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Checksum over the database file and its WAL, if any.
std::string checksum(const std::string& db) {
  return std::to_string(std::hash<std::string>{}(file_bytes(db) + "|" + file_bytes(db + "-wal")));
}

class QueryTest : public ::testing::Test {
 protected:
  TempDir dir;
  std::string db;
  void SetUp() override {
    db = dir.file("q.db");
    auto s = st::Store::open(db);
    ASSERT_TRUE(s.ok());
    st::NewRun nr;
    nr.command = "x";
    nr.params_json = R"({"lr":0.5})";
    auto id = (*s)->insert_run(nr, "t");
    ASSERT_TRUE(id.ok());
    ASSERT_TRUE((*s)->put_metrics({{*id, "loss", 1, 1.0, 1}}).ok());
  }
};

}  // namespace

TEST_F(QueryTest, SelectsWork) {
  auto r = st::query_readonly(db, "SELECT id, command, params_json FROM runs");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->columns.size(), 3u);
  EXPECT_EQ(r->columns[1], "command");
  ASSERT_EQ(r->rows.size(), 1u);
  EXPECT_EQ(std::get<std::string>(r->rows[0][1]), "x");
  auto cte = st::query_readonly(db,
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5) "
      "SELECT sum(i), json_extract('{\"a\":2}', '$.a') FROM n -- trailing comment");
  ASSERT_TRUE(cte.ok()) << cte.status().to_string();
  EXPECT_EQ(std::get<int64_t>(cte->rows[0][0]), 15);
  auto pragma = st::query_readonly(db, "PRAGMA table_info(runs)");
  ASSERT_TRUE(pragma.ok()) << pragma.status().to_string();
  EXPECT_GT(pragma->rows.size(), 10u);
  auto trailing = st::query_readonly(db, "SELECT 1;  ");
  EXPECT_TRUE(trailing.ok());
  auto limited = st::query_readonly(db, "SELECT value FROM generate_series", 1);
  EXPECT_FALSE(limited.ok());  // no such table: a clear error, not a crash
}

TEST_F(QueryTest, MaxRowsTruncates) {
  auto r = st::query_readonly(db,
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50) SELECT i FROM n", 10);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->rows.size(), 10u);
  EXPECT_TRUE(r->truncated);
}

TEST_F(QueryTest, EveryWriteAttemptIsRefusedAndChangesNothing) {
  const std::string before = checksum(db);
  const char* attempts[] = {
      "INSERT INTO runs(command, spec_json, created_at) VALUES ('evil', '{}', 0)",
      "REPLACE INTO metric_keys(id, name) VALUES (1, 'x')",
      "UPDATE runs SET state = 'failed'",
      "DELETE FROM metrics",
      "DROP TABLE runs",
      "DROP VIEW run_summary",
      "CREATE TABLE t(x)",
      "CREATE TEMP TABLE t(x)",
      "CREATE INDEX i ON runs(command)",
      "ALTER TABLE runs ADD COLUMN y",
      "ATTACH DATABASE '/tmp/assay-attack.db' AS x",
      "DETACH DATABASE main",
      "PRAGMA user_version = 99",
      "PRAGMA journal_mode = DELETE",
      "PRAGMA foreign_keys = OFF",
      "PRAGMA writable_schema = ON",
      "PRAGMA wal_checkpoint(TRUNCATE)",
      "VACUUM",
      "REINDEX",
      "ANALYZE",
      "BEGIN",
      "SAVEPOINT s",
      "SELECT 1; DELETE FROM runs",
      "SELECT 1; SELECT 2",
      "WITH x AS (SELECT 1) DELETE FROM runs",
      "SELECT * FROM runs; DROP TABLE runs; --",
      "SELECT load_extension('/tmp/x.so')",
  };
  for (const char* q : attempts) {
    auto r = st::query_readonly(db, q);
    EXPECT_FALSE(r.ok()) << "was allowed: " << q;
    if (!r.ok() && std::string(q).rfind("SELECT load_extension", 0) != 0) {
      EXPECT_TRUE(r.status().code() == assay::Code::kPermissionDenied ||
                  r.status().code() == assay::Code::kInvalidArgument)
          << q << " -> " << r.status().to_string();
    }
  }
  EXPECT_EQ(checksum(db), before);
  // The data is still all there.
  auto n = st::query_readonly(db, "SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM metrics)");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(std::get<int64_t>(n->rows[0][0]), 1);
  EXPECT_EQ(std::get<int64_t>(n->rows[0][1]), 1);
}

TEST_F(QueryTest, RefusalNamesTheAction) {
  auto r = st::query_readonly(db, "DELETE FROM metrics");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), assay::Code::kPermissionDenied);
  EXPECT_NE(r.status().message().find("DELETE"), std::string::npos) << r.status().message();
  auto two = st::query_readonly(db, "SELECT 1; SELECT 2");
  ASSERT_FALSE(two.ok());
  EXPECT_NE(two.status().message().find("more than one statement"), std::string::npos);
}
