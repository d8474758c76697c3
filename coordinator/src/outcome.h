// How a run ended, from its worker's `finished` report: the run's terminal
// state, failure reason and a one-line detail for users. Pure: no database,
// no clock; h_finished (handlers_worker.cpp) applies the result.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "assay/store.h"

namespace assay::coordinator {

// The facts of one `finished` report (worker/README-protocol.md), plus what
// the coordinator knows of the run.
struct ExitReport {
  std::optional<int64_t> exit_code;
  std::optional<int64_t> signal;
  bool oom_killed = false;     // the host OOM killer ended it (worker's evidence)
  bool timed_out = false;      // the worker stopped it at its timeout
  bool cancelled = false;      // the worker stopped it on a cancel
  bool preempted = false;      // the worker was preempted and asked it to checkpoint
  std::string spawn_error;     // non-empty: the process never started
  bool cancel_pending = false;          // a user asked to cancel the run
  std::optional<double> timeout_s;      // the run's timeout, for the detail
};

struct RunOutcome {
  store::RunState state = store::RunState::kSucceeded;
  std::optional<store::FailureReason> reason;
  std::string detail;  // empty on success
};

// Precedence: spawn error > cancelled (or killed by a signal while a cancel
// was pending) > preempted (any end but exit code 0: state kQueued, no
// reason; the caller requeues it without using up an attempt) > timeout > out of memory (host OOM killer, or a CUDA OOM line
// in the log) > signal > non-zero exit code > success. `log_text` is called
// only for a failed run that the host OOM killer did not end: it returns the
// end of the run's output (report tail and stored logs).
RunOutcome classify_outcome(const ExitReport& r, const std::function<std::string()>& log_text);

// The first line of `text` that reports a CUDA allocation failure (cut to
// 300 bytes), or "".
std::string cuda_oom_line(std::string_view text);

// "SIGKILL" for 9, ...; "signal" for numbers without a common name.
const char* signal_name(int64_t sig);

}  // namespace assay::coordinator
