// Spec checks that used to be quadratic in the size of the document. A sweep
// whose seeds held 5,000 repeats took about a minute to check (every pair
// compared, every pair reported) and stalled the coordinator's io thread.
// Each test here finishes in milliseconds now; ctest's timeout catches a
// regression, and the verdicts below pin down what is reported.
#include <gtest/gtest.h>

#include <string>

#include "assay/specs.h"
#include "assay/validate.h"

using assay::schemas::Json;

namespace {

Json sweep_with_seeds(const Json& seeds) {
  return {{"name", "s"}, {"command", "x {seed}"}, {"seeds", seeds}};
}

TEST(SpecLinear, FiveThousandRepeatedSeedsAreOneErrorPerRepeat) {
  Json seeds = Json::array();
  for (int i = 0; i < 5000; ++i) seeds.push_back(7);
  auto r = assay::schemas::parse_sweep_spec(sweep_with_seeds(seeds), "dup.json");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "dup.json: /seeds/1: expected unique items, got a repeat of item 0 7 (and 4998 more)");
}

TEST(SpecLinear, RepeatsAreReportedAgainstTheirFirstOccurrence) {
  auto r = assay::schemas::parse_sweep_spec(sweep_with_seeds({1, 2, 3, 2}), "s.json");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "s.json: /seeds/3: expected unique items, got a repeat of item 1 2");
  // JSON Schema compares numbers by value: 1 and 1.0 are the same seed.
  r = assay::schemas::parse_sweep_spec(sweep_with_seeds({1, 1.0}), "s.json");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "s.json: /seeds/1: expected unique items, got a repeat of item 0 1.0");
  EXPECT_TRUE(assay::schemas::parse_sweep_spec(sweep_with_seeds({-1, 0, 1, 5000}), "s.json").ok());
}

TEST(SpecLinear, ManyDistinctSeedsPass) {
  Json seeds = Json::array();
  for (int i = 0; i < 200000; ++i) seeds.push_back(i);
  auto r = assay::schemas::parse_sweep_spec(sweep_with_seeds(seeds), "s.json");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->seeds.size(), 200000u);
}

TEST(SpecLinear, ErrorCountIsExactBeyondTheKeptErrors) {
  Json seeds = Json::array();
  for (int i = 0; i < 1000; ++i) seeds.push_back("x" + std::to_string(i));
  Json schema = Json::parse(R"({"type": "array", "items": {"type": "integer"}})");
  auto rep = assay::schemas::validate(schema, seeds);
  ASSERT_TRUE(rep.ok());
  EXPECT_EQ(rep->total, 1000u);
  ASSERT_FALSE(rep->errors.empty());
  EXPECT_EQ(rep->errors.front().pointer, "/0");
  EXPECT_EQ(rep->errors.front().message, "expected an integer, got \"x0\"");
}

// A command of 200,000 '{' and one '}' was rescanned from every brace.
TEST(SpecLinear, CommandOfManyBracesIsScannedOnce) {
  Json doc = {{"name", "s"}, {"command", std::string(200000, '{') + "}"}};
  EXPECT_TRUE(assay::schemas::parse_sweep_spec(doc, "s.json").ok());
  doc["command"] = std::string(200000, '{') + "nope} {seed}";
  auto r = assay::schemas::parse_sweep_spec(doc, "s.json");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "s.json: /command: placeholder {nope} names no dimension of /space; expected one of seed");
}

// Errors under a 300 KB dimension name: the pointer shortens the name, and a
// wrong value is shown only as far as the message shows it.
TEST(SpecLinear, LongNamesAndValuesAreShortenedInErrors) {
  const std::string key(300000, 'a');
  Json values = Json::array();
  for (int i = 0; i < 20000; ++i) values.push_back(Json::object({{"k", std::string(100, 'v')}}));
  Json doc = {{"name", "s"}, {"command", "x"},
              {"space", {{key, {{"type", "grid"}, {"values", values}}}}}};
  auto r = assay::schemas::parse_sweep_spec(doc, "s.json");
  ASSERT_FALSE(r.ok());
  const std::string& m = r.status().message();
  EXPECT_LT(m.size(), 800u) << m.substr(0, 800);
  EXPECT_NE(m.find("s.json: /space/" + std::string(200, 'a') + "...(300000 bytes)"), std::string::npos)
      << m.substr(0, 800);
}

TEST(SpecLinear, ShownValuesAreCutAtACharacterBoundary) {
  // 40 two-byte characters: a cut at byte 77 would split one.
  std::string name = "-";
  for (int i = 0; i < 40; ++i) name += "\xC3\xA9";
  Json doc = {{"name", name}, {"command", "x"}};
  auto r = assay::schemas::parse_sweep_spec(doc, "s.json");
  ASSERT_FALSE(r.ok());
  // The message is valid UTF-8: it can be written into a JSON error reply.
  EXPECT_NO_THROW((void)Json(r.status().message()).dump()) << r.status().message();
}

}  // namespace
