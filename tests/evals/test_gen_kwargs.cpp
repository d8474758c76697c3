// lm-eval's --gen_kwargs syntax parsed into sampling parameters.
#include <gtest/gtest.h>

#include "assay/evals_backend.h"

namespace assay::evals {
namespace {

TEST(EvalsGenKwargs, ParsesLmEvalSyntax) {
  auto g = parse_gen_kwargs("temperature=0.7,top_p=0.9,do_sample=True,seed=1,max_gen_toks=64");
  ASSERT_TRUE(g.ok()) << g.status().to_string();
  EXPECT_DOUBLE_EQ(g->sampling.temperature, 0.7);
  EXPECT_DOUBLE_EQ(g->sampling.top_p, 0.9);
  EXPECT_EQ(g->sampling.top_k, 0);
  ASSERT_TRUE(g->sampling.seed.has_value());
  EXPECT_EQ(*g->sampling.seed, 1u);
  EXPECT_EQ(g->max_gen_toks, 64);
  EXPECT_FALSE(g->until.has_value());
  // Values keep the types literal parsing gives them, in the order given.
  ASSERT_EQ(g->given.size(), 5u);
  EXPECT_EQ(g->given[0].first, "temperature");
  EXPECT_EQ(std::get<double>(g->given[0].second), 0.7);
  EXPECT_EQ(std::get<bool>(g->given[2].second), true);
  EXPECT_EQ(std::get<int64_t>(g->given[3].second), 1);
}

TEST(EvalsGenKwargs, LiteralTypesAndGreedy) {
  // Empty text and empty pieces: defaults (greedy).
  auto e = parse_gen_kwargs("");
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e->sampling.greedy());
  EXPECT_TRUE(e->given.empty());
  EXPECT_DOUBLE_EQ(parse_gen_kwargs(",temperature=0.5,,").value().sampling.temperature, 0.5);
  // do_sample=False forces greedy whatever the temperature; case-insensitive bools.
  auto f = parse_gen_kwargs("temperature=0.8,do_sample=false").value();
  EXPECT_TRUE(f.sampling.greedy());
  // do_sample=True alone samples at temperature 1 (transformers' default).
  EXPECT_DOUBLE_EQ(parse_gen_kwargs("do_sample=TRUE").value().sampling.temperature, 1.0);
  EXPECT_FALSE(parse_gen_kwargs("do_sample=True,temperature=0").ok());
  // Integers are numbers too; scientific notation is a float; seed=None is no seed.
  auto n = parse_gen_kwargs("temperature=1,top_k=50,top_p=5e-1,seed=None").value();
  EXPECT_DOUBLE_EQ(n.sampling.temperature, 1.0);
  EXPECT_EQ(n.sampling.top_k, 50);
  EXPECT_DOUBLE_EQ(n.sampling.top_p, 0.5);
  EXPECT_FALSE(n.sampling.seed.has_value());
  EXPECT_TRUE(std::holds_alternative<std::monostate>(n.given[3].second));
  // A value may hold "="; quoted values stay strings.
  auto u = parse_gen_kwargs("until=a=b").value();
  ASSERT_TRUE(u.until.has_value());
  EXPECT_EQ(u.until->at(0), "a=b");
  EXPECT_EQ(parse_gen_kwargs("until='42'").value().until->at(0), "42");
  // The last of a repeated key wins, as in lm-eval's dict.
  EXPECT_DOUBLE_EQ(parse_gen_kwargs("temperature=0.2,temperature=0.4").value().sampling.temperature, 0.4);
}

TEST(EvalsGenKwargs, ErrorsNameTheKey) {
  auto unknown = parse_gen_kwargs("temperature=0.5,beam_size=4");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), Code::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("unknown key \"beam_size\""), std::string::npos)
      << unknown.status().message();
  EXPECT_NE(unknown.status().message().find("temperature, top_p, top_k, seed, do_sample, max_gen_toks, until"),
            std::string::npos) << unknown.status().message();
  auto typed = parse_gen_kwargs("temperature=hot");
  ASSERT_FALSE(typed.ok());
  EXPECT_NE(typed.status().message().find("temperature=\"hot\": expected a number >= 0"), std::string::npos)
      << typed.status().message();
  EXPECT_FALSE(parse_gen_kwargs("temperature=-1").ok());
  EXPECT_FALSE(parse_gen_kwargs("temperature='0.7'").ok());  // quoted: a string
  EXPECT_FALSE(parse_gen_kwargs("top_p=0").ok());
  EXPECT_FALSE(parse_gen_kwargs("top_p=1.5").ok());
  EXPECT_FALSE(parse_gen_kwargs("top_k=2.5").ok());
  EXPECT_FALSE(parse_gen_kwargs("seed=-3").ok());
  EXPECT_FALSE(parse_gen_kwargs("max_gen_toks=0").ok());
  EXPECT_FALSE(parse_gen_kwargs("do_sample=1").ok());
  auto no_eq = parse_gen_kwargs("temperature");
  ASSERT_FALSE(no_eq.ok());
  EXPECT_NE(no_eq.status().message().find("expected key=value"), std::string::npos);
}

}  // namespace
}  // namespace assay::evals
