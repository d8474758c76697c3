// Store::transaction when the callback throws: the depth and the open
// transaction are released, so later calls keep their own rollback; and
// metric names the runs_wide view cannot carry do not break later writes.
#include <gtest/gtest.h>

#include <stdexcept>

#include "assay/store.h"
#include "temp_dir.h"

namespace st = assay::store;
using assay::Status;

namespace {

struct TxFixture : ::testing::Test {
  TempDir dir;
  std::unique_ptr<st::Store> store;
  void SetUp() override {
    auto r = st::Store::open(dir.file("t.db"), {.clock = [] { return 1000.0; }});
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    store = std::move(r).value();
  }
  // Worker ids as another connection sees them.
  st::Cell committed_workers() {
    auto r = st::query_readonly(dir.file("t.db"),
                                "SELECT group_concat(id) FROM (SELECT id FROM workers ORDER BY id)");
    return r.ok() && !r->rows.empty() ? r->rows[0][0] : st::Cell();
  }
  std::vector<std::string> visible_workers() {
    std::vector<std::string> ids;
    auto w = store->workers();
    EXPECT_TRUE(w.ok());
    if (w.ok())
      for (auto& x : *w) ids.push_back(x.id);
    return ids;
  }
  // A transaction that writes a worker, then throws.
  void throwing_transaction(const std::string& id) {
    EXPECT_THROW((void)store->transaction([&]() -> Status {
                   EXPECT_TRUE(store->upsert_worker({.id = id, .host = "h"}).ok());
                   throw std::runtime_error("boom");
                 }),
                 std::runtime_error);
  }
};

using StoreTx = TxFixture;

}  // namespace

TEST_F(StoreTx, ThrowRollsBackAndLaterCallsKeepTheirOwnRollback) {
  throwing_transaction("t1");
  EXPECT_TRUE(visible_workers().empty()) << "the throwing call's write survived";
  // A later failing call is rolled back on its own...
  Status failed = store->transaction([&]() -> Status {
    EXPECT_TRUE(store->upsert_worker({.id = "f1", .host = "h"}).ok());
    return Status::Invalid("refused");
  });
  EXPECT_FALSE(failed.ok());
  // ...and a succeeding one commits, visible to other connections at once.
  ASSERT_TRUE(store->transaction([&] { return store->upsert_worker({.id = "ok1", .host = "h"}); }).ok());
  EXPECT_EQ(visible_workers(), std::vector<std::string>{"ok1"});
  EXPECT_EQ(committed_workers(), st::Cell(std::string("ok1")));
}

TEST_F(StoreTx, ThrowUnderGroupCommitUndoesOnlyItsOwnSavepoint) {
  store->set_group_commit(true);
  ASSERT_TRUE(store->transaction([&] { return store->upsert_worker({.id = "g1", .host = "h"}); }).ok());
  throwing_transaction("t1");
  Status failed = store->transaction([&]() -> Status {
    EXPECT_TRUE(store->upsert_worker({.id = "f1", .host = "h"}).ok());
    return Status::Invalid("refused");
  });
  EXPECT_FALSE(failed.ok());
  ASSERT_TRUE(store->transaction([&] { return store->upsert_worker({.id = "g2", .host = "h"}); }).ok());
  ASSERT_TRUE(store->commit_group().ok());
  EXPECT_EQ(committed_workers(), st::Cell(std::string("g1,g2")));
  store->set_group_commit(false);
}

TEST_F(StoreTx, ControlCharacterMetricNamesDoNotBreakTheWideView) {
  st::NewRun nr;
  nr.name = "r";
  nr.command = "true";
  nr.params_json = "{}";
  nr.labels_json = "{}";
  auto id = store->insert_run(nr, "test");
  ASSERT_TRUE(id.ok()) << id.status().to_string();
  ASSERT_TRUE(store->put_metrics({{*id, std::string("loss\0x", 6), 1, 1.0, 1}}).ok());
  // Later writes still commit, and the view still answers.
  ASSERT_TRUE(store->put_metrics({{*id, "acc", 1, 0.5, 1}}).ok());
  auto q = st::query_readonly(dir.file("t.db"), "SELECT acc_final FROM runs_wide");
  ASSERT_TRUE(q.ok()) << q.status().to_string();
  ASSERT_EQ(q->rows.size(), 1u);
  EXPECT_EQ(q->rows[0][0], st::Cell(0.5));
}
