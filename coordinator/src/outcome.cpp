#include "outcome.h"

namespace assay::coordinator {

const char* signal_name(int64_t sig) {
  switch (sig) {
    case 1: return "SIGHUP";
    case 2: return "SIGINT";
    case 3: return "SIGQUIT";
    case 4: return "SIGILL";
    case 6: return "SIGABRT";
    case 7: return "SIGBUS";
    case 8: return "SIGFPE";
    case 9: return "SIGKILL";
    case 11: return "SIGSEGV";
    case 13: return "SIGPIPE";
    case 15: return "SIGTERM";
    default: return "signal";
  }
}

std::string cuda_oom_line(std::string_view text) {
  static constexpr std::string_view kPatterns[] = {"CUDA out of memory", "CUDA error: out of memory",
                                                   "cudaErrorMemoryAllocation", "OutOfMemoryError"};
  for (std::string_view p : kPatterns) {
    size_t at = text.find(p);
    if (at == std::string_view::npos) continue;
    size_t b = text.rfind('\n', at);
    b = b == std::string_view::npos ? 0 : b + 1;
    size_t e = text.find('\n', at);
    std::string line(text.substr(b, (e == std::string_view::npos ? text.size() : e) - b));
    if (line.size() > 300) line = line.substr(0, 300) + "...";
    return line;
  }
  return "";
}

RunOutcome classify_outcome(const ExitReport& r, const std::function<std::string()>& log_text) {
  using F = store::FailureReason;
  auto failed = [](F reason, std::string detail) {
    return RunOutcome{store::RunState::kFailed, reason, std::move(detail)};
  };
  if (!r.spawn_error.empty()) return failed(F::kSpawnError, "could not start: " + r.spawn_error);
  if (r.cancelled || (r.cancel_pending && r.signal))
    return {store::RunState::kCancelled, F::kCancelled, "cancelled by user"};
  // A preempted run that still completed (exit code 0) succeeded; any other
  // end (the checkpoint-and-exit code, a signal, the kill at the grace) is a
  // preemption, not a failure of the run.
  if (r.preempted && !(r.exit_code && *r.exit_code == 0 && !r.signal)) {
    std::string how = r.signal ? "killed by signal " + std::to_string(*r.signal) + " (" +
                                     signal_name(*r.signal) + ")"
                      : r.exit_code ? "exited with code " + std::to_string(*r.exit_code)
                                    : "ended";
    return {store::RunState::kQueued, std::nullopt, "preempted: " + how};
  }
  if (r.timed_out)
    return failed(F::kTimeout, r.timeout_s ? "exceeded timeout of " +
                                                 std::to_string(static_cast<int64_t>(*r.timeout_s)) +
                                                 " s"
                                           : "timed out");
  if (r.oom_killed) return failed(F::kOom, "out of memory: killed by the host OOM killer");
  const bool nonzero = r.exit_code && *r.exit_code != 0;
  // CUDA OOM text only matters for a run that failed; the logs are read only then.
  if ((nonzero || r.signal) && log_text) {
    std::string line = cuda_oom_line(log_text());
    if (!line.empty()) return failed(F::kOom, "out of memory: CUDA OOM in log: " + line);
  }
  if (r.signal)
    return failed(F::kSignal, "killed by signal " + std::to_string(*r.signal) + " (" +
                                  signal_name(*r.signal) + ")");
  if (nonzero) return failed(F::kExitCode, "exited with code " + std::to_string(*r.exit_code));
  return {store::RunState::kSucceeded, std::nullopt, ""};
}

}  // namespace assay::coordinator
