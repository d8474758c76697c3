// Native engine side of the PyTorch comparison (bench/torchref/run.sh):
// training tokens/s (forward, LM loss, backward, clip to norm 1, AdamW) and
// forward-only scoring tokens/s (frozen model, logits only) for one config.
// Each figure is B*T divided by the median time of the timed steps, after
// warm-up steps: wall-clock time, and also process CPU time (all threads),
// which a loaded machine disturbs less. torch_bench.py does the same steps
// in PyTorch.
//
// usage: bench_native [--threads N] [--warmup N] [--steps N] [--layers L]
//                     [--embd C] [--heads NH] [--seq T] [--batch B] [--vocab V]
// Output: one line "native train_tok_s=... forward_tok_s=... train_cpu_tok_s=...
// forward_cpu_tok_s=... loss=... threads=...".
// Run with OMP_WAIT_POLICY=passive on a shared machine (libgomp reads it at
// start-up): spinning OpenMP workers take the CPU from the working thread.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "assay/engine.h"

using namespace assay::engine;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  int threads = 1, warmup = 2, steps = 7;
  int L = 4, C = 256, NH = 4, T = 256, B = 8, V = 257;
};

bool parse(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return false;
    const int v = std::atoi(argv[++i]);
    if (a == "--threads") o.threads = v;
    else if (a == "--warmup") o.warmup = v;
    else if (a == "--steps") o.steps = v;
    else if (a == "--layers") o.L = v;
    else if (a == "--embd") o.C = v;
    else if (a == "--heads") o.NH = v;
    else if (a == "--seq") o.T = v;
    else if (a == "--batch") o.B = v;
    else if (a == "--vocab") o.V = v;
    else return false;
  }
  return o.threads >= 1 && o.steps >= 1 && o.warmup >= 0;
}

double cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Timing {
  double wall_s, cpu_s;  // medians per call
};

// Median wall and CPU seconds of `steps` calls of fn after `warmup` untimed calls.
template <class Fn>
Timing time_steps(int warmup, int steps, Fn&& fn) {
  for (int i = 0; i < warmup; i++) fn();
  std::vector<double> wall, cpu;
  for (int i = 0; i < steps; i++) {
    const auto t0 = Clock::now();
    const double c0 = cpu_seconds();
    fn();
    cpu.push_back(cpu_seconds() - c0);
    wall.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return {median(wall), median(cpu)};
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, o)) {
    std::fprintf(stderr,
                 "usage: bench_native [--threads N] [--warmup N] [--steps N] [--layers L] "
                 "[--embd C] [--heads NH] [--seq T] [--batch B] [--vocab V]\n");
    return 2;
  }
  set_num_threads(o.threads);
  const GPTConfig cfg{o.V, o.T, o.L, o.NH, o.C};
  auto mr = GPT::init_random(cfg, 1);
  if (!mr.ok()) {
    std::fprintf(stderr, "bench_native: %s\n", mr.status().to_string().c_str());
    return 1;
  }
  GPT& m = *mr;
  AdamW opt(AdamWConfig{}, m);
  const int BT = o.B * o.T;
  // Fixed pseudo-random tokens (LCG); targets are the next token.
  std::vector<int32_t> x(BT + 1);
  uint32_t s = 12345;
  for (int32_t& t : x) {
    s = s * 1664525u + 1013904223u;
    t = (int32_t)((s >> 8) % (uint32_t)o.V);
  }
  std::vector<int32_t> y(x.begin() + 1, x.end());
  std::vector<float> dlogits((size_t)BT * o.V);
  float loss = 0;
  const Timing train = time_steps(o.warmup, o.steps, [&] {
    auto lg = m.forward(x.data(), o.B, o.T);
    loss = lm_cross_entropy(lg->data(), y.data(), BT, o.V, dlogits.data());
    m.zero_grad();
    (void)m.backward(dlogits.data());
    clip_grad_norm(m.grads(), 1.0f);
    (void)opt.step(m, 1e-4f);
  });
  GPT frozen = m.clone(Mode::kFrozen);
  const Timing fwd =
      time_steps(o.warmup, o.steps, [&] { (void)frozen.forward(x.data(), o.B, o.T); });
  std::printf(
      "native train_tok_s=%.1f forward_tok_s=%.1f train_cpu_tok_s=%.1f forward_cpu_tok_s=%.1f "
      "loss=%.4f threads=%d\n",
      BT / train.wall_s, BT / fwd.wall_s, BT / train.cpu_s, BT / fwd.cpu_s, loss, num_threads());
  return 0;
}
