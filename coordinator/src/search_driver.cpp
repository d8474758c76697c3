// Adaptive search in the coordinator (see search_driver.h for the design).
//
// Rung values: a plain metric objective takes the run's first point at or
// past the rung's step. An objective that names an eval key
// ("<suite>/<metric>[,<filter>]", suite one of the sweep's eval hooks) takes
// the eval of the run's first checkpoint at or past the rung's step: the
// rung waits until that eval run ends; an eval that fails (or is cancelled)
// counts as NaN, the worst value, so a broken eval never holds a rung.
#include "search_driver.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <tuple>

#include "assay/eval_key.h"
#include "assay/search.h"
#include "assay/specs.h"
#include "assay/sweep_expand.h"

namespace assay::coordinator {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr const char* kActor = "coordinator";

// A sweep's search settings, parsed from its stored spec.
struct SweepSearch {
  schemas::SweepSpec sweep;
  SearchSpec search;
  bool sampled = false;                 // runs proposed one by one
  std::vector<bool> eval_objective;     // per objective: an eval key of a hook suite
};
using SearchPtr = std::shared_ptr<const SweepSearch>;

// Sweeps never change after submission, so their parsed settings are kept
// per (database, sweep id, sweep name); null for a sweep without search keys.
// This keeps the metric ingest of ordinary sweeps free of reads. The name
// (from the coordinator's in-memory map) tells a sweep id that a failed
// group commit rolled back, and a later sweep reused, from the first.
using CacheKey = std::tuple<std::string, int64_t, std::string>;
std::mutex g_cache_mu;
std::map<CacheKey, SearchPtr>& cache() {
  static auto* m = new std::map<CacheKey, SearchPtr>();
  return *m;
}

Result<SearchPtr> search_of(Coordinator::Impl& c, int64_t sweep_id) {
  auto name = c.sweep_names.find(sweep_id);
  std::optional<CacheKey> key;
  if (name != c.sweep_names.end()) {
    key = CacheKey(c.db->path(), sweep_id, name->second);
    std::lock_guard<std::mutex> lk(g_cache_mu);
    auto it = cache().find(*key);
    if (it != cache().end()) return it->second;
  }
  ASSAY_ASSIGN_OR_RETURN(store::Sweep sw, c.db->get_sweep(sweep_id));
  SearchPtr out;
  Json doc = Json::parse(sw.spec_json, nullptr, false);
  if (has_search(doc)) {
    const std::string source = "sweep " + sw.name;
    auto spec = schemas::parse_sweep_spec(doc, source);
    if (!spec.ok()) return spec.status();
    auto search = parse_search_spec(doc, spec->space, source);
    if (!search.ok()) return search.status();
    auto s = std::make_shared<SweepSearch>();
    s->sweep = std::move(spec).value();
    s->search = std::move(search).value();
    s->sampled = is_sampled_sweep(doc);
    for (const Objective& o : s->search.objectives) {
      EvalKey k;
      bool is_eval = parse_eval_key(o.metric, &k) && k.stat == EvalKey::Stat::kValue;
      bool hooked = false;
      for (const auto& h : s->sweep.evals) hooked = hooked || h.suite == k.suite;
      s->eval_objective.push_back(is_eval && hooked);
    }
    out = std::move(s);
  }
  if (!key) key = CacheKey(c.db->path(), sweep_id, sw.name);
  std::lock_guard<std::mutex> lk(g_cache_mu);
  cache()[*key] = out;
  return out;
}

// The 0-based position of a sweep run (spec_json "index"); none for runs the
// sweep did not expand or propose (eval runs of its hooks).
std::optional<int> run_index(const store::Run& r) {
  Json spec = Json::parse(r.spec_json, nullptr, false);
  if (!spec.is_object() || !spec.contains("index") || !spec["index"].is_number_integer() ||
      spec.contains("eval_of"))
    return std::nullopt;
  return spec["index"].get<int>();
}

// A run that is ending: its state as the report being applied says.
struct Ending {
  int64_t run_id = 0;
  store::RunState state = store::RunState::kRunning;
};

store::RunState state_of(const store::Run& r, const std::optional<Ending>& ending) {
  return ending && ending->run_id == r.id ? ending->state : r.state;
}

// One objective's value as first reported at or past `step` (step, value);
// none while the run has not got there (or its eval has not ended).
struct Reading {
  int64_t step = 0;
  double value = kNaN;
};

Result<std::optional<Reading>> metric_at(Coordinator::Impl& c, int64_t run_id,
                                         const std::string& key, int64_t step) {
  ASSAY_ASSIGN_OR_RETURN(auto p, c.db->metric_at_or_after(run_id, key, step));
  if (!p) return std::optional<Reading>();
  return std::optional<Reading>(Reading{p->first, p->second});
}

// The value of eval key `key` reported by eval run `eval_run_id`.
Result<double> eval_value(Coordinator::Impl& c, int64_t eval_run_id, const EvalKey& want) {
  ASSAY_ASSIGN_OR_RETURN(auto pts, c.db->metrics(eval_run_id));
  std::string found;  // the key with its version, as the eval reported it
  for (const auto& p : pts) {
    EvalKey k;
    if (!parse_eval_key(p.key, &k) || k.stat != EvalKey::Stat::kValue) continue;
    if (k.suite == want.suite && k.metric == want.metric && k.filter == want.filter)
      found = p.key;
  }
  if (found.empty()) return kNaN;  // missing from a finished eval: the worst
  ASSAY_ASSIGN_OR_RETURN(auto last, c.db->last_metric(eval_run_id, found));  // keeps a null NaN
  return last ? last->second : kNaN;
}

// The eval of the run's first checkpoint at or past `step`.
Result<std::optional<Reading>> eval_at(Coordinator::Impl& c, const store::Run& producer,
                                       const std::string& objective, int64_t step,
                                       const std::optional<Ending>& ending) {
  EvalKey want;
  if (!parse_eval_key(objective, &want)) return std::optional<Reading>();
  ASSAY_ASSIGN_OR_RETURN(auto arts, c.db->artifacts(producer.id));
  std::optional<store::Artifact> first;
  for (const auto& a : arts)
    if (a.kind == "checkpoint" && a.step && *a.step >= step && (!first || *a.step < *first->step))
      first = a;
  if (!first) return std::optional<Reading>();
  ASSAY_ASSIGN_OR_RETURN(auto eval_id, c.db->eval_hook_run(producer.id, first->content_hash,
                                                           want.suite));
  if (!eval_id) return std::optional<Reading>();
  ASSAY_ASSIGN_OR_RETURN(store::Run ev, c.db->get_run(*eval_id));
  const store::RunState st = state_of(ev, ending);
  if (!store::is_terminal(st)) return std::optional<Reading>();  // the rung waits
  if (st != store::RunState::kSucceeded) return std::optional<Reading>(Reading{*first->step, kNaN});
  ASSAY_ASSIGN_OR_RETURN(double v, eval_value(c, ev.id, want));
  return std::optional<Reading>(Reading{*first->step, v});
}

// All objectives at a rung step: the latest of their report steps and their
// values; none until every objective has one.
struct Values {
  int64_t step = 0;
  std::vector<double> values;
};

Result<std::optional<Values>> values_at(Coordinator::Impl& c, const SweepSearch& s,
                                        const store::Run& r, int64_t step,
                                        const std::optional<Ending>& ending) {
  Values out;
  for (size_t j = 0; j < s.search.objectives.size(); ++j) {
    const std::string& m = s.search.objectives[j].metric;
    std::optional<Reading> rd;
    if (s.eval_objective[j]) {
      ASSAY_ASSIGN_OR_RETURN(rd, eval_at(c, r, m, step, ending));
    } else {
      ASSAY_ASSIGN_OR_RETURN(rd, metric_at(c, r.id, m, step));
    }
    if (!rd) return std::optional<Values>();
    out.step = std::max(out.step, rd->step);
    out.values.push_back(rd->value);
  }
  return std::optional<Values>(std::move(out));
}

Json values_json(const std::vector<double>& v) {
  Json a = Json::array();
  for (double x : v) a.push_back(std::isfinite(x) ? Json(x) : Json(nullptr));
  return a;
}

std::vector<double> parse_values(const std::string& text) {
  std::vector<double> out;
  Json a = Json::parse(text, nullptr, false);
  if (a.is_array())
    for (const Json& x : a) out.push_back(x.is_number() ? x.get<double>() : kNaN);
  return out;
}

Result<AshaState> rung_state(Coordinator::Impl& c, const SweepSearch& s, int64_t sweep_id) {
  ASSAY_ASSIGN_OR_RETURN(auto rows, c.db->rungs(sweep_id));
  std::vector<RungRecord> recs;
  recs.reserve(rows.size());
  for (const auto& r : rows)
    recs.push_back({r.run_id, r.bracket, r.rung, r.reported_step, parse_values(r.values_json),
                    r.proceed});
  return AshaState::rebuild(*s.search.asha, recs);
}

// Stops a run at a rung: a running run through the cancel path (its worker
// stops the process; the end it reports becomes `pruned`, see
// search_on_finished); one not started yet is pruned at once.
Status prune(Coordinator::Impl& c, const store::Run& r, const std::string& why) {
  if (r.state == store::RunState::kRunning) {
    if (c.cancel_requested.count(r.id)) return Status::Ok();
    bool pending = false;
    return c.cancel_run(r, kActor, &pending);
  }
  // Ended already (or, never started, reporting nothing): the decision stays
  // on record and nothing else changes.
  if (r.state != store::RunState::kLeased) return Status::Ok();
  store::Transition t;
  t.run_id = r.id;
  t.to = store::RunState::kPruned;
  t.expect_from = r.state;
  t.actor = kActor;
  t.detail = "pruned before it started: " + why;
  ASSAY_RETURN_IF_ERROR(c.db->transition(t));
  c.sched.dequeue(r.id);
  c.sched.release(r.id);
  return Status::Ok();
}

// Decides every rung `r` has reached. Runs inside the caller's transaction.
Status decide(Coordinator::Impl& c, const SweepSearch& s, const store::Run& r,
              const std::optional<Ending>& ending) {
  auto idx = run_index(r);
  if (!idx || !s.search.asha) return Status::Ok();
  ASSAY_ASSIGN_OR_RETURN(AshaState state, rung_state(c, s, *r.sweep_id));
  while (!state.stopped(r.id)) {
    const int64_t next = state.next_rung_step(r.id, *idx);
    if (next < 0) break;
    ASSAY_ASSIGN_OR_RETURN(auto v, values_at(c, s, r, next, ending));
    if (!v) break;
    ASSAY_ASSIGN_OR_RETURN(auto decisions, state.report(r.id, *idx, v->step, v->values));
    if (decisions.empty()) break;
    for (const RungDecision& d : decisions) {
      store::RungRow row;
      row.sweep_id = *r.sweep_id;
      row.run_id = r.id;
      row.bracket = d.bracket;
      row.rung = d.rung;
      row.step = d.rung_step;
      row.reported_step = d.reported_step;
      row.values_json = values_json(d.values).dump();
      row.cutoff_json = s.search.objectives.size() == 1 && std::isfinite(d.cutoff)
                            ? Json(d.cutoff).dump()
                            : std::string("null");
      row.proceed = d.proceed;
      row.at = c.now();
      const std::string why = d.reason(*s.search.asha);
      ASSAY_ASSIGN_OR_RETURN(bool fresh, c.db->record_rung(row, kActor, why));
      if (fresh && !d.proceed) {
        ASSAY_ASSIGN_OR_RETURN(store::Run now, c.db->get_run(r.id));
        ASSAY_RETURN_IF_ERROR(prune(c, now, why));
      }
    }
  }
  return Status::Ok();
}

// Errors of the search settings or records (not of the database) are
// reported on the run instead of failing the report that triggered them.
Status contain(Coordinator::Impl& c, int64_t run_id, Status st) {
  if (st.ok()) return st;
  if (st.code() != Code::kInvalidArgument && st.code() != Code::kCorruption) return st;
  return c.db->add_event(run_id, kActor, "search_error", st.message());
}

// ---- sampled sweeps ------------------------------------------------------------

Result<std::vector<double>> last_values(Coordinator::Impl& c, const SweepSearch& s,
                                        const store::Run& r, int64_t* step,
                                        const std::optional<Ending>& ending) {
  std::vector<double> out;
  *step = 0;
  for (size_t j = 0; j < s.search.objectives.size(); ++j) {
    const std::string& m = s.search.objectives[j].metric;
    double v = kNaN;
    if (s.eval_objective[j]) {
      // The eval of the latest checkpoint that has an ended eval.
      ASSAY_ASSIGN_OR_RETURN(auto arts, c.db->artifacts(r.id));
      int64_t best = -1;
      for (const auto& a : arts) {
        if (a.kind != "checkpoint" || !a.step || *a.step <= best) continue;
        ASSAY_ASSIGN_OR_RETURN(auto rd, eval_at(c, r, m, *a.step, ending));
        if (rd && rd->step == *a.step) {
          best = *a.step;
          v = rd->value;
        }
      }
      *step = std::max(*step, best);
    } else {
      ASSAY_ASSIGN_OR_RETURN(auto p, c.db->last_metric(r.id, m));
      if (p) {
        v = p->second;
        *step = std::max(*step, p->first);
      }
    }
    out.push_back(v);
  }
  return out;
}

Result<TrialResult> trial_of(Coordinator::Impl& c, const SweepSearch& s, const store::Run& r,
                             store::RunState st, const std::optional<Ending>& ending) {
  TrialResult t;
  t.params = Json::parse(r.params_json, nullptr, false);
  if (!t.params.is_object()) t.params = Json::object();
  ASSAY_ASSIGN_OR_RETURN(t.values, last_values(c, s, r, &t.step, ending));
  t.state = st == store::RunState::kSucceeded ? TrialResult::State::kComplete
            : st == store::RunState::kPruned  ? TrialResult::State::kPruned
                                              : TrialResult::State::kFailed;
  return t;
}

// Proposes runs until max_concurrent are in flight or the budget is spent.
// Each proposal and its sample row commit together (own transaction, or the
// caller's).
Status propose_more(Coordinator::Impl& c, const SweepSearch& s, int64_t sweep_id,
                    const std::optional<Ending>& ending) {
  store::RunFilter f;
  f.sweep_id = sweep_id;
  f.limit = static_cast<int>(kMaxSweepRuns);
  ASSAY_ASSIGN_OR_RETURN(auto runs, c.db->list_runs(f));
  ASSAY_ASSIGN_OR_RETURN(auto samples, c.db->samples(sweep_id));
  std::set<int64_t> sampled;
  for (const auto& x : samples) sampled.insert(x.sample_index);
  std::vector<std::pair<const store::Run*, store::RunState>> done;
  const store::Run* model = nullptr;
  const store::Run* ending_run = nullptr;
  int in_flight = 0;
  int64_t next = 0;
  for (const auto& r : runs) {
    auto idx = run_index(r);
    if (!idx) continue;
    model = &r;
    next = std::max<int64_t>(next, *idx + 1);
    if (!sampled.count(*idx)) {
      // A first proposal, inserted at submission (sweep_expand.cpp): its row.
      ASSAY_RETURN_IF_ERROR(c.db->put_sample({sweep_id, *idx, r.params_json, r.id, c.now()}));
      sampled.insert(*idx);
    }
    const store::RunState st = state_of(r, ending);
    if (ending && ending->run_id == r.id && store::is_terminal(st)) ending_run = &r;
    else if (!store::is_terminal(st)) ++in_flight;  // a preempted run stays in flight
    else done.emplace_back(&r, st);
  }
  for (int64_t k : sampled) next = std::max(next, k + 1);
  const int cap = s.search.max_concurrent > 0 ? s.search.max_concurrent : s.search.samples;
  if (!model || in_flight >= cap || next >= s.search.samples) return Status::Ok();
  // Results in the order the runs ended; the one ending now last.
  std::stable_sort(done.begin(), done.end(), [](const auto& a, const auto& b) {
    double ta = a.first->reported_at.value_or(0), tb = b.first->reported_at.value_or(0);
    return ta != tb ? ta < tb : a.first->id < b.first->id;
  });
  if (ending_run) done.emplace_back(ending_run, ending->state);
  std::vector<TrialResult> results;
  for (const auto& [r, st] : done) {
    ASSAY_ASSIGN_OR_RETURN(TrialResult t, trial_of(c, s, *r, st, ending));
    results.push_back(std::move(t));
  }
  Json model_spec = Json::parse(model->spec_json, nullptr, false);
  if (!model_spec.is_object()) model_spec = Json::object();
  std::vector<int64_t> created;
  for (; in_flight < cap && next < s.search.samples; ++in_flight, ++next) {
    const int k = static_cast<int>(next);
    ASSAY_ASSIGN_OR_RETURN(Json params, propose(s.search, k, results));
    ASSAY_ASSIGN_OR_RETURN(ExpandedRun er, sampled_run(s.sweep, k, params));
    store::NewRun nr;
    nr.sweep_id = sweep_id;
    nr.name = er.name;
    model_spec["index"] = k;
    nr.spec_json = dump_json(model_spec);
    nr.params_json = dump_json(er.params);
    nr.command = er.command;
    nr.priority = model->priority;
    nr.resources = model->resources;
    nr.labels_json = model->labels_json;
    nr.max_attempts = model->max_attempts;
    nr.timeout_s = model->timeout_s;
    ASSAY_RETURN_IF_ERROR(c.db->transaction([&]() -> Status {
      ASSAY_ASSIGN_OR_RETURN(int64_t id, c.db->insert_run(nr, kActor));
      ASSAY_RETURN_IF_ERROR(c.db->put_sample({sweep_id, k, nr.params_json, id, c.now()}));
      created.push_back(id);
      return c.db->add_event(id, kActor, "proposed",
                             "sample " + std::to_string(k) + " of " +
                                 std::to_string(s.search.samples) + " (" +
                                 (s.search.sampler == Sampler::kTpe ? "tpe" : "random") +
                                 ", from " + std::to_string(results.size()) + " results)");
    }));
  }
  c.enqueue_runs(created);
  return Status::Ok();
}

// The stop recorded for a run, if any.
Result<std::optional<store::RungRow>> stop_of(Coordinator::Impl& c, const store::Run& r) {
  ASSAY_ASSIGN_OR_RETURN(auto rows, c.db->rungs(*r.sweep_id));
  for (const auto& row : rows)
    if (row.run_id == r.id && !row.proceed) return std::optional<store::RungRow>(row);
  return std::optional<store::RungRow>();
}

Status on_finished(Coordinator::Impl& c, const store::Run& r, RunOutcome* oc) {
  if (!r.sweep_id) return Status::Ok();
  ASSAY_ASSIGN_OR_RETURN(SearchPtr s, search_of(c, *r.sweep_id));
  if (!s) return Status::Ok();
  if (s->search.asha && oc->state == store::RunState::kCancelled) {
    ASSAY_ASSIGN_OR_RETURN(auto stop, stop_of(c, r));
    if (stop) {
      oc->state = store::RunState::kPruned;
      oc->reason.reset();
      oc->detail = "pruned at rung " + std::to_string(stop->rung) + " of bracket " +
                   std::to_string(stop->bracket) + " (step " + std::to_string(stop->step) +
                   "): values " + stop->values_json + ", cut-off " + stop->cutoff_json;
    }
  }
  const Ending ending{r.id, oc->state};
  if (s->search.asha && !run_index(r)) {
    // An eval run of a producer in this sweep: its end may decide a rung.
    ASSAY_ASSIGN_OR_RETURN(auto hook, c.db->eval_hook_of(r.id));
    if (hook) {
      ASSAY_ASSIGN_OR_RETURN(store::Run producer, c.db->get_run(hook->producer_run_id));
      ASSAY_RETURN_IF_ERROR(c.db->transaction([&]() -> Status {
        return contain(c, producer.id, decide(c, *s, producer, ending));
      }));
    }
    return Status::Ok();
  }
  // A run a user cancelled (a stop at a rung ends pruned instead) proposes
  // nothing: cancelling a sampled sweep cancels its runs, and must not
  // bring new ones.
  if (s->sampled && oc->state != store::RunState::kCancelled)
    return propose_more(c, *s, *r.sweep_id, ending);
  return Status::Ok();
}

}  // namespace

Status search_on_metrics(Coordinator::Impl& c, const store::Run& r) {
  if (!r.sweep_id) return Status::Ok();
  auto s = search_of(c, *r.sweep_id);
  if (!s.ok()) return contain(c, r.id, s.status());
  if (!*s || !(*s)->search.asha || (*s)->eval_objective.empty()) return Status::Ok();
  return contain(c, r.id, decide(c, **s, r, std::nullopt));
}

void search_on_finished(Coordinator::Impl& c, const store::Run& r, RunOutcome* oc) {
  Status st = on_finished(c, r, oc);
  if (!st.ok()) (void)c.db->add_event(r.id, kActor, "search_error", st.message());
}

void search_on_lost(Coordinator::Impl& c, const store::Run& r) {
  if (!r.sweep_id || r.state != store::RunState::kFailed) return;
  Status st = [&]() -> Status {
    ASSAY_ASSIGN_OR_RETURN(SearchPtr s, search_of(c, *r.sweep_id));
    if (!s || !s->sampled || !run_index(r)) return Status::Ok();
    return propose_more(c, *s, *r.sweep_id, std::nullopt);
  }();
  if (!st.ok()) (void)c.db->add_event(r.id, kActor, "search_error", st.message());
}

Status search_on_eval_results(Coordinator::Impl& c, const store::Run& eval_run) {
  if (!eval_run.sweep_id) return Status::Ok();
  auto s = search_of(c, *eval_run.sweep_id);
  if (!s.ok() || !*s || !(*s)->search.asha) return Status::Ok();
  ASSAY_ASSIGN_OR_RETURN(auto hook, c.db->eval_hook_of(eval_run.id));
  if (!hook) return Status::Ok();
  ASSAY_ASSIGN_OR_RETURN(store::Run producer, c.db->get_run(hook->producer_run_id));
  return contain(c, producer.id, decide(c, **s, producer, std::nullopt));
}

}  // namespace assay::coordinator
