// NativeBackend against direct engine forwards: log-likelihoods equal the
// log-softmax sums of a full forward, rolling windows, batching invariance,
// lm-eval's context/continuation split, and KV-cache generation equal to
// greedy decoding without a cache.
#include <gtest/gtest.h>

#include <cmath>

#include "assay/evals_native.h"
#include "tiny_models.h"

namespace assay::evals {
namespace {

using testing::random_model;
using testing::tiny_config;

// log p(seq[j] | seq[start..j)) from one forward of seq[start..end-1).
double direct_logprob_sum(engine::GPT& m, const std::vector<int32_t>& seq, size_t start,
                          size_t a, size_t b) {
  const int V = m.config().vocab_size;
  const int T = static_cast<int>(b - 1 - start);
  auto logits = m.forward(seq.data() + start, 1, T);
  EXPECT_TRUE(logits.ok());
  double sum = 0;
  for (size_t j = a; j < b; ++j) {
    const float* row = logits->data() + (j - 1 - start) * V;
    double mx = row[0];
    for (int i = 1; i < V; ++i) mx = std::max(mx, static_cast<double>(row[i]));
    double z = 0;
    for (int i = 0; i < V; ++i) z += std::exp(row[i] - mx);
    sum += row[seq[j]] - mx - std::log(z);
  }
  return sum;
}

class EvalNativeBackend : public ::testing::Test {
 protected:
  void SetUp() override {
    engine::set_num_threads(1);
    cfg_ = tiny_config(32);
    backend_ = std::make_unique<NativeBackend>(random_model(cfg_, 7, engine::Mode::kFrozen),
                                               engine::make_byte_tokenizer(), "h", "tiny",
                                               NativeOptions{});
    oracle_ = random_model(cfg_, 7, engine::Mode::kFrozen);
  }
  engine::GPTConfig cfg_;
  std::unique_ptr<NativeBackend> backend_;
  std::optional<engine::GPT> oracle_;
};

TEST_F(EvalNativeBackend, ContinuationLoglikEqualsFullForward) {
  auto tok = engine::make_byte_tokenizer();
  std::vector<ScoreRequest> reqs = {{"Hello", " world"}, {"The cat ", "sat"}, {"", "abc def"},
                                    {"x", "y"}};
  auto ll = loglikelihood(*backend_, reqs);
  ASSERT_TRUE(ll.ok()) << ll.status().message();
  // "The cat " + "sat": the trailing space moves to the continuation.
  struct Case { std::vector<int32_t> seq; size_t first; };
  auto enc = [&](const std::string& s) { return tok->encode(s); };
  std::vector<Case> cases;
  cases.push_back({enc("Hello world"), 5});
  cases.push_back({enc("The cat sat"), 7});
  std::vector<int32_t> bos{tok->bos_id()};
  auto abc = enc("abc def");
  bos.insert(bos.end(), abc.begin(), abc.end());
  cases.push_back({bos, 1});
  cases.push_back({enc("xy"), 1});
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    double want = direct_logprob_sum(*oracle_, c.seq, 0, c.first, c.seq.size());
    EXPECT_NEAR((*ll)[i].logprob, want, 1e-4) << "request " << i;
    EXPECT_EQ((*ll)[i].n_tokens, static_cast<int64_t>(c.seq.size() - c.first)) << "request " << i;
  }
  EXPECT_EQ((*ll)[1].n_tokens, 4);  // " sat"
}

TEST_F(EvalNativeBackend, EncodePairMovesTrailingWhitespace) {
  auto [ctx, cont] = backend_->encode_pair("Question: 2+2?\nAnswer: ", "4");
  EXPECT_EQ(ctx.size(), std::string("Question: 2+2?\nAnswer:").size());
  ASSERT_EQ(cont.size(), 2u);
  EXPECT_EQ(cont[0], ' ');
  EXPECT_EQ(cont[1], '4');
  auto [c2, t2] = backend_->encode_pair("", "ab");
  ASSERT_EQ(c2.size(), 1u);
  EXPECT_EQ(c2[0], backend_->tokenizer().bos_id());
}

TEST_F(EvalNativeBackend, RollingWindowsForLongTexts) {
  auto tok = engine::make_byte_tokenizer();
  const std::string text(80, 'a');
  std::string varied;
  for (int i = 0; i < 80; ++i) varied += static_cast<char>('a' + (i * 7) % 26);
  auto s = backend_->score({{"", varied}});
  ASSERT_TRUE(s.ok()) << s.status().message();
  ASSERT_EQ((*s)[0].logprobs.size(), 80u);
  std::vector<int32_t> seq{tok->bos_id()};
  auto ids = tok->encode(varied);
  seq.insert(seq.end(), ids.begin(), ids.end());
  // Windows predict targets [1,33), [33,65), [65,81), each with up to 32 inputs.
  const size_t P = 32;
  double want = 0;
  for (size_t a = 1; a < seq.size(); a += P) {
    const size_t b = std::min(seq.size(), a + P);
    const size_t start = b - 1 > P ? b - 1 - P : 0;
    want += direct_logprob_sum(*oracle_, seq, start, a, b);
  }
  double got = 0;
  for (double v : (*s)[0].logprobs) got += v;
  EXPECT_NEAR(got, want, 1e-3);
}

TEST_F(EvalNativeBackend, BatchingDoesNotChangeScores) {
  std::vector<ScoreRequest> reqs;
  for (int i = 0; i < 9; ++i)
    reqs.push_back({"ctx " + std::string(i, 'q'), " cont" + std::string(9 - i, 'z')});
  auto batched = backend_->score(reqs);
  ASSERT_TRUE(batched.ok());
  backend_->options().batch_size = 1;
  auto single = backend_->score(reqs);
  ASSERT_TRUE(single.ok());
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_EQ((*batched)[i].logprobs.size(), (*single)[i].logprobs.size());
    for (size_t t = 0; t < (*single)[i].logprobs.size(); ++t)
      EXPECT_NEAR((*batched)[i].logprobs[t], (*single)[i].logprobs[t], 1e-5);
    EXPECT_EQ((*batched)[i].is_top, (*single)[i].is_top);
  }
}

TEST_F(EvalNativeBackend, KvCacheLogitsEqualFullForward) {
  auto tok = engine::make_byte_tokenizer();
  auto ids = tok->encode("kv cache check");
  const int V = cfg_.vocab_size, n = static_cast<int>(ids.size());
  auto full = oracle_->forward(ids.data(), 1, n);
  ASSERT_TRUE(full.ok());
  std::vector<float> want(full->begin(), full->end());
  KvDecoder dec(backend_->model());
  ASSERT_TRUE(dec.reset(2, 32).ok());
  std::vector<float> logits(2 * V);
  // Slot 0: prefill 5 tokens, then one token per step; slot 1 runs alongside.
  ASSERT_TRUE(dec.prefill(0, ids.data(), 5, logits.data()).ok());
  for (int v = 0; v < V; ++v) ASSERT_NEAR(logits[v], want[4 * V + v], 1e-4);
  ASSERT_TRUE(dec.prefill(1, ids.data(), 1, logits.data()).ok());
  for (int t = 5; t < n; ++t) {
    ASSERT_TRUE(dec.step({0, 1}, {ids[t], ids[t - 4]}, logits.data()).ok());
    for (int v = 0; v < V; ++v) ASSERT_NEAR(logits[v], want[t * V + v], 1e-4) << "t " << t;
    for (int v = 0; v < V; ++v) ASSERT_NEAR(logits[V + v], want[(t - 4) * V + v], 1e-4);
  }
  EXPECT_EQ(dec.length(0), n);
  EXPECT_FALSE(dec.step({0, 0}, {1, 2}, logits.data()).ok());
}

// Greedy decoding without a cache: a full forward per new token, the prompt
// cut to its last n_positions - max_new tokens first.
std::vector<int32_t> greedy_no_cache(engine::GPT& m, std::vector<int32_t> ids, int max_new, int eos) {
  const int V = m.config().vocab_size;
  const size_t keep = static_cast<size_t>(m.config().n_positions - max_new);
  if (ids.size() > keep) ids.erase(ids.begin(), ids.end() - static_cast<std::ptrdiff_t>(keep));
  std::vector<int32_t> out;
  for (int k = 0; k < max_new; ++k) {
    const int T = static_cast<int>(ids.size());
    auto logits = m.forward(ids.data(), 1, T);
    EXPECT_TRUE(logits.ok());
    const float* row = logits->data() + static_cast<size_t>(T - 1) * V;
    int32_t best = 0;
    for (int v = 1; v < V; ++v)
      if (row[v] > row[best]) best = v;
    out.push_back(best);
    if (best == eos) break;
    ids.push_back(best);
  }
  return out;
}

TEST_F(EvalNativeBackend, KvCacheGenerationEqualsNoCacheGreedy) {
  const auto& tok = backend_->tokenizer();
  std::vector<std::vector<int32_t>> prompts = {tok.encode("The answer is"), tok.encode("x"),
                                               tok.encode("Question: what\nAnswer:")};
  backend_->options().gen_batch_size = 2;  // two batches, one of them ragged
  auto gens = backend_->generate_tokens(prompts, 12, {});
  ASSERT_TRUE(gens.ok()) << gens.status().message();
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto want = greedy_no_cache(*oracle_, prompts[i], 12, tok.eos_id());
    EXPECT_EQ((*gens)[i].tokens, want) << "prompt " << i;
    EXPECT_EQ((*gens)[i].scores.size(), want.size());
  }
}

TEST_F(EvalNativeBackend, GenerationStopsAtStopStringsAndTruncatesLongPrompts) {
  const auto& tok = backend_->tokenizer();
  auto free_run = backend_->generate_tokens({tok.encode("abc")}, 10, {});
  ASSERT_TRUE(free_run.ok());
  const std::string text = (*free_run)[0].text;
  ASSERT_GE(text.size(), 3u);
  // Stop at the generated text's third character: cut before it, reason "stop".
  const std::string stop = text.substr(2, 1);
  auto cut = backend_->generate_tokens({tok.encode("abc")}, 10, {stop});
  ASSERT_TRUE(cut.ok());
  EXPECT_EQ((*cut)[0].text, text.substr(0, text.find(stop)));
  EXPECT_EQ((*cut)[0].finish_reason, "stop");
  EXPECT_EQ((*free_run)[0].finish_reason, (*free_run)[0].tokens.size() == 10 ? "length" : "stop");
  // A prompt longer than the window keeps its last n_positions - max_tokens tokens.
  std::string long_prompt(100, 'z');
  long_prompt += "abc";
  auto lp = backend_->generate_tokens({tok.encode(long_prompt)}, 10, {});
  ASSERT_TRUE(lp.ok());
  auto lp_tail = backend_->generate_tokens({tok.encode(long_prompt.substr(long_prompt.size() - 22))}, 10, {});
  ASSERT_TRUE(lp_tail.ok());
  EXPECT_EQ((*lp)[0].tokens, (*lp_tail)[0].tokens);
  EXPECT_EQ((*lp)[0].tokens, greedy_no_cache(*oracle_, tok.encode(long_prompt), 10, tok.eos_id()));
}

}  // namespace
}  // namespace assay::evals
