// Hostile spec files and metric lines: nesting far past the depth limit,
// numbers beyond what the fields can hold, duplicate keys. Each is an error
// naming the file, the place, what was expected and what was found.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "assay/specs.h"
#include "support/temp_dir.h"

namespace fs = std::filesystem;
using assay::schemas::Json;

namespace {

class SpecLimits : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::string& text) {
    const std::string p = dir_.file(name);
    std::ofstream(p) << text;
    return p;
  }
  assay::testing::TempDir dir_{"spec-limits"};
};

std::string deep_array(size_t n) { return std::string(n, '[') + std::string(n, ']'); }

TEST_F(SpecLimits, HundredThousandDeepLabelsAreRefusedNamingTheLimit) {
  const std::string p =
      write("deep.json", R"({"name": "s", "command": "x", "labels": )" + deep_array(100000) + "}");
  auto r = assay::schemas::load_sweep_spec(p);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            p + ": line 1 column 104: JSON nested deeper than the limit of 64 levels");
}

TEST_F(SpecLimits, FiftyThousandDeepEvalArgsAreRefused) {
  std::string args;
  for (int i = 0; i < 50000; ++i) args += "{\"a\": ";
  args += "1" + std::string(50000, '}');
  const std::string p = write("args.json", R"({"name": "s", "command": "x", "evals": [{"suite": "g", "args": )" +
                                               args + "}]}");
  auto r = assay::schemas::load_sweep_spec(p);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("limit of 64 levels"), std::string::npos)
      << r.status().message();
}

TEST_F(SpecLimits, TimeoutBeyondADoubleIsAnErrorNotAnAbort) {
  const std::string p = write("t.json", "{\"name\": \"s\", \"command\": \"x\",\n \"timeout\": 1e999}");
  auto r = assay::schemas::load_sweep_spec(p);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            p + ": line 2 column 13: expected a number within the range of a double, got 1e999");
}

TEST_F(SpecLimits, DuplicateKeysAreRefused) {
  const std::string p = write("dup.json", R"({"name": "s", "command": "x", "resources": {"gpus": 1, "gpus": 2}})");
  auto r = assay::schemas::load_sweep_spec(p);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), p + R"(: /resources/gpus: duplicate key "gpus")");
}

TEST_F(SpecLimits, IntDimensionBeyondTwoToThe53IsRefused) {
  Json doc = Json::parse(
      R"({"name":"s","command":"x {n}","space":{"n":{"type":"int","low":0,"high":1e19}}})");
  EXPECT_EQ(assay::schemas::parse_sweep_spec(doc, "s.json").status().message(),
            "s.json: /space/n/high: expected an integer in -9007199254740991..9007199254740991, "
            "got 1e+19");
}

TEST_F(SpecLimits, UniformOverAnInfiniteSpanIsRefused) {
  Json doc = Json::parse(
      R"({"name":"s","command":"x {u}","space":{"u":{"type":"uniform","low":-1e308,"high":1e308}}})");
  EXPECT_EQ(assay::schemas::parse_sweep_spec(doc, "s.json").status().message(),
            "s.json: /space/u/high: expected high - low to be a finite number, got low -1e+308 "
            "and high 1e+308");
}

TEST_F(SpecLimits, HugeSeedsAndTimeoutsAreRefused) {
  Json doc = Json::parse(R"({"name":"s","command":"x {seed}","seeds":[1, 1e20]})");
  EXPECT_EQ(assay::schemas::parse_sweep_spec(doc, "s.json").status().message(),
            "s.json: /seeds/1: expected an integer in -9007199254740991..9007199254740991, got "
            "1e+20");
  doc = Json::parse(R"({"command":"x","timeout":1e300})");
  EXPECT_EQ(assay::schemas::parse_run_spec(doc, "r.json").status().message(),
            "r.json: /timeout: expected a number > 0 and <= 1000000000, got 1e+300");
}

TEST_F(SpecLimits, MetricLines) {
  // A step beyond 2^53 would have become INT64_MIN.
  auto big = assay::schemas::parse_metric_line(R"({"step": 1e20, "metrics": {"loss": 1}})");
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("/step: expected an integer in 0..9007199254740991"),
            std::string::npos)
      << big.status().message();
  auto deep = assay::schemas::parse_metric_line(deep_array(100000));
  ASSERT_FALSE(deep.ok());
  EXPECT_EQ(deep.status().message(),
            "metric line: line 1 column 65: JSON nested deeper than the limit of 64 levels");
  auto dup = assay::schemas::parse_metric_line(R"({"step": 1, "metrics": {"loss": 1, "loss": 2}})");
  EXPECT_EQ(dup.status().message(), R"(metric line: /metrics/loss: duplicate key "loss")");
  auto ok = assay::schemas::parse_metric_line(R"({"step": 9007199254740991, "metrics": {"loss": 1}})");
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  EXPECT_EQ(ok->step, 9007199254740991);
}

}  // namespace

namespace {

TEST(MetricLineNames, ControlCharactersAreRefusedNamingTheKey) {
  auto r = assay::schemas::parse_metric_line(R"({"step": 1, "metrics": {"loss\u0000x": 1, "acc": 2}})");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            R"(metric line: /metrics: expected metric names without control characters, got "loss\u0000x")");
  EXPECT_FALSE(assay::schemas::parse_metric_line(R"({"step": 1, "metrics": {"a\tb": 1}})").ok());
  EXPECT_TRUE(assay::schemas::parse_metric_line(R"({"step": 1, "metrics": {"perplexité": 1}})").ok());
}

}  // namespace

namespace {

// std::regex recurses per character: a 200 KB dimension name used to
// overflow the stack inside the "pattern" check.
TEST(SpecPatterns, HugeStringsAreRefusedWithoutRunningTheRegex) {
  Json doc = {{"name", "s"}, {"command", "x"},
              {"space", {{std::string(200000, 'a'), {{"type", "grid"}, {"values", {1}}}}}}};
  auto r = assay::schemas::parse_sweep_spec(doc, "s.json");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("expected a string of at most 4096 bytes matching"),
            std::string::npos)
      << r.status().message().substr(0, 300);
}

}  // namespace
