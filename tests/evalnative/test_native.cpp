// NativeBackend against direct engine forwards: log-likelihoods equal the
// log-softmax sums of a full forward, rolling windows, batching invariance,
// lm-eval's context/continuation split, and KV-cache generation equal to
// greedy decoding without a cache.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

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
  std::string varied;
  for (int i = 0; i < 80; ++i) varied += static_cast<char>('a' + (i * 7) % 26);
  auto s = backend_->score({{"", varied}});
  ASSERT_TRUE(s.ok()) << s.status().message();
  ASSERT_EQ((*s)[0].logprobs.size(), 80u);
  std::vector<int32_t> seq{tok->bos_id()};
  auto ids = tok->encode(varied);
  seq.insert(seq.end(), ids.begin(), ids.end());
  // Windows from the end: targets [49,81), [17,49), [1,17), each reading the
  // 32 tokens before its last target.
  const size_t P = 32;
  double want = 0;
  for (size_t b = seq.size(); b > 1; b = b > P + 1 ? b - P : 1) {
    const size_t a = b > P + 1 ? b - P : 1;
    const size_t start = b - 1 > P ? b - 1 - P : 0;
    want += direct_logprob_sum(*oracle_, seq, start, a, b);
  }
  double got = 0;
  for (double v : (*s)[0].logprobs) got += v;
  EXPECT_NEAR(got, want, 1e-3);
}

// Past n_positions a token's score depends on its position and the
// sequence's end only: scoring from any start gives it the same number (what
// lets `assay serve` echo a whole prompt and match a continuation's scores).
TEST_F(EvalNativeBackend, LongSequenceScoresDoNotDependOnWhereScoringStarts) {
  const auto& tok = backend_->tokenizer();
  std::string text;
  for (int i = 0; i < 90; ++i) text += static_cast<char>('a' + (i * 11) % 26);
  std::vector<int32_t> seq{tok.bos_id()};
  auto ids = tok.encode(text);
  seq.insert(seq.end(), ids.begin(), ids.end());
  auto whole = backend_->score_tokens({seq}, {1});
  ASSERT_TRUE(whole.ok()) << whole.status().message();
  for (int64_t first : {2, 17, 40, 59, 60, 61, 75, 90}) {
    auto part = backend_->score_tokens({seq}, {first});
    ASSERT_TRUE(part.ok());
    ASSERT_EQ(part->at(0).size(), seq.size() - first);
    for (size_t k = 0; k < part->at(0).size(); ++k)
      EXPECT_NEAR(part->at(0)[k].logprob, whole->at(0)[first - 1 + k].logprob, 1e-6)
          << "first " << first << " token " << first + k;
  }
  // The last 32 targets read exactly the 32 tokens before the last one (lm-eval's rule).
  const size_t n = seq.size();
  double want = direct_logprob_sum(*oracle_, seq, n - 1 - 32, n - 32, n), got = 0;
  for (size_t j = n - 32; j < n; ++j) got += whole->at(0)[j - 1].logprob;
  EXPECT_NEAR(got, want, 1e-4);
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

namespace assay::evals {
namespace {

using testing::random_model;
using testing::tiny_config;

// Sampling and truncation on a tiny random model (32 positions, byte vocabulary).
class EvalNativeSampling : public ::testing::Test {
 protected:
  void SetUp() override {
    engine::set_num_threads(1);
    NativeOptions o;
    o.warn = [this](const std::string& m) { warnings_.push_back(m); };
    backend_ = std::make_unique<NativeBackend>(random_model(tiny_config(32), 7, engine::Mode::kFrozen),
                                               engine::make_byte_tokenizer(), "h", "tiny", o);
    oracle_ = random_model(tiny_config(32), 7, engine::Mode::kFrozen);
  }
  TokenGenRequest req(const std::string& prompt, SamplingParams sp, int max_tokens = 12) {
    return {backend_->tokenizer().encode(prompt), max_tokens, {}, sp, 0};
  }
  static SamplingParams sampled(uint64_t seed, double t = 1.0, double top_p = 1, int top_k = 0) {
    SamplingParams sp;
    sp.temperature = t;
    sp.top_p = top_p;
    sp.top_k = top_k;
    sp.seed = seed;
    return sp;
  }
  // Probabilities of the next token after `prompt`: softmax(logits / t).
  std::vector<double> next_probs(const std::string& prompt, double t) {
    auto ids = backend_->tokenizer().encode(prompt);
    const int V = 257, T = static_cast<int>(ids.size());
    auto logits = oracle_->forward(ids.data(), 1, T);
    EXPECT_TRUE(logits.ok());
    const float* row = logits->data() + static_cast<size_t>(T - 1) * V;
    double m = row[0];
    for (int i = 1; i < V; ++i) m = std::max(m, static_cast<double>(row[i]));
    std::vector<double> p(V);
    double z = 0;
    for (int i = 0; i < V; ++i) z += p[i] = std::exp((row[i] - m) / t);
    for (double& v : p) v /= z;
    return p;
  }
  // Chi-square statistic of first-token counts from `draws` seeded requests
  // against probabilities `want` (those of the tokens allowed; others must
  // never be drawn).
  double chi_square(const std::string& prompt, SamplingParams sp, int draws,
                    const std::vector<double>& want, int* outside) {
    std::vector<TokenGenRequest> reqs;
    for (int d = 0; d < draws; ++d) {
      sp.seed = 1000 + d;
      reqs.push_back(req(prompt, sp, 1));
    }
    auto gens = backend_->generate_tokens(reqs);
    EXPECT_TRUE(gens.ok());
    std::vector<int> count(want.size(), 0);
    *outside = 0;
    for (const auto& g : *gens) {
      const int32_t t = g.tokens.at(0);
      if (want[t] == 0) ++*outside;
      ++count[t];
    }
    double chi = 0;
    for (size_t v = 0; v < want.size(); ++v)
      if (want[v] > 0) chi += std::pow(count[v] - draws * want[v], 2) / (draws * want[v]);
    return chi;
  }
  std::vector<std::string> warnings_;
  std::unique_ptr<NativeBackend> backend_;
  std::optional<engine::GPT> oracle_;
};

TEST_F(EvalNativeSampling, SameSeedSameTextInAnyBatch) {
  std::vector<TokenGenRequest> reqs;
  const char* prompts[] = {"The answer is", "x", "Question: what\nAnswer:", "abc", "zz top"};
  for (int i = 0; i < 5; ++i) reqs.push_back(req(prompts[i], sampled(40 + i, 1.2, 0.95, 50)));
  reqs[3].sampling = {};  // a greedy request in the same batch
  std::vector<std::vector<int32_t>> want;
  for (const auto& r : reqs) {
    auto one = backend_->generate_tokens(std::vector<TokenGenRequest>{r});
    ASSERT_TRUE(one.ok()) << one.status().message();
    want.push_back(one->at(0).tokens);
  }
  for (int gb : {1, 2, 5}) {
    backend_->options().gen_batch_size = gb;
    auto all = backend_->generate_tokens(reqs);
    ASSERT_TRUE(all.ok());
    for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(all->at(i).tokens, want[i]) << gb << " " << i;
  }
  // Different seeds give different texts (12 tokens at temperature 1.2).
  auto a = backend_->generate_tokens({req("abc", sampled(1, 1.2))});
  auto b = backend_->generate_tokens({req("abc", sampled(2, 1.2))});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->at(0).tokens, b->at(0).tokens);
  // The Backend API carries the sampling parameters per request.
  std::vector<GenRequest> g = {{"abc", {}, 12, sampled(1, 1.2)}, {"abc", {}, 12, {}}};
  auto texts = backend_->generate(g);
  ASSERT_TRUE(texts.ok());
  EXPECT_EQ(texts->at(0), a->at(0).text);
  auto greedy = backend_->generate_tokens({backend_->tokenizer().encode("abc")}, 12, {});
  ASSERT_TRUE(greedy.ok());
  EXPECT_EQ(texts->at(1), greedy->at(0).text);
}

TEST_F(EvalNativeSampling, TinyTemperatureAndTopK1AreGreedy) {
  for (const char* p : {"The answer is", "x", "Question: what\nAnswer:"}) {
    auto greedy = backend_->generate_tokens({backend_->tokenizer().encode(p)}, 12, {});
    auto cold = backend_->generate_tokens({req(p, sampled(5, 1e-6))});
    auto k1 = backend_->generate_tokens({req(p, sampled(5, 1.5, 1.0, 1))});
    ASSERT_TRUE(greedy.ok() && cold.ok() && k1.ok());
    EXPECT_EQ(cold->at(0).tokens, greedy->at(0).tokens) << p;
    EXPECT_EQ(k1->at(0).tokens, greedy->at(0).tokens) << p;
  }
}

// First tokens drawn with 4000 seeds follow softmax(logits / T) restricted
// to the top_k / top_p set: chi-square below the 0.1% critical value.
TEST_F(EvalNativeSampling, SampledFrequenciesMatchSoftmax) {
  const std::string prompt = "The cat";
  const double t = 0.15;  // peaked enough that a wrong temperature shows
  auto p = next_probs(prompt, t);
  std::vector<int> order(p.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });

  // top_k = 6: the 6 most likely, renormalized.
  std::vector<double> want_k(p.size(), 0);
  double zk = 0;
  for (int i = 0; i < 6; ++i) zk += p[order[i]];
  for (int i = 0; i < 6; ++i) want_k[order[i]] = p[order[i]] / zk;
  int outside = 0;
  double chi = chi_square(prompt, sampled(0, t, 1.0, 6), 4000, want_k, &outside);
  EXPECT_EQ(outside, 0);
  EXPECT_LT(chi, 22.46) << "5 degrees of freedom";
  // top_p: the smallest most-likely set reaching top_p = the mass of the 5 most likely.
  double mass = 0;
  for (int i = 0; i < 5; ++i) mass += p[order[i]];
  std::vector<double> want_p(p.size(), 0);
  for (int i = 0; i < 5; ++i) want_p[order[i]] = p[order[i]] / mass;
  chi = chi_square(prompt, sampled(0, t, mass - 1e-9), 4000, want_p, &outside);
  EXPECT_EQ(outside, 0);
  EXPECT_LT(chi, 18.47) << "4 degrees of freedom";
  // No limit: the 8 most likely tokens and the rest pooled.
  const int draws = 4000;
  std::vector<TokenGenRequest> reqs;
  for (int d = 0; d < draws; ++d) reqs.push_back(req(prompt, sampled(7000 + d, t), 1));
  auto gens = backend_->generate_tokens(reqs);
  ASSERT_TRUE(gens.ok());
  std::vector<int> count(9, 0);
  for (const auto& g : *gens) {
    const auto it = std::find(order.begin(), order.begin() + 8, g.tokens.at(0));
    ++count[it - order.begin()];
  }
  double rest = 1;
  chi = 0;
  for (int i = 0; i < 9; ++i) {
    const double pi = i < 8 ? p[order[i]] : rest;
    if (i < 8) rest -= p[order[i]];
    chi += std::pow(count[i] - draws * pi, 2) / (draws * pi);
  }
  EXPECT_LT(chi, 26.12) << "8 degrees of freedom";
}

TEST_F(EvalNativeSampling, LongPromptsAreLeftTruncatedWithOneWarning) {
  const auto& tok = backend_->tokenizer();
  std::string long_prompt(100, 'z');
  long_prompt += "abc";
  auto lp = backend_->generate_tokens({tok.encode(long_prompt)}, 10, {});
  ASSERT_TRUE(lp.ok());
  // lm-eval's rule: the last n_positions - max_gen_toks = 22 tokens.
  EXPECT_EQ(lp->at(0).tokens, greedy_no_cache(*oracle_, tok.encode(long_prompt), 10, tok.eos_id()));
  ASSERT_EQ(warnings_.size(), 1u);
  for (const char* num : {"103 tokens", "max_gen_toks 10", "n_positions 32", "last 22", "81 cut"})
    EXPECT_NE(warnings_[0].find(num), std::string::npos) << warnings_[0] << " lacks " << num;
  // Once per backend.
  ASSERT_TRUE(backend_->generate_tokens({tok.encode(long_prompt)}, 5, {}).ok());
  EXPECT_EQ(warnings_.size(), 1u);
  // A prompt that fits is not cut: 31 + 1 = n_positions.
  auto fits = backend_->generate_tokens({tok.encode(std::string(31, 'q'))}, 1, {});
  ASSERT_TRUE(fits.ok());
  EXPECT_EQ(warnings_.size(), 1u);
  EXPECT_EQ(fits->at(0).tokens, greedy_no_cache(*oracle_, tok.encode(std::string(31, 'q')), 1, 256));
}

TEST_F(EvalNativeSampling, MaxTokensWithoutRoomForThePromptIsAnError) {
  for (int m : {32, 40}) {
    auto r = backend_->generate_tokens({backend_->tokenizer().encode("abc")}, m, {});
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_NE(r.status().message().find("max_tokens " + std::to_string(m)), std::string::npos)
        << r.status().message();
    EXPECT_NE(r.status().message().find("n_positions 32"), std::string::npos) << r.status().message();
  }
  EXPECT_TRUE(backend_->generate_tokens({backend_->tokenizer().encode("abc")}, 31, {}).ok());
}

}  // namespace
}  // namespace assay::evals
