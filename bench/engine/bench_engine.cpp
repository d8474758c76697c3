// CPU throughput of the GPT engine: training tokens/s (forward, LM loss,
// backward, clip, AdamW) and scoring tokens/s (frozen forward), per config.
//
// usage: bench_engine [--threads N] [--steps N] [--only NAME]
// Prints one table row per config. Not part of the test suite.
// On a machine shared with other busy processes, run with
// OMP_WAIT_POLICY=passive: spinning OpenMP workers otherwise take the CPU
// from the thread doing the work (measured 4x slower with 2 threads on a
// loaded 2-core machine). libgomp reads it at start-up, so it cannot be set
// from inside the program.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "assay/engine.h"

using namespace assay::engine;
using Clock = std::chrono::steady_clock;

namespace {

struct BenchCase {
  const char* name;
  GPTConfig cfg;
  int B, T;
};

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::vector<int32_t> tokens(int n, int V) {
  std::vector<int32_t> t(n);
  uint32_t s = 12345;
  for (int32_t& x : t) {
    s = s * 1664525u + 1013904223u;
    x = (int32_t)((s >> 8) % (uint32_t)V);
  }
  return t;
}

// Returns {train tokens/s, forward tokens/s, final loss}.
bool run_case(const BenchCase& c, int steps, double out[3]) {
  auto mr = GPT::init_random(c.cfg, 1);
  if (!mr.ok()) {
    std::fprintf(stderr, "bench_engine: %s: %s\n", c.name, mr.status().to_string().c_str());
    return false;
  }
  GPT& m = *mr;
  AdamW opt(AdamWConfig{}, m);
  const int BT = c.B * c.T, V = c.cfg.vocab_size;
  const auto x = tokens(BT + 1, V);
  std::vector<int32_t> y(x.begin() + 1, x.end());
  std::vector<float> dlogits((size_t)BT * V);
  float loss = 0;
  auto train_step = [&] {
    auto lg = m.forward(x.data(), c.B, c.T);
    loss = lm_cross_entropy(lg->data(), y.data(), BT, V, dlogits.data());
    m.zero_grad();
    (void)m.backward(dlogits.data());
    clip_grad_norm(m.grads(), 1.0f);
    (void)opt.step(m, 1e-4f);
  };
  train_step();  // warm-up: allocations, page faults, BLAS threads
  auto t0 = Clock::now();
  for (int i = 0; i < steps; i++) train_step();
  out[0] = (double)BT * steps / seconds_since(t0);

  GPT frozen = m.clone(Mode::kFrozen);
  (void)frozen.forward(x.data(), c.B, c.T);
  t0 = Clock::now();
  for (int i = 0; i < steps; i++) (void)frozen.forward(x.data(), c.B, c.T);
  out[1] = (double)BT * steps / seconds_since(t0);
  out[2] = loss;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 0, steps = 5;
  std::string only;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc)
      threads = std::atoi(argv[++i]);
    else if (a == "--steps" && i + 1 < argc)
      steps = std::atoi(argv[++i]);
    else if (a == "--only" && i + 1 < argc)
      only = argv[++i];
    else {
      std::fprintf(stderr, "usage: bench_engine [--threads N] [--steps N] [--only NAME]\n");
      return 2;
    }
  }
  if (threads > 0) set_num_threads(threads);
  const BenchCase cases[] = {
      {"tiny-L2-C64", {257, 128, 2, 4, 64}, 8, 128},
      {"demo-L4-C128", {257, 128, 4, 4, 128}, 8, 128},
      {"gpt2-124M", {50257, 1024, 12, 12, 768}, 4, 64},
  };
  std::printf("threads %d, %d timed steps per config\n", num_threads(), steps);
  std::printf("%-14s %10s %4s %5s %14s %14s %9s\n", "config", "params", "B", "T", "train tok/s",
              "forward tok/s", "loss");
  for (const BenchCase& c : cases) {
    if (!only.empty() && only != c.name) continue;
    double r[3];
    if (!run_case(c, steps, r)) return 1;
    std::printf("%-14s %10zu %4d %5d %14.0f %14.0f %9.4f\n", c.name, c.cfg.num_params(), c.B, c.T,
                r[0], r[1], r[2]);
    std::fflush(stdout);
  }
  return 0;
}
