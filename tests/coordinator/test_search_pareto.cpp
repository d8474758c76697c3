// Pareto fronts, non-dominated sorting and crowding distance on hand-worked
// sets, and multi-objective ASHA rungs (MO-ASHA) built on them.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "assay/search.h"

using namespace assay::coordinator;

namespace {
const double kNan = std::nan("");
const double kInf = std::numeric_limits<double>::infinity();
const std::vector<Mode> kMinMin = {Mode::kMin, Mode::kMin};
}  // namespace

TEST(SearchPareto, NonDominatedSortOnAHandWorkedSet) {
  // A(1,5) B(2,2) C(5,1) D(3,3) E(4,4) F(2,2), both minimised: D is dominated
  // by B and F, E by D; B and F are equal and do not dominate each other.
  std::vector<std::vector<double>> pts = {{1, 5}, {2, 2}, {5, 1}, {3, 3}, {4, 4}, {2, 2}};
  EXPECT_EQ(nondominated_ranks(pts, kMinMin), (std::vector<int>{0, 0, 0, 1, 2, 0}));
  EXPECT_EQ(pareto_front(pts, kMinMin), (std::vector<size_t>{0, 1, 2, 5}));
  // Maximising both turns it around: E(4,4) dominates B, D, F; A, C, E remain.
  std::vector<Mode> maxmax = {Mode::kMax, Mode::kMax};
  EXPECT_EQ(pareto_front(pts, maxmax), (std::vector<size_t>{0, 2, 4}));
  // Mixed: maximise the first, minimise the second: C(5,1) dominates all.
  EXPECT_EQ(pareto_front(pts, {Mode::kMax, Mode::kMin}), (std::vector<size_t>{2}));
  EXPECT_TRUE(pareto_front({}, kMinMin).empty());
}

TEST(SearchPareto, NanIsWorstOnlyInItsObjective) {
  // G(NaN, 0): worst first objective, best second: nobody dominates it.
  std::vector<std::vector<double>> pts = {{1, 5}, {2, 2}, {kNan, 0}, {kNan, 7}};
  EXPECT_EQ(nondominated_ranks(pts, kMinMin), (std::vector<int>{0, 0, 0, 1}));
  // Two NaN points tie in that objective.
  EXPECT_EQ(pareto_front({{kNan, 1}, {kNan, 1}}, kMinMin), (std::vector<size_t>{0, 1}));
}

TEST(SearchPareto, CrowdingDistanceOnAHandWorkedFront) {
  // One front: P0(0,10) P1(1,6) P2(4,3) P3(10,0); both ranges are 10.
  // P1: (4-0)/10 + (10-3)/10 = 1.1; P2: (10-1)/10 + (6-0)/10 = 1.5; ends inf.
  std::vector<std::vector<double>> pts = {{0, 10}, {1, 6}, {4, 3}, {10, 0}};
  auto ranks = nondominated_ranks(pts, kMinMin);
  EXPECT_EQ(ranks, (std::vector<int>{0, 0, 0, 0}));
  auto cd = crowding_distances(pts, kMinMin, ranks);
  EXPECT_EQ(cd[0], kInf);
  EXPECT_DOUBLE_EQ(cd[1], 1.1);
  EXPECT_DOUBLE_EQ(cd[2], 1.5);
  EXPECT_EQ(cd[3], kInf);
  // Fronts of one or two points are all ends.
  auto two = crowding_distances({{0, 1}, {1, 0}, {2, 2}}, kMinMin, {0, 0, 1});
  EXPECT_EQ(two, (std::vector<double>{kInf, kInf, kInf}));
  // An infinite value sits one span beyond the finite range: P1 gets
  // (1-0)/(3-0) from the first objective... (0 1 2 inf->3 in proxy).
  auto inf = crowding_distances({{0, 3}, {1, 2}, {2, 1}, {kNan, 0}}, kMinMin, {0, 0, 0, 0});
  EXPECT_EQ(inf[0], kInf);
  EXPECT_TRUE(std::isfinite(inf[1]));
  EXPECT_TRUE(std::isfinite(inf[2]));
}

namespace {

AshaConfig mo(int eta) {
  AshaConfig c;
  c.objectives = {{"forget", Mode::kMax}, {"retain", Mode::kMin}};
  c.min_step = 10;
  c.max_step = 90;
  c.reduction_factor = eta;
  return c;
}

RungDecision at10(AshaState& s, int64_t run, double forget, double retain) {
  auto r = s.report(run, static_cast<int>(run), 10, {forget, retain});
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->size(), 1u);
  return r->empty() ? RungDecision{} : r->front();
}

}  // namespace

TEST(SearchPareto, MultiObjectiveRungKeepsTopByFrontThenCrowding) {
  AshaState s(mo(2));  // keep = max(1, floor(n / 2))
  EXPECT_TRUE(at10(s, 1, 1.0, 1.0).proceed);  // alone
  auto d = at10(s, 2, 2.0, 2.0);               // a trade-off: both in front 0, both ends
  EXPECT_TRUE(d.proceed);
  EXPECT_EQ(d.better, 0);
  EXPECT_TRUE(std::isnan(d.cutoff));
  d = at10(s, 3, 0.5, 1.5);  // dominated by run 1: front 1
  EXPECT_FALSE(d.proceed);
  EXPECT_EQ(d.better, 2);
  // Run 4 (1.5, 1.2) joins front 0 between runs 1 and 2: crowding 1 + 1 = 2,
  // the two ends have inf; n=4 keeps 2, so it stops.
  d = at10(s, 4, 1.5, 1.2);
  EXPECT_EQ(d.n, 4);
  EXPECT_EQ(d.keep, 2);
  EXPECT_EQ(d.better, 2);
  EXPECT_FALSE(d.proceed);
  EXPECT_EQ(d.reason(s.config()),
            "rung 0 (step 10): [forget 1.5, retain 1.2] at step 10 ranks 3 of 4, keep 2: stop");
  EXPECT_TRUE(at10(s, 5, 3.0, 0.5).proceed);  // dominates everyone
  // A failed eval (NaN) is the worst forget value, but the best retain keeps
  // it on the front with run 5: n=6 keeps 3.
  d = at10(s, 6, kNan, 0.1);
  EXPECT_EQ(d.better, 0);
  EXPECT_TRUE(d.proceed);
  d = at10(s, 7, kNan, kNan);  // failed in both: dominated by run 6
  EXPECT_FALSE(d.proceed);
  EXPECT_EQ(d.better, 6);
}

TEST(SearchPareto, MultiObjectiveReplayIsIdentical) {
  AshaState s(mo(3));
  std::vector<RungRecord> recs;
  for (int64_t r = 1; r <= 12; ++r) {
    double f = std::fmod(r * 0.37, 1.0), g = std::fmod(r * 0.61, 1.0);
    auto ds = s.report(r, static_cast<int>(r), 30, {f, g});
    ASSERT_TRUE(ds.ok());
    for (const auto& d : *ds) recs.push_back(d.record());
  }
  auto rb = AshaState::rebuild(mo(3), recs);
  ASSERT_TRUE(rb.ok()) << rb.status().to_string();
  for (int64_t r = 1; r <= 12; ++r) {
    auto a = s.report(r, static_cast<int>(r), 90, {0.5, 0.5});
    auto b = rb->report(r, static_cast<int>(r), 90, {0.5, 0.5});
    ASSERT_EQ(a->size(), b->size());
    for (size_t j = 0; j < a->size(); ++j) EXPECT_EQ((*a)[j].better, (*b)[j].better);
  }
}
