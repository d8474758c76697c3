// How fast one worker can take metrics in, stage by stage:
//   1. parse: MetricLineReader over in-memory lines (lines/s, points/s)
//   2. pipe:  a real child process writing lines to ASSAY_METRICS_FD, drained
//             and parsed here (lines/s through the kernel pipe)
//   3. spool: fsync'd appends of 1,000-point metric batches (points/s)
// Usage: bench_worker_pipeline [lines=200000]
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "assay/worker_process.h"
#include "assay/worker_protocol.h"
#include "assay/worker_spool.h"

using namespace assay::worker;
using Clock = std::chrono::steady_clock;

namespace {

double secs_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string line_for(long i) {
  return "{\"step\": " + std::to_string(i) + ", \"metrics\": {\"loss\": " +
         std::to_string(1.0 / (1 + i)) + ", \"acc\": 0.5}}\n";
}

}  // namespace

int main(int argc, char** argv) {
  long n = argc > 1 ? std::atol(argv[1]) : 200000;
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("assay-bench-worker-" + std::to_string(getpid()));
  fs::create_directories(dir);

  // 1. parse
  std::string text;
  for (long i = 0; i < n; ++i) text += line_for(i);
  MetricLineReader r;
  auto t0 = Clock::now();
  for (size_t off = 0; off < text.size(); off += 65536) r.feed(std::string_view(text).substr(off, 65536));
  r.finish();
  double dt = secs_since(t0);
  size_t parsed = r.take_parsed().size();
  std::printf("parse : %ld lines in %.3f s = %.0f lines/s (%.0f points/s)\n", static_cast<long>(parsed),
              dt, parsed / dt, 2 * parsed / dt);

  // 2. pipe: a child shell loop is far too slow to be the bottleneck we want
  // to measure, so the child replays a prepared file with cat.
  {
    std::FILE* f = std::fopen((dir / "lines.txt").c_str(), "w");
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
    LaunchSpec s;
    s.command = "cat '" + (dir / "lines.txt").string() + "' >&3";
    s.stdout_path = (dir / "out.log").string();
    s.stderr_path = (dir / "err.log").string();
    MetricLineReader pr;
    t0 = Clock::now();
    auto p = Process::spawn(s);
    if (!p.ok()) {
      std::fprintf(stderr, "spawn: %s\n", p.status().message().c_str());
      return 1;
    }
    bool open = true;
    size_t got = 0;
    while (open) {
      pollfd pfd{(*p)->metrics_fd(), POLLIN, 0};
      ::poll(&pfd, 1, 100);
      open = drain_fd((*p)->metrics_fd(), pr);
      got += pr.take_parsed().size();
    }
    pr.finish();
    got += pr.take_parsed().size();
    (*p)->wait_finished(std::chrono::seconds(10));
    dt = secs_since(t0);
    std::printf("pipe  : %zu lines in %.3f s = %.0f lines/s\n", got, dt, got / dt);
  }

  // 3. spool: batches of 1,000 points, one fsync per append (as the
  // supervisor does per flush).
  {
    auto sp = Spool::open((dir / "spool").string());
    if (!sp.ok()) return 1;
    nlohmann::json pts = nlohmann::json::array();
    for (int i = 0; i < 1000; ++i) pts.push_back({{"key", "loss"}, {"step", i}, {"value", 0.5}, {"time", 1.7e9}});
    std::string payload = nlohmann::json{{"type", "metrics"}, {"run_id", 1}, {"attempt", 1},
                                         {"body", {{"batch_seq", 0}, {"points", pts}}}}
                              .dump();
    int batches = 200;
    t0 = Clock::now();
    for (int b = 0; b < batches; ++b) {
      if (!(*sp)->append(payload).ok()) return 1;
    }
    dt = secs_since(t0);
    std::printf("spool : %d fsync'd appends of 1000 points (%zu bytes) in %.3f s = %.0f points/s, "
                "%.2f ms per append\n",
                batches, payload.size(), dt, batches * 1000 / dt, 1000 * dt / batches);
  }
  fs::remove_all(dir);
  return 0;
}
