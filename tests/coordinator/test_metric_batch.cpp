// The metric-batch fast path: for every body it accepts, the same values as
// the general JSON path; every body outside its subset is left to that path.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "metric_batch.h"

using assay::coordinator::MetricBatch;
using assay::coordinator::parse_metric_batch_fast;
using Json = nlohmann::json;

namespace {

// What the general path makes of a well-formed body.
MetricBatch via_json(const std::string& body) {
  Json j = Json::parse(body);
  MetricBatch b;
  b.worker_id = j["worker_id"];
  b.attempt = j["attempt"].get<int64_t>();
  if (j.contains("batch_seq") && !j["batch_seq"].is_null()) b.batch_seq = j["batch_seq"].get<int64_t>();
  for (auto& p : j["points"]) {
    MetricBatch::Point q;
    q.key = p["key"];
    q.step = p["step"];
    q.value = p["value"].is_null() ? NAN : p["value"].get<double>();
    if (p.contains("time") && !p["time"].is_null()) q.time = p["time"].get<double>();
    b.points.push_back(q);
  }
  return b;
}

void expect_same(const MetricBatch& a, const MetricBatch& b) {
  EXPECT_EQ(a.worker_id, b.worker_id);
  EXPECT_EQ(a.attempt, b.attempt);
  EXPECT_EQ(a.batch_seq, b.batch_seq);
  ASSERT_EQ(a.points.size(), b.points.size());
  for (size_t i = 0; i < a.points.size(); ++i) {
    EXPECT_EQ(a.points[i].key, b.points[i].key) << i;
    EXPECT_EQ(a.points[i].step, b.points[i].step) << i;
    if (std::isnan(b.points[i].value)) EXPECT_TRUE(std::isnan(a.points[i].value)) << i;
    else EXPECT_EQ(a.points[i].value, b.points[i].value) << i;  // bit-equal: both round correctly
    EXPECT_EQ(a.points[i].time, b.points[i].time) << i;
  }
}

}  // namespace

TEST(MetricBatchFast, AcceptsTheUsualShapeWithTheSameValues) {
  const std::string body =
      R"({"worker_id":"gpu-1","attempt":2,"batch_seq":7,"points":[)"
      R"({"key":"loss","step":0,"value":2.5,"time":1700000000.25},)"
      R"({ "step" : -3 , "value" : null , "key" : "eval/acc,strict" },)"
      R"({"key":"lr","step":9007199254740993,"value":-1.5e-07,"time":null}]})";
  MetricBatch fast;
  ASSERT_TRUE(parse_metric_batch_fast(body, &fast));
  expect_same(fast, via_json(body));
  EXPECT_EQ(fast.points[2].step, 9007199254740993);  // beyond double precision: kept exactly
  MetricBatch empty;
  ASSERT_TRUE(parse_metric_batch_fast(R"({"points":[],"attempt":1,"worker_id":"w","batch_seq":null})", &empty));
  EXPECT_FALSE(empty.batch_seq.has_value());
  EXPECT_TRUE(empty.points.empty());
}

TEST(MetricBatchFast, LeavesEverythingElseToTheGeneralPath) {
  const char* refused[] = {
      R"({"worker_id":"w","attempt":1,"points":[{"key":"a\"b","step":1,"value":1}]})",  // escape
      R"({"worker_id":"w","attempt":1,"points":[{"key":"é","step":1,"value":1}]})",     // non-ASCII
      R"({"worker_id":"w","attempt":1,"points":[{"key":"a","step":1.5,"value":1}]})",   // fraction
      R"({"worker_id":"w","attempt":1,"points":[{"key":"a","step":1e3,"value":1}]})",   // exponent
      R"({"worker_id":"w","attempt":1,"points":[{"key":"a","step":1,"value":NaN}]})",
      R"({"worker_id":"w","attempt":1,"points":[{"key":"a","step":1,"value":Infinity}]})",
      R"({"worker_id":"w","attempt":1,"points":[{"key":"a","step":1,"value":"1"}]})",
      R"({"worker_id":"w","attempt":1,"points":[{"key":"a","step":1,"value":true}]})",
      R"({"worker_id":"w","attempt":1,"points":[{"key":"a","step":1}]})",               // no value
      R"({"worker_id":"w","attempt":1,"points":[{"key":"a","step":1,"value":1,"x":0}]})",
      R"({"worker_id":"w","attempt":1,"points":[{"key":"a","step":1,"value":1e999}]})", // overflow
      R"({"worker_id":"w","attempt":1,"points":[{"key":"a","step":+1,"value":1}]})",
      // Numbers JSON forbids (found by fuzz_metric_line): leading zeros, a
      // bare "." on either side.
      R"({"worker_id":"w","attempt":1,"points":[{"key":"a","step":0001,"value":1}]})",
      R"({"worker_id":"w","attempt":1,"points":[{"key":"a","step":1,"value":1.}]})",
      R"({"worker_id":"w","attempt":1,"points":[{"key":"a","step":1,"value":-.5}]})",
      R"({"worker_id":"w","attempt":1,"points":[{"key":"a","step":1,"value":01.5}]})",
      R"({"worker_id":"w","attempt":1,"points":[{"key":"a","step":1,"value":1e}]})",
      R"({"worker_id":"w","attempt":1,"points":[]} x)",                                  // trailing
      R"({"worker_id":"w","attempt":1,"points":[)",                                      // truncated
      R"({"worker_id":"w","points":[]})",                                                // no attempt
      R"({"attempt":1,"points":[]})",                                                    // no worker
      R"({"worker_id":"w","attempt":1})",                                                // no points
      R"({"worker_id":"w","attempt":1,"points":[],"extra":1})",
      R"({"worker_id":"w","attempt":1,"points":[1,2]})",
      R"([1,2,3])",
      "",
  };
  for (const char* body : refused) {
    MetricBatch b;
    EXPECT_FALSE(parse_metric_batch_fast(body, &b)) << body;
  }
}

// Random well-formed batches with random spacing: the fast path accepts each
// and agrees with the JSON library on every value.
TEST(MetricBatchFast, AgreesWithTheJsonLibraryOnRandomBatches) {
  std::mt19937_64 rng(42);
  const char* spaces[] = {"", " ", "\n", "\t ", "\r\n  "};
  auto sp = [&] { return std::string(spaces[rng() % 5]); };
  for (int round = 0; round < 200; ++round) {
    std::string body = "{" + sp() + "\"worker_id\"" + sp() + ":" + sp() + "\"w-" +
                       std::to_string(rng() % 100) + "\"," + sp() + "\"attempt\":" +
                       std::to_string(1 + rng() % 5) + ",\"points\":" + sp() + "[";
    const int n = static_cast<int>(rng() % 20);
    for (int i = 0; i < n; ++i) {
      Json v = std::ldexp(static_cast<double>(static_cast<int64_t>(rng())) , -static_cast<int>(rng() % 80));
      if (rng() % 10 == 0) v = nullptr;
      body += (i ? "," : "") + sp() + "{\"key\":\"k" + std::to_string(rng() % 7) + "\"," + sp() +
              "\"step\":" + std::to_string(static_cast<int64_t>(rng() % 2000000) - 1000) +
              ",\"value\":" + sp() + v.dump() + (rng() % 2 ? ",\"time\":" + Json(1.7e9 + (rng() % 1000) / 7.0).dump() : "") +
              sp() + "}";
    }
    body += "]" + sp() + (rng() % 2 ? ",\"batch_seq\":" + std::to_string(rng() % 1000) : "") + "}" + sp();
    MetricBatch fast;
    ASSERT_TRUE(parse_metric_batch_fast(body, &fast)) << body;
    expect_same(fast, via_json(body));
  }
}
