// Diversity metrics of sampled generations. See evals_diversity.h.
#include "assay/evals_diversity.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "assay/evals_native.h"
#include "assay/jsonl.h"

namespace assay::evals {

namespace {

using Ngram = std::vector<std::string>;

std::map<Ngram, int64_t> ngram_counts(const std::vector<std::string>& words, int n) {
  std::map<Ngram, int64_t> out;
  for (size_t i = 0; i + static_cast<size_t>(n) <= words.size(); ++i)
    ++out[Ngram(words.begin() + static_cast<std::ptrdiff_t>(i),
                words.begin() + static_cast<std::ptrdiff_t>(i) + n)];
  return out;
}

}  // namespace

std::vector<std::string> split_words(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  for (char ch : text) {
    if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v') {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += ch;
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

DistinctN distinct_n(const std::vector<std::vector<std::string>>& samples, int n) {
  DistinctN d;
  if (n < 1) return d;
  std::set<Ngram> seen;
  for (const auto& s : samples) {
    for (const auto& [g, c] : ngram_counts(s, n)) {
      seen.insert(g);
      d.total += c;
    }
  }
  d.unique = static_cast<int64_t>(seen.size());
  d.value = d.total ? static_cast<double>(d.unique) / static_cast<double>(d.total) : 0.0;
  return d;
}

double sentence_bleu(const std::vector<std::vector<std::string>>& references,
                     const std::vector<std::string>& hypothesis, int max_n) {
  if (max_n < 1 || references.empty()) return 0;
  // Modified (clipped) precision per order, as nltk's modified_precision:
  // numerator = sum over hypothesis n-grams of min(count, max count in any
  // reference), denominator = max(1, #hypothesis n-grams).
  std::vector<double> num(max_n), den(max_n);
  for (int n = 1; n <= max_n; ++n) {
    const auto hyp = ngram_counts(hypothesis, n);
    std::map<Ngram, int64_t> max_ref;
    for (const auto& r : references)
      for (const auto& [g, c] : ngram_counts(r, n)) max_ref[g] = std::max(max_ref[g], c);
    int64_t clipped = 0, total = 0;
    for (const auto& [g, c] : hyp) {
      auto it = max_ref.find(g);
      clipped += std::min(c, it == max_ref.end() ? int64_t{0} : it->second);
      total += c;
    }
    num[n - 1] = static_cast<double>(clipped);
    den[n - 1] = static_cast<double>(std::max<int64_t>(1, total));
  }
  // nltk returns 0 outright when no unigram matches.
  if (num[0] == 0) return 0;
  const double c = static_cast<double>(hypothesis.size());
  // The reference length closest to the hypothesis length, the shorter on ties.
  double r = -1;
  for (const auto& ref : references) {
    const double len = static_cast<double>(ref.size());
    if (r < 0 || std::fabs(len - c) < std::fabs(r - c) || (std::fabs(len - c) == std::fabs(r - c) && len < r))
      r = len;
  }
  const double bp = c > r ? 1.0 : (c == 0 ? 0.0 : std::exp(1.0 - r / c));
  double s = 0;
  for (int n = 0; n < max_n; ++n) {
    // method1: a zero count becomes epsilon (0.1) over the same denominator.
    const double p = num[n] == 0 ? 0.1 / den[n] : num[n] / den[n];
    s += std::log(p) / static_cast<double>(max_n);
  }
  return bp * std::exp(s);
}

double self_bleu(const std::vector<std::vector<std::string>>& samples, int max_n) {
  if (samples.size() < 2) return std::nan("");
  double sum = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    std::vector<std::vector<std::string>> refs;
    for (size_t j = 0; j < samples.size(); ++j)
      if (j != i) refs.push_back(samples[j]);
    sum += sentence_bleu(refs, samples[i], max_n);
  }
  return sum / static_cast<double>(samples.size());
}

double word_entropy(const std::vector<std::vector<std::string>>& samples) {
  std::map<std::string, int64_t> counts;
  int64_t total = 0;
  for (const auto& s : samples)
    for (const auto& w : s) ++counts[w], ++total;
  if (total == 0) return 0;
  double h = 0;
  for (const auto& [w, c] : counts) {
    const double p = static_cast<double>(c) / static_cast<double>(total);
    h -= p * std::log(p);
  }
  return h;
}

double logits_entropy(const float* logits, int V) {
  double mx = -INFINITY;
  for (int v = 0; v < V; ++v) mx = std::max(mx, static_cast<double>(logits[v]));
  double z = 0, zx = 0;
  for (int v = 0; v < V; ++v) {
    const double e = std::exp(static_cast<double>(logits[v]) - mx);
    z += e;
    zx += e * static_cast<double>(logits[v]);
  }
  const double lse = mx + std::log(z);
  return lse - zx / z;
}

Result<std::vector<ResultRow>> diversity_report(const DiversityInputs& in, const std::string& suite) {
  std::vector<std::vector<std::string>> all;
  std::vector<double> sbleu, lengths;
  for (const auto& prompt : in.texts) {
    std::vector<std::vector<std::string>> words;
    for (const auto& t : prompt) words.push_back(split_words(t));
    for (const auto& w : words) {
      all.push_back(w);
      lengths.push_back(static_cast<double>(w.size()));
    }
    if (words.size() >= 2) sbleu.push_back(self_bleu(words, 4));
  }
  if (all.empty()) return Status::Invalid("diversity: no generated samples to measure");
  const int64_t n_samples = static_cast<int64_t>(all.size());
  std::vector<ResultRow> rows;
  auto row = [&](const char* metric, double v, std::optional<double> se, int64_t n) {
    if (se && !std::isfinite(*se)) se.reset();
    rows.push_back({suite, metric, "none", v, se, n, ""});
  };
  row("distinct_1", distinct_n(all, 1).value, std::nullopt, n_samples);
  row("distinct_2", distinct_n(all, 2).value, std::nullopt, n_samples);
  if (!sbleu.empty()) {
    const MeanStderr m = mean_stderr(sbleu);
    row("self_bleu", m.mean, m.stderr_, m.n);
  }
  int64_t words = 0;
  for (double l : lengths) words += static_cast<int64_t>(l);
  row("word_entropy", word_entropy(all), std::nullopt, words);
  const MeanStderr len = mean_stderr(lengths);
  row("sample_words", len.mean, len.stderr_, len.n);
  std::vector<double> ent;
  for (const auto& p : in.predictive_entropy)
    for (double h : p)
      if (std::isfinite(h)) ent.push_back(h);
  if (!ent.empty()) {
    const MeanStderr m = mean_stderr(ent);
    row("predictive_entropy", m.mean, m.stderr_, m.n);
  }
  return rows;
}

uint64_t sample_seed(uint64_t base, int64_t prompt_index, int samples_per_prompt, int sample) {
  const uint64_t k = static_cast<uint64_t>(prompt_index) * static_cast<uint64_t>(samples_per_prompt) +
                     static_cast<uint64_t>(sample);
  SplitMix64 g(base ^ (0x9E3779B97F4A7C15ull * (k + 1)));
  return g.next();
}

namespace {

// Mean predictive entropy over a generation's tokens (a final EOS excluded):
// the model re-reads the prompt as generation fitted it (its last
// n_positions - max_tokens tokens) followed by the generated tokens.
Result<double> generation_entropy(NativeBackend& nb, const std::vector<int32_t>& prompt,
                                  int max_tokens, const Generation& g) {
  size_t m = g.tokens.size();
  if (m > 0 && g.tokens.back() == nb.tokenizer().eos_id()) --m;
  if (m == 0) return std::nan("");
  const int P = nb.config().n_positions, V = nb.config().vocab_size;
  std::vector<int32_t> ids;
  if (prompt.empty()) {
    ids = {nb.tokenizer().bos_id()};
  } else {
    const size_t keep = std::min(prompt.size(), static_cast<size_t>(std::max(1, P - max_tokens)));
    ids.assign(prompt.end() - static_cast<std::ptrdiff_t>(keep), prompt.end());
  }
  const size_t ctx = ids.size();
  ids.insert(ids.end(), g.tokens.begin(), g.tokens.begin() + static_cast<std::ptrdiff_t>(m - 1));
  const int T = static_cast<int>(ids.size());
  if (T > P) return Status::Internal("diversity: re-scored sequence longer than n_positions");
  ASSAY_ASSIGN_OR_RETURN(auto logits, nb.model().forward(ids.data(), 1, T));
  double sum = 0;
  for (size_t k = 0; k < m; ++k)
    sum += logits_entropy(logits.data() + (ctx - 1 + k) * static_cast<size_t>(V), V);
  return sum / static_cast<double>(m);
}

SamplingParams request_sampling(const DiversityOptions& o, int64_t i, int j) {
  SamplingParams s = o.sampling;
  s.seed = sample_seed(o.sampling.seed.value_or(o.seed), i, o.samples_per_prompt, j);
  return s;
}

}  // namespace

Result<DiversityInputs> sample_for_diversity(Backend& backend, const std::vector<std::string>& prompts,
                                             const DiversityOptions& opts) {
  if (opts.samples_per_prompt < 1)
    return Status::Invalid("diversity: samples_per_prompt must be >= 1, got " +
                           std::to_string(opts.samples_per_prompt));
  const int k = opts.samples_per_prompt;
  DiversityInputs out;
  out.texts.assign(prompts.size(), {});
  if (auto* nb = dynamic_cast<NativeBackend*>(&backend)) {
    std::vector<TokenGenRequest> reqs;
    std::vector<std::vector<int32_t>> encoded;
    for (size_t i = 0; i < prompts.size(); ++i) {
      encoded.push_back(nb->encode_prompt(prompts[i]));
      for (int j = 0; j < k; ++j) {
        TokenGenRequest r;
        r.prompt = encoded.back();
        r.max_tokens = opts.max_gen_toks;
        r.stop = opts.stop;
        r.sampling = request_sampling(opts, static_cast<int64_t>(i), j);
        reqs.push_back(std::move(r));
      }
    }
    ASSAY_ASSIGN_OR_RETURN(auto gens, nb->generate_tokens(reqs));
    out.predictive_entropy.assign(prompts.size(), {});
    for (size_t i = 0; i < prompts.size(); ++i)
      for (int j = 0; j < k; ++j) {
        const Generation& g = gens[i * static_cast<size_t>(k) + static_cast<size_t>(j)];
        out.texts[i].push_back(g.text);
        ASSAY_ASSIGN_OR_RETURN(double h, generation_entropy(*nb, encoded[i], opts.max_gen_toks, g));
        out.predictive_entropy[i].push_back(h);
      }
    return out;
  }
  std::vector<GenRequest> reqs;
  for (size_t i = 0; i < prompts.size(); ++i)
    for (int j = 0; j < k; ++j)
      reqs.push_back({prompts[i], opts.stop, opts.max_gen_toks,
                      request_sampling(opts, static_cast<int64_t>(i), j)});
  ASSAY_ASSIGN_OR_RETURN(auto texts, backend.generate(reqs));
  for (size_t i = 0; i < prompts.size(); ++i)
    for (int j = 0; j < k; ++j) out.texts[i].push_back(texts[i * static_cast<size_t>(k) + static_cast<size_t>(j)]);
  return out;
}

Result<std::vector<std::string>> load_prompts(const std::string& path) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  ASSAY_RETURN_IF_ERROR(for_each_jsonl_object(
      path, "prompts", [&](const nlohmann::json& j, const std::string& where) -> Status {
        std::string p;
        if (j.contains("prompt") && j["prompt"].is_string()) p = j["prompt"].get<std::string>();
        else if (j.contains("question") && j["question"].is_string())
          p = "Question: " + j["question"].get<std::string>() + "\nAnswer:";
        else if (j.contains("text") && j["text"].is_string()) p = j["text"].get<std::string>();
        else return Status::Invalid(where + ": expected a string field prompt, question or text");
        if (seen.insert(p).second) out.push_back(std::move(p));
        return Status::Ok();
      }));
  if (out.empty()) return Status::Invalid(path + ": no prompts");
  return out;
}

}  // namespace assay::evals
