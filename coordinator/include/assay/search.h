// Adaptive search: ASHA early stopping (single- and multi-objective rungs),
// Pareto fronts, and the TPE sampler. Pure code: no I/O, no SQLite, no clock.
// The coordinator persists every rung record it gets from here and rebuilds
// the state from those records on restart (AshaState::rebuild).
//
// Sweep document keys (beside the existing name/command/space/samples/seed):
//   "search": {"type": "asha",              // "asha" (or "none": sampler only)
//              "metric": "loss", "mode": "min",   // one objective (mode defaults to min), or:
//              "objectives": [{"metric": "unlearning/nll,forget", "mode": "max"},
//                             {"metric": "unlearning/nll,retain", "mode": "min"}],
//              "min_step": 10, "max_step": 810,   // trainer steps (metric "step")
//              "reduction_factor": 3,             // eta, integer >= 2
//              "brackets": 1}                     // Hyperband brackets, >= 1
//   "sampler": "random" | "tpe"            // default "random"
//   "samples": 40                          // the budget: runs proposed in all
//   "max_concurrent": 4                    // runs in flight at once; 0 = no bound
//   "seed": 7                              // seeds the sampler's stream
//   "tpe": {"n_startup_trials": 10, "n_ei_candidates": 24, "prior_weight": 1.0}
// "objectives" may also sit at the top level of the sweep (not in both places).
// Dimensions are the sweep's /space entries (schemas::Dimension): uniform
// {low, high}, loguniform {low, high}, int {low, high} (inclusive), choice
// {values}. The TPE sampler refuses grid dimensions (use choice).
//
// ASHA (Li et al. 2020, "A System for Massively Parallel Hyperparameter
// Tuning", MLSys; the stopping variant used by Ray Tune's ASHAScheduler and
// Optuna's SuccessiveHalvingPruner):
//   - Bracket b (0 <= b < brackets) has rungs r_k = min_step * eta^(b+k) for
//     every k >= 0 with r_k <= max_step. A run's bracket is index % brackets
//     (index = its 0-based position in the sweep), so the assignment is
//     deterministic and brackets fill round-robin.
//   - When a run first reports at or past a rung's step, the value it reported
//     at that first report (step >= r_k) is recorded at the rung; the run
//     continues iff fewer than keep = max(1, floor(n / eta)) of the n values
//     recorded at that rung so far (its own included) are strictly better.
//     So ties with the cut-off continue, and while n < eta (bootstrap) only a
//     value at least as good as every earlier one continues. This is Optuna's
//     SuccessiveHalvingPruner rule (its promotable index max(0, n // eta - 1),
//     ties kept, "the first eta - 1 trials continue only when best").
//     Ray's ASHAScheduler instead compares against the (1 - 1/eta) percentile
//     of the other values (linear interpolation) and records only at the
//     highest rung passed; here a run that reports sparsely past several rungs
//     is decided rung by rung, lowest first, each with the same reported value,
//     and a stop at one rung records nothing at the higher ones.
//   - NaN (single objective) is the worst value: it is recorded (ranked below
//     every number) and its run stops, even at n = 1: a NaN loss means the run
//     diverged.
//   - A rung at exactly max_step records (the run has its full budget) but
//     never stops: the run is complete there.
//   - Decisions depend only on the state (values recorded per rung), so
//     replaying the records in their order reproduces them (rebuild()).
// Multi-objective rungs (MO-ASHA, Schmucker et al. 2021): the n points at a
// rung are ranked by non-dominated sorting, then crowding distance within a
// front (NSGA-II, Deb et al. 2002); a run continues iff fewer than keep of the
// n points rank strictly better (an earlier front, or the same front with a
// strictly larger crowding distance). NaN in an objective, and a failed eval
// (pass NaN), is the worst value in that objective only.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "assay/specs.h"
#include "assay/status.h"

namespace assay::coordinator {

enum class Mode { kMin, kMax };

struct Objective {
  std::string metric;  // metric name as logged, or an eval key "suite/metric,filter"
  Mode mode = Mode::kMin;
};

struct AshaConfig {
  std::vector<Objective> objectives;  // one for single-objective ASHA
  int64_t min_step = 1;               // first rung of bracket 0, trainer steps
  int64_t max_step = 1;               // full budget, trainer steps
  int reduction_factor = 3;           // eta
  int brackets = 1;
};

enum class Sampler { kRandom, kTpe };

// Optuna's TPESampler defaults.
struct TpeConfig {
  int n_startup_trials = 10;  // random proposals until this many results are in
  int n_ei_candidates = 24;   // draws from l(x) per dimension, best l/g kept
  double prior_weight = 1.0;
};

struct SearchSpec {
  std::optional<AshaConfig> asha;     // absent: no early stopping
  std::vector<Objective> objectives;  // what the sampler optimises (= asha's when set)
  Sampler sampler = Sampler::kRandom;
  int samples = 1;                    // budget of runs
  int max_concurrent = 0;             // 0 = unbounded
  uint64_t seed = 0;
  TpeConfig tpe;
  std::map<std::string, schemas::Dimension> space;  // sorted by name
};

// Whether the sweep document asks for adaptive search (has "search",
// "sampler", "objectives", "max_concurrent" or "tpe").
bool has_search(const nlohmann::json& sweep_doc);

// Parses the search keys of a sweep document. `space` is the sweep's parsed
// /space; `source` names the document in errors, which read like
//   "sweep.json: /search/reduction_factor: expected an integer >= 2, got 1".
Result<SearchSpec> parse_search_spec(const nlohmann::json& sweep_doc,
                                     const std::map<std::string, schemas::Dimension>& space,
                                     std::string_view source);

// ---------------------------------------------------------------- ASHA

// Rung steps of a bracket, ascending; empty when b is out of range.
std::vector<int64_t> rung_steps(const AshaConfig& c, int bracket);
// The bracket of the run at 0-based sweep position `run_index`.
int bracket_of(const AshaConfig& c, int run_index);

struct RungRecord;

// One rung decision, kept for the audit log and persisted as a record.
struct RungDecision {
  int64_t run_id = 0;
  int bracket = 0;
  int rung = 0;                  // index within the bracket
  int64_t rung_step = 0;         // r_k
  int64_t reported_step = 0;     // the step of the report that reached the rung
  std::vector<double> values;    // one per objective, as reported (NaN kept)
  int n = 0;                     // values recorded at the rung, this one included
  int keep = 0;                  // max(1, floor(n / eta))
  int better = 0;                // recorded points strictly better than this one
  // Single objective: the keep-th best value recorded at the rung (the value a
  // run must match or beat); NaN for multi-objective rungs.
  double cutoff = 0;
  bool proceed = true;           // false: stop (prune) the run
  bool final_rung = false;       // rung_step == max_step: records, never stops
  // "rung 1 (step 30): loss 0.52 ranks 3 of 7, keep 2 (cut-off 0.41): stop"
  std::string reason(const AshaConfig& c) const;
  RungRecord record() const;  // what to persist
};

// A persisted decision, replayed in its original order by rebuild(). NaN
// values must round-trip (store NULL or the JSON string "NaN", read back NaN).
struct RungRecord {
  int64_t run_id = 0;
  int bracket = 0;
  int rung = 0;
  int64_t reported_step = 0;
  std::vector<double> values;
  bool proceed = true;
};

// The rung state of one ASHA sweep: per bracket and rung, the values recorded
// per run; per run, the rungs decided so far and whether it was stopped.
// Invariants: a run is recorded at rung k of its bracket only after rungs
// 0..k-1 with proceed; after a stop nothing more is recorded for it.
class AshaState {
 public:
  explicit AshaState(AshaConfig c);
  const AshaConfig& config() const { return c_; }

  // A report of `values` (one per objective) at trainer step `step` by the run
  // at sweep position `run_index`. Returns the decisions it triggers (none when
  // no new rung is reached, or the run already stopped), lowest rung first;
  // after a stop no further rung is decided. Error when `values` has the wrong
  // size. The caller persists each decision (RungRecord) before acting on it.
  Result<std::vector<RungDecision>> report(int64_t run_id, int run_index, int64_t step,
                                           const std::vector<double>& values);

  // The next rung step the run has to reach, or -1 when it stopped or has no
  // rung left. For the coordinator to know which report it waits for (e.g. the
  // eval of the first checkpoint at or past this step).
  int64_t next_rung_step(int64_t run_id, int run_index) const;
  bool stopped(int64_t run_id) const;

  // Rebuilds the state from persisted records in their original order,
  // recomputing each decision; a record whose recomputed decision differs
  // (other spec, reordered or edited records) is a Corruption error naming it.
  static Result<AshaState> rebuild(AshaConfig c, const std::vector<RungRecord>& records);

  // Values recorded at a rung (run id -> values), for views and tests.
  const std::map<int64_t, std::vector<double>>& recorded(int bracket, int rung) const;

 private:
  struct RunState {
    int bracket = 0;
    int decided = 0;  // rungs decided so far
    bool stopped = false;
  };
  RungDecision decide(int64_t run_id, int bracket, int rung, int64_t step,
                      const std::vector<double>& values);

  AshaConfig c_;
  std::vector<std::vector<std::map<int64_t, std::vector<double>>>> rungs_;  // [bracket][rung]
  std::map<int64_t, RunState> runs_;
};

// ---------------------------------------------------------------- Pareto

// Indices of the non-dominated points (ascending). points[i][j] is objective j
// of point i; modes[j] says its direction; NaN is the worst in its objective.
// Equal points do not dominate each other (both are kept).
std::vector<size_t> pareto_front(const std::vector<std::vector<double>>& points,
                                 const std::vector<Mode>& modes);
// Front index per point (0 = non-dominated), fast non-dominated sort (NSGA-II).
std::vector<int> nondominated_ranks(const std::vector<std::vector<double>>& points,
                                    const std::vector<Mode>& modes);
// Crowding distance per point within its front (NSGA-II): the sum over
// objectives of the normalised gap between its neighbours; +inf at a front's
// ends and in fronts of size <= 2. NaN/inf values are placed beyond the worst
// finite value so distances stay finite inside a front.
std::vector<double> crowding_distances(const std::vector<std::vector<double>>& points,
                                       const std::vector<Mode>& modes,
                                       const std::vector<int>& ranks);

// ---------------------------------------------------------------- samplers

// A finished (or stopped) run as the sampler sees it.
struct TrialResult {
  enum class State { kComplete, kPruned, kFailed };
  nlohmann::json params;        // flat object: dimension name -> value
  std::vector<double> values;   // one per objective (last value reported)
  int64_t step = 0;             // step of that value (pruned runs: where stopped)
  State state = State::kComplete;
};

// Proposes the params of sample `k` (0-based) of the sweep, given the results
// finished so far in the order they finished. Deterministic: the same spec,
// k and results give the same params on every platform (own SplitMix64 stream
// seeded from (spec.seed, k); no std:: distributions).
//
// Random: each dimension draws uniformly (log-uniform for loguniform).
// TPE (Bergstra et al. 2011, as Optuna's default TPESampler: univariate,
// consider_prior, magic clip, no endpoints): random while fewer than
// n_startup_trials results are complete or pruned; then the results are
// ordered (complete by value, then pruned by step descending then value,
// then failed), the best gamma(n) = min(ceil(0.1 n), 25) form l(x), the rest
// g(x); weights are 1 for the newest 25 and a ramp from 1/n before them;
// each dimension draws n_ei_candidates from l and keeps the one maximising
// log l(x) - log g(x). Several objectives are ordered by non-dominated rank,
// then crowding distance (Optuna's MOTPE uses hypervolume contributions).
Result<nlohmann::json> propose(const SearchSpec& spec, int k,
                               const std::vector<TrialResult>& results);

}  // namespace assay::coordinator
