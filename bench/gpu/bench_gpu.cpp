// GPU throughput of the native engine (CUDA backend) on a GPT-2 shape:
// training tokens/s (forward, fused CE, backward, clip, AdamW) and scoring
// tokens/s (frozen forward + per-token log-probs), plus MFU.
//
// MFU = flops/s ÷ peak, with training flops 6·N·tokens and scoring flops
// 2·N·tokens (N = parameters, tied head once; attention's T² term left out,
// as in the usual 6N estimate). The peak is --peak-tflops or, by GPU name,
// the dense BF16 tensor-core peak (the same denominator torch_gpt2.py uses,
// so the two MFUs compare; this engine runs TF32, whose peak is half).
//
// Prints one JSON line: {"engine": "assay", ...}.
//   bench_gpu [--B 8] [--T 1024] [--L 12] [--C 768] [--NH 12] [--V 50257]
//             [--steps 10] [--warmup 3] [--device 0] [--peak-tflops X]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "assay/engine.h"
#include "assay/engine_cuda.h"

namespace {

using namespace assay::engine;

struct Args {
  int B = 8, T = 1024, L = 12, C = 768, NH = 12, V = 50257, steps = 10, warmup = 3, device = 0;
  double peak_tflops = 0;
};

bool parse(int argc, char** argv, Args& a) {
  for (int i = 1; i < argc; i++) {
    const std::string k = argv[i];
    if (i + 1 >= argc) return false;
    const char* v = argv[++i];
    if (k == "--B") a.B = std::atoi(v);
    else if (k == "--T") a.T = std::atoi(v);
    else if (k == "--L") a.L = std::atoi(v);
    else if (k == "--C") a.C = std::atoi(v);
    else if (k == "--NH") a.NH = std::atoi(v);
    else if (k == "--V") a.V = std::atoi(v);
    else if (k == "--steps") a.steps = std::atoi(v);
    else if (k == "--warmup") a.warmup = std::atoi(v);
    else if (k == "--device") a.device = std::atoi(v);
    else if (k == "--peak-tflops") a.peak_tflops = std::atof(v);
    else return false;
  }
  return a.B > 0 && a.T > 0 && a.steps > 0 && a.warmup >= 0;
}

// Dense BF16 tensor-core peaks (TFLOP/s) by device-name substring.
double peak_by_name(const std::string& name) {
  struct P {
    const char* key;
    double tflops;
  };
  static const P table[] = {{"H200", 989.0},  {"H100 PCIe", 756.0}, {"H100", 989.0}, {"GH200", 989.0},
                            {"A100", 312.0},  {"L40S", 362.0},      {"L4", 121.0},   {"A10G", 70.0},
                            {"RTX 4090", 165.0}, {"A6000", 155.0}};
  for (const P& p : table)
    if (name.find(p.key) != std::string::npos) return p.tflops;
  return 0;
}

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int fail(const assay::Status& s, const char* what) {
  std::fprintf(stderr, "bench_gpu: %s: %s\n", what, s.message().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!parse(argc, argv, a)) {
    std::fprintf(stderr, "usage: bench_gpu [--B 8] [--T 1024] [--L 12] [--C 768] [--NH 12] [--V 50257] "
                         "[--steps 10] [--warmup 3] [--device 0] [--peak-tflops X]\n");
    return 2;
  }
  if (!cuda::built_with_cuda()) {
    std::fprintf(stderr, "bench_gpu: this build has no CUDA support (nvcc was not found when it was built)\n");
    return 2;
  }
  auto name = cuda::device_name(a.device);
  if (!name.ok()) return fail(name.status(), "device");
  const double peak = a.peak_tflops > 0 ? a.peak_tflops : peak_by_name(*name);

  const GPTConfig cfg{a.V, a.T, a.L, a.NH, a.C};
  auto host = GPT::init_random(cfg, 1, Mode::kFrozen);
  if (!host.ok()) return fail(host.status(), "init");
  const double N = (double)cfg.num_params();
  std::mt19937 g(7);
  const size_t BT = (size_t)a.B * a.T;
  std::vector<int32_t> x(BT), y(BT);
  for (size_t i = 0; i < BT; i++) x[i] = (int32_t)(g() % (unsigned)a.V);
  for (size_t i = 0; i < BT; i++) y[i] = i + 1 < BT ? x[i + 1] : 0;

  double train_tps = 0, first_loss = 0, last_loss = 0;
  {
    auto m = cuda::CudaGPT::create(*host, a.device, Mode::kTrain);
    if (!m.ok()) return fail(m.status(), "CudaGPT::create (train)");
    AdamWConfig ac;
    double t0 = 0;
    for (int s = 0; s < a.warmup + a.steps; s++) {
      if (s == a.warmup) t0 = now();
      if (auto st = m->zero_grad(); !st.ok()) return fail(st, "zero_grad");
      if (auto st = m->forward(x.data(), a.B, a.T); !st.ok()) return fail(st, "forward");
      auto loss = m->cross_entropy_backward(y.data(), nullptr);
      if (!loss.ok()) return fail(loss.status(), "cross_entropy_backward");
      if (auto st = m->backward(); !st.ok()) return fail(st, "backward");
      auto gn = m->clip_grad_norm(1.0f);
      if (!gn.ok()) return fail(gn.status(), "clip_grad_norm");
      if (auto st = m->adamw_step(ac, 1e-4f); !st.ok()) return fail(st, "adamw_step");
      if (s == 0) first_loss = loss->loss;
      last_loss = loss->loss;
    }
    train_tps = (double)BT * a.steps / (now() - t0);
  }
  double score_tps = 0;
  {
    auto m = cuda::CudaGPT::create(*host, a.device, Mode::kFrozen);
    if (!m.ok()) return fail(m.status(), "CudaGPT::create (score)");
    std::vector<float> lp(BT);
    double t0 = 0;
    for (int s = 0; s < a.warmup + a.steps; s++) {
      if (s == a.warmup) t0 = now();
      if (auto st = m->forward(x.data(), a.B, a.T); !st.ok()) return fail(st, "forward (score)");
      if (auto st = m->logprob_gather(y.data(), lp, nullptr); !st.ok()) return fail(st, "logprob_gather");
    }
    score_tps = (double)BT * a.steps / (now() - t0);
  }
  const double mfu_train = peak > 0 ? 6.0 * N * train_tps / (peak * 1e12) : -1;
  const double mfu_score = peak > 0 ? 2.0 * N * score_tps / (peak * 1e12) : -1;
  std::printf("{\"engine\": \"assay\", \"mode\": \"fp32+tf32\", \"device\": \"%s\", \"B\": %d, \"T\": %d, "
              "\"params\": %.0f, \"train_tokens_per_s\": %.1f, \"score_tokens_per_s\": %.1f, "
              "\"peak_tflops\": %.1f, \"mfu_train\": %.4f, \"mfu_score\": %.4f, \"first_loss\": %.4f, "
              "\"last_loss\": %.4f}\n",
              name->c_str(), a.B, a.T, N, train_tps, score_tps, peak, mfu_train, mfu_score, first_loss, last_loss);
  return 0;
}
