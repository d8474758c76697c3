// Eval hooks through the request handler on a fake clock: a sweep's `evals`
// turn checkpoints into dependent eval runs (final: the highest step of a
// succeeded run; every: each checkpoint), idempotently across re-sent reports
// and restarts, and an eval run's reported metrics land in eval_results.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "assay/coordinator.h"
#include "handler_fixture.h"

using namespace assay::coordinator;
using Json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

using test_util::kWorker;
const char* kExe = "/opt/assay/bin/assay";

class EvalHooks : public test_util::HandlerTest {
 protected:
  void configure(Options& o) override { o.assay_exe = kExe; }
  Json worker(const std::string& t, const Json& b, int st = 200) {
    return call("POST", t, b, kWorker, st);
  }
  // A one-run sweep "<name>" with the given eval hooks.
  int64_t submit(const std::string& name, const Json& evals) {
    Json spec = {{"name", name},
                 {"command", "train --lr {lr}"},
                 {"resources", {{"cpus", 2}}},
                 {"labels", {{"pool", "a"}}},
                 {"space", {{"lr", {{"type", "grid"}, {"values", {0.1}}}}}},
                 {"evals", evals}};
    Json sub = user("POST", "/v1/sweeps", spec, 201);
    return sub["runs"][0].get<int64_t>();
  }
  // Leases everything queued to worker w1 and reports the runs started.
  std::vector<int64_t> lease_and_start() {
    worker("/v1/worker/register",
           {{"worker_id", "w1"}, {"instance", "i1"}, {"cpus", 8}, {"labels", {{"pool", "a"}}}});
    Json l = worker("/v1/worker/lease", {{"worker_id", "w1"}, {"max_runs", 8}});
    std::vector<int64_t> ids;
    for (auto& r : l["runs"]) {
      ids.push_back(r["run_id"].get<int64_t>());
      worker(url(ids.back(), "started"), {{"worker_id", "w1"}, {"attempt", 1}});
    }
    return ids;
  }
  static std::string url(int64_t id, const char* op) {
    return "/v1/worker/runs/" + std::to_string(id) + "/" + op;
  }
  Json artifact(int64_t id, const std::string& hash, int64_t step,
                const std::string& kind = "checkpoint") {
    return worker(url(id, "artifacts"), {{"worker_id", "w1"},
                                         {"attempt", 1},
                                         {"kind", kind},
                                         {"path", "/ck/" + hash},
                                         {"content_hash", hash},
                                         {"step", step}});
  }
  Json finish(int64_t id, int exit_code) {
    return worker(url(id, "finished"), {{"worker_id", "w1"}, {"attempt", 1}, {"exit_code", exit_code}});
  }
  // The sweep's eval runs (params.eval_of set), by id.
  std::vector<Json> eval_runs(const std::string& sweep) {
    Json rs = user("GET", "/v1/runs?sweep=" + sweep);
    std::vector<Json> out;
    for (auto& r : rs["runs"])
      if (r["params"].contains("eval_of")) out.push_back(r);
    return out;
  }
  Json query(const std::string& sql) { return user("POST", "/v1/query", {{"sql", sql}}); }

};

}  // namespace

TEST_F(EvalHooks, FinalHookEvaluatesTheHighestStepCheckpointOnce) {
  int64_t p = submit("fin", Json::array({{{"suite", "gsm8k"},
                                          {"on", "final"},
                                          {"args", {{"limit", 5}, {"num_fewshot", 0},
                                                    {"output", "/tmp/a b.json"}}}}}));
  ASSERT_EQ(lease_and_start(), std::vector<int64_t>{p});
  // Reported out of step order: the later report is the lower step.
  artifact(p, "hash200", 200);
  artifact(p, "hash100", 100);
  EXPECT_TRUE(eval_runs("fin").empty()) << "final evals wait for the run to succeed";
  finish(p, 0);
  auto evs = eval_runs("fin");
  ASSERT_EQ(evs.size(), 1u);
  const Json& e = evs[0];
  EXPECT_EQ(e["params"]["eval_of"], p);
  EXPECT_EQ(e["params"]["suite"], "gsm8k");
  EXPECT_EQ(e["params"]["checkpoint"], "hash200");
  EXPECT_EQ(e["params"]["step"], 200);
  EXPECT_EQ(e["state"], "queued");
  EXPECT_EQ(e["sweep"], "fin");
  EXPECT_EQ(e["name"], "fin-0000-eval-gsm8k-step200");
  EXPECT_EQ(e["command"], std::string(kExe) +
                              " eval gsm8k --model-path /ck/hash200 --limit 5 --num-fewshot 0"
                              " --output '/tmp/a b.json'");
  EXPECT_EQ(e["resources"]["cpus"], 2);
  EXPECT_EQ(e["labels"]["pool"], "a");
  // The sweep's counts include it.
  Json sw = user("GET", "/v1/sweeps/fin");
  EXPECT_EQ(sw["counts"]["succeeded"], 1);
  EXPECT_EQ(sw["counts"]["queued"], 1);

  // A repeated 'finished' and re-sent artifact reports, before and after a
  // restart, add nothing.
  EXPECT_EQ(finish(p, 0)["duplicate"], true);
  artifact(p, "hash200", 200);
  open();
  worker("/v1/worker/register",
         {{"worker_id", "w1"}, {"instance", "i1"}, {"cpus", 8}, {"labels", {{"pool", "a"}}}});
  artifact(p, "hash200", 200);
  artifact(p, "hash100", 100);
  EXPECT_EQ(eval_runs("fin").size(), 1u);

  // The eval run is leasable after the restart and carries the command.
  Json l = worker("/v1/worker/lease", {{"worker_id", "w1"}, {"max_runs", 4}});
  ASSERT_EQ(l["runs"].size(), 1u);
  EXPECT_EQ(l["runs"][0]["run_id"], e["id"]);
  EXPECT_EQ(l["runs"][0]["command"], e["command"]);
}

TEST_F(EvalHooks, EveryHookMakesOneEvalPerCheckpoint) {
  int64_t p = submit("every", Json::array({{{"suite", "gsm8k"}, {"on", "every"}}}));
  ASSERT_EQ(lease_and_start(), std::vector<int64_t>{p});
  artifact(p, "h1", 10);
  auto evs = eval_runs("every");
  ASSERT_EQ(evs.size(), 1u) << "created as soon as the checkpoint is recorded";
  EXPECT_EQ(evs[0]["params"]["checkpoint"], "h1");
  EXPECT_EQ(evs[0]["command"], std::string(kExe) + " eval gsm8k --model-path /ck/h1");
  artifact(p, "h2", 20);
  artifact(p, "h1", 10);            // re-sent
  artifact(p, "notckpt", 30, "log");  // not a checkpoint
  EXPECT_EQ(eval_runs("every").size(), 2u);
  open();
  worker("/v1/worker/register", {{"worker_id", "w1"}, {"instance", "i1"}, {"cpus", 8}});
  artifact(p, "h2", 20);
  finish(p, 0);
  evs = eval_runs("every");
  ASSERT_EQ(evs.size(), 2u);
  std::set<std::string> hashes;
  for (auto& e : evs) hashes.insert(e["params"]["checkpoint"].get<std::string>());
  EXPECT_EQ(hashes, (std::set<std::string>{"h1", "h2"}));
  // The producer's audit log says what was scheduled.
  Json pr = user("GET", "/v1/runs/" + std::to_string(p));
  int scheduled = 0;
  for (auto& ev : pr["events"]) scheduled += ev["kind"] == "eval_scheduled";
  EXPECT_EQ(scheduled, 2);
}

// The checkpoint is on the producer's worker: its eval run is pinned there
// (reserved label assay.worker) unless the hook says placement "any".
TEST_F(EvalHooks, EvalRunsStayOnTheWorkerThatHasTheCheckpoint) {
  int64_t p = submit("pin", Json::array({{{"suite", "gsm8k"}, {"on", "every"}},
                                         {{"suite", "ood"}, {"on", "every"}, {"placement", "any"}}}));
  ASSERT_EQ(lease_and_start(), std::vector<int64_t>{p});
  artifact(p, "hp", 10);
  auto evs = eval_runs("pin");
  ASSERT_EQ(evs.size(), 2u);
  for (auto& e : evs) {
    EXPECT_EQ(e["labels"]["pool"], "a") << "the producer's labels are kept";
    if (e["params"]["suite"] == "gsm8k") EXPECT_EQ(e["labels"]["assay.worker"], "w1");
    else EXPECT_FALSE(e["labels"].contains("assay.worker")) << e["labels"];
  }
  // Another worker of the same pool gets only the unpinned one.
  worker("/v1/worker/register",
         {{"worker_id", "w2"}, {"instance", "i2"}, {"cpus", 8}, {"labels", {{"pool", "a"}}}});
  Json l2 = worker("/v1/worker/lease", {{"worker_id", "w2"}, {"max_runs", 8}});
  ASSERT_EQ(l2["runs"].size(), 1u) << l2;
  Json r2 = user("GET", "/v1/runs/" + std::to_string(l2["runs"][0]["run_id"].get<int64_t>()));
  EXPECT_EQ(r2["run"]["params"]["suite"], "ood");
  Json l1 = worker("/v1/worker/lease", {{"worker_id", "w1"}, {"max_runs", 8}});
  ASSERT_EQ(l1["runs"].size(), 1u) << l1;
  Json r1 = user("GET", "/v1/runs/" + std::to_string(l1["runs"][0]["run_id"].get<int64_t>()));
  EXPECT_EQ(r1["run"]["params"]["suite"], "gsm8k");
}

TEST_F(EvalHooks, FailedProducerGetsNoFinalEval) {
  int64_t p = submit("bad", Json::array({{{"suite", "gsm8k"}}}));  // on defaults to final
  ASSERT_EQ(lease_and_start(), std::vector<int64_t>{p});
  artifact(p, "hx", 5);
  EXPECT_EQ(finish(p, 1)["state"], "failed");
  EXPECT_TRUE(eval_runs("bad").empty());
  artifact(p, "hx", 5);  // a late re-send after the failure
  EXPECT_TRUE(eval_runs("bad").empty());
}

TEST_F(EvalHooks, EvalRunMetricsBecomeEvalResultsOfTheProducer) {
  int64_t p = submit("res", Json::array({{{"suite", "gsm8k"}, {"on", "final"}}}));
  ASSERT_EQ(lease_and_start(), std::vector<int64_t>{p});
  artifact(p, "ck1", 7);
  finish(p, 0);
  std::vector<int64_t> evs = lease_and_start();
  ASSERT_EQ(evs.size(), 1u);
  int64_t e = evs[0];
  Json batch = {{"worker_id", "w1"},
                {"attempt", 1},
                {"batch_seq", 0},
                {"points",
                 {{{"key", "gsm8k/exact_match,strict-match"}, {"step", 0}, {"value", 0.5}},
                  {{"key", "gsm8k/exact_match,flexible-extract"}, {"step", 0}, {"value", 0.25}},
                  {{"key", "gsm8k@3.0+abcd1234/exact_match,strict-match"}, {"step", 0}, {"value", 0.75}},
                  {{"key", "gsm8k@3.0+abcd1234/exact_match,strict-match:stderr"}, {"step", 0}, {"value", 0.125}},
                  {{"key", "gsm8k@3.0+abcd1234/exact_match,strict-match:n"}, {"step", 0}, {"value", 12}}}}};
  worker(url(e, "metrics"), batch);
  EXPECT_EQ(query("SELECT COUNT(*) FROM eval_results")["rows"][0][0], 0)
      << "copied only once the eval run succeeds";
  finish(e, 0);
  Json q = query(
      "SELECT suite, metric, filter, value, suite_version, checkpoint_hash, checkpoint_step, "
      "producer_run_id, producer_sweep, eval_run_id FROM eval_summary WHERE suite_version = '1' "
      "ORDER BY filter");
  ASSERT_EQ(q["rows"].size(), 2u) << q.dump();
  Json strict = q["rows"][1];
  EXPECT_EQ(strict, Json({"gsm8k", "exact_match", "strict-match", 0.5, "1", "ck1", 7, p, "res", e}));
  EXPECT_EQ(q["rows"][0][3], 0.25);
  // Versioned keys carry their stderr and n into the same row (eval_key.h).
  Json v = query("SELECT suite_version, filter, value, stderr, n FROM eval_results "
                 "WHERE suite_version != '1'");
  EXPECT_EQ(v["rows"], Json::array({Json::array({"3.0+abcd1234", "strict-match", 0.75, 0.125, 12})}));
  // A metric delivered after 'finished' (a late spool) is copied too.
  batch["batch_seq"] = 1;
  batch["points"] = {{{"key", "gsm8k@3.0/acc"}, {"step", 0}, {"value", 1.0}}};
  worker(url(e, "metrics"), batch);
  Json late = query("SELECT suite_version, filter, value FROM eval_results WHERE metric = 'acc'");
  EXPECT_EQ(late["rows"], Json::array({Json::array({"3.0", "none", 1.0})}));
  // The producer itself (not an eval run) wrote no eval results.
  EXPECT_EQ(query("SELECT COUNT(*) FROM eval_results WHERE run_id = " + std::to_string(p))["rows"][0][0], 0);
}

// args.transcript_from names another run: the eval command reads that run's
// transcript (its 'transcript' artifact, else transcript.jsonl above its
// final checkpoint), and a name that resolves to nothing usable leaves an
// error event on the producer instead of an eval run.
TEST_F(EvalHooks, TranscriptFromNamesAnotherRunsTranscript) {
  // Run A (sweep "alice"): a checkpoint and a transcript artifact. Run C
  // (sweep "carol"): a checkpoint only.
  int64_t a = submit("alice", Json::array());
  int64_t c = submit("carol", Json::array());
  auto started = lease_and_start();
  ASSERT_EQ(started.size(), 2u);
  artifact(a, "ha", 100);
  worker(url(a, "artifacts"), {{"worker_id", "w1"},
                               {"attempt", 1},
                               {"kind", "transcript"},
                               {"path", "/runs/alice/transcript.jsonl"},
                               {"content_hash", "ta"}});
  worker(url(c, "artifacts"), {{"worker_id", "w1"},
                               {"attempt", 1},
                               {"kind", "checkpoint"},
                               {"path", "/runs/carol/final/"},
                               {"content_hash", "hc"},
                               {"step", 50}});
  finish(a, 0);

  // Run B tests its checkpoint against A's transcript (by name), C's (by id,
  // still running: refused), an unknown run, and A's again by id.
  Json hooks = Json::array();
  hooks.push_back({{"suite", "provenance"}, {"on", "final"},
                   {"args", {{"transcript_from", "alice-0000"}, {"reference", "/ck/ref"}}}});
  hooks.push_back({{"suite", "prov-c.json"}, {"on", "final"}, {"args", {{"transcript_from", c}}}});
  hooks.push_back({{"suite", "prov-x.json"}, {"on", "final"}, {"args", {{"transcript_from", "nobody"}}}});
  hooks.push_back({{"suite", "prov-both.json"}, {"on", "final"},
                   {"args", {{"transcript_from", a}, {"transcript", "/t.jsonl"}}}});
  int64_t b = submit("bob", hooks);
  ASSERT_EQ(lease_and_start(), std::vector<int64_t>{b});
  artifact(b, "hb", 30);
  finish(b, 0);
  auto evs = eval_runs("bob");
  ASSERT_EQ(evs.size(), 1u) << Json(evs).dump();
  EXPECT_EQ(evs[0]["command"], std::string(kExe) +
                                   " eval provenance --model-path /ck/hb"
                                   " --transcript /runs/alice/transcript.jsonl --reference /ck/ref");
  EXPECT_EQ(evs[0]["params"]["transcript_from"], a);
  Json pr = user("GET", "/v1/runs/" + std::to_string(b));
  std::vector<std::string> errors;
  std::string scheduled;
  for (auto& ev : pr["events"]) {
    if (ev["kind"] == "eval_hook_error") errors.push_back(ev["detail"].get<std::string>());
    if (ev["kind"] == "eval_scheduled") scheduled = ev["detail"].get<std::string>();
  }
  EXPECT_NE(scheduled.find("with the transcript of run " + std::to_string(a)), std::string::npos)
      << scheduled;
  ASSERT_EQ(errors.size(), 3u) << pr["events"].dump();
  auto has = [&](const std::string& what) {
    for (auto& e : errors)
      if (e.find(what) != std::string::npos) return true;
    return false;
  };
  EXPECT_TRUE(has("prov-c.json (on final) on checkpoint hb not scheduled: transcript_from: run " +
                  std::to_string(c) + " (carol-0000) is running"))
      << Json(errors).dump();
  EXPECT_TRUE(has("transcript_from \"nobody\": no run has that name")) << Json(errors).dump();
  EXPECT_TRUE(has("give either transcript or transcript_from")) << Json(errors).dump();

  // Once C has succeeded, a hook naming it by id gets the transcript beside
  // its final checkpoint's directory (C reported no transcript artifact).
  finish(c, 0);
  int64_t d = submit("dave", Json::array({{{"suite", "provenance"}, {"on", "every"},
                                           {"args", {{"transcript_from", std::to_string(c)}}}}}));
  const auto leased = lease_and_start();  // d and the eval run of b
  ASSERT_EQ(std::count(leased.begin(), leased.end(), d), 1) << Json(leased).dump();
  artifact(d, "hd", 5);
  auto dv = eval_runs("dave");
  ASSERT_EQ(dv.size(), 1u);
  EXPECT_EQ(dv[0]["command"], std::string(kExe) +
                                  " eval provenance --model-path /ck/hd"
                                  " --transcript /runs/carol/transcript.jsonl");
  EXPECT_EQ(dv[0]["params"]["transcript_from"], c);
}

// A name from another sweep is found among all runs (the producer's own
// sweep has no run of that name), with a final hook.
TEST_F(EvalHooks, TranscriptFromFindsARunOfAnotherSweepByName) {
  int64_t x = submit("earlier", Json::array());
  ASSERT_EQ(lease_and_start(), std::vector<int64_t>{x});
  artifact(x, "hx", 9);
  finish(x, 0);
  int64_t p = submit("later", Json::array({{{"suite", "provenance"},
                                            {"args", {{"transcript_from", "earlier-0000"}}}}}));
  ASSERT_EQ(lease_and_start(), std::vector<int64_t>{p});
  artifact(p, "hp", 1);
  finish(p, 0);
  auto evs = eval_runs("later");
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0]["params"]["transcript_from"], x);
  EXPECT_EQ(evs[0]["command"], std::string(kExe) + " eval provenance --model-path /ck/hp"
                                                   " --transcript /ck/transcript.jsonl");
}
