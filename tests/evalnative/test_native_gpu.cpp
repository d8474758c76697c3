// The native backend on a CUDA device against the CPU backend as oracle.
// Skips (saying why) without a CUDA build or a visible GPU; the device
// selection errors are checked everywhere.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>

#include "assay/engine_cuda.h"
#include "assay/evals_native.h"
#include "tiny_models.h"

namespace assay::evals {
namespace {

using namespace testing;

// A GPU to run on, or the reason there is none.
std::string no_gpu_reason() {
  if (!engine::cuda::built_with_cuda()) return "this build has no CUDA backend (nvcc was absent)";
  auto n = engine::cuda::cuda_device_count();
  if (!n.ok()) return n.status().message();
  if (*n == 0) return "no CUDA device is visible";
  return "";
}

TEST(EvalNativeDevice, CudaWithoutAGpuIsAClearError) {
  if (no_gpu_reason().empty()) GTEST_SKIP() << "a GPU is present: the error path does not apply";
  auto tok = engine::make_byte_tokenizer();
  NativeBackend b(random_model(tiny_config(16), 1, engine::Mode::kFrozen), std::move(tok), "h",
                  "tiny", NativeOptions{});
  Status st = b.use_cuda(0);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("--device cpu"), std::string::npos) << st.message();
  auto dev = engine::cuda::resolve_device("cuda:0");
  ASSERT_FALSE(dev.ok());
  EXPECT_NE(dev.status().message().find("--device cpu"), std::string::npos);
  auto aut = engine::cuda::resolve_device("auto");
  ASSERT_TRUE(aut.ok());
  EXPECT_FALSE(aut->is_cuda()) << "auto picked a GPU on a machine without one";
}

// TF32 matmuls: log-probs agree to ~1e-3 on this tiny model; the argmax may
// differ only where the CPU's top two logits are closer than that.
TEST(EvalNativeGpu, ScoresAndGreedyTokensMatchTheCpu) {
  if (auto why = no_gpu_reason(); !why.empty()) GTEST_SKIP() << why;
  engine::set_num_threads(1);
  const auto cfg = tiny_config(32);
  NativeBackend cpu(random_model(cfg, 7, engine::Mode::kFrozen), engine::make_byte_tokenizer(),
                    "h", "cpu", NativeOptions{});
  NativeBackend gpu(random_model(cfg, 7, engine::Mode::kFrozen), engine::make_byte_tokenizer(),
                    "h", "gpu", NativeOptions{});
  ASSERT_TRUE(gpu.use_cuda(0).ok());
  ASSERT_TRUE(gpu.on_gpu());
  const auto& tok = cpu.tokenizer();
  std::vector<std::vector<int32_t>> seqs;
  std::vector<int64_t> first;
  for (const char* s : {"The cat sat on the mat.", "1 + 2 = 3", "a much longer text that needs "
                        "more than one window of thirty-two positions to be scored whole"}) {
    seqs.push_back(bos_tokens(tok, s, 1000));
    first.push_back(1);
  }
  auto a = cpu.score_tokens(seqs, first);
  auto b = gpu.score_tokens(seqs, first);
  ASSERT_TRUE(a.ok()) << a.status().message();
  ASSERT_TRUE(b.ok()) << b.status().message();
  for (size_t i = 0; i < seqs.size(); ++i) {
    ASSERT_EQ((*a)[i].size(), (*b)[i].size());
    for (size_t j = 0; j < (*a)[i].size(); ++j) {
      const auto& x = (*a)[i][j];
      const auto& y = (*b)[i][j];
      EXPECT_NEAR(x.logprob, y.logprob, 2e-3) << "seq " << i << " pos " << j;
      if (x.top_token != y.top_token) {
        EXPECT_LT(std::abs(x.top_logprob - y.top_logprob), 2e-3) << "seq " << i << " pos " << j;
      }
    }
  }
  std::vector<std::vector<int32_t>> prompts = {tok.encode("The answer is"), tok.encode("x")};
  auto ga = cpu.generate_tokens(prompts, 8, {});
  auto gb = gpu.generate_tokens(prompts, 8, {});
  ASSERT_TRUE(ga.ok() && gb.ok());
  for (size_t i = 0; i < prompts.size(); ++i) {
    // Identical, unless a near-tie flipped a choice: then the CPU must rate
    // the GPU's token within the tolerance of its own top choice.
    const auto& want = (*ga)[i].tokens;
    const auto& got = (*gb)[i].tokens;
    for (size_t k = 0; k < want.size() && k < got.size(); ++k) {
      if (want[k] == got[k]) continue;
      std::vector<int32_t> seq = prompts[i];
      seq.insert(seq.end(), got.begin(), got.begin() + static_cast<std::ptrdiff_t>(k) + 1);
      auto s = cpu.score_tokens({seq}, {static_cast<int64_t>(seq.size()) - 1});
      ASSERT_TRUE(s.ok());
      EXPECT_NEAR((*s)[0][0].logprob, (*ga)[i].scores[k].logprob, 2e-3) << "prompt " << i;
      break;
    }
  }
}

}  // namespace
}  // namespace assay::evals
