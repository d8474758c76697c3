// Parity of the native engine with an independent PyTorch implementation of
// the same model (tests/torchref/torch_gpt.py), on the same weights, tokens
// and targets: logits, mean cross-entropy, every parameter gradient, and two
// AdamW steps against torch.optim.AdamW. Skips when ASSAY_REF_PYTHON cannot
// `import torch` (Debian's python3-torch).
//
// Error metric, per tensor: rel(a, b) = max_i |a_i - b_i| / max(max_i |b_i|, 1e-30),
// with a = ours and b = PyTorch's. Bounds: 1e-4 for logits, loss and
// gradients (against torch in float32 and in float64); 1e-6 for the
// parameters after each AdamW step (torch in float32, fed our gradients, so
// only the optimizer is compared).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "assay/engine.h"

using namespace assay::engine;
namespace fs = std::filesystem;

namespace {

// Small enough for a few seconds in PyTorch. T spans two causal attention
// blocks of the engine (64 queries), the second one partial; T < n_positions
// so the unused wpe rows must get zero gradient on both sides.
const GPTConfig kCfg{257, 96, 2, 4, 64};
constexpr int kB = 2, kT = 80;
constexpr float kLr = 0.01f, kWd = 0.1f;

std::string python() { return ASSAY_REF_PYTHON; }

bool have_torch() {
  return std::system((python() + " -c 'import torch' >/dev/null 2>&1").c_str()) == 0;
}

// Deterministic values in [-1, 1) (LCG), so the test needs no RNG library.
struct Lcg {
  uint32_t s;
  float next() {
    s = s * 1664525u + 1013904223u;
    return (float)((s >> 8) & 0xFFFFFF) / 8388608.0f - 1.0f;
  }
};

double rel_err(std::span<const float> a, std::span<const float> b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); i++) {
    num = std::max(num, std::fabs((double)a[i] - (double)b[i]));
    den = std::max(den, std::fabs((double)b[i]));
  }
  return num / std::max(den, 1e-30);
}

// Our values and what the PyTorch script produced for the same inputs.
struct Comparison {
  std::unique_ptr<GPT> model;            // after forward + backward (grads set)
  std::vector<float> logits;             // ours [B,T,V]
  float loss = 0;                        // ours
  std::vector<float> params0, g1, g2;    // params before AdamW, the two gradients fed
  std::vector<float> adam1, adam2;       // our params after AdamW step 1 and 2
  std::unique_ptr<SafeTensors> torch;    // torch_gpt.py output
};

// Weights made less trivial than the init: larger matrices so attention is
// not uniform, nonzero biases and LayerNorm weights away from 1.
void perturb(GPT& m) {
  Lcg r{7};
  for (const ParamTensor& t : m.param_info()) {
    float* p = m.params().data() + t.offset;
    for (size_t i = 0; i < t.numel; i++)
      p[i] = t.shape.size() == 2 ? p[i] * 6.0f : p[i] + 0.3f * r.next();
  }
}

// Returns "" on success, else what failed.
std::string run_all(Comparison& f, const fs::path& dir) {
  auto mr = GPT::init_random(kCfg, 42);
  if (!mr.ok()) return mr.status().to_string();
  f.model = std::make_unique<GPT>(std::move(*mr));
  GPT& m = *f.model;
  perturb(m);
  auto tok = make_byte_tokenizer();
  auto h = save_checkpoint((dir / "ckpt").string(), m, *tok, CheckpointMeta{});
  if (!h.ok()) return h.status().to_string();

  // Tokens and next-token targets, with some targets ignored (-1).
  const int BT = kB * kT, V = kCfg.vocab_size;
  std::vector<int32_t> x(BT), y(BT);
  Lcg r{99};
  for (int i = 0; i < BT; i++) x[i] = (int32_t)((r.next() + 1.0f) * 0.5f * (V - 1));
  for (int i = 0; i < BT; i++) y[i] = (i % 5 == 3) ? -1 : x[(i + 1) % BT];
  auto lg = m.forward(x.data(), kB, kT);
  if (!lg.ok()) return lg.status().to_string();
  f.logits.assign(lg->begin(), lg->end());
  std::vector<float> dlogits((size_t)BT * V);
  f.loss = lm_cross_entropy(f.logits.data(), y.data(), BT, V, dlogits.data());
  m.zero_grad();
  if (auto s = m.backward(dlogits.data()); !s.ok()) return s.to_string();

  // AdamW inputs: g1 = our gradients, g2 = a fixed mix with fresh values so
  // the second step sees m and v that differ from the first.
  f.g1.assign(m.grads().begin(), m.grads().end());
  f.g2.resize(f.g1.size());
  Lcg r2{3};
  for (size_t i = 0; i < f.g2.size(); i++) f.g2[i] = -0.5f * f.g1[i] + 1e-3f * r2.next();
  f.params0.assign(m.params().begin(), m.params().end());
  {
    GPT opt_model = m.clone(Mode::kTrain);
    AdamWConfig oc;
    oc.weight_decay = kWd;
    AdamW opt(oc, opt_model);
    if (auto s = opt.step(opt_model.params(), f.g1, kLr); !s.ok()) return s.to_string();
    f.adam1.assign(opt_model.params().begin(), opt_model.params().end());
    if (auto s = opt.step(opt_model.params(), f.g2, kLr); !s.ok()) return s.to_string();
    f.adam2.assign(opt_model.params().begin(), opt_model.params().end());
  }

  // Inputs file for the script (token ids are exact in F32).
  std::vector<float> xf(x.begin(), x.end()), yf(y.begin(), y.end());
  std::vector<TensorRef> in = {{"tokens", {kB, kT}, xf.data()}, {"targets", {kB, kT}, yf.data()}};
  for (const ParamTensor& t : m.param_info()) {
    in.push_back({"g1." + t.name, t.shape, f.g1.data() + t.offset});
    in.push_back({"g2." + t.name, t.shape, f.g2.data() + t.offset});
  }
  const fs::path inputs = dir / "inputs.safetensors", out = dir / "torch.safetensors";
  if (auto s = write_safetensors(inputs.string(), in); !s.ok()) return s.to_string();
  char lr[32], wd[32];
  std::snprintf(lr, sizeof lr, "%.9g", (double)kLr);
  std::snprintf(wd, sizeof wd, "%.9g", (double)kWd);
  const std::string cmd = python() + " " + ASSAY_SOURCE_DIR + "/tests/torchref/torch_gpt.py parity " +
                          (dir / "ckpt").string() + " " + inputs.string() + " " + out.string() +
                          " --lr " + lr + " --wd " + wd;
  if (std::system(cmd.c_str()) != 0) return "command failed: " + cmd;
  auto st = SafeTensors::read(out.string());
  if (!st.ok()) return st.status().to_string();
  f.torch = std::make_unique<SafeTensors>(std::move(*st));
  return "";
}

// Tensor `name` of the script's output as floats (empty when missing).
std::vector<float> torch_tensor(const Comparison& f, const std::string& name) {
  auto v = f.torch->to_f32(name);
  EXPECT_TRUE(v.ok()) << name << ": " << v.status().to_string();
  return v.ok() ? *v : std::vector<float>{};
}

void check_logits_and_loss(const Comparison& f) {
  for (const char* tag : {"f32", "f64"}) {
    const auto logits = torch_tensor(f, std::string(tag) + ".logits");
    ASSERT_EQ(logits.size(), f.logits.size()) << tag;
    const double e = rel_err(f.logits, logits);
    std::printf("%s logits rel err %.3g\n", tag, e);
    EXPECT_LE(e, 1e-4) << tag << " logits";
    const auto loss = torch_tensor(f, std::string(tag) + ".loss");
    ASSERT_EQ(loss.size(), 1u);
    EXPECT_LE(std::fabs(f.loss - loss[0]) / std::fabs(loss[0]), 1e-4) << tag << " loss";
    // Not a tautology: the loss of these weights is far from trivial.
    EXPECT_GT(loss[0], 1.0f);
  }
}

void check_gradients(const Comparison& f) {
  const GPT& m = *f.model;
  double worst = 0;
  std::string worst_name;
  for (const char* tag : {"f32", "f64"}) {
    for (const ParamTensor& t : m.param_info()) {
      const auto g = torch_tensor(f, std::string(tag) + ".grad." + t.name);
      ASSERT_EQ(g.size(), t.numel) << t.name;
      const double e = rel_err(m.grads().subspan(t.offset, t.numel), g);
      EXPECT_LE(e, 1e-4) << tag << " grad of " << t.name;
      if (e > worst) worst = e, worst_name = std::string(tag) + " " + t.name;
    }
  }
  std::printf("worst gradient rel err %.3g (%s)\n", worst, worst_name.c_str());
  // Rows of wpe past T get no gradient on either side.
  const ParamTensor* wpe = m.find_param("transformer.wpe.weight");
  ASSERT_NE(wpe, nullptr);
  for (size_t i = (size_t)kT * kCfg.n_embd; i < wpe->numel; i++)
    ASSERT_EQ(m.grads()[wpe->offset + i], 0.0f);
}

void check_adamw(const Comparison& f) {
  const GPT& m = *f.model;
  double worst = 0;
  for (int step = 1; step <= 2; step++) {
    const std::vector<float>& ours = step == 1 ? f.adam1 : f.adam2;
    for (const ParamTensor& t : m.param_info()) {
      const auto p = torch_tensor(f, "adamw" + std::to_string(step) + "." + t.name);
      ASSERT_EQ(p.size(), t.numel) << t.name;
      const double e = rel_err(std::span<const float>(ours.data() + t.offset, t.numel), p);
      EXPECT_LE(e, 1e-6) << "AdamW step " << step << " " << t.name;
      worst = std::max(worst, e);
    }
  }
  std::printf("worst AdamW parameter rel err %.3g\n", worst);
  // The step moved the parameters by about lr, so a wrong update (or decay
  // on 1-D tensors: LayerNorm weights are near 1) would exceed the bound.
  double moved = 0;
  for (size_t i = 0; i < f.params0.size(); i++)
    moved = std::max(moved, std::fabs((double)f.adam1[i] - f.params0[i]));
  EXPECT_GT(moved, 0.5 * kLr);
}

}  // namespace

// One test, so that the PyTorch script (a few seconds, mostly `import torch`)
// runs once: ctest runs each gtest case in its own process.
TEST(TorchParity, LogitsGradientsAndAdamWMatchPyTorch) {
  if (!have_torch()) GTEST_SKIP() << python() << " cannot import torch (install Debian's python3-torch)";
  const fs::path dir = fs::path(ASSAY_BINARY_DIR) / "test_tmp" / "torch_parity";
  fs::remove_all(dir);
  fs::create_directories(dir);
  Comparison f;
  const std::string err = run_all(f, dir);
  ASSERT_EQ(err, "") << "preparing the PyTorch comparison failed";
  {
    SCOPED_TRACE("logits and loss");
    check_logits_and_loss(f);
  }
  {
    SCOPED_TRACE("gradients");
    check_gradients(f);
  }
  {
    SCOPED_TRACE("AdamW");
    check_adamw(f);
  }
}
