// Samplers: random and TPE (assay/search.h). The arithmetic follows Optuna's
// univariate TPESampler (optuna/samplers/_tpe: default_gamma, default_weights,
// _ParzenEstimator with consider_prior, magic clip and no endpoints); the
// random stream is our own SplitMix64 so proposals do not depend on the
// standard library's distributions.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>

#include "assay/search.h"
#include "splitmix.h"

namespace assay::coordinator {
namespace {

using Json = nlohmann::json;
using Dim = schemas::Dimension;
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kPi = 3.14159265358979323846;

struct Rng : SplitMix64 {
  double normal() {  // Box-Muller, one of the pair
    double u1 = 1.0 - unit(), u2 = unit();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * kPi * u2);
  }
  size_t index(size_t n) {
    auto i = static_cast<size_t>(unit() * static_cast<double>(n));
    return i >= n ? n - 1 : i;
  }
};

// The stream of sample k: independent of how many proposals came before.
Rng stream_for(uint64_t seed, int k) {
  Rng r{{seed ^ (static_cast<uint64_t>(k) + 1) * 0xd1b54a32d192ed03ULL}};
  r.next();
  return r;
}

// ---- truncated normal arithmetic

double phi_cdf(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }

// log(Phi(b) - Phi(a)) for a < b, computed in the tail where it is accurate.
double log_mass(double a, double b) {
  double m;
  if (a >= 0) m = phi_cdf(-a) - phi_cdf(-b);
  else if (b <= 0) m = phi_cdf(b) - phi_cdf(a);
  else m = 1.0 - phi_cdf(a) - phi_cdf(-b);
  return std::log(std::max(m, 1e-300));
}

// A univariate Parzen estimator over a numeric dimension in its transformed
// (log for loguniform) coordinates; step 1 for int dimensions, else 0.
struct Parzen {
  std::vector<double> w, mu, sigma;
  double low = 0, high = 0, step = 0;
  // Per component, independent of x: log w_i - log(mass of [low, high]),
  // minus log(sigma sqrt(2 pi)) for continuous dimensions. See finish().
  std::vector<double> offset;
  mutable std::vector<double> terms;  // scratch of log_pdf

  void finish() {
    offset.resize(w.size());
    for (size_t i = 0; i < w.size(); ++i) {
      offset[i] = std::log(w[i]) -
                  log_mass((low - step / 2 - mu[i]) / sigma[i], (high + step / 2 - mu[i]) / sigma[i]);
      if (step == 0) offset[i] -= std::log(sigma[i]) + 0.5 * std::log(2 * kPi);
    }
  }

  double log_pdf(double x) const {
    double best = -kInf;
    terms.resize(w.size());
    for (size_t i = 0; i < w.size(); ++i) {
      double t;
      if (step > 0) {
        t = log_mass((x - 0.5 - mu[i]) / sigma[i], (x + 0.5 - mu[i]) / sigma[i]);
      } else {
        double z = (x - mu[i]) / sigma[i];
        t = -0.5 * z * z;
      }
      terms[i] = offset[i] + t;
      best = std::max(best, terms[i]);
    }
    if (best == -kInf) return -kInf;
    double s = 0;
    for (double t : terms) s += std::exp(t - best);
    return best + std::log(s);
  }

  double sample(Rng& r) const {
    double u = r.unit(), acc = 0;
    size_t i = 0;
    for (; i + 1 < w.size(); ++i) {
      acc += w[i];
      if (u < acc) break;
    }
    const double lo = low - step / 2, hi = high + step / 2;
    // Rejection from the normal: mu lies in [lo, hi] and sigma <= hi - lo, so
    // a draw lands inside with probability >= 0.34; 200 misses are clamped.
    double x = mu[i];
    for (int t = 0; t < 200; ++t) {
      double y = mu[i] + sigma[i] * r.normal();
      if (y >= lo && y <= hi) {
        x = y;
        break;
      }
    }
    if (step > 0) x = std::round(x);
    return std::clamp(x, low, high);
  }
};

std::vector<double> default_weights(size_t n) {
  std::vector<double> w(n, 1.0);
  if (n >= 25)  // a linear ramp from 1/n to 1 over the oldest n - 25
    for (size_t i = 0; i + 25 < n; ++i) {
      size_t m = n - 25;
      w[i] = m == 1 ? 1.0 / n : 1.0 / n + (1.0 - 1.0 / n) * i / (m - 1);
    }
  return w;
}

Parzen build_numeric(const std::vector<double>& obs, double low, double high, double step,
                     double prior_weight) {
  Parzen p;
  p.low = low, p.high = high, p.step = step;
  const double prior_mu = 0.5 * (low + high), width = high - low + step;
  if (obs.empty()) {
    p.w = {1.0}, p.mu = {prior_mu}, p.sigma = {width};
    p.finish();
    return p;
  }
  const size_t n = obs.size();
  // Bandwidth: the larger gap to a neighbour among the observations, the
  // prior mean and the two ends (end gaps replaced by the inner gap).
  std::vector<double> with_prior = obs;
  with_prior.push_back(prior_mu);
  std::vector<size_t> order(with_prior.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return with_prior[a] < with_prior[b]; });
  std::vector<double> s(with_prior.size() + 2);
  s[0] = low - step / 2;
  for (size_t i = 0; i < order.size(); ++i) s[i + 1] = with_prior[order[i]];
  s.back() = high + step / 2;
  std::vector<double> sorted_sigma(order.size());
  for (size_t i = 0; i < order.size(); ++i)
    sorted_sigma[i] = std::max(s[i + 1] - s[i], s[i + 2] - s[i + 1]);
  if (s.size() >= 4) {
    sorted_sigma.front() = s[2] - s[1];
    sorted_sigma.back() = s[s.size() - 2] - s[s.size() - 3];
  }
  std::vector<double> sig(with_prior.size());
  for (size_t i = 0; i < order.size(); ++i) sig[order[i]] = sorted_sigma[i];
  const double maxsigma = width;
  const double minsigma = width / std::min(100.0, 1.0 + static_cast<double>(n + 1));
  p.w = default_weights(n);
  p.w.push_back(prior_weight);
  for (size_t i = 0; i < n; ++i) {
    p.mu.push_back(obs[i]);
    p.sigma.push_back(std::clamp(sig[i], minsigma, maxsigma));
  }
  p.mu.push_back(prior_mu);
  p.sigma.push_back(width);
  double total = std::accumulate(p.w.begin(), p.w.end(), 0.0);
  for (double& x : p.w) x /= total;
  p.finish();
  return p;
}

// A categorical mixture: per kernel a distribution over the choices.
struct Categorical {
  std::vector<double> w;
  std::vector<std::vector<double>> rows;
  double log_pdf(size_t c) const {
    double s = 0;
    for (size_t i = 0; i < w.size(); ++i) s += w[i] * rows[i][c];
    return std::log(std::max(s, 1e-300));
  }
  size_t sample(Rng& r) const {
    double u = r.unit(), acc = 0;
    size_t i = 0;
    for (; i + 1 < w.size(); ++i) {
      acc += w[i];
      if (u < acc) break;
    }
    double v = r.unit(), a = 0;
    const auto& row = rows[i];
    for (size_t c = 0; c + 1 < row.size(); ++c) {
      a += row[c];
      if (v < a) return c;
    }
    return row.size() - 1;
  }
};

Categorical build_categorical(const std::vector<size_t>& obs, size_t n_choices,
                              double prior_weight) {
  Categorical c;
  if (obs.empty()) {
    c.w = {1.0};
    c.rows = {std::vector<double>(n_choices, 1.0 / static_cast<double>(n_choices))};
    return c;
  }
  const double n_kernels = static_cast<double>(obs.size() + 1);
  for (size_t i = 0; i <= obs.size(); ++i) {
    std::vector<double> row(n_choices, prior_weight / n_kernels);
    if (i < obs.size()) row[obs[i]] += 1.0;
    double t = std::accumulate(row.begin(), row.end(), 0.0);
    for (double& x : row) x /= t;
    c.rows.push_back(std::move(row));
  }
  c.w = default_weights(obs.size());
  c.w.push_back(prior_weight);
  double total = std::accumulate(c.w.begin(), c.w.end(), 0.0);
  for (double& x : c.w) x /= total;
  return c;
}

// ---- dimensions

bool is_categorical(const Dim& d) {
  return d.kind == Dim::Kind::kChoice || d.kind == Dim::Kind::kGrid;
}

Json random_value(const Dim& d, Rng& r) {
  if (is_categorical(d)) return d.values[r.index(d.values.size())];
  double u = r.unit();
  switch (d.kind) {
    case Dim::Kind::kUniform: return d.low + u * (d.high - d.low);
    case Dim::Kind::kLogUniform:
      return std::exp(std::log(d.low) + u * (std::log(d.high) - std::log(d.low)));
    default: {
      auto lo = static_cast<int64_t>(std::ceil(d.low)), hi = static_cast<int64_t>(std::floor(d.high));
      auto k = static_cast<int64_t>(u * static_cast<double>(hi - lo + 1));
      return lo + std::min(k, hi - lo);
    }
  }
}

// A result's value of dimension d in the estimator's coordinates, or nullopt
// when it has none usable (missing, wrong type, out of range).
std::optional<double> observe(const Dim& d, const Json& params, const std::string& name) {
  auto it = params.find(name);
  if (it == params.end()) return std::nullopt;
  if (is_categorical(d)) {
    for (size_t c = 0; c < d.values.size(); ++c)
      if (d.values[c] == *it) return static_cast<double>(c);
    return std::nullopt;
  }
  if (!it->is_number()) return std::nullopt;
  double v = it->get<double>();
  const bool in = d.kind == Dim::Kind::kInt ? v >= std::ceil(d.low) && v <= std::floor(d.high)
                                            : v >= d.low && v <= d.high;
  if (!in) return std::nullopt;
  return d.kind == Dim::Kind::kLogUniform ? std::log(v) : v;
}

Json tpe_value(const Dim& d, const std::string& name, const std::vector<const TrialResult*>& below,
               const std::vector<const TrialResult*>& above, const TpeConfig& cfg, Rng& r) {
  auto collect = [&](const std::vector<const TrialResult*>& group) {
    std::vector<double> out;
    for (const TrialResult* t : group)
      if (auto v = observe(d, t->params, name)) out.push_back(*v);
    return out;
  };
  const auto ob = collect(below), oa = collect(above);
  if (is_categorical(d)) {
    auto to_idx = [](const std::vector<double>& v) {
      std::vector<size_t> o;
      for (double x : v) o.push_back(static_cast<size_t>(x));
      return o;
    };
    auto l = build_categorical(to_idx(ob), d.values.size(), cfg.prior_weight);
    auto g = build_categorical(to_idx(oa), d.values.size(), cfg.prior_weight);
    size_t best = 0;
    double best_score = -kInf;
    for (int i = 0; i < cfg.n_ei_candidates; ++i) {
      size_t c = l.sample(r);
      double score = l.log_pdf(c) - g.log_pdf(c);
      if (score > best_score) best_score = score, best = c;
    }
    return d.values[best];
  }
  double low = d.low, high = d.high, step = 0;
  if (d.kind == Dim::Kind::kLogUniform) low = std::log(d.low), high = std::log(d.high);
  if (d.kind == Dim::Kind::kInt) low = std::ceil(d.low), high = std::floor(d.high), step = 1;
  auto l = build_numeric(ob, low, high, step, cfg.prior_weight);
  auto g = build_numeric(oa, low, high, step, cfg.prior_weight);
  double best = l.sample(r), best_score = -kInf;
  for (int i = 0; i < cfg.n_ei_candidates; ++i) {
    double x = i == 0 ? best : l.sample(r);
    double score = l.log_pdf(x) - g.log_pdf(x);
    if (score > best_score) best_score = score, best = x;
  }
  if (d.kind == Dim::Kind::kInt) return static_cast<int64_t>(best);
  if (d.kind == Dim::Kind::kLogUniform) return std::clamp(std::exp(best), d.low, d.high);
  return best;
}

// ---- ordering results best first

// Sort keys of complete (or pruned) results: single objective by value,
// several by non-dominated rank then crowding distance (larger first).
std::vector<size_t> order_by_values(const std::vector<const TrialResult*>& rs,
                                    const std::vector<Objective>& objs) {
  std::vector<std::vector<double>> pts;
  std::vector<Mode> modes;
  for (const auto& o : objs) modes.push_back(o.mode);
  for (const TrialResult* t : rs)
    pts.push_back(t->values.size() == objs.size()
                      ? t->values
                      : std::vector<double>(objs.size(), std::nan("")));
  std::vector<size_t> idx(rs.size());
  std::iota(idx.begin(), idx.end(), 0);
  if (objs.size() == 1) {
    const Mode m = objs[0].mode;
    std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
      double x = pts[a][0], y = pts[b][0];
      if (std::isnan(x)) return false;
      if (std::isnan(y)) return true;
      return m == Mode::kMin ? x < y : x > y;
    });
    return idx;
  }
  auto ranks = nondominated_ranks(pts, modes);
  auto crowd = crowding_distances(pts, modes, ranks);
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
    if (ranks[a] != ranks[b]) return ranks[a] < ranks[b];
    return crowd[a] > crowd[b];
  });
  return idx;
}

std::vector<const TrialResult*> ranked(const std::vector<TrialResult>& results,
                                       const std::vector<Objective>& objs) {
  std::vector<const TrialResult*> complete, pruned, failed;
  for (const auto& t : results) {
    if (t.state == TrialResult::State::kComplete) complete.push_back(&t);
    else if (t.state == TrialResult::State::kPruned) pruned.push_back(&t);
    else failed.push_back(&t);
  }
  std::vector<const TrialResult*> out;
  for (size_t i : order_by_values(complete, objs)) out.push_back(complete[i]);
  // Pruned: the further a run got, the better; then by value.
  auto by_value = order_by_values(pruned, objs);
  std::vector<size_t> pos(pruned.size());
  for (size_t i = 0; i < by_value.size(); ++i) pos[by_value[i]] = i;
  std::vector<size_t> idx(pruned.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
    if (pruned[a]->step != pruned[b]->step) return pruned[a]->step > pruned[b]->step;
    return pos[a] < pos[b];
  });
  for (size_t i : idx) out.push_back(pruned[i]);
  out.insert(out.end(), failed.begin(), failed.end());
  return out;
}

}  // namespace

Result<Json> propose(const SearchSpec& spec, int k, const std::vector<TrialResult>& results) {
  if (k < 0) return Status::Invalid("propose: sample index must be >= 0, got " + std::to_string(k));
  for (const auto& [name, d] : spec.space)
    if (is_categorical(d) && d.values.empty())
      return Status::Invalid("propose: /space/" + name + ": expected a non-empty values array");
  Rng r = stream_for(spec.seed, k);
  Json out = Json::object();
  int usable = 0;
  for (const auto& t : results)
    usable += t.state != TrialResult::State::kFailed;
  const bool random = spec.sampler == Sampler::kRandom || spec.objectives.empty() ||
                      usable < spec.tpe.n_startup_trials || usable == 0;
  if (random) {
    for (const auto& [name, d] : spec.space) out[name] = random_value(d, r);
    return out;
  }
  // Split into the best gamma(n) (l) and the rest (g), each back in finish
  // order so that the newest results get the full weight.
  auto order = ranked(results, spec.objectives);
  const size_t n = order.size();
  const size_t n_below = std::min<size_t>((n + 9) / 10, 25);  // ceil(0.1 n)
  auto finish_pos = [&](const TrialResult* t) { return t - results.data(); };
  std::vector<const TrialResult*> below(order.begin(), order.begin() + n_below);
  std::vector<const TrialResult*> above(order.begin() + n_below, order.end());
  auto by_finish = [&](const TrialResult* a, const TrialResult* b) {
    return finish_pos(a) < finish_pos(b);
  };
  std::sort(below.begin(), below.end(), by_finish);
  std::sort(above.begin(), above.end(), by_finish);
  for (const auto& [name, d] : spec.space)  // sorted by name: a fixed draw order
    out[name] = tpe_value(d, name, below, above, spec.tpe, r);
  return out;
}

}  // namespace assay::coordinator
