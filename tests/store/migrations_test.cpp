#include <gtest/gtest.h>
#include <sqlite3.h>

#include "assay/store.h"
#include "migrations.h"
#include "temp_dir.h"

namespace st = assay::store;

namespace {

sqlite3* open_db(const std::string& path) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  return db;
}

int count_tables(sqlite3* db, const char* name) {
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE name = ?1", -1, &s, nullptr);
  sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
  sqlite3_step(s);
  int n = sqlite3_column_int(s, 0);
  sqlite3_finalize(s);
  return n;
}

}  // namespace

TEST(Migrations, EmbeddedAreNumberedWithoutGaps) {
  const auto& all = st::embedded_migrations();
  ASSERT_FALSE(all.empty());
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].version, int(i) + 1) << all[i].name;
  EXPECT_EQ(st::latest_schema_version(), int(all.size()));
}

TEST(Migrations, FreshDatabaseReachesLatest) {
  TempDir d;
  auto v = st::migrate(d.file("a.db"));
  ASSERT_TRUE(v.ok()) << v.status().to_string();
  EXPECT_EQ(*v, st::latest_schema_version());
  auto again = st::schema_version_of(d.file("a.db"));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, st::latest_schema_version());
  sqlite3* db = open_db(d.file("a.db"));
  for (const char* t : {"sweeps", "runs", "run_events", "metrics", "metric_keys", "artifacts",
                        "workers", "eval_results", "run_summary", "run_metric_summary",
                        "eval_summary", "schema_migrations"})
    EXPECT_EQ(count_tables(db, t), 1) << t;
  sqlite3_close(db);
}

TEST(Migrations, EachEarlierVersionUpgrades) {
  const auto& all = st::embedded_migrations();
  for (int from = 0; from < int(all.size()); ++from) {
    TempDir d;
    sqlite3* db = open_db(d.file("old.db"));
    auto r = st::apply_migrations(db, all, from, 1.0);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(*r, from);
    sqlite3_close(db);
    auto opened = st::Store::open(d.file("old.db"));
    ASSERT_TRUE(opened.ok()) << "from version " << from << ": " << opened.status().to_string();
    auto v = (*opened)->schema_version();
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(*v, st::latest_schema_version()) << "from version " << from;
  }
}

TEST(Migrations, OldDatabaseWithoutMigrateIsRefusedWithAdvice) {
  const auto& all = st::embedded_migrations();
  TempDir d;
  sqlite3* db = open_db(d.file("old.db"));
  sqlite3_close(db);  // an empty file: version 0
  auto opened = st::Store::open(d.file("old.db"), {.migrate = false});
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), assay::Code::kFailedPrecondition);
  EXPECT_NE(opened.status().message().find("assay db migrate"), std::string::npos);
  (void)all;
}

TEST(Migrations, NewerDatabaseIsRefusedNamingBothVersions) {
  TempDir d;
  ASSERT_TRUE(st::migrate(d.file("new.db")).ok());
  sqlite3* db = open_db(d.file("new.db"));
  const int newer = st::latest_schema_version() + 3;
  std::string q = "INSERT INTO schema_migrations VALUES (" + std::to_string(newer) + ", 'future', 0)";
  ASSERT_EQ(sqlite3_exec(db, q.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);

  auto opened = st::Store::open(d.file("new.db"));
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), assay::Code::kVersionMismatch);
  const std::string& m = opened.status().message();
  EXPECT_NE(m.find("version " + std::to_string(newer)), std::string::npos) << m;
  EXPECT_NE(m.find("up to " + std::to_string(st::latest_schema_version())), std::string::npos) << m;
  EXPECT_FALSE(st::migrate(d.file("new.db")).ok());
}

TEST(Migrations, FailedMigrationLeavesPreviousVersion) {
  TempDir d;
  sqlite3* db = open_db(d.file("f.db"));
  std::vector<st::Migration> ms = st::embedded_migrations();
  const int good = int(ms.size());
  // A migration whose first statement succeeds and second fails: the
  // transaction must take the first one back too.
  ms.push_back({good + 1, "9999_broken",
                "CREATE TABLE half_done(x INTEGER); INSERT INTO no_such_table VALUES (1);"});
  auto r = st::apply_migrations(db, ms, -1, 1.0);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("9999_broken"), std::string::npos) << r.status().message();
  auto v = st::current_version(db);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, good);
  EXPECT_EQ(count_tables(db, "half_done"), 0);
  sqlite3_close(db);
  // And the database still opens normally afterwards.
  auto opened = st::Store::open(d.file("f.db"));
  EXPECT_TRUE(opened.ok()) << opened.status().to_string();
}

TEST(Migrations, MissingDatabaseWithoutCreateIsNotFound) {
  TempDir d;
  auto opened = st::Store::open(d.file("nope.db"), {.create = false});
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), assay::Code::kNotFound);
  EXPECT_NE(opened.status().message().find("nope.db"), std::string::npos);
}
