// Hostile request bodies through the real handler: nesting far past the depth
// limit, duplicate keys, metric names with control characters, numbers past
// what their fields can hold. Each is a 400 that names the problem, and the
// coordinator keeps serving.
#include <gtest/gtest.h>

#include <string>

#include <nlohmann/json.hpp>

#include "assay/coordinator.h"
#include "handler_fixture.h"

using namespace assay::coordinator;
using Json = nlohmann::json;

namespace {

using test_util::kUser;
using test_util::kWorker;

class Hardening : public test_util::HandlerTest {
 protected:
  void configure(Options& o) override { o.max_body_bytes = 4 << 20; }
  Json worker(const std::string& m, const std::string& t, const Json& b = nullptr, int st = 200) {
    return call(m, t, b, kWorker, st);
  }
  // A one-run sweep leased to worker w1; returns the run id.
  int64_t leased_run() {
    Json sub = user("POST", "/v1/sweeps",
                    {{"name", "h"}, {"command", "true"}}, 201);
    worker("POST", "/v1/worker/register", {{"worker_id", "w1"}, {"instance", "i1"}, {"cpus", 4}});
    Json l = worker("POST", "/v1/worker/lease", {{"worker_id", "w1"}, {"max_runs", 1}});
    EXPECT_EQ(l["runs"].size(), 1u) << l;
    return sub["runs"][0].get<int64_t>();
  }
  // Expects a 400 whose message contains `needle`.
  void expect_400(const Response& r, const std::string& needle,
                  const std::string& code = "bad_request") {
    EXPECT_EQ(r.status, 400) << r.body.substr(0, 300);
    Json j = Json::parse(r.body, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << r.body.substr(0, 300);
    EXPECT_EQ(j["error"]["code"], code);
    EXPECT_NE(j["error"]["message"].get<std::string>().find(needle), std::string::npos)
        << j["error"]["message"];
  }
};

std::string brackets(size_t n) { return std::string(n, '[') + std::string(n, ']'); }

}  // namespace

TEST_F(Hardening, DeeplyNestedBodiesAreRefusedNamingTheDepthLimit) {
  const std::string limit = "JSON nested deeper than the limit of 64 levels";
  expect_400(raw("POST", "/v1/query", brackets(100000), kUser), limit);
  expect_400(raw("POST", "/v1/worker/heartbeat", brackets(100000), kWorker), limit);
  expect_400(raw("POST", "/v1/worker/runs/1/metrics", brackets(100000), kWorker), limit);
  std::string labels;
  for (int i = 0; i < 50000; ++i) labels += "{\"a\":";
  labels += "\"x\"" + std::string(50000, '}');
  expect_400(raw("POST", "/v1/sweeps",
                 R"({"name":"deep","command":"true","labels":)" + labels + "}", kUser),
             "request body: line 1 column ");
  // Still serving.
  user("GET", "/v1/runs");
}

TEST_F(Hardening, DuplicateKeysInABodyAreRefused) {
  expect_400(raw("POST", "/v1/sweeps", R"({"name":"a","command":"true","name":"b"})", kUser),
             R"(request body: /name: duplicate key "name")");
}

TEST_F(Hardening, MetricKeyWithControlCharactersIsA400AndLaterBatchesLand) {
  int64_t id = leased_run();
  const std::string url = "/v1/worker/runs/" + std::to_string(id) + "/metrics";
  // The body as a worker would send it: the NUL escaped as \u0000.
  const std::string body =
      R"({"worker_id":"w1","attempt":1,"batch_seq":0,"points":[{"key":"loss\u0000x","step":1,"value":1}]})";
  expect_400(raw("POST", url, body, kWorker),
             R"(points[0].key: expected a name without control characters, got "loss\u0000x")");
  expect_400(raw("POST", url, body, kWorker), "control characters");  // every time, not a 500
  Json ok = worker("POST", url,
                   {{"worker_id", "w1"}, {"attempt", 1}, {"batch_seq", 1},
                    {"points", {{{"key", "loss"}, {"step", 1}, {"value", 2.0}}}}});
  EXPECT_EQ(ok["accepted"], 1);
}

TEST_F(Hardening, MetricStepsBeyondTwoToThe53AreRefused) {
  int64_t id = leased_run();
  const std::string url = "/v1/worker/runs/" + std::to_string(id) + "/metrics";
  expect_400(raw("POST", url,
                 R"({"worker_id":"w1","attempt":1,"points":[{"key":"loss","step":18446744073709551615,"value":1}]})",
                 kWorker),
             "field 'step': expected an integer in the 64-bit signed range");
  expect_400(raw("POST", url,
                 R"({"worker_id":"w1","attempt":1,"points":[{"key":"loss","step":1e20,"value":1}]})",
                 kWorker),
             "field 'step': expected an integer");
  expect_400(raw("POST", url,
                 R"({"worker_id":"w1","attempt":1,"points":[{"key":"loss","step":9007199254740993,"value":1}]})",
                 kWorker),
             "points[0].step: expected an integer in -9007199254740991..9007199254740991");
}

TEST_F(Hardening, SweepDimensionsThatWouldDrawGarbageAreRefused) {
  expect_400(raw("POST", "/v1/sweeps",
                 R"({"name":"u","command":"x {u}","space":{"u":{"type":"uniform","low":-1e308,"high":1e308}}})",
                 kUser),
             "/space/u/high: expected high - low to be a finite number", "invalid_spec");
  expect_400(raw("POST", "/v1/sweeps",
                 R"({"name":"i","command":"x {n}","space":{"n":{"type":"int","low":0,"high":1e19}}})",
                 kUser),
             "/space/n/high: expected an integer in -9007199254740991..9007199254740991, got 1e+19",
             "invalid_spec");
  expect_400(raw("POST", "/v1/sweeps", R"({"name":"t","command":"x","timeout":1e999})", kUser),
             "expected a number within the range of a double, got 1e999");
}

// A 200 KB dimension name used to overflow the stack in std::regex.
TEST_F(Hardening, HugeDimensionNameIsA400) {
  Json sweep = {{"name", "big"}, {"command", "x"},
                {"space", {{std::string(200000, 'a'), {{"type", "grid"}, {"values", {1}}}}}}};
  expect_400(raw("POST", "/v1/sweeps", sweep.dump(), kUser),
             "expected a string of at most 4096 bytes matching", "invalid_spec");
  user("GET", "/v1/runs");
}
