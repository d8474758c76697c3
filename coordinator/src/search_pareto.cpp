// Non-dominated sorting, crowding distance and Pareto fronts (NSGA-II, Deb et
// al. 2002), with every objective turned into "smaller is better" first.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "assay/search.h"

namespace assay::coordinator {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Objective j of every point, oriented so that smaller is better; NaN and the
// worst infinity become +inf (the worst), the best infinity -inf.
std::vector<double> oriented(const std::vector<std::vector<double>>& pts, size_t j, Mode m) {
  std::vector<double> out(pts.size());
  for (size_t i = 0; i < pts.size(); ++i) {
    double v = j < pts[i].size() ? pts[i][j] : std::nan("");
    out[i] = std::isnan(v) ? kInf : (m == Mode::kMin ? v : -v);
  }
  return out;
}

std::vector<std::vector<double>> oriented_all(const std::vector<std::vector<double>>& pts,
                                              const std::vector<Mode>& modes) {
  std::vector<std::vector<double>> cols;
  for (size_t j = 0; j < modes.size(); ++j) cols.push_back(oriented(pts, j, modes[j]));
  return cols;
}

bool dominates(const std::vector<std::vector<double>>& cols, size_t a, size_t b) {
  bool strictly = false;
  for (const auto& c : cols) {
    if (c[a] > c[b]) return false;
    if (c[a] < c[b]) strictly = true;
  }
  return strictly;
}

// Infinite values placed one span beyond the finite range, so that gaps next
// to them are finite and comparable.
void finite_proxy(std::vector<double>& v) {
  double lo = kInf, hi = -kInf;
  for (double x : v)
    if (std::isfinite(x)) lo = std::min(lo, x), hi = std::max(hi, x);
  if (lo > hi) lo = hi = 0;  // no finite value
  const double span = hi - lo + 1;
  for (double& x : v)
    if (x == kInf) x = hi + span;
    else if (x == -kInf) x = lo - span;
}

}  // namespace

std::vector<int> nondominated_ranks(const std::vector<std::vector<double>>& points,
                                    const std::vector<Mode>& modes) {
  const size_t n = points.size();
  const auto cols = oriented_all(points, modes);
  std::vector<std::vector<size_t>> dominated(n);  // i dominates these
  std::vector<int> count(n, 0);                   // how many dominate i
  for (size_t a = 0; a < n; ++a)
    for (size_t b = a + 1; b < n; ++b) {
      if (dominates(cols, a, b)) dominated[a].push_back(b), ++count[b];
      else if (dominates(cols, b, a)) dominated[b].push_back(a), ++count[a];
    }
  std::vector<int> rank(n, 0);
  std::vector<size_t> front;
  for (size_t i = 0; i < n; ++i)
    if (count[i] == 0) front.push_back(i);
  for (int r = 0; !front.empty(); ++r) {
    std::vector<size_t> next;
    for (size_t i : front) {
      rank[i] = r;
      for (size_t k : dominated[i])
        if (--count[k] == 0) next.push_back(k);
    }
    front = std::move(next);
  }
  return rank;
}

std::vector<double> crowding_distances(const std::vector<std::vector<double>>& points,
                                       const std::vector<Mode>& modes,
                                       const std::vector<int>& ranks) {
  const size_t n = points.size();
  std::vector<double> dist(n, 0.0);
  auto cols = oriented_all(points, modes);
  int max_rank = -1;
  for (int r : ranks) max_rank = std::max(max_rank, r);
  for (int r = 0; r <= max_rank; ++r) {
    std::vector<size_t> f;
    for (size_t i = 0; i < n; ++i)
      if (ranks[i] == r) f.push_back(i);
    if (f.size() <= 2) {
      for (size_t i : f) dist[i] = kInf;
      continue;
    }
    for (auto& col : cols) {
      std::vector<double> v;
      for (size_t i : f) v.push_back(col[i]);
      finite_proxy(v);
      std::vector<size_t> order(f.size());
      std::iota(order.begin(), order.end(), 0);
      // Ties broken by position, so the result never depends on sort internals.
      std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
      const double range = v[order.back()] - v[order.front()];
      dist[f[order.front()]] = kInf;
      dist[f[order.back()]] = kInf;
      if (!(range > 0)) continue;
      for (size_t k = 1; k + 1 < order.size(); ++k)
        dist[f[order[k]]] += (v[order[k + 1]] - v[order[k - 1]]) / range;
    }
  }
  return dist;
}

std::vector<size_t> pareto_front(const std::vector<std::vector<double>>& points,
                                 const std::vector<Mode>& modes) {
  auto ranks = nondominated_ranks(points, modes);
  std::vector<size_t> out;
  for (size_t i = 0; i < ranks.size(); ++i)
    if (ranks[i] == 0) out.push_back(i);
  return out;
}

}  // namespace assay::coordinator
