// Adaptive search benchmark, Assay's side: ASHA + TPE (assay/search.h) on the
// synthetic learning curve of examples/search/curve.py, with asynchronous
// workers simulated in trainer steps. bench/search/optuna_bench.py runs the
// same simulation with Optuna; bench/search/README.md has the protocol.
//
//   bench_search [--seeds 5] [--budget 16200] [--workers 4] [--every 10]
//                [--sampler tpe|random] [--rebuild] [--pruned-as-complete]
// --rebuild rebuilds the rung state from all records before every report, as
// the coordinator does (it keeps no state in memory between calls).
// --pruned-as-complete tells TPE a stopped trial's last value as its final
// one (what Ray's OptunaSearch does) instead of ranking it by step reached.
// Prints one JSON line per seed.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <queue>
#include <string>
#include <vector>

#include "assay/search.h"

namespace {

using namespace assay::coordinator;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr int64_t kMinStep = 10, kMaxStep = 810;

// examples/search/curve.py's loss_at, term for term.
double loss_at(const Json& p, int64_t step) {
  const double lr = p["lr"].get<double>(), width = p["width"].get<double>();
  const double m = p["momentum"].get<double>();
  const std::string act = p["act"].get<std::string>();
  const double off = act == "relu" ? 0.0 : act == "gelu" ? -0.02 : act == "tanh" ? 0.05 : 0.1;
  const double floor = 0.1 + 0.5 * std::pow(std::log10(lr) + 2.5, 2) +
                       0.02 * std::pow(std::log2(width) - 7.0, 2) + 0.3 * std::pow(m - 0.9, 2) +
                       off;
  const double k = 50.0 * std::sqrt(1e-3 / lr);
  const double noise = 0.005 * std::sin(12.9898 * static_cast<double>(step) +
                                        78.233 * std::log10(lr) + 37.719 * width + 4.1 * m);
  return floor + 1.0 / std::sqrt(1.0 + static_cast<double>(step) / k) + noise;
}

SearchSpec make_spec(uint64_t seed, bool tpe) {
  auto doc = Json::parse(R"({
    "search": {"type": "asha", "metric": "loss", "mode": "min",
               "min_step": 10, "max_step": 810, "reduction_factor": 3, "brackets": 1}})");
  doc["sampler"] = tpe ? "tpe" : "random";
  doc["seed"] = seed;
  std::map<std::string, assay::schemas::Dimension> space;
  using K = assay::schemas::Dimension::Kind;
  space["lr"].kind = K::kLogUniform, space["lr"].low = 1e-5, space["lr"].high = 1e-1;
  space["width"].kind = K::kInt, space["width"].low = 16, space["width"].high = 512;
  space["momentum"].kind = K::kUniform, space["momentum"].low = 0, space["momentum"].high = 0.99;
  space["act"].kind = K::kChoice, space["act"].values = {"relu", "gelu", "tanh", "sigmoid"};
  auto spec = parse_search_spec(doc, space, "bench");
  if (!spec.ok()) {
    std::fprintf(stderr, "%s\n", spec.status().to_string().c_str());
    std::exit(2);
  }
  return *spec;
}

struct Options {
  int seeds = 5, workers = 4, every = 10;
  int64_t budget = 16200;
  bool tpe = true, rebuild = false;
  bool pruned_as_complete = false;  // tell TPE a stopped trial's last value as final
};

struct Trial {
  Json params;
  int64_t id = 0, step = 0;
  double last = 0;
};

double us_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

void run_seed(const Options& o, uint64_t seed) {
  const SearchSpec spec = make_spec(seed, o.tpe);
  AshaState state(*spec.asha);
  std::vector<RungRecord> records;
  std::vector<TrialResult> results;
  std::vector<Trial> running(static_cast<size_t>(o.workers));
  // (time, worker): every worker trains `every` steps per event; a new trial
  // starts on the worker that freed up, at the same time.
  using Ev = std::pair<int64_t, int>;
  std::priority_queue<Ev, std::vector<Ev>, std::greater<>> q;
  int64_t used = 0, next_id = 0;
  double propose_us = 0, decide_us = 0;
  int64_t proposals = 0, reports = 0, decisions = 0, complete = 0;
  double best = std::numeric_limits<double>::infinity();

  auto start = [&](int w) {
    auto t0 = Clock::now();
    auto p = propose(spec, static_cast<int>(next_id), results);
    propose_us += us_since(t0);
    ++proposals;
    running[w] = Trial{*p, next_id++, 0, 0};
  };
  for (int w = 0; w < o.workers; ++w) start(w), q.push({0, w});
  while (!q.empty() && used < o.budget) {
    auto [time, w] = q.top();
    q.pop();
    Trial& t = running[w];
    const int64_t n = std::min<int64_t>({o.every, kMaxStep - t.step, o.budget - used});
    t.step += n;
    used += n;
    t.last = loss_at(t.params, t.step);
    auto t0 = Clock::now();
    if (o.rebuild) {
      auto rb = AshaState::rebuild(*spec.asha, records);
      if (!rb.ok()) std::exit(3);
      state = std::move(*rb);
    }
    auto ds = state.report(t.id, static_cast<int>(t.id), t.step, {t.last});
    decide_us += us_since(t0);
    ++reports;
    bool stop = false;
    for (const auto& d : *ds) {
      records.push_back(d.record());
      ++decisions;
      stop = stop || !d.proceed;
    }
    if (stop || t.step >= kMaxStep) {
      const bool done = t.step >= kMaxStep;
      if (done) best = std::min(best, t.last), ++complete;
      results.push_back({t.params, {t.last}, t.step,
                         done || o.pruned_as_complete ? TrialResult::State::kComplete
                                                      : TrialResult::State::kPruned});
      if (used >= o.budget) break;
      start(w);
    }
    q.push({time + n, w});
  }
  Json out = {{"system", o.rebuild ? "assay-rebuild" : "assay"},
              {"sampler", o.tpe ? "tpe" : "random"},
              {"seed", seed},
              {"best_final", best},
              {"steps", used},
              {"trials", proposals},
              {"complete", complete},
              {"reports", reports},
              {"decisions", decisions},
              {"propose_us", propose_us / static_cast<double>(proposals)},
              {"report_us", decide_us / static_cast<double>(reports)},
              {"per_trial_us", (propose_us + decide_us) / static_cast<double>(proposals)}};
  std::printf("%s\n", out.dump().c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_search: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--seeds") o.seeds = std::stoi(val());
    else if (a == "--budget") o.budget = std::stoll(val());
    else if (a == "--workers") o.workers = std::stoi(val());
    else if (a == "--every") o.every = std::stoi(val());
    else if (a == "--sampler") o.tpe = val() == "tpe";
    else if (a == "--rebuild") o.rebuild = true;
    else if (a == "--pruned-as-complete") o.pruned_as_complete = true;
    else {
      std::fprintf(stderr,
                   "usage: bench_search [--seeds N] [--budget STEPS] [--workers N] [--every N] "
                   "[--sampler tpe|random] [--rebuild] [--pruned-as-complete]\n");
      return 2;
    }
  }
  for (int s = 0; s < o.seeds; ++s) run_seed(o, static_cast<uint64_t>(s));
  return 0;
}
