// The coordinator's request handler, without sockets: auth, validation, error
// shapes, sweep idempotency, the worker protocol, lease expiry on a fake clock,
// metric and log de-duplication, and reload after a restart.
#include <gtest/gtest.h>

#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "assay/coordinator.h"
#include "assay/store.h"
#include "handler_fixture.h"

using namespace assay::coordinator;
using Json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

using test_util::kUser;
using test_util::kWorker;

class Api : public test_util::HandlerTest {
 protected:
  void configure(Options& o) override { o.max_body_bytes = 1 << 20; }
  Json worker(const std::string& m, const std::string& t, const Json& b = nullptr, int st = 200) {
    return call(m, t, b, kWorker, st);
  }
  Json sweep(const std::string& name, int n) {
    Json vals = Json::array();
    for (int i = 0; i < n; ++i) vals.push_back(i);
    return {{"name", name},
            {"command", "echo {x}"},
            {"max_attempts", 2},
            {"space", {{"x", {{"type", "grid"}, {"values", vals}}}}}};
  }
  void register_worker(const std::string& id, int gpus, int cpus = 8,
                       const std::string& instance = "i1") {
    Json g = Json::array();
    for (int i = 0; i < gpus; ++i)
      g.push_back({{"index", i}, {"uuid", "GPU-" + std::to_string(i)}, {"mem_total_mb", 80000}});
    worker("POST", "/v1/worker/register",
           {{"worker_id", id}, {"instance", instance}, {"cpus", cpus}, {"gpus", g}});
  }
  Json lease(const std::string& id, int max_runs) {
    return worker("POST", "/v1/worker/lease", {{"worker_id", id}, {"max_runs", max_runs}});
  }
  Json run(int64_t id) { return user("GET", "/v1/runs/" + std::to_string(id))["run"]; }
  int64_t count_rows(const std::string& sql) {
    sqlite3* db = nullptr;
    sqlite3_open_v2((dir_ + "/results.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr);
    int64_t n = -1;
    if (st && sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
  }

};

}  // namespace

TEST_F(Api, AuthRolesAreSeparateAndErrorsAreJson) {
  user("GET", "/v1/runs", nullptr, 200);
  call("GET", "/v1/runs", nullptr, nullptr, 401);
  call("GET", "/v1/runs", nullptr, "nope", 401);
  call("GET", "/v1/runs", nullptr, kWorker, 403);
  call("POST", "/v1/worker/register", {{"worker_id", "w"}}, kUser, 403);
  Json e = call("GET", "/v1/health", nullptr, nullptr, 200);
  EXPECT_EQ(e["ok"], true);
  Json nf = user("GET", "/v1/nothing", nullptr, 404);
  EXPECT_EQ(nf["error"]["code"], "not_found");
  user("DELETE", "/v1/runs", nullptr, 405);
  // A token that differs only in its last character is refused.
  std::string almost = kUser;
  almost.back() = 'x';
  call("GET", "/v1/runs", nullptr, almost.c_str(), 401);
}

TEST_F(Api, MalformedRequestsChangeNothing) {
  int64_t before = count_rows("SELECT COUNT(*) FROM runs") + count_rows("SELECT COUNT(*) FROM sweeps");
  Response r = raw("POST", "/v1/sweeps", "{\"name\": \"a\", ", kUser);
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("bad_request"), std::string::npos);
  Json bad_spec = user("POST", "/v1/sweeps", {{"name", "a"}, {"command", 5}}, 400);
  EXPECT_EQ(bad_spec["error"]["code"], "invalid_spec");
  Json unknown = user("POST", "/v1/sweeps", {{"name", "a"}, {"command", "x {nope}"}}, 400);
  EXPECT_NE(unknown["error"]["message"].get<std::string>().find("nope"), std::string::npos);
  user("POST", "/v1/sweeps", Json::array({1, 2}), 400);
  Response big = raw("POST", "/v1/sweeps", std::string(2 << 20, ' '), kUser);
  EXPECT_EQ(big.status, 413);
  worker("POST", "/v1/worker/register", {{"worker_id", "bad id!"}}, 400);
  worker("POST", "/v1/worker/register", {{"worker_id", "w"}, {"cpus", "many"}}, 400);
  EXPECT_EQ(count_rows("SELECT COUNT(*) FROM runs") + count_rows("SELECT COUNT(*) FROM sweeps"), before);
  EXPECT_EQ(count_rows("SELECT COUNT(*) FROM workers"), 0);
}

TEST_F(Api, SweepSubmitIsIdempotentAndConflictsNameTheSweep) {
  Json a = user("POST", "/v1/sweeps", sweep("s1", 4), 201);
  EXPECT_EQ(a["created"], true);
  ASSERT_EQ(a["runs"].size(), 4u);
  Json b = user("POST", "/v1/sweeps", sweep("s1", 4), 200);
  EXPECT_EQ(b["created"], false);
  EXPECT_EQ(b["runs"], a["runs"]);
  Json c = user("POST", "/v1/sweeps", sweep("s1", 5), 409);
  EXPECT_EQ(c["error"]["code"], "sweep_conflict");
  EXPECT_NE(c["error"]["message"].get<std::string>().find("s1"), std::string::npos);
  EXPECT_EQ(count_rows("SELECT COUNT(*) FROM runs"), 4);
  Json list = user("GET", "/v1/runs?sweep=s1&state=queued&param.x=2");
  ASSERT_EQ(list["runs"].size(), 1u);
  EXPECT_EQ(list["runs"][0]["command"], "echo 2");
  Json sw = user("GET", "/v1/sweeps/s1");
  EXPECT_EQ(sw["counts"]["queued"], 4);
}

TEST_F(Api, WorkerProtocolHappyPathAndFailureReasons) {
  Json sub = user("POST", "/v1/sweeps", sweep("s", 6), 201);
  register_worker("w1", 0, 8);
  Json l = lease("w1", 6);
  ASSERT_EQ(l["runs"].size(), 6u);
  std::vector<int64_t> ids;
  for (auto& r : l["runs"]) {
    ids.push_back(r["run_id"]);
    EXPECT_EQ(r["attempt"], 1);
    worker("POST", "/v1/worker/runs/" + std::to_string(ids.back()) + "/started",
           {{"worker_id", "w1"}, {"attempt", 1}, {"pid", 100}});
  }
  auto finish = [&](int64_t id, Json extra) {
    extra["worker_id"] = "w1";
    extra["attempt"] = 1;
    return worker("POST", "/v1/worker/runs/" + std::to_string(id) + "/finished", extra);
  };
  EXPECT_EQ(finish(ids[0], {{"exit_code", 0}})["state"], "succeeded");
  EXPECT_EQ(finish(ids[1], {{"exit_code", 3}})["failure_reason"], "exit_code");
  EXPECT_EQ(finish(ids[2], {{"signal", 11}})["failure_reason"], "signal");
  EXPECT_EQ(finish(ids[3], {{"signal", 9}, {"oom_killed", true}})["failure_reason"], "oom");
  EXPECT_EQ(finish(ids[4], {{"exit_code", 1},
                            {"log_tail", "Traceback...\ntorch.OutOfMemoryError: CUDA out of memory. "
                                         "Tried to allocate 2.00 GiB\n"}})["failure_reason"],
            "oom");
  EXPECT_EQ(finish(ids[5], {{"signal", 15}, {"timed_out", true}})["failure_reason"], "timeout");
  // A repeated report is acknowledged with the recorded outcome.
  Json again = finish(ids[1], {{"exit_code", 0}});
  EXPECT_EQ(again["failure_reason"], "exit_code");
  EXPECT_EQ(again["duplicate"], true);
  EXPECT_EQ(run(ids[2])["failure_detail"], "killed by signal 11 (SIGSEGV)");
  EXPECT_EQ(run(ids[0])["state"], "succeeded");
  // Another worker cannot report on w1's runs.
  register_worker("w2", 0);
  worker("POST", "/v1/worker/runs/" + std::to_string(ids[0]) + "/metrics",
         {{"worker_id", "w2"}, {"attempt", 1}, {"points", Json::array()}}, 409);
}

TEST_F(Api, GpuPlacementThroughTheApi) {
  Json spec = sweep("g", 5);
  spec["resources"] = {{"gpus", 1}, {"gpu_mem_mb", 1000}, {"cpus", 1}};
  user("POST", "/v1/sweeps", spec, 201);
  register_worker("gpu", 4, 16);
  Json l = lease("gpu", 10);
  ASSERT_EQ(l["runs"].size(), 4u);
  std::set<int> gpus;
  for (auto& r : l["runs"]) gpus.insert(r["gpus"][0].get<int>());
  EXPECT_EQ(gpus.size(), 4u);
  EXPECT_EQ(lease("gpu", 10)["runs"].size(), 0u);
  Json ws = user("GET", "/v1/workers");
  ASSERT_EQ(ws["workers"].size(), 1u);
  EXPECT_EQ(ws["workers"][0]["runs"].size(), 4u);
}

TEST_F(Api, LeaseExpiryRequeuesWithNextAttemptThenFailsLostWorker) {
  Json sub = user("POST", "/v1/sweeps", sweep("e", 1), 201);
  int64_t id = sub["runs"][0];
  register_worker("w1", 0);
  ASSERT_EQ(lease("w1", 1)["runs"].size(), 1u);
  worker("POST", "/v1/worker/runs/" + std::to_string(id) + "/started",
         {{"worker_id", "w1"}, {"attempt", 1}});
  now_ += 20;
  worker("POST", "/v1/worker/heartbeat",
         {{"worker_id", "w1"}, {"active", {{{"run_id", id}, {"attempt", 1}}}}});
  now_ += 20;  // 20 s after the heartbeat: still within the 30 s ttl
  coord_->tick();
  EXPECT_EQ(run(id)["state"], "running");
  now_ += 11;
  coord_->tick();
  Json r = run(id);
  EXPECT_EQ(r["state"], "queued");
  EXPECT_EQ(r["attempt"], 2);
  // The silent worker comes back: its report is stale, its heartbeat says abort.
  worker("POST", "/v1/worker/runs/" + std::to_string(id) + "/finished",
         {{"worker_id", "w1"}, {"attempt", 1}, {"exit_code", 0}}, 409);
  Json hb = worker("POST", "/v1/worker/heartbeat",
                   {{"worker_id", "w1"}, {"active", {{{"run_id", id}, {"attempt", 1}}}}});
  EXPECT_EQ(hb["abort"], Json::array({id}));
  // Second attempt on another worker, which also goes silent: max_attempts = 2.
  register_worker("w2", 0);
  Json l = lease("w2", 1);
  ASSERT_EQ(l["runs"].size(), 1u);
  EXPECT_EQ(l["runs"][0]["attempt"], 2);
  // (It starts the run: a lease lost before its run started would not count.)
  worker("POST", "/v1/worker/runs/" + std::to_string(id) + "/started",
         {{"worker_id", "w2"}, {"attempt", 2}});
  now_ += 31;
  coord_->tick();
  r = run(id);
  EXPECT_EQ(r["state"], "failed");
  EXPECT_EQ(r["failure_reason"], "lost_worker");
}

// A lease reply that never reached the worker: the worker keeps heartbeating
// (renewing every lease it holds) but never lists the run as active. After a
// lease ttl the run is requeued instead of staying leased forever.
TEST_F(Api, RunNeverReportedActiveIsRequeuedAfterATtl) {
  Json sub = user("POST", "/v1/sweeps", sweep("lost", 2), 201);
  int64_t got = sub["runs"][0], lost = sub["runs"][1];
  register_worker("w1", 0);
  ASSERT_EQ(lease("w1", 2)["runs"].size(), 2u);  // the worker only "received" `got`
  Json active = {{{"run_id", got}, {"attempt", 1}}};
  now_ += 20;
  worker("POST", "/v1/worker/heartbeat", {{"worker_id", "w1"}, {"active", active}});
  EXPECT_EQ(run(lost)["state"], "leased");  // within the ttl: a reply may still be in flight
  now_ += 15;
  worker("POST", "/v1/worker/heartbeat", {{"worker_id", "w1"}, {"active", active}});
  Json r = run(lost);
  EXPECT_EQ(r["state"], "queued");
  EXPECT_EQ(r["attempt"], 2);
  EXPECT_EQ(run(got)["state"], "leased");  // the listed run keeps its lease
  // A heartbeat without an `active` field (an older worker) judges nothing.
  ASSERT_EQ(lease("w1", 1)["runs"].size(), 1u);
  now_ += 40;
  worker("POST", "/v1/worker/heartbeat", {{"worker_id", "w1"}});
  EXPECT_EQ(run(lost)["state"], "leased");
}

TEST_F(Api, WorkerRestartRequeuesItsRunsAtOnce) {
  Json sub = user("POST", "/v1/sweeps", sweep("r", 2), 201);
  register_worker("w1", 0, 8, "first");
  ASSERT_EQ(lease("w1", 2)["runs"].size(), 2u);
  register_worker("w1", 0, 8, "first");  // same instance: keeps its runs
  EXPECT_EQ(run(sub["runs"][0])["state"], "leased");
  Json re = worker("POST", "/v1/worker/register",
                   {{"worker_id", "w1"}, {"instance", "second"}, {"cpus", 8}});
  EXPECT_EQ(re["requeued"].size(), 2u);
  EXPECT_EQ(run(sub["runs"][0])["state"], "queued");
  EXPECT_EQ(run(sub["runs"][0])["attempt"], 2);
}

TEST_F(Api, MetricBatchRedeliveryDoesNotDouble) {
  Json sub = user("POST", "/v1/sweeps", sweep("m", 1), 201);
  int64_t id = sub["runs"][0];
  register_worker("w1", 0);
  lease("w1", 1);
  std::string url = "/v1/worker/runs/" + std::to_string(id) + "/metrics";
  Json batch = {{"worker_id", "w1"}, {"attempt", 1}, {"batch_seq", 0}, {"points", Json::array()}};
  for (int s = 0; s < 5; ++s) batch["points"].push_back({{"key", "loss"}, {"step", s}, {"value", 1.0 / (s + 1)}});
  EXPECT_EQ(worker("POST", url, batch)["accepted"], 5);
  Json dup = worker("POST", url, batch);
  EXPECT_EQ(dup["duplicate"], true);
  // Same points under a new seq (a re-sent spool file): upserted, not doubled.
  batch["batch_seq"] = 1;
  batch["points"].push_back({{"key", "acc"}, {"step", 4}, {"value", nullptr}});
  worker("POST", url, batch);
  EXPECT_EQ(count_rows("SELECT COUNT(*) FROM metrics WHERE run_id = " + std::to_string(id)), 6);
  Json pts = user("GET", "/v1/runs/" + std::to_string(id) + "/metrics?key=loss");
  ASSERT_EQ(pts["points"].size(), 5u);
  EXPECT_DOUBLE_EQ(pts["points"][1]["value"].get<double>(), 0.5);
  // Malformed point: nothing from the batch is stored.
  Json bad = {{"worker_id", "w1"}, {"attempt", 1}, {"batch_seq", 2},
              {"points", {{{"key", "x"}, {"step", 1}, {"value", 1}}, {{"key", "y"}, {"step", "one"}, {"value", 1}}}}};
  worker("POST", url, bad, 400);
  EXPECT_EQ(count_rows("SELECT COUNT(*) FROM metrics WHERE run_id = " + std::to_string(id)), 6);
  EXPECT_EQ(count_rows("SELECT COUNT(*) FROM metric_batches"), 2);
  // Late delivery after finish (same attempt) is still accepted.
  worker("POST", "/v1/worker/runs/" + std::to_string(id) + "/finished",
         {{"worker_id", "w1"}, {"attempt", 1}, {"exit_code", 0}});
  batch["batch_seq"] = 3;
  batch["points"] = {{{"key", "loss"}, {"step", 5}, {"value", 0.1}}};
  worker("POST", url, batch);
  EXPECT_EQ(count_rows("SELECT COUNT(*) FROM metrics WHERE run_id = " + std::to_string(id)), 7);
  // Keys outside the fast parser's subset (escapes, non-ASCII) take the
  // general path and are stored the same way; a too-long key is refused on both.
  batch["batch_seq"] = 4;
  batch["points"] = {{{"key", "val/\"quoted\""}, {"step", 1}, {"value", 2.0}},
                     {{"key", "perplexité"}, {"step", 1}, {"value", 3.0}}};
  EXPECT_EQ(worker("POST", url, batch)["accepted"], 2);
  EXPECT_EQ(count_rows("SELECT COUNT(*) FROM metric_keys WHERE name IN ('val/\"quoted\"', 'perplexité')"), 2);
  batch["batch_seq"] = 5;
  batch["points"] = {{{"key", std::string(257, 'k')}, {"step", 1}, {"value", 2.0}}};
  Json long_key = worker("POST", url, batch, 400);
  EXPECT_NE(long_key.dump().find("points[0].key: expected 1..256 characters"), std::string::npos) << long_key;
  batch["points"] = {{{"key", "ok"}, {"step", 1}, {"value", 2.0}, {"note", "extra field"}}};
  EXPECT_EQ(worker("POST", url, batch)["accepted"], 1) << "unknown fields are ignored, as before";
}

TEST_F(Api, LogChunksDeduplicateByOffsetAndServeWithOffsets) {
  Json sub = user("POST", "/v1/sweeps", sweep("l", 1), 201);
  int64_t id = sub["runs"][0];
  register_worker("w1", 0);
  lease("w1", 1);
  std::string base = "/v1/worker/runs/" + std::to_string(id) + "/logs?worker_id=w1&attempt=1&stream=stdout&offset=";
  EXPECT_EQ(raw("POST", base + "0", "hello ", kWorker).status, 200);
  Response r = raw("POST", base + "0", "hello world\n", kWorker);  // overlaps: only the tail is new
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(Json::parse(r.body)["next_offset"], 12);
  Response gap = raw("POST", base + "50", "zzz", kWorker);
  EXPECT_EQ(gap.status, 409);
  EXPECT_EQ(Json::parse(gap.body)["next_offset"], 12);
  Response logs = raw("GET", "/v1/runs/" + std::to_string(id) + "/logs?offset=6", "", kUser);
  EXPECT_EQ(logs.status, 200);
  EXPECT_EQ(logs.body, "world\n");
  bool saw_next = false;
  for (auto& [k, v] : logs.headers)
    if (k == "X-Assay-Next-Offset") saw_next = v == "12";
  EXPECT_TRUE(saw_next);
}

TEST_F(Api, CancelAndRetry) {
  Json sub = user("POST", "/v1/sweeps", sweep("c", 3), 201);
  int64_t q = sub["runs"][0], running = sub["runs"][1];
  // Cancel a queued run: immediate.
  Json c = user("POST", "/v1/runs/" + std::to_string(q) + "/cancel");
  EXPECT_EQ(c["run"]["state"], "cancelled");
  EXPECT_EQ(c["run"]["failure_reason"], "cancelled");
  user("POST", "/v1/runs/" + std::to_string(q) + "/cancel", nullptr, 409);
  register_worker("w1", 0, 1);
  Json l = lease("w1", 1);
  ASSERT_EQ(l["runs"][0]["run_id"], running);
  worker("POST", "/v1/worker/runs/" + std::to_string(running) + "/started", {{"worker_id", "w1"}, {"attempt", 1}});
  Json c2 = user("POST", "/v1/runs/" + std::to_string(running) + "/cancel");
  EXPECT_EQ(c2["run"]["state"], "running");
  EXPECT_EQ(c2["run"]["cancel_requested"], true);
  Json hb = worker("POST", "/v1/worker/heartbeat", {{"worker_id", "w1"}});
  EXPECT_EQ(hb["cancel"], Json::array({running}));
  Json fin = worker("POST", "/v1/worker/runs/" + std::to_string(running) + "/finished",
                    {{"worker_id", "w1"}, {"attempt", 1}, {"signal", 15}, {"cancelled", true}});
  EXPECT_EQ(fin["state"], "cancelled");
  // Retry: back to the queue as attempt 2, and the slot it freed takes it.
  Json rt = user("POST", "/v1/runs/" + std::to_string(running) + "/retry");
  EXPECT_EQ(rt["run"]["state"], "queued");
  EXPECT_EQ(rt["run"]["attempt"], 2);
  user("POST", "/v1/runs/" + std::to_string(sub["runs"][2].get<int64_t>()) + "/retry", nullptr, 409);
  Json events = user("GET", "/v1/runs/" + std::to_string(running))["events"];
  EXPECT_GE(events.size(), 5u);
}

TEST_F(Api, RestartReloadsQueueAndLeases) {
  Json spec = sweep("k", 3);
  spec["resources"] = {{"gpus", 1}, {"cpus", 0}};
  Json sub = user("POST", "/v1/sweeps", spec, 201);
  register_worker("w1", 2, 4);
  Json l = lease("w1", 5);
  ASSERT_EQ(l["runs"].size(), 2u);
  int64_t held = l["runs"][0]["run_id"];
  worker("POST", "/v1/worker/runs/" + std::to_string(held) + "/started", {{"worker_id", "w1"}, {"attempt", 1}});
  Json batch = {{"worker_id", "w1"}, {"attempt", 1}, {"batch_seq", 0}, {"points", {{{"key", "loss"}, {"step", 1}, {"value", 2.5}}}}};
  worker("POST", "/v1/worker/runs/" + std::to_string(held) + "/metrics", batch);

  open();  // a new process on the same database
  EXPECT_EQ(run(held)["state"], "running");
  EXPECT_EQ(run(held)["gpus"].size(), 1u);
  // The GPUs are still held: nothing more fits until a run ends.
  EXPECT_EQ(lease("w1", 5)["runs"].size(), 0u);
  EXPECT_EQ(worker("POST", "/v1/worker/runs/" + std::to_string(held) + "/metrics", batch)["duplicate"], true);
  worker("POST", "/v1/worker/runs/" + std::to_string(held) + "/finished",
         {{"worker_id", "w1"}, {"attempt", 1}, {"exit_code", 0}});
  Json l2 = lease("w1", 5);
  ASSERT_EQ(l2["runs"].size(), 1u);
  EXPECT_EQ(l2["runs"][0]["gpus"], l["runs"][0]["gpus"]);
  // Restart gives a fresh ttl: a worker that stays silent loses its runs after it.
  open();
  now_ += 31;
  coord_->tick();
  Json counts = user("GET", "/v1/sweeps/k")["counts"];
  EXPECT_EQ(counts["queued"], 2);
  EXPECT_EQ(counts["succeeded"], 1);
}

TEST_F(Api, QueryIsReadOnly) {
  user("POST", "/v1/sweeps", sweep("q", 2), 201);
  Json r = user("POST", "/v1/query", {{"sql", "SELECT COUNT(*) AS n FROM runs"}});
  EXPECT_EQ(r["rows"][0][0], 2);
  user("POST", "/v1/query", {{"sql", "DELETE FROM runs"}}, 403);
  EXPECT_EQ(count_rows("SELECT COUNT(*) FROM runs"), 2);
}
