// ASHA: rung arithmetic, promotion and stopping against hand-worked cases
// (ties, NaN, sparse reports, failures before the first rung, Hyperband
// brackets), replay of persisted records, and every parse error of the
// search keys of a sweep document.
#include <gtest/gtest.h>

#include <cmath>

#include "assay/search.h"

using namespace assay::coordinator;
using Json = nlohmann::json;

namespace {

AshaConfig cfg(int64_t min_step, int64_t max_step, int eta, int brackets = 1,
               Mode mode = Mode::kMin) {
  AshaConfig c;
  c.objectives = {{"loss", mode}};
  c.min_step = min_step;
  c.max_step = max_step;
  c.reduction_factor = eta;
  c.brackets = brackets;
  return c;
}

// One report that must trigger exactly one decision; returns it.
RungDecision one(AshaState& s, int64_t run, int64_t step, double v, int index = -1) {
  auto r = s.report(run, index < 0 ? static_cast<int>(run) : index, step, {v});
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->size(), 1u) << "run " << run << " step " << step;
  return r->empty() ? RungDecision{} : r->front();
}

}  // namespace

TEST(SearchAsha, RungStepsAreMinStepTimesEtaPowersUpToMaxStep) {
  EXPECT_EQ(rung_steps(cfg(10, 810, 3), 0), (std::vector<int64_t>{10, 30, 90, 270, 810}));
  EXPECT_EQ(rung_steps(cfg(10, 800, 3), 0), (std::vector<int64_t>{10, 30, 90, 270}));
  EXPECT_EQ(rung_steps(cfg(1, 16, 2), 0), (std::vector<int64_t>{1, 2, 4, 8, 16}));
  EXPECT_EQ(rung_steps(cfg(5, 5, 4), 0), (std::vector<int64_t>{5}));
  // Hyperband: bracket b starts at min_step * eta^b.
  auto hb = cfg(10, 810, 3, 3);
  EXPECT_EQ(rung_steps(hb, 1), (std::vector<int64_t>{30, 90, 270, 810}));
  EXPECT_EQ(rung_steps(hb, 2), (std::vector<int64_t>{90, 270, 810}));
  EXPECT_TRUE(rung_steps(hb, 3).empty());
  EXPECT_TRUE(rung_steps(hb, -1).empty());
  // No overflow near the top of int64.
  auto big = cfg(int64_t(1) << 61, INT64_MAX, 2);
  EXPECT_EQ(rung_steps(big, 0).size(), 2u);
}

TEST(SearchAsha, KeepsTopOneOverEtaOfRecordedValuesTiesContinue) {
  AshaState s(cfg(10, 810, 3));
  auto d = one(s, 1, 10, 1.0);  // n=1, keep 1
  EXPECT_TRUE(d.proceed);
  EXPECT_EQ(d.n, 1);
  EXPECT_EQ(d.keep, 1);
  EXPECT_EQ(d.cutoff, 1.0);
  EXPECT_EQ(d.rung, 0);
  EXPECT_EQ(d.rung_step, 10);
  d = one(s, 2, 10, 2.0);  // n=2 < eta: only a value as good as every earlier one
  EXPECT_FALSE(d.proceed);
  EXPECT_EQ(d.better, 1);
  EXPECT_EQ(d.cutoff, 1.0);
  d = one(s, 3, 12, 0.5);  // the report at step 12 is the rung-10 value
  EXPECT_TRUE(d.proceed);
  EXPECT_EQ(d.reported_step, 12);
  EXPECT_EQ(d.cutoff, 0.5);
  EXPECT_FALSE(one(s, 4, 10, 0.7).proceed);  // n=4, keep 1, 0.5 is better
  EXPECT_FALSE(one(s, 5, 10, 0.6).proceed);  // n=5, keep 1
  d = one(s, 6, 10, 0.6);  // n=6, keep 2: 0.5 0.6 0.6 ...; ties with the cut-off continue
  EXPECT_EQ(d.keep, 2);
  EXPECT_EQ(d.cutoff, 0.6);
  EXPECT_EQ(d.better, 1);
  EXPECT_TRUE(d.proceed);
  EXPECT_EQ(s.recorded(0, 0).size(), 6u);
  EXPECT_EQ(d.reason(s.config()),
            "rung 0 (step 10): loss 0.6 at step 10 ranks 2 of 6, keep 2 (cut-off 0.6): continue");
  // Stopped runs decide nothing more; a report before the next rung neither.
  EXPECT_TRUE(s.stopped(2));
  EXPECT_TRUE(s.report(2, 2, 30, {0.0})->empty());
  EXPECT_TRUE(s.report(1, 1, 29, {0.9})->empty());
  EXPECT_EQ(s.next_rung_step(1, 1), 30);
  EXPECT_EQ(s.next_rung_step(2, 2), -1);
}

TEST(SearchAsha, ExactTiesAllContinue) {
  AshaState s(cfg(10, 810, 3));
  for (int64_t r = 1; r <= 4; ++r) EXPECT_TRUE(one(s, r, 10, 0.25).proceed) << r;
}

TEST(SearchAsha, MaxModeRanksLargerFirst) {
  AshaState s(cfg(10, 810, 2, 1, Mode::kMax));
  EXPECT_TRUE(one(s, 1, 10, 0.5).proceed);
  EXPECT_FALSE(one(s, 2, 10, 0.4).proceed);  // n=2 keep 1
  auto d = one(s, 3, 10, 0.9);
  EXPECT_TRUE(d.proceed);
  EXPECT_EQ(d.cutoff, 0.9);
  d = one(s, 4, 10, 0.5);  // n=4 keep 2: 0.9 0.5 0.5 0.4
  EXPECT_TRUE(d.proceed);
  EXPECT_EQ(d.cutoff, 0.5);
}

TEST(SearchAsha, NanIsWorstAndStopsEvenAlone) {
  const double nan = std::nan("");
  AshaState s(cfg(10, 810, 3));
  auto d = one(s, 1, 10, nan);
  EXPECT_FALSE(d.proceed);
  EXPECT_EQ(d.n, 1);
  EXPECT_TRUE(std::isnan(d.cutoff));
  EXPECT_NE(d.reason(s.config()).find("loss NaN"), std::string::npos);
  d = one(s, 2, 10, 1e9);  // any number beats NaN
  EXPECT_TRUE(d.proceed);
  EXPECT_EQ(d.better, 0);
  EXPECT_FALSE(one(s, 3, 10, nan).proceed);
  EXPECT_EQ(s.recorded(0, 0).size(), 3u);
}

TEST(SearchAsha, SparseReportIsDecidedRungByRung) {
  AshaState s(cfg(10, 810, 3));
  // Rung 0: seven values; run 1 continues and reaches rung 1 with 0.05.
  EXPECT_TRUE(one(s, 1, 10, 0.1).proceed);
  for (int64_t r = 2; r <= 6; ++r) EXPECT_FALSE(one(s, r, 10, 0.3 + 0.1 * r).proceed);
  EXPECT_TRUE(one(s, 1, 30, 0.05).proceed);
  // Run 7 first reports at step 100, past rungs 10, 30 and 90 at once.
  auto r = s.report(7, 7, 100, {0.2});
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].rung, 0);  // n=7, keep 2, only 0.1 is better: continue
  EXPECT_TRUE((*r)[0].proceed);
  EXPECT_EQ((*r)[0].reported_step, 100);
  EXPECT_EQ((*r)[1].rung, 1);  // n=2, keep 1, 0.05 is better: stop
  EXPECT_FALSE((*r)[1].proceed);
  EXPECT_TRUE(s.recorded(0, 2).empty());  // nothing recorded past the stop
  // A sparse report that survives every rung passed gets one decision each.
  auto all = s.report(8, 8, 300, {0.01});
  ASSERT_EQ(all->size(), 4u);
  for (int k = 0; k < 4; ++k) {
    EXPECT_EQ((*all)[k].rung, k);
    EXPECT_TRUE((*all)[k].proceed);
  }
  EXPECT_EQ(s.next_rung_step(8, 8), 810);
}

TEST(SearchAsha, RunFailingBeforeItsFirstRungLeavesNoTrace) {
  AshaState with(cfg(10, 810, 3)), without(cfg(10, 810, 3));
  EXPECT_TRUE(with.report(1, 1, 5, {0.01})->empty());  // then the run fails
  EXPECT_EQ(with.next_rung_step(1, 1), 10);
  EXPECT_TRUE(with.recorded(0, 0).empty());
  for (int64_t r = 2; r <= 6; ++r) {
    auto a = one(with, r, 10, 1.0 / r), b = one(without, r, 10, 1.0 / r);
    EXPECT_EQ(a.proceed, b.proceed);
    EXPECT_EQ(a.n, b.n);
    EXPECT_EQ(a.cutoff, b.cutoff);
  }
}

TEST(SearchAsha, FinalRungAtMaxStepRecordsButNeverStops) {
  AshaState s(cfg(30, 90, 3));  // rungs 30, 90
  EXPECT_TRUE(one(s, 1, 30, 0.1).proceed);
  EXPECT_TRUE(one(s, 1, 90, 0.1).proceed);
  EXPECT_TRUE(one(s, 3, 30, 0.05).proceed);
  auto d = one(s, 3, 95, 0.5);  // worse than run 1 at the last rung: n=2, keep 1
  EXPECT_TRUE(d.final_rung);
  EXPECT_EQ(d.better, 1);
  EXPECT_TRUE(d.proceed);
  EXPECT_EQ(d.reason(s.config()),
            "rung 1 (step 90): loss 0.5 at step 95 ranks 2 of 2, keep 1 (cut-off 0.1): "
            "full budget, complete");
  EXPECT_EQ(s.next_rung_step(3, 3), -1);
  EXPECT_FALSE(s.stopped(3));
}

TEST(SearchAsha, HyperbandBracketsAreRoundRobinAndSeparate) {
  auto c = cfg(10, 810, 3, 2);
  EXPECT_EQ(bracket_of(c, 0), 0);
  EXPECT_EQ(bracket_of(c, 1), 1);
  EXPECT_EQ(bracket_of(c, 4), 0);
  EXPECT_EQ(bracket_of(c, 7), 1);
  AshaState s(c);
  EXPECT_TRUE(s.report(101, 1, 10, {0.5})->empty());  // bracket 1 starts at 30
  EXPECT_EQ(s.next_rung_step(101, 1), 30);
  auto r0 = s.report(100, 0, 30, {0.1});  // bracket 0: rungs 10 and 30
  ASSERT_EQ(r0->size(), 2u);
  EXPECT_EQ(r0->at(1).rung_step, 30);
  auto d = one(s, 101, 30, 0.9, 1);  // bracket 1 rung 0: alone there, so it continues
  EXPECT_EQ(d.bracket, 1);
  EXPECT_EQ(d.rung, 0);
  EXPECT_EQ(d.rung_step, 30);
  EXPECT_EQ(d.n, 1);
  EXPECT_TRUE(d.proceed);
  EXPECT_EQ(d.reason(c).rfind("bracket 1 rung 0 (step 30)", 0), 0u);
}

TEST(SearchAsha, WrongNumberOfValuesIsAnError) {
  AshaState s(cfg(10, 810, 3));
  auto r = s.report(1, 1, 10, {0.1, 0.2});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "run 1: expected 1 objective value(s), got 2");
}

namespace {

// A fixed, irregular stream of reports: 40 runs in 3 brackets reporting every
// 7..40 steps with noisy decreasing values, some NaN, interleaved.
struct Report {
  int64_t run;
  int index;
  int64_t step;
  double value;
};
std::vector<Report> report_stream() {
  std::vector<Report> out;
  uint64_t x = 12345;
  auto next = [&] { x = x * 6364136223846793005ULL + 1442695040888963407ULL; return x >> 33; };
  std::vector<int64_t> step(40, 0);
  for (int t = 0; t < 2000; ++t) {
    int i = static_cast<int>(next() % 40);
    step[i] += 7 + static_cast<int64_t>(next() % 34);
    if (step[i] > 900) continue;
    double v = 1.0 / (1 + i % 7) + 10.0 / static_cast<double>(step[i]) +
               static_cast<double>(next() % 100) / 1000.0;
    if (i == 13 && step[i] > 100) v = std::nan("");
    out.push_back({1000 + i, i, step[i], v});
  }
  return out;
}

}  // namespace

TEST(SearchAsha, RebuildFromRecordsReplaysIdenticalDecisions) {
  const auto c = cfg(10, 810, 3, 3);
  const auto stream = report_stream();
  const size_t half = stream.size() / 5;  // the restart comes early
  AshaState live(c);
  std::vector<RungRecord> records;
  for (size_t t = 0; t < half; ++t) {
    auto r = live.report(stream[t].run, stream[t].index, stream[t].step, {stream[t].value});
    ASSERT_TRUE(r.ok());
    for (const auto& d : *r) records.push_back(d.record());
  }
  ASSERT_GT(records.size(), 40u);
  int stops = 0;
  for (const auto& r : records) stops += !r.proceed;
  ASSERT_GT(stops, 5);  // the stream exercises both outcomes
  // A restart: the state comes back from the records alone.
  auto rebuilt = AshaState::rebuild(c, records);
  ASSERT_TRUE(rebuilt.ok()) << rebuilt.status().to_string();
  for (int b = 0; b < 3; ++b)
    for (int k = 0; k < 5; ++k) {
      const auto& a = live.recorded(b, k);
      const auto& z = rebuilt->recorded(b, k);
      ASSERT_EQ(a.size(), z.size()) << b << "/" << k;
      for (const auto& [id, v] : a) {
        ASSERT_TRUE(z.count(id));
        EXPECT_TRUE(v[0] == z.at(id)[0] || (std::isnan(v[0]) && std::isnan(z.at(id)[0])));
      }
    }
  // The rest of the stream gets the same decisions from both.
  size_t compared = 0;
  for (size_t t = half; t < stream.size(); ++t) {
    auto a = live.report(stream[t].run, stream[t].index, stream[t].step, {stream[t].value});
    auto z = rebuilt->report(stream[t].run, stream[t].index, stream[t].step, {stream[t].value});
    ASSERT_EQ(a->size(), z->size());
    for (size_t j = 0; j < a->size(); ++j) {
      EXPECT_EQ((*a)[j].proceed, (*z)[j].proceed);
      EXPECT_EQ((*a)[j].reason(c), (*z)[j].reason(c));
      ++compared;
    }
  }
  EXPECT_GT(compared, 10u);
}

TEST(SearchAsha, RebuildRefusesRecordsThatDecideOtherwise) {
  const auto c = cfg(10, 810, 3);
  AshaState live(c);
  std::vector<RungRecord> records;
  for (int64_t r = 1; r <= 4; ++r) {
    auto ds = live.report(r, static_cast<int>(r), 10, {1.0 / r});
    ASSERT_TRUE(ds.ok());
    for (const auto& d : *ds) records.push_back(d.record());
  }
  ASSERT_TRUE(AshaState::rebuild(c, records).ok());

  auto flipped = records;
  flipped[1].proceed = !flipped[1].proceed;
  auto st = AshaState::rebuild(c, flipped);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.status().code(), assay::Code::kCorruption);
  EXPECT_EQ(st.status().message(),
            "rung record 1 (run 2, bracket 0, rung 0): recorded stop but the records before it "
            "decide rung 0 (step 10): loss 0.5 at step 10 ranks 1 of 2, keep 1 (cut-off 0.5): "
            "continue");

  auto skipped = records;
  skipped[0].rung = 1;
  skipped[0].reported_step = 30;
  EXPECT_EQ(AshaState::rebuild(c, skipped).status().message(),
            "rung record 0 (run 1, bracket 0, rung 1): expected rung 0 next for this run");
  auto early = records;
  early[0].reported_step = 9;
  EXPECT_EQ(AshaState::rebuild(c, early).status().message(),
            "rung record 0 (run 1, bracket 0, rung 0): reported step 9 is before the rung step 10");
  auto bad_bracket = records;
  bad_bracket[0].bracket = 1;
  EXPECT_EQ(AshaState::rebuild(c, bad_bracket).status().message(),
            "rung record 0 (run 1, bracket 1, rung 0): bracket out of range 0..0");
  auto bad_rung = records;
  bad_rung[0].rung = 9;
  EXPECT_EQ(AshaState::rebuild(c, bad_rung).status().message(),
            "rung record 0 (run 1, bracket 0, rung 9): rung out of range 0..4");
  auto bad_size = records;
  bad_size[0].values = {1, 2};
  EXPECT_EQ(AshaState::rebuild(c, bad_size).status().message(),
            "rung record 0 (run 1, bracket 0, rung 0): expected 1 value(s), got 2");
  // Run 1 continued at rung 0 (it was first); a record after a stop is refused.
  AshaState two(c);
  std::vector<RungRecord> rs;
  auto d1 = two.report(1, 1, 10, {1.0}), d2 = two.report(2, 2, 10, {2.0});
  for (const auto& d : *d1) rs.push_back(d.record());
  for (const auto& d : *d2) rs.push_back(d.record());
  ASSERT_FALSE(rs[1].proceed);
  rs.push_back({2, 0, 1, 30, {0.1}, true});
  EXPECT_EQ(AshaState::rebuild(c, rs).status().message(),
            "rung record 2 (run 2, bracket 0, rung 1): the run was stopped at an earlier rung");
}

// ---------------------------------------------------------------- parsing

namespace {

using assay::schemas::Dimension;

std::map<std::string, Dimension> space() {
  std::map<std::string, Dimension> s;
  Dimension lr;
  lr.kind = Dimension::Kind::kLogUniform, lr.low = 1e-5, lr.high = 1e-1;
  Dimension w;
  w.kind = Dimension::Kind::kInt, w.low = 16, w.high = 512;
  Dimension act;
  act.kind = Dimension::Kind::kChoice, act.values = {"relu", "gelu"};
  s["lr"] = lr, s["width"] = w, s["act"] = act;
  return s;
}

Json base() {
  return Json::parse(R"({"name": "s", "command": "x",
    "search": {"type": "asha", "metric": "loss", "mode": "min", "min_step": 10,
               "max_step": 810, "reduction_factor": 3, "brackets": 1},
    "sampler": "tpe", "samples": 30, "max_concurrent": 4, "seed": 7})");
}

// The error of parsing `doc` (with the standard space unless given).
std::string err(const Json& doc, const std::map<std::string, Dimension>& sp = space()) {
  auto r = parse_search_spec(doc, sp, "s.json");
  EXPECT_FALSE(r.ok()) << doc.dump();
  return r.ok() ? "" : r.status().message();
}

Json with(Json doc, const Json::json_pointer& p, const Json& v) {
  doc[p] = v;
  return doc;
}
Json without(Json doc, const Json::json_pointer& p) {
  doc[p.parent_pointer()].erase(p.back());
  return doc;
}

}  // namespace

TEST(SearchSpec, ParsesTheExampleAndDefaults) {
  auto r = parse_search_spec(base(), space(), "s.json");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_TRUE(r->asha.has_value());
  EXPECT_EQ(r->asha->min_step, 10);
  EXPECT_EQ(r->asha->max_step, 810);
  EXPECT_EQ(r->asha->reduction_factor, 3);
  EXPECT_EQ(r->asha->brackets, 1);
  ASSERT_EQ(r->asha->objectives.size(), 1u);
  EXPECT_EQ(r->asha->objectives[0].metric, "loss");
  EXPECT_EQ(r->objectives.size(), 1u);
  EXPECT_EQ(r->sampler, Sampler::kTpe);
  EXPECT_EQ(r->samples, 30);
  EXPECT_EQ(r->max_concurrent, 4);
  EXPECT_EQ(r->seed, 7u);
  EXPECT_EQ(r->tpe.n_startup_trials, 10);
  EXPECT_EQ(r->tpe.n_ei_candidates, 24);
  EXPECT_EQ(r->tpe.prior_weight, 1.0);
  EXPECT_EQ(r->space.size(), 3u);
  EXPECT_TRUE(has_search(base()));
  EXPECT_FALSE(has_search(Json::parse(R"({"name": "s", "command": "x", "samples": 3})")));

  // Multi-objective at the top level, ASHA defaults, TPE settings.
  auto mo = Json::parse(R"({"search": {"type": "asha", "min_step": 1, "max_step": 9},
    "objectives": [{"metric": "unlearning/nll,forget", "mode": "max"},
                   {"metric": "unlearning/nll,retain", "mode": "min"}],
    "tpe": {"n_startup_trials": 3, "n_ei_candidates": 8, "prior_weight": 2}})");
  auto m = parse_search_spec(mo, space(), "m.json");
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_EQ(m->asha->objectives.size(), 2u);
  EXPECT_EQ(m->asha->objectives[0].mode, Mode::kMax);
  EXPECT_EQ(m->asha->reduction_factor, 3);
  EXPECT_EQ(m->sampler, Sampler::kRandom);
  EXPECT_EQ(m->tpe.n_startup_trials, 3);
  EXPECT_EQ(m->tpe.prior_weight, 2.0);
  // Sampler only, no early stopping.
  auto none = parse_search_spec(Json::parse(R"({"search": {"type": "none", "metric": "acc",
    "mode": "max"}, "sampler": "tpe"})"), space(), "n.json");
  ASSERT_TRUE(none.ok()) << none.status().to_string();
  EXPECT_FALSE(none->asha.has_value());
  EXPECT_EQ(none->objectives[0].mode, Mode::kMax);
}

TEST(SearchSpec, EveryErrorNamesFieldValueAndExpectation) {
  using P = Json::json_pointer;
  const Json b = base();
  EXPECT_EQ(err(with(b, P("/search"), 3)), "s.json: /search: expected an object, got 3");
  EXPECT_EQ(err(with(b, P("/search/foo"), 1)),
            "s.json: /search/foo: expected no such key (type, metric, mode, objectives, "
            "min_step, max_step, reduction_factor, brackets), got 1");
  EXPECT_EQ(err(with(b, P("/search/type"), "bohb")),
            "s.json: /search/type: expected \"asha\" or \"none\", got \"bohb\"");
  EXPECT_EQ(err(without(b, P("/search/type"))),
            "s.json: /search/type: expected \"asha\" or \"none\", got null");
  EXPECT_EQ(err(with(b, P("/search/mode"), "up")),
            "s.json: /search/mode: expected \"min\" or \"max\", got \"up\"");
  EXPECT_EQ(err(with(b, P("/search/metric"), "")),
            "s.json: /search/metric: expected a non-empty metric name, got \"\"");
  EXPECT_EQ(err(without(without(b, P("/search/metric")), P("/search/mode"))),
            "s.json: /search/metric: expected a metric (with mode), or objectives, for ASHA, "
            "got null");
  const Json objs = Json::parse(R"([{"metric": "a", "mode": "max"}])");
  EXPECT_EQ(err(with(b, P("/search/objectives"), objs)),
            "s.json: /search/objectives: expected either metric and mode, or objectives, not "
            "both, got [{\"metric\":\"a\",\"mode\":\"max\"}]");
  Json both = with(without(without(b, P("/search/metric")), P("/search/mode")),
                   P("/search/objectives"), objs);
  both["objectives"] = objs;
  EXPECT_EQ(err(both),
            "s.json: /search/objectives: expected objectives in one place only (also given at "
            "/objectives), got [{\"metric\":\"a\",\"mode\":\"max\"}]");
  EXPECT_EQ(err(with(b, P("/objectives"), Json::array())),
            "s.json: /objectives: expected an array of 1..8 objectives, got []");
  EXPECT_EQ(err(with(b, P("/objectives"), Json::parse("[1]"))),
            "s.json: /objectives/0: expected an object {\"metric\": ..., \"mode\": ...}, got 1");
  EXPECT_EQ(err(with(b, P("/objectives"), Json::parse(R"([{"metric": "a", "mode": "max", "w": 2}])"))),
            "s.json: /objectives/0/w: expected no such key (objective keys: metric, mode), got 2");
  EXPECT_EQ(err(with(b, P("/objectives"), Json::parse(R"([{"mode": "max"}])"))),
            "s.json: /objectives/0/metric: expected a non-empty metric name, got null");
  EXPECT_EQ(err(with(b, P("/objectives"), Json::parse(R"([{"metric": "a"}])"))),
            "s.json: /objectives/0/mode: expected \"min\" or \"max\", got null");
  EXPECT_EQ(err(with(b, P("/objectives"), Json::parse(
                R"([{"metric": "a", "mode": "max"}, {"metric": "a", "mode": "min"}])"))),
            "s.json: /objectives/1/metric: expected a metric not listed before, got \"a\"");
  EXPECT_EQ(err(without(b, P("/search/min_step"))),
            "s.json: /search/min_step: expected an integer in 1..9007199254740991, got null");
  EXPECT_EQ(err(with(b, P("/search/min_step"), 0)),
            "s.json: /search/min_step: expected an integer in 1..9007199254740991, got 0");
  EXPECT_EQ(err(with(b, P("/search/min_step"), 1.5)),
            "s.json: /search/min_step: expected an integer in 1..9007199254740991, got 1.5");
  EXPECT_EQ(err(with(b, P("/search/max_step"), 5)),
            "s.json: /search/max_step: expected an integer >= min_step (10), got 5");
  EXPECT_EQ(err(with(b, P("/search/reduction_factor"), 1)),
            "s.json: /search/reduction_factor: expected an integer in 2..1000, got 1");
  EXPECT_EQ(err(with(b, P("/search/brackets"), 0)),
            "s.json: /search/brackets: expected an integer in 1..1000, got 0");
  EXPECT_EQ(err(with(b, P("/search/brackets"), 6)),
            "s.json: /search/brackets: expected at most the number of rungs (5: min_step * "
            "reduction_factor^k <= max_step), got 6");
  EXPECT_EQ(err(with(with(b, P("/search/type"), "none"), P("/search/min_step"), 10)),
            "s.json: /search/min_step: expected no ASHA key with type none, got 10");
  EXPECT_EQ(err(with(b, P("/sampler"), "grid")),
            "s.json: /sampler: expected \"random\" or \"tpe\", got \"grid\"");
  EXPECT_EQ(err(Json::parse(R"({"sampler": "tpe"})")),
            "s.json: /search: expected a metric or objectives for the tpe sampler to optimise, "
            "got null");
  EXPECT_EQ(err(with(b, P("/samples"), 0)),
            "s.json: /samples: expected an integer in 1..100000, got 0");
  EXPECT_EQ(err(with(b, P("/max_concurrent"), -1)),
            "s.json: /max_concurrent: expected an integer in 0..100000, got -1");
  EXPECT_EQ(err(with(b, P("/seed"), -1)),
            "s.json: /seed: expected an integer in 0..9007199254740991, got -1");
  EXPECT_EQ(err(with(b, P("/tpe"), 1)), "s.json: /tpe: expected an object, got 1");
  EXPECT_EQ(err(with(b, P("/tpe/gamma"), 0.1)),
            "s.json: /tpe/gamma: expected no such key (n_startup_trials, n_ei_candidates, "
            "prior_weight), got 0.1");
  EXPECT_EQ(err(with(b, P("/tpe/n_startup_trials"), -1)),
            "s.json: /tpe/n_startup_trials: expected an integer in 0..100000, got -1");
  EXPECT_EQ(err(with(b, P("/tpe/n_ei_candidates"), 0)),
            "s.json: /tpe/n_ei_candidates: expected an integer in 1..10000, got 0");
  EXPECT_EQ(err(with(b, P("/tpe/prior_weight"), 0)),
            "s.json: /tpe/prior_weight: expected a finite number > 0, got 0");
  EXPECT_EQ(err(Json::parse("[]")), "s.json: : expected a sweep object, got []");

  // The space.
  EXPECT_EQ(err(b, {}), "s.json: /space: expected at least one dimension to search, got {}");
  auto sp = space();
  sp["g"].kind = Dimension::Kind::kGrid;
  sp["g"].values = {1, 2};
  EXPECT_EQ(err(b, sp),
            "s.json: /space/g/type: expected uniform, loguniform, int or choice with sampler "
            "tpe, got \"grid\"");
  sp = space();
  sp["act"].values.clear();
  EXPECT_EQ(err(b, sp), "s.json: /space/act/values: expected a non-empty array, got []");
  sp = space();
  sp["u"].kind = Dimension::Kind::kUniform, sp["u"].low = 1, sp["u"].high = 1;
  EXPECT_EQ(err(b, sp), "s.json: /space/u: expected finite bounds low < high, got [1.0,1.0]");
  sp = space();
  sp["lr"].low = 0;
  EXPECT_EQ(err(b, sp), "s.json: /space/lr: expected finite bounds 0 < low < high, got [0.0,0.1]");
  sp = space();
  sp["width"].low = 3.5, sp["width"].high = 3.6;
  EXPECT_EQ(err(b, sp),
            "s.json: /space/width: expected integer bounds low <= high within +-(2^53-1), got "
            "[3.5,3.6]");
}
