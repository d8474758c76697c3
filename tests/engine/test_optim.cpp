// AdamW against hand-computed steps, clipping, LR schedule, state files.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <string>
#include <vector>

#include "assay/engine.h"
#include "temp_dir.h"

using namespace assay::engine;
namespace fs = std::filesystem;


TEST(AdamW, MatchesHandComputedSteps) {
  // θ0 = [1, 1, -2], g = [0.5, 0.5, -0.1]; element 1 is not decayed.
  AdamWConfig cfg;
  cfg.beta1 = 0.9f;
  cfg.beta2 = 0.999f;
  cfg.eps = 1e-8f;
  cfg.weight_decay = 0.1f;
  AdamW opt(cfg, 3, {1, 0, 1});
  std::vector<float> p = {1.0f, 1.0f, -2.0f};
  const std::vector<float> g = {0.5f, 0.5f, -0.1f};
  const float lr = 0.1f;
  ASSERT_TRUE(opt.step(p, g, lr).ok());
  // Step 1: m̂ = g, v̂ = g², so the update is lr·sign(g) (eps negligible):
  //   θ0 = 1 decayed:   1·(1 − 0.01) − 0.1 = 0.89
  //   θ1 = 1 no decay:  1 − 0.1 = 0.9
  //   θ2 = −2 decayed: −2·0.99 + 0.1 = −1.88
  EXPECT_NEAR(p[0], 0.89f, 1e-6);
  EXPECT_NEAR(p[1], 0.90f, 1e-6);
  EXPECT_NEAR(p[2], -1.88f, 1e-6);
  EXPECT_EQ(opt.t(), 1);
  // Step 2 with g' = [0.25, -0.5, -0.1], by the formula in double:
  const std::vector<float> g2 = {0.25f, -0.5f, -0.1f};
  std::vector<double> expect(3);
  for (int i = 0; i < 3; i++) {
    double m = 0.1 * g[i], v = 0.001 * g[i] * g[i];
    m = 0.9 * m + 0.1 * g2[i];
    v = 0.999 * v + 0.001 * (double)g2[i] * g2[i];
    const double mh = m / (1 - 0.81), vh = v / (1 - 0.999 * 0.999);
    double th = p[i];
    if (i != 1) th *= 1 - 0.1 * 0.1;
    expect[i] = th - 0.1 * mh / (std::sqrt(vh) + 1e-8);
  }
  ASSERT_TRUE(opt.step(p, g2, lr).ok());
  for (int i = 0; i < 3; i++) EXPECT_NEAR(p[i], expect[i], 2e-6) << i;
  // Element 1, by hand: m = 0.9·0.05 − 0.05 = −0.005, m̂ = −0.005/0.19 = −0.0263158;
  // v = 0.999·0.00025 + 0.00025 = 0.00049975, v̂ = 0.00049975/0.001999 = 0.25;
  // θ = 0.9 + 0.1·0.0263158/0.5 = 0.9052632
  EXPECT_NEAR(p[1], 0.9052632f, 2e-6);
}

TEST(AdamW, ModelMaskDecaysOnlyMatrices) {
  auto m = GPT::init_random(GPTConfig{10, 4, 1, 1, 4}, 1);
  ASSERT_TRUE(m.ok());
  AdamWConfig cfg;
  cfg.weight_decay = 0.5f;
  AdamW opt(cfg, *m);
  std::fill(m->params().begin(), m->params().end(), 1.0f);
  m->zero_grad();  // zero gradients: only decay moves parameters
  ASSERT_TRUE(opt.step(*m, 0.1f).ok());
  for (const ParamTensor& t : m->param_info()) {
    const float expect = t.decay ? 0.95f : 1.0f;
    EXPECT_FLOAT_EQ(m->params()[t.offset], expect) << t.name;
  }
  std::vector<float> wrong(3);
  EXPECT_FALSE(opt.step(wrong, wrong, 0.1f).ok());
}

TEST(Clip, GlobalNorm) {
  std::vector<float> g = {3.0f, 4.0f};
  EXPECT_FLOAT_EQ(clip_grad_norm(g, 10.0f), 5.0f);  // below max: unchanged
  EXPECT_EQ(g[0], 3.0f);
  EXPECT_FLOAT_EQ(clip_grad_norm(g, 1.0f), 5.0f);  // returns the pre-clip norm
  EXPECT_NEAR(g[0], 0.6f, 1e-6);
  EXPECT_NEAR(g[1], 0.8f, 1e-6);
  EXPECT_NEAR(grad_norm(g), 1.0f, 1e-6);
  std::vector<float> z(1000, 0.0f);
  EXPECT_EQ(clip_grad_norm(z, 1.0f), 0.0f);
}

TEST(LrSchedule, WarmupCosineLinearConstant) {
  LrSchedule s;
  s.lr_max = 1.0f;
  s.lr_min = 0.1f;
  s.warmup = 10;
  s.total = 110;
  EXPECT_FLOAT_EQ(s.at(0), 0.1f);  // (0+1)/10
  EXPECT_FLOAT_EQ(s.at(4), 0.5f);
  EXPECT_FLOAT_EQ(s.at(9), 1.0f);
  EXPECT_FLOAT_EQ(s.at(10), 1.0f);
  EXPECT_NEAR(s.at(35), 0.1 + 0.45 * (1 + std::cos(M_PI / 4)), 1e-6);  // 0.868198
  EXPECT_NEAR(s.at(60), 0.55f, 1e-6);
  EXPECT_FLOAT_EQ(s.at(110), 0.1f);
  EXPECT_FLOAT_EQ(s.at(1000), 0.1f);
  s.decay = LrSchedule::Decay::kLinear;
  EXPECT_NEAR(s.at(35), 0.775f, 1e-6);
  EXPECT_NEAR(s.at(109), 0.1f + 0.9f / 100, 1e-6);
  s.decay = LrSchedule::Decay::kConstant;
  EXPECT_FLOAT_EQ(s.at(100), 1.0f);
  EXPECT_FLOAT_EQ(s.at(5), 0.6f);
}

TEST(AdamW, StateFileRoundTripAndResume) {
  const fs::path dir = temp_dir("adamw_state");
  AdamW a(AdamWConfig{}, 5, {});
  std::vector<float> p = {1, 2, 3, 4, 5}, g = {0.1f, -0.2f, 0.3f, -0.4f, 0.5f};
  for (int i = 0; i < 3; i++) ASSERT_TRUE(a.step(p, g, 0.01f).ok());
  const std::string path = (dir / "optimizer.bin").string();
  ASSERT_TRUE(a.save(path).ok());
  EXPECT_EQ(fs::file_size(path), 40u + 8 * 5);
  AdamW b(AdamWConfig{}, 5, {});
  ASSERT_TRUE(b.load(path).ok());
  EXPECT_EQ(b.t(), 3);
  EXPECT_EQ(a.m(), b.m());
  EXPECT_EQ(a.v(), b.v());
  std::vector<float> p2 = p;
  ASSERT_TRUE(a.step(p, g, 0.01f).ok());
  ASSERT_TRUE(b.step(p2, g, 0.01f).ok());
  EXPECT_EQ(p, p2);

  AdamW wrong(AdamWConfig{}, 6, {});
  EXPECT_EQ(wrong.load(path).code(), assay::Code::kInvalidArgument);
  {
    std::ofstream f(path, std::ios::binary | std::ios::app);
    f << "x";
  }
  EXPECT_EQ(b.load(path).code(), assay::Code::kCorruption);
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << "NOTADAMW........................................";
  }
  EXPECT_EQ(b.load(path).code(), assay::Code::kCorruption);
}

namespace {
std::string file_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}
}  // namespace

// A CUDA device model hands its AdamW state over as spans (m, v in
// param_layout() order, plus t); checkpoints write them through
// save_adamw_state and resume reads them with load_adamw_state. The file is
// byte for byte what AdamW::save writes for the same state, and a CPU AdamW
// that loads it continues exactly like the optimizer that produced the state.
TEST(AdamW, DeviceLayoutStateRoundTripsThroughOptimizerFile) {
  const fs::path dir = temp_dir("adamw_device_state");
  GPTConfig mc;
  mc.vocab_size = 11;
  mc.n_positions = 8;
  mc.n_layer = 2;
  mc.n_head = 2;
  mc.n_embd = 8;
  auto model = GPT::init_random(mc, 5);
  ASSERT_TRUE(model.ok()) << model.status().message();
  // The premise that makes the conversion the identity: the host buffer
  // order (param_info, AdamW's m/v) is param_layout(), the layout a device
  // model is created with.
  const std::vector<ParamTensor> layout = param_layout(mc);
  ASSERT_EQ(layout.size(), model->param_info().size());
  for (size_t i = 0; i < layout.size(); i++) {
    EXPECT_EQ(layout[i].name, model->param_info()[i].name);
    EXPECT_EQ(layout[i].offset, model->param_info()[i].offset);
    EXPECT_EQ(layout[i].numel, model->param_info()[i].numel);
  }

  AdamWConfig cfg;
  cfg.weight_decay = 0.1f;
  AdamW producer(cfg, *model);
  const size_t n = model->num_params();
  std::vector<float> p(model->params().begin(), model->params().end()), g(n);
  for (int s = 0; s < 3; s++) {
    for (size_t i = 0; i < n; i++) g[i] = std::sin(0.37f * (float)i + (float)s) * 0.01f;
    ASSERT_TRUE(producer.step(p, g, 1e-2f).ok());
  }
  // What download_adam_state and adamw_t return on a device.
  const std::vector<float> dm = producer.m(), dv = producer.v();
  const int64_t dt = producer.t();

  const fs::path from_spans = dir / "spans.bin", from_adamw = dir / "adamw.bin";
  ASSERT_TRUE(save_adamw_state(from_spans.string(), cfg, dt, dm, dv).ok());
  ASSERT_TRUE(producer.save(from_adamw.string()).ok());
  EXPECT_EQ(fs::file_size(from_spans), 40u + 8 * n);
  EXPECT_EQ(file_bytes(from_spans), file_bytes(from_adamw));

  // Back to spans (what upload_adam_state takes).
  auto st = load_adamw_state(from_spans.string(), n);
  ASSERT_TRUE(st.ok()) << st.status().message();
  EXPECT_EQ(st->t, dt);
  EXPECT_EQ(st->m, dm);
  EXPECT_EQ(st->v, dv);

  // Into a fresh CPU optimizer, which then steps exactly like the producer.
  AdamW resumed(cfg, *model);
  ASSERT_TRUE(resumed.load(from_spans.string()).ok());
  EXPECT_EQ(resumed.t(), dt);
  EXPECT_EQ(resumed.m(), dm);
  EXPECT_EQ(resumed.v(), dv);
  std::vector<float> p2 = p;
  for (size_t i = 0; i < n; i++) g[i] = std::cos(0.11f * (float)i) * 0.02f;
  ASSERT_TRUE(producer.step(p, g, 5e-3f).ok());
  ASSERT_TRUE(resumed.step(p2, g, 5e-3f).ok());
  EXPECT_EQ(p, p2);
  EXPECT_EQ(resumed.m(), producer.m());
  EXPECT_EQ(resumed.v(), producer.v());

  // The reader's checks apply to device-bound state too.
  EXPECT_EQ(load_adamw_state(from_spans.string(), n + 1).status().code(), assay::Code::kInvalidArgument);
  EXPECT_EQ(save_adamw_state((dir / "bad.bin").string(), cfg, 1, dm, std::span<const float>(dv).first(n - 1))
                .code(),
            assay::Code::kInvalidArgument);
  EXPECT_EQ(save_adamw_state((dir / "bad.bin").string(), cfg, -1, dm, dv).code(), assay::Code::kInvalidArgument);
  EXPECT_FALSE(fs::exists(dir / "bad.bin"));
}
