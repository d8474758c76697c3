// The run-outcome classifier (coordinator/src/outcome.h), one row per case.
#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "outcome.h"

using assay::coordinator::classify_outcome;
using assay::coordinator::cuda_oom_line;
using assay::coordinator::ExitReport;
using assay::store::FailureReason;
using assay::store::RunState;

namespace {

struct Case {
  const char* name;
  ExitReport report;
  std::string log;  // what the run printed last
  RunState state;
  std::optional<FailureReason> reason;
  std::string detail;
  bool reads_log;
};

ExitReport exit_code(int64_t c) { return {.exit_code = c}; }
ExitReport signal(int64_t s) { return {.signal = s}; }

const char* kCudaOom =
    "step 10\n"
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n"
    "bye\n";

const Case kCases[] = {
    {"zero exit", exit_code(0), "", RunState::kSucceeded, std::nullopt, "", false},
    {"zero exit with OOM text", exit_code(0), kCudaOom, RunState::kSucceeded, std::nullopt, "",
     false},
    {"non-zero exit", exit_code(3), "Traceback\n", RunState::kFailed, FailureReason::kExitCode,
     "exited with code 3", true},
    {"signal", signal(11), "", RunState::kFailed, FailureReason::kSignal,
     "killed by signal 11 (SIGSEGV)", true},
    {"unnamed signal", signal(40), "", RunState::kFailed, FailureReason::kSignal,
     "killed by signal 40 (signal)", true},
    {"CUDA OOM in log", exit_code(1), kCudaOom, RunState::kFailed, FailureReason::kOom,
     "out of memory: CUDA OOM in log: torch.OutOfMemoryError: CUDA out of memory. Tried to "
     "allocate 2.00 GiB",
     true},
    {"CUDA OOM then killed", signal(6), "x\nRuntimeError: CUDA error: out of memory\n",
     RunState::kFailed, FailureReason::kOom,
     "out of memory: CUDA OOM in log: RuntimeError: CUDA error: out of memory", true},
    {"host OOM killer", {.signal = 9, .oom_killed = true}, kCudaOom, RunState::kFailed,
     FailureReason::kOom, "out of memory: killed by the host OOM killer", false},
    {"timeout with limit", {.signal = 15, .timed_out = true, .timeout_s = 90.7}, kCudaOom,
     RunState::kFailed, FailureReason::kTimeout, "exceeded timeout of 90 s", false},
    {"timeout without limit", {.signal = 15, .timed_out = true}, "", RunState::kFailed,
     FailureReason::kTimeout, "timed out", false},
    {"cancelled by the worker", {.signal = 15, .timed_out = true, .cancelled = true}, "",
     RunState::kCancelled, FailureReason::kCancelled, "cancelled by user", false},
    {"signal while a cancel was pending", {.signal = 15, .cancel_pending = true}, "",
     RunState::kCancelled, FailureReason::kCancelled, "cancelled by user", false},
    {"exit while a cancel was pending", {.exit_code = 0, .cancel_pending = true}, "",
     RunState::kSucceeded, std::nullopt, "", false},
    {"spawn error beats everything",
     {.cancelled = true, .spawn_error = "no such file", .cancel_pending = true}, "",
     RunState::kFailed, FailureReason::kSpawnError, "could not start: no such file", false},
};

}  // namespace

TEST(Outcome, TableOfReports) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    bool read = false;
    auto o = classify_outcome(c.report, [&] {
      read = true;
      return c.log;
    });
    EXPECT_EQ(o.state, c.state);
    EXPECT_EQ(o.reason, c.reason);
    EXPECT_EQ(o.detail, c.detail);
    EXPECT_EQ(read, c.reads_log);
  }
}

TEST(Outcome, CudaOomLineIsTheWholeLineCut) {
  EXPECT_EQ(cuda_oom_line("a\nb cudaErrorMemoryAllocation c\nd"), "b cudaErrorMemoryAllocation c");
  EXPECT_EQ(cuda_oom_line("nothing here"), "");
  std::string long_line = std::string(400, 'x') + " OutOfMemoryError";
  EXPECT_EQ(cuda_oom_line(long_line), std::string(300, 'x') + "...");
}
