#include <gtest/gtest.h>

#include "assay/store.h"
#include "temp_dir.h"

namespace st = assay::store;
using assay::Status;

namespace {

struct Fixture : ::testing::Test {
  TempDir dir;
  double t = 1000.0;  // the clock seam: tests control time
  std::unique_ptr<st::Store> store;
  void SetUp() override {
    auto r = st::Store::open(dir.file("t.db"), {.clock = [this] { return t; }});
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    store = std::move(r).value();
  }
  int64_t add_run(const std::string& params = R"({"lr":0.1,"opt":"adam"})",
                  std::optional<int64_t> sweep = std::nullopt) {
    st::NewRun nr;
    nr.sweep_id = sweep;
    nr.name = "r";
    nr.command = "echo hi";
    nr.params_json = params;
    nr.resources = {2, 8000, 4};
    nr.priority = 5;
    nr.max_attempts = 3;
    nr.timeout_s = 60;
    nr.labels_json = R"({"zone":"a"})";
    auto id = store->insert_run(nr, "test");
    EXPECT_TRUE(id.ok()) << id.status().to_string();
    return id.ok() ? *id : -1;
  }
};

using StoreTest = Fixture;

}  // namespace

TEST_F(StoreTest, SweepRoundTripAndUniqueName) {
  auto id = store->insert_sweep("lr", R"({"name":"lr"})", "abc");
  ASSERT_TRUE(id.ok());
  auto s = store->get_sweep(*id);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->name, "lr");
  EXPECT_EQ(s->spec_json, R"({"name":"lr"})");
  EXPECT_EQ(s->content_hash, "abc");
  EXPECT_EQ(s->created_at, 1000.0);
  auto f = store->find_sweep("lr");
  ASSERT_TRUE(f.ok() && f->has_value());
  EXPECT_EQ((*f)->id, *id);
  EXPECT_FALSE(store->find_sweep("other")->has_value());
  auto dup = store->insert_sweep("lr", "{}", "def");
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.status().message().find("sweep 'lr'"), std::string::npos);
}

TEST_F(StoreTest, RunRoundTripWithCreatedEvent) {
  auto sweep = store->insert_sweep("s", "{}", "h");
  ASSERT_TRUE(sweep.ok());
  int64_t id = add_run(R"({"lr":0.1,"opt":"adam"})", *sweep);
  auto r = store->get_run(id);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->sweep_id, *sweep);
  EXPECT_EQ(r->state, st::RunState::kQueued);
  EXPECT_EQ(r->attempt, 1);
  EXPECT_EQ(r->max_attempts, 3);
  EXPECT_EQ(r->priority, 5);
  EXPECT_EQ(r->resources.gpus, 2);
  EXPECT_EQ(r->resources.gpu_mem_mb, 8000);
  EXPECT_EQ(r->resources.cpus, 4);
  EXPECT_EQ(r->timeout_s, 60.0);
  EXPECT_EQ(r->labels_json, R"({"zone":"a"})");
  EXPECT_EQ(r->params_json, R"({"lr":0.1,"opt":"adam"})");
  auto ev = store->events(id);
  ASSERT_TRUE(ev.ok());
  ASSERT_EQ(ev->size(), 1u);
  EXPECT_EQ((*ev)[0].to_state, "queued");
  EXPECT_EQ((*ev)[0].actor, "test");
  EXPECT_FALSE(store->get_run(id + 100).ok());
}

TEST_F(StoreTest, TransitionsFollowTheStateMachineAndAreAudited) {
  int64_t id = add_run();
  ASSERT_TRUE(store->upsert_worker({.id = "w1", .host = "h"}).ok());
  // queued -> running is not an edge.
  auto bad = store->transition({.run_id = id, .to = st::RunState::kRunning, .actor = "c"});
  EXPECT_EQ(bad.code(), assay::Code::kFailedPrecondition);
  EXPECT_NE(bad.message().find("run " + std::to_string(id)), std::string::npos);
  t = 1001;
  ASSERT_TRUE(store->transition({.run_id = id, .to = st::RunState::kLeased, .actor = "coordinator",
                                 .worker_id = "w1", .lease_expires_at = 1031.0}).ok());
  auto r = store->get_run(id);
  EXPECT_EQ(r->worker_id, "w1");
  EXPECT_EQ(r->lease_expires_at, 1031.0);
  // Compare-and-set on the expected state.
  auto cas = store->transition({.run_id = id, .to = st::RunState::kRunning,
                                .expect_from = st::RunState::kQueued, .actor = "w"});
  EXPECT_EQ(cas.code(), assay::Code::kFailedPrecondition);
  t = 1002;
  ASSERT_TRUE(store->transition({.run_id = id, .to = st::RunState::kRunning, .actor = "worker:w1"}).ok());
  EXPECT_EQ(store->get_run(id)->started_at, 1002.0);
  // Lease lost: back to queued with attempt + 1, lease cleared.
  ASSERT_TRUE(store->transition({.run_id = id, .to = st::RunState::kQueued, .actor = "coordinator",
                                 .detail = "lease expired", .bump_attempt = true}).ok());
  r = store->get_run(id);
  EXPECT_EQ(r->attempt, 2);
  EXPECT_FALSE(r->worker_id.has_value());
  EXPECT_FALSE(r->started_at.has_value());
  ASSERT_TRUE(store->transition({.run_id = id, .to = st::RunState::kLeased, .actor = "c", .worker_id = "w1"}).ok());
  ASSERT_TRUE(store->transition({.run_id = id, .to = st::RunState::kRunning, .actor = "c"}).ok());
  t = 1010;
  ASSERT_TRUE(store->transition({.run_id = id, .to = st::RunState::kFailed, .actor = "worker:w1",
                                 .failure_reason = st::FailureReason::kOom,
                                 .failure_detail = "CUDA out of memory", .exit_code = 1}).ok());
  r = store->get_run(id);
  EXPECT_EQ(r->state, st::RunState::kFailed);
  EXPECT_EQ(r->failure_reason, st::FailureReason::kOom);
  EXPECT_EQ(r->failure_detail, "CUDA out of memory");
  EXPECT_EQ(r->exit_code, 1);
  EXPECT_EQ(r->finished_at, 1010.0);
  auto ev = store->events(id);
  ASSERT_EQ(ev->size(), 7u);  // created + 6 transitions
  EXPECT_EQ(ev->back().from_state, "running");
  EXPECT_EQ(ev->back().to_state, "failed");
  EXPECT_NE(ev->back().detail.find("reason=oom"), std::string::npos);
  // Succeeded is final.
  int64_t id2 = add_run();
  ASSERT_TRUE(store->transition({.run_id = id2, .to = st::RunState::kLeased, .actor = "c", .worker_id = "w1"}).ok());
  ASSERT_TRUE(store->transition({.run_id = id2, .to = st::RunState::kRunning, .actor = "c"}).ok());
  ASSERT_TRUE(store->transition({.run_id = id2, .to = st::RunState::kSucceeded, .actor = "c", .exit_code = 0}).ok());
  EXPECT_FALSE(store->transition({.run_id = id2, .to = st::RunState::kQueued, .actor = "c"}).ok());
}

TEST_F(StoreTest, ListRunsFiltersByStateSweepAndParams) {
  auto sweep = store->insert_sweep("s", "{}", "h");
  add_run(R"({"lr":0.1,"opt":"adam"})", *sweep);
  int64_t b = add_run(R"({"lr":0.01,"opt":"sgd"})", *sweep);
  add_run(R"({"lr":0.01,"opt":"adam"})");
  ASSERT_TRUE(store->transition({.run_id = b, .to = st::RunState::kCancelled, .actor = "u"}).ok());
  auto by_sweep = store->list_runs({.sweep_id = *sweep});
  EXPECT_EQ(by_sweep->size(), 2u);
  auto by_state = store->list_runs({.state = st::RunState::kCancelled});
  ASSERT_EQ(by_state->size(), 1u);
  EXPECT_EQ((*by_state)[0].id, b);
  auto by_param = store->list_runs({.params = {{"opt", "adam"}}});
  EXPECT_EQ(by_param->size(), 2u);
  auto by_two = store->list_runs({.params = {{"opt", "adam"}, {"lr", "0.01"}}});
  ASSERT_EQ(by_two->size(), 1u);
  auto page = store->list_runs({.after_id = b, .limit = 10});
  EXPECT_EQ(page->size(), 1u);
}

TEST_F(StoreTest, RedeliveredMetricPointsDoNotDouble) {
  int64_t id = add_run();
  std::vector<st::MetricPoint> batch = {{id, "loss", 1, 2.0, 10}, {id, "loss", 2, 1.5, 11},
                                        {id, "acc", 2, 0.5, 11}};
  ASSERT_TRUE(store->put_metrics(batch).ok());
  ASSERT_TRUE(store->put_metrics(batch).ok());  // the same batch again
  batch[1].value = 1.4;                          // a corrected re-send overwrites
  ASSERT_TRUE(store->put_metrics(batch).ok());
  auto all = store->metrics(id);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 3u);
  auto loss = store->metrics(id, "loss");
  ASSERT_EQ(loss->size(), 2u);
  EXPECT_EQ((*loss)[1].value, 1.4);
  EXPECT_EQ((*loss)[1].wall_time, 11.0);
  // Keys are interned once.
  auto q = st::query_readonly(dir.file("t.db"), "SELECT count(*) FROM metric_keys");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(std::get<int64_t>(q->rows[0][0]), 2);
  // A point for a missing run violates the foreign key and changes nothing.
  EXPECT_FALSE(store->put_metrics({{id, "loss", 3, 1.0, 12}, {id + 99, "loss", 1, 1, 1}}).ok());
  EXPECT_EQ(store->metrics(id, "loss")->size(), 2u);
}

TEST_F(StoreTest, SummaryViewsShowFinalMinMaxAndWideColumns) {
  int64_t id = add_run(R"({"lr":0.1,"opt":"adam"})");
  ASSERT_TRUE(store->put_metrics({{id, "loss", 3, 0.7, 3}, {id, "loss", 1, 2.0, 1},
                                  {id, "loss", 2, 0.5, 2}}).ok());
  auto q = st::query_readonly(dir.file("t.db"),
      "SELECT metric, points, last_step, final, min, max FROM run_metric_summary");
  ASSERT_TRUE(q.ok()) << q.status().to_string();
  ASSERT_EQ(q->rows.size(), 1u);
  EXPECT_EQ(std::get<std::string>(q->rows[0][0]), "loss");
  EXPECT_EQ(std::get<int64_t>(q->rows[0][1]), 3);
  EXPECT_EQ(std::get<int64_t>(q->rows[0][2]), 3);
  EXPECT_EQ(std::get<double>(q->rows[0][3]), 0.7);
  EXPECT_EQ(std::get<double>(q->rows[0][4]), 0.5);
  EXPECT_EQ(std::get<double>(q->rows[0][5]), 2.0);
  auto w = st::query_readonly(dir.file("t.db"),
      "SELECT lr, opt, loss_final, loss_min, loss_max, state FROM runs_wide");
  ASSERT_TRUE(w.ok()) << w.status().to_string();
  ASSERT_EQ(w->rows.size(), 1u);
  EXPECT_EQ(std::get<double>(w->rows[0][0]), 0.1);
  EXPECT_EQ(std::get<std::string>(w->rows[0][1]), "adam");
  EXPECT_EQ(std::get<double>(w->rows[0][2]), 0.7);
  EXPECT_EQ(std::get<double>(w->rows[0][3]), 0.5);
  // A param named like a base column is renamed, not lost.
  add_run(R"({"state":"x","new_key":3})");
  auto w2 = st::query_readonly(dir.file("t.db"), "SELECT param_state, new_key FROM runs_wide ORDER BY run_id");
  ASSERT_TRUE(w2.ok()) << w2.status().to_string();
  EXPECT_EQ(std::get<std::string>(w2->rows[1][0]), "x");
}

TEST_F(StoreTest, ArtifactsRoundTripWithLineageAndIdempotence) {
  int64_t id = add_run();
  auto a = store->put_artifact({.run_id = id, .content_hash = "h1", .path = "/c/1", .step = 10});
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  auto b = store->put_artifact({.run_id = id, .content_hash = "h2", .path = "/c/2", .step = 20,
                                .parent_id = *a, .metadata_json = R"({"k":1})"});
  ASSERT_TRUE(b.ok());
  auto again = store->put_artifact({.run_id = id, .content_hash = "h1", .path = "/c/1", .step = 10});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *a);
  auto list = store->artifacts(id);
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[1].parent_id, *a);
  EXPECT_EQ((*list)[1].metadata_json, R"({"k":1})");
  EXPECT_EQ((*list)[1].step, 20);
  auto f = store->find_artifact("h2");
  ASSERT_TRUE(f.ok() && f->has_value());
  EXPECT_EQ((*f)->path, "/c/2");
  EXPECT_FALSE(store->find_artifact("zz")->has_value());
}

TEST_F(StoreTest, WorkersRoundTripAndHeartbeat) {
  ASSERT_TRUE(store->upsert_worker({.id = "w1", .host = "node1", .gpus_json = R"([{"index":0}])",
                                    .labels_json = R"({"zone":"a"})", .cpus = 8}).ok());
  ASSERT_TRUE(store->heartbeat("w1", 2000).ok());
  EXPECT_EQ(store->heartbeat("ghost", 1).code(), assay::Code::kNotFound);
  auto ws = store->workers();
  ASSERT_EQ(ws->size(), 1u);
  EXPECT_EQ((*ws)[0].host, "node1");
  EXPECT_EQ((*ws)[0].cpus, 8);
  EXPECT_EQ((*ws)[0].gpus_json, R"([{"index":0}])");
  EXPECT_EQ((*ws)[0].last_heartbeat, 2000.0);
  EXPECT_EQ((*ws)[0].registered_at, 1000.0);
}

TEST_F(StoreTest, GpuTelemetryPeakPerAttemptLiveStateAndSamples) {
  ASSERT_TRUE(store->upsert_worker({.id = "w1", .host = "h", .gpus_json = "[]"}).ok());
  ASSERT_TRUE(store->heartbeat("w1", 2000, std::string(R"([{"index":0,"util_pct":55}])")).ok());
  ASSERT_TRUE(store->heartbeat("w1", 2001).ok());  // no GPU list: the last one stays
  EXPECT_EQ((*store->workers())[0].gpus_json, R"([{"index":0,"util_pct":55}])");
  ASSERT_TRUE(store->add_gpu_samples({{"w1", 0, 2000, 55, 1000, 81920},
                                      {"w1", 1, 2000, std::nullopt, 0, 81920}}).ok());
  auto rows = st::query_readonly(dir.file("t.db"), "SELECT gpu_index, coalesce(util_pct, -1), "
                                 "mem_used_mb FROM gpu_samples ORDER BY gpu_index");
  ASSERT_TRUE(rows.ok()) << rows.status().to_string();
  ASSERT_EQ(rows->rows.size(), 2u);
  EXPECT_EQ(rows->rows[0][1], st::Cell(int64_t(55)));
  EXPECT_EQ(rows->rows[1][1], st::Cell(int64_t(-1)));

  int64_t id = add_run();
  ASSERT_TRUE(store->transition({.run_id = id, .to = st::RunState::kLeased, .actor = "c", .worker_id = "w1"}).ok());
  ASSERT_TRUE(store->transition({.run_id = id, .to = st::RunState::kRunning, .actor = "c"}).ok());
  EXPECT_FALSE(store->get_run(id)->peak_gpu_mem_mb.has_value());
  ASSERT_TRUE(store->transition({.run_id = id, .to = st::RunState::kFailed, .actor = "c",
                                 .failure_reason = st::FailureReason::kOom, .exit_code = 1,
                                 .peak_gpu_mem_mb = 79000, .gpu_mem_source = "process"}).ok());
  auto r = store->get_run(id);
  EXPECT_EQ(r->peak_gpu_mem_mb, 79000);
  EXPECT_EQ(r->gpu_mem_source, "process");
  // A retry starts a new attempt: its peak is not the old one's.
  ASSERT_TRUE(store->transition({.run_id = id, .to = st::RunState::kQueued, .actor = "user",
                                 .bump_attempt = true}).ok());
  r = store->get_run(id);
  EXPECT_FALSE(r->peak_gpu_mem_mb.has_value());
  EXPECT_EQ(r->gpu_mem_source, "");
  // The schema refuses a source it does not know.
  ASSERT_TRUE(store->transition({.run_id = id, .to = st::RunState::kLeased, .actor = "c", .worker_id = "w1"}).ok());
  EXPECT_FALSE(store->transition({.run_id = id, .to = st::RunState::kRunning, .actor = "c",
                                  .gpu_mem_source = "guess"}).ok());
}

// Group commit: a failing call inside the group undoes only its own writes;
// nothing is visible to another connection before commit_group().
TEST_F(StoreTest, GroupCommitIsolatesFailuresAndPublishesOnlyOnCommit) {
  store->set_group_commit(true);
  ASSERT_TRUE(store->transaction([&] { return store->upsert_worker({.id = "g1", .host = "h"}); }).ok());
  Status failed = store->transaction([&]() -> Status {
    ASSAY_RETURN_IF_ERROR(store->upsert_worker({.id = "g2", .host = "h"}));
    return Status::Invalid("refused");
  });
  EXPECT_FALSE(failed.ok());
  ASSERT_TRUE(store->transaction([&] { return store->upsert_worker({.id = "g3", .host = "h"}); }).ok());
  EXPECT_TRUE(store->group_pending());
  auto outside = [&] {
    auto r = st::query_readonly(dir.file("t.db"), "SELECT group_concat(id) FROM (SELECT id FROM workers ORDER BY id)");
    return r.ok() && !r->rows.empty() ? r->rows[0][0] : st::Cell();
  };
  EXPECT_EQ(outside(), st::Cell()) << "visible before the commit";
  ASSERT_TRUE(store->commit_group().ok());
  EXPECT_FALSE(store->group_pending());
  EXPECT_EQ(outside(), st::Cell(std::string("g1,g3")));
  store->set_group_commit(false);
}

TEST_F(StoreTest, EvalResultsRoundTripUpsertAndJoinToProducer) {
  int64_t producer = add_run(R"({"objective":"fkl"})");
  ASSERT_TRUE(store->put_artifact({.run_id = producer, .content_hash = "ck", .path = "/ck", .step = 50}).ok());
  std::vector<st::EvalResult> rows(2);
  rows[0].suite = rows[1].suite = "gsm8k";
  rows[0].suite_version = rows[1].suite_version = "3";
  rows[0].checkpoint_hash = rows[1].checkpoint_hash = "ck";
  rows[0].metric = rows[1].metric = "exact_match";
  rows[0].filter = "strict-match";
  rows[1].filter = "flexible-extract";
  rows[0].value = 0.25; rows[0].stderr_value = 0.1; rows[0].n = 20;
  rows[1].value = 0.5;
  ASSERT_TRUE(store->put_eval_results(rows).ok());
  rows[0].value = 0.3;
  ASSERT_TRUE(store->put_eval_results(rows).ok());
  auto got = store->eval_results("ck", "gsm8k", "3", 0);
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[1].filter, "strict-match");
  EXPECT_EQ((*got)[1].value, 0.3);
  EXPECT_EQ((*got)[1].stderr_value, 0.1);
  EXPECT_EQ((*got)[1].n, 20);
  EXPECT_TRUE(store->eval_results("ck", "gsm8k", "4", 0)->empty());
  auto q = st::query_readonly(dir.file("t.db"),
      "SELECT producer_run_id, checkpoint_step, producer_params FROM eval_summary LIMIT 1");
  ASSERT_TRUE(q.ok()) << q.status().to_string();
  EXPECT_EQ(std::get<int64_t>(q->rows[0][0]), producer);
  EXPECT_EQ(std::get<int64_t>(q->rows[0][1]), 50);
  EXPECT_EQ(std::get<std::string>(q->rows[0][2]), R"({"objective":"fkl"})");
}

TEST_F(StoreTest, TransactionRollsBackEverythingOnFailure) {
  int64_t id = add_run();
  auto st = store->transaction([&]() -> assay::Status {
    auto s = store->put_metrics({{id, "loss", 1, 1.0, 1}});
    if (!s.ok()) return s;
    return assay::Status::Internal("boom");
  });
  EXPECT_FALSE(st.ok());
  EXPECT_TRUE(store->metrics(id)->empty());
  // The key cache was reset with the rollback, so the next insert works.
  ASSERT_TRUE(store->put_metrics({{id, "loss", 1, 1.0, 1}}).ok());
  EXPECT_EQ(store->metrics(id)->size(), 1u);
}

TEST(StoreState, NamesRoundTrip) {
  for (auto s : {st::RunState::kQueued, st::RunState::kLeased, st::RunState::kRunning,
                 st::RunState::kSucceeded, st::RunState::kFailed, st::RunState::kCancelled})
    EXPECT_EQ(*st::parse_run_state(st::to_string(s)), s);
  EXPECT_FALSE(st::parse_run_state("done").ok());
  EXPECT_FALSE(st::parse_failure_reason("meh").ok());
  EXPECT_EQ(*st::parse_failure_reason("lost_worker"), st::FailureReason::kLostWorker);
}
