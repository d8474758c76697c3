// Adaptive search in the coordinator: ASHA rung decisions on a sweep's
// metrics, pruning through the cancel path, and lazy proposals of sampled
// sweeps (algorithms in assay/search.h; tables of migration 0008).
//
// Nothing is kept in memory between calls: every decision rebuilds the
// sweep's rung state from its records (Store::rungs, AshaState::rebuild), so
// a coordinator restart (even kill -9) loses no decision and repeats none. A
// decision and its 'rung' event are written together, and a proposal with its
// run (search_samples' primary key makes a sample index unique).
#pragma once

#include "core_internal.h"
#include "outcome.h"

namespace assay::coordinator {

// Metrics of `r` were just written (inside the caller's transaction): decides
// each rung the run has reached; a stop asks its worker to stop the process
// (cancel path) or, for a run not started yet, prunes it at once. Problems of
// the search itself (a spec or records that no longer parse) become a
// 'search_error' event rather than failing the metric report.
Status search_on_metrics(Coordinator::Impl& c, const store::Run& r);

// The worker reported the end of `r`, classified as *oc (before it is
// applied): a run stopped at a rung and then ended by that stop ends pruned;
// a sampled sweep proposes its next runs (treating `r` as finished with that
// outcome). An eval run of a search sweep's producer that failed decides the
// producer's waiting rung with the worst value.
void search_on_finished(Coordinator::Impl& c, const store::Run& r, RunOutcome* oc);

// The coordinator ended `r` itself (its lease was lost with no attempts left):
// a sampled sweep proposes its next runs, so losing the last run in flight
// does not stall the sweep. Errors become a 'search_error' event.
void search_on_lost(Coordinator::Impl& c, const store::Run& r);

// An eval run of `eval_run` succeeded and its results were copied
// (eval_hooks.cpp): the producer's rungs that waited for them are decided.
Status search_on_eval_results(Coordinator::Impl& c, const store::Run& eval_run);

}  // namespace assay::coordinator
