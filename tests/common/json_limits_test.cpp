// parse_json: the depth limit, duplicate keys and out-of-range numbers, with
// errors that name the source and the place.
#include <gtest/gtest.h>

#include <string>

#include "assay/json_limits.h"

using assay::parse_json;

namespace {

std::string nested(size_t n, char open = '[', char close = ']') {
  return std::string(n, open) + std::string(n, close);
}

TEST(ParseJson, AcceptsOrdinaryDocuments) {
  auto j = parse_json(R"( {"a": [1, 2.5, "x", null, true, {"b": {}}], "c": -3} )", "doc");
  ASSERT_TRUE(j.ok()) << j.status().to_string();
  EXPECT_EQ((*j)["a"][1], 2.5);
  EXPECT_EQ((*j)["a"][5]["b"], nlohmann::json::object());
  EXPECT_EQ((*j)["c"], -3);
  auto top = parse_json("7", "doc");
  ASSERT_TRUE(top.ok());
  EXPECT_EQ(*top, 7);
}

TEST(ParseJson, DepthAtTheLimitIsFineOneMoreIsRefused) {
  EXPECT_TRUE(parse_json(nested(64), "doc").ok());
  auto r = parse_json(nested(65), "doc");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), assay::Code::kInvalidArgument);
  EXPECT_EQ(r.status().message(),
            "doc: line 1 column 65: JSON nested deeper than the limit of 64 levels");
}

TEST(ParseJson, HundredThousandLevelsAreRefusedWithoutCrashing) {
  for (auto [o, c] : {std::pair{'[', ']'}, std::pair{'{', '}'}}) {
    std::string text = o == '[' ? nested(100000) : std::string();
    if (o == '{') {
      for (int i = 0; i < 100000; ++i) text += "{\"a\":";
      text += "1" + std::string(100000, '}');
    }
    auto r = parse_json(text, "request body");
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("request body: line 1 column "), std::string::npos)
        << r.status().message();
    EXPECT_NE(r.status().message().find("limit of 64 levels"), std::string::npos);
  }
  // Brackets inside strings do not count.
  auto s = parse_json("{\"x\": \"" + std::string(10000, '[') + "\"}", "doc");
  EXPECT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_FALSE(assay::json_depth_exceeded_at("[\"[[[\\\"[[[\"]", 1).has_value());
  EXPECT_EQ(assay::json_depth_exceeded_at("[[", 1), 1u);
}

TEST(ParseJson, DuplicateKeysAreRefusedWithTheirPointer) {
  auto r = parse_json(R"({"a": 1, "a": 2})", "spec.json");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), R"(spec.json: /a: duplicate key "a")");
  auto deep = parse_json(R"({"labels": {"x": "1"}, "evals": [{"args": {}}, {"args": {"k": 1, "k": 1}}]})",
                         "spec.json");
  ASSERT_FALSE(deep.ok());
  EXPECT_EQ(deep.status().message(), R"(spec.json: /evals/1/args/k: duplicate key "k")");
  // The same key in different objects is fine.
  EXPECT_TRUE(parse_json(R"([{"a": 1}, {"a": 2}])", "doc").ok());
}

TEST(ParseJson, NumbersBeyondADoubleAndSyntaxErrorsNameThePlace) {
  auto big = parse_json("{\n  \"timeout\": 1e999\n}", "sweep.json");
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("sweep.json: line 2"), std::string::npos)
      << big.status().message();
  EXPECT_NE(big.status().message().find("within the range of a double, got 1e999"),
            std::string::npos)
      << big.status().message();
  auto bad = parse_json("{\n  \"a\": oops\n}", "f.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("f.json: line 2 column"), std::string::npos)
      << bad.status().message();
  EXPECT_NE(bad.status().message().find("not valid JSON: syntax error"), std::string::npos);
  EXPECT_FALSE(parse_json("", "empty").ok());
  EXPECT_FALSE(parse_json("{} {}", "two").ok());
}

}  // namespace
