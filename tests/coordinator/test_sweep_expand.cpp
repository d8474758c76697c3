// Sweep expansion: grid products, seeded random draws, replicates, placeholders.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "assay/specs.h"
#include "assay/sweep_expand.h"

using assay::coordinator::expand_sweep;
using assay::coordinator::render_command;
using Json = nlohmann::json;

namespace {

assay::schemas::SweepSpec parse(const Json& doc) {
  auto s = assay::schemas::parse_sweep_spec(doc, "test");
  EXPECT_TRUE(s.ok()) << s.status().to_string();
  return s.value();
}

}  // namespace

TEST(SweepExpand, GridIsCartesianProductLastDimensionFastest) {
  auto spec = parse({{"name", "g"},
                     {"command", "train --lr {lr} --bs {bs}"},
                     {"space",
                      {{"lr", {{"type", "grid"}, {"values", {0.1, 0.01, 0.001}}}},
                       {"bs", {{"type", "grid"}, {"values", {16, 32}}}}}}});
  auto runs = expand_sweep(spec);
  ASSERT_TRUE(runs.ok()) << runs.status().to_string();
  ASSERT_EQ(runs->size(), 6u);
  // Dimensions sorted by name: bs, lr; lr varies fastest.
  EXPECT_EQ((*runs)[0].command, "train --lr 0.1 --bs 16");
  EXPECT_EQ((*runs)[1].command, "train --lr 0.01 --bs 16");
  EXPECT_EQ((*runs)[3].command, "train --lr 0.1 --bs 32");
  EXPECT_EQ((*runs)[5].params, (Json{{"bs", 32}, {"lr", 0.001}}));
  EXPECT_EQ((*runs)[5].name, "g-0005");
  std::set<std::string> distinct;
  for (auto& r : *runs) distinct.insert(r.params.dump());
  EXPECT_EQ(distinct.size(), 6u);
}

TEST(SweepExpand, RandomDrawsAreDeterministicInRangeAndSeedDependent) {
  Json doc = {{"name", "r"},
              {"command", "t {lr} {wd} {opt} {layers}"},
              {"samples", 50},
              {"seed", 7},
              {"space",
               {{"lr", {{"type", "loguniform"}, {"low", 1e-5}, {"high", 1e-1}}},
                {"wd", {{"type", "uniform"}, {"low", 0.0}, {"high", 0.5}}},
                {"opt", {{"type", "choice"}, {"values", {"adam", "sgd"}}}},
                {"layers", {{"type", "int"}, {"low", 2}, {"high", 4}}}}}};
  auto a = expand_sweep(parse(doc));
  auto b = expand_sweep(parse(doc));
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->size(), 50u);
  std::set<int64_t> layers;
  std::set<std::string> opts;
  double lo_lr = 1, hi_lr = 0;
  for (size_t i = 0; i < a->size(); ++i) {
    const Json& p = (*a)[i].params;
    EXPECT_EQ(p, (*b)[i].params);
    double lr = p["lr"];
    EXPECT_GE(lr, 1e-5);
    EXPECT_LE(lr, 1e-1);
    lo_lr = std::min(lo_lr, lr);
    hi_lr = std::max(hi_lr, lr);
    double wd = p["wd"];
    EXPECT_GE(wd, 0.0);
    EXPECT_LT(wd, 0.5);
    ASSERT_TRUE(p["layers"].is_number_integer());
    layers.insert(p["layers"].get<int64_t>());
    opts.insert(p["opt"].get<std::string>());
  }
  EXPECT_EQ(layers, (std::set<int64_t>{2, 3, 4}));
  EXPECT_EQ(opts, (std::set<std::string>{"adam", "sgd"}));
  // Log-uniform spreads over decades: 50 draws over 4 decades reach both ends.
  EXPECT_LT(lo_lr, 1e-4);
  EXPECT_GT(hi_lr, 1e-2);
  doc["seed"] = 8;
  auto c = expand_sweep(parse(doc));
  ASSERT_TRUE(c.ok());
  EXPECT_NE((*a)[0].params, (*c)[0].params);
}

TEST(SweepExpand, GridTimesSamplesTimesSeeds) {
  auto spec = parse({{"name", "m"},
                     {"command", "t {a} {b} {seed}"},
                     {"samples", 3},
                     {"seeds", {1, 2}},
                     {"space",
                      {{"a", {{"type", "grid"}, {"values", {1, 2}}}},
                       {"b", {{"type", "uniform"}, {"low", 0}, {"high", 1}}}}}});
  auto runs = expand_sweep(spec);
  ASSERT_TRUE(runs.ok()) << runs.status().to_string();
  ASSERT_EQ(runs->size(), 2u * 3u * 2u);
  // Same random samples at every grid point; seeds innermost.
  EXPECT_EQ((*runs)[0].params["b"], (*runs)[6].params["b"]);
  EXPECT_EQ((*runs)[0].params["seed"], 1);
  EXPECT_EQ((*runs)[1].params["seed"], 2);
  EXPECT_EQ((*runs)[0].params["b"], (*runs)[1].params["b"]);
  EXPECT_NE((*runs)[0].params["b"], (*runs)[2].params["b"]);
  EXPECT_EQ((*runs)[1].command.substr((*runs)[1].command.size() - 2), " 2");
}

TEST(SweepExpand, NoSpaceMeansOneRunPerSeed) {
  auto runs = expand_sweep(parse({{"name", "s"}, {"command", "echo {seed}"}, {"seeds", {5, 6, 7}}}));
  ASSERT_TRUE(runs.ok());
  ASSERT_EQ(runs->size(), 3u);
  EXPECT_EQ((*runs)[2].command, "echo 7");
}

TEST(RenderCommand, SubstitutesAndKeepsShellAndLiteralBraces) {
  Json p = {{"lr", 0.001}, {"name", "x y"}, {"n", 3}, {"flag", true}, {"f", 2.0}};
  EXPECT_EQ(render_command("a {lr} {name} {n} {flag} {f}", p).value(), "a 0.001 x y 3 true 2");
  EXPECT_EQ(render_command("echo ${HOME} {{lr}} awk '{print $1}'", p).value(),
            "echo ${HOME} {lr} awk '{print $1}'");
}

TEST(RenderCommand, UnknownPlaceholderIsAnErrorNamingIt) {
  auto r = render_command("train --lr {lrr}", Json{{"lr", 1}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("{lrr}"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("lr"), std::string::npos);
}

// A spec built in code skips the parser's range checks; expansion refuses
// bounds whose draws would be NaN, infinite or an overflowed integer.
TEST(SweepExpand, RefusesBoundsThatWouldDrawGarbage) {
  assay::schemas::SweepSpec spec;
  spec.name = "g";
  spec.command = "x {v}";
  assay::schemas::Dimension d;
  d.kind = assay::schemas::Dimension::Kind::kUniform;
  d.low = -1e308;
  d.high = 1e308;
  spec.space["v"] = d;
  auto u = expand_sweep(spec);
  ASSERT_FALSE(u.ok());
  EXPECT_EQ(u.status().message(),
            "sweep g: /space/v: expected finite bounds with a finite span high - low, got low "
            "-1e+308 and high 1e+308");
  d.kind = assay::schemas::Dimension::Kind::kInt;
  d.low = 0;
  d.high = 1e19;
  spec.space["v"] = d;
  auto i = expand_sweep(spec);
  ASSERT_FALSE(i.ok());
  EXPECT_NE(i.status().message().find("expected integer bounds in -9007199254740991..9007199254740991"),
            std::string::npos)
      << i.status().message();
}
