// Completions run in batches, and the CompletionServer that queues them for
// its inference thread. See evals_serve.h for the API's semantics.
#include <atomic>
#include <chrono>
#include <random>

#include "assay/evals_http.h"
#include "assay/evals_serve.h"
#include "serve_internal.h"

namespace assay::evals {

namespace serve {

namespace {

using json = nlohmann::json;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// The seed of choice k (k > 0 gets its own stream; choice 0 uses the seed
// as given, so n = 1 and the first of n agree).
uint64_t choice_seed(uint64_t seed, int k) {
  if (k == 0) return seed;
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(k);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Accumulates the logprobs block token by token.
struct LogprobsBlock {
  const engine::Tokenizer& tok;
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(),
       offsets = json::array();
  int64_t chars = 0;  // code points so far

  std::string text(int32_t id) const { return tok.decode(std::span<const int32_t>(&id, 1)); }
  // A token that adds no text (the [bos] the server put in front).
  void add_silent(int32_t id) {
    tokens.push_back(text(id));
    offsets.push_back(chars);
    token_logprobs.push_back(nullptr);
    top.push_back(nullptr);
  }
  // alts: the most likely tokens; the token itself is added when absent.
  void add(int32_t id, const TokenLogprob* s, const std::vector<TokenAlt>& alts) {
    const std::string t = text(id);
    tokens.push_back(t);
    offsets.push_back(chars);
    chars += utf8_length(t);
    if (!s) {
      token_logprobs.push_back(nullptr);
      top.push_back(nullptr);
      return;
    }
    token_logprobs.push_back(s->logprob);
    json o = json::object();
    for (const TokenAlt& a : alts) o[text(a.token)] = a.logprob;
    if (!o.contains(t)) o[t] = s->logprob;
    top.push_back(std::move(o));
  }
  json to_json() const {
    return {{"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top},
            {"text_offset", offsets}};
  }
};

ApiReply build_reply(const NativeBackend& be, const std::string& model_name, const Completion& req,
                     const std::vector<std::vector<TokenLogprob>>& prompt_scores,
                     const std::vector<Generation>& gens) {
  static std::atomic<int64_t> counter{0};
  const engine::Tokenizer& tok = be.tokenizer();
  json choices = json::array();
  int64_t prompt_tokens = 0, completion_tokens = 0;
  for (size_t i = 0; i < req.prompts.size(); ++i) {
    const auto& prompt = req.prompts[i];
    prompt_tokens += static_cast<int64_t>(prompt.size());
    for (int k = 0; k < req.n; ++k) {
      const Generation& g = gens[i * req.n + k];
      json c{{"index", i * req.n + k}, {"finish_reason", g.finish_reason}};
      c["text"] = (req.echo ? req.prompt_texts[i] : std::string()) + g.text;
      completion_tokens += static_cast<int64_t>(g.tokens.size());
      if (req.logprobs) {
        LogprobsBlock lp{tok};
        if (req.echo) {
          for (size_t t = 0; t < prompt.size(); ++t) {
            if (t == 0 && req.bos_added[i]) {
              lp.add_silent(prompt[0]);
              continue;
            }
            const TokenLogprob* s = t == 0 ? nullptr : &prompt_scores[i][t - 1];
            std::vector<TokenAlt> alts;
            if (s && *req.logprobs > 0) alts.push_back({s->top_token, s->top_logprob});
            lp.add(prompt[t], s, alts);
          }
        }
        // Every generated token, through the one that ended generation (EOS or
        // the token completing a stop string), as OpenAI servers report them.
        for (size_t t = 0; t < g.tokens.size(); ++t)
          lp.add(g.tokens[t], &g.scores[t], t < g.top.size() ? g.top[t] : std::vector<TokenAlt>{});
        c["logprobs"] = lp.to_json();
      } else {
        c["logprobs"] = nullptr;
      }
      choices.push_back(std::move(c));
    }
  }
  const auto created = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
  json reply{{"id", "cmpl-" + std::to_string(++counter)},
             {"object", "text_completion"},
             {"created", created},
             {"model", model_name},
             {"choices", choices},
             {"usage",
              {{"prompt_tokens", prompt_tokens},
               {"completion_tokens", completion_tokens},
               {"total_tokens", prompt_tokens + completion_tokens}}}};
  return {200, dump(reply)};
}

}  // namespace

std::vector<ApiReply> run_completions(NativeBackend& be, const std::string& model_name,
                                      const std::vector<const Completion*>& reqs) {
  // Echoed prompts with logprobs: one scoring call for all.
  std::vector<std::vector<int32_t>> seqs;
  std::vector<std::pair<size_t, size_t>> seq_of;  // (request, prompt)
  for (size_t r = 0; r < reqs.size(); ++r)
    if (reqs[r]->echo && reqs[r]->logprobs)
      for (size_t i = 0; i < reqs[r]->prompts.size(); ++i)
        if (reqs[r]->prompts[i].size() >= 2) {
          seqs.push_back(reqs[r]->prompts[i]);
          seq_of.push_back({r, i});
        }
  // Every choice of every prompt: one generation call for all.
  std::vector<TokenGenRequest> gen;
  std::vector<size_t> gen_start(reqs.size());
  std::random_device rd;
  for (size_t r = 0; r < reqs.size(); ++r) {
    const Completion& c = *reqs[r];
    gen_start[r] = gen.size();
    if (c.max_tokens == 0) continue;
    // Unseeded requests still give their choices distinct streams.
    const uint64_t base = c.sampling.seed ? *c.sampling.seed
                                          : (static_cast<uint64_t>(rd()) << 32) ^ rd();
    for (size_t i = 0; i < c.prompts.size(); ++i)
      for (int k = 0; k < c.n; ++k) {
        TokenGenRequest g{c.prompts[i], c.max_tokens, c.stop, c.sampling, c.logprobs.value_or(0)};
        g.sampling.seed = choice_seed(base, k);
        gen.push_back(std::move(g));
      }
  }
  auto scored = be.score_tokens(seqs, std::vector<int64_t>(seqs.size(), 1));
  Result<std::vector<Generation>> gens = scored.ok() ? be.generate_tokens(gen)
                                                     : Result<std::vector<Generation>>(scored.status());
  if (!gens.ok()) {
    // Requests are validated before they run, so this is rare: run each
    // alone so that the error reaches only the request that caused it.
    if (reqs.size() > 1) {
      std::vector<ApiReply> out;
      for (const Completion* c : reqs) out.push_back(run_completions(be, model_name, {c})[0]);
      return out;
    }
    return {error_reply(400, gens.status().message())};
  }
  std::vector<std::vector<std::vector<TokenLogprob>>> prompt_scores(reqs.size());
  for (size_t r = 0; r < reqs.size(); ++r) prompt_scores[r].resize(reqs[r]->prompts.size());
  for (size_t k = 0; k < seq_of.size(); ++k)
    prompt_scores[seq_of[k].first][seq_of[k].second] = std::move((*scored)[k]);
  std::vector<ApiReply> out;
  for (size_t r = 0; r < reqs.size(); ++r) {
    const Completion& c = *reqs[r];
    std::vector<Generation> mine;
    if (c.max_tokens == 0) {
      mine.resize(c.prompts.size() * static_cast<size_t>(c.n));
      for (auto& g : mine) g.finish_reason = "length";
    } else {
      const size_t count = c.prompts.size() * static_cast<size_t>(c.n);
      mine.assign(std::make_move_iterator(gens->begin() + gen_start[r]),
                  std::make_move_iterator(gens->begin() + gen_start[r] + count));
    }
    out.push_back(build_reply(be, model_name, c, prompt_scores[r], mine));
  }
  return out;
}

}  // namespace serve

CompletionServer::CompletionServer(NativeBackend& backend, std::string model_name,
                                   CompletionServerOptions opts)
    : be_(backend), name_(std::move(model_name)), opts_(opts) {
  // OpenMP's thread count is per thread: the engine's setting of the
  // constructing thread carries over to the inference thread.
  const int threads = engine::num_threads();
  thread_ = std::thread([this, threads] {
    engine::set_num_threads(threads);
    loop();
  });
}

CompletionServer::~CompletionServer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  for (Job& j : queue_) j.reply(serve::error_reply(503, "the server is shutting down", "", "unavailable"));
}

void CompletionServer::handle(const std::string& method, const std::string& target,
                              const std::string& body, Reply reply) {
  std::string path = target.substr(0, target.find('?'));
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  if (path == "/health" && method == "GET") {
    std::lock_guard<std::mutex> lock(mu_);
    reply({200, nlohmann::json{{"ok", true}, {"batches", batches_}, {"completions", completions_}}
                    .dump()});
    return;
  }
  if (auto r = serve::answer_light(be_, name_, method, target, body)) {
    reply(std::move(*r));
    return;
  }
  auto req = std::make_unique<serve::Completion>();
  if (auto e = serve::parse_completion(body, be_, name_, req.get())) {
    reply(std::move(*e));
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (queue_.size() < opts_.max_queued && !stop_) {
      queue_.push_back({std::move(req), std::move(reply)});
      cv_.notify_one();
      return;
    }
  }
  reply(serve::error_reply(503, std::to_string(opts_.max_queued) +
                                    " completions are already waiting; retry later",
                           "", "unavailable"));
}

void CompletionServer::loop() {
  for (;;) {
    std::vector<Job> batch;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      // Everything waiting, up to max_batch_choices choices (at least one request).
      size_t choices = 0;
      while (!queue_.empty()) {
        const serve::Completion& c = *queue_.front().req;
        const size_t cost = c.prompts.size() * static_cast<size_t>(c.n);
        if (!batch.empty() && choices + cost > opts_.max_batch_choices) break;
        choices += cost;
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      ++batches_;
      completions_ += static_cast<int64_t>(batch.size());
    }
    std::vector<const serve::Completion*> reqs;
    for (const Job& j : batch) reqs.push_back(j.req.get());
    std::vector<ApiReply> replies;
    try {
      replies = serve::run_completions(be_, name_, reqs);
    } catch (const std::exception& e) {
      replies.assign(batch.size(), serve::error_reply(500, std::string("internal error: ") + e.what(),
                                                      "", "server_error"));
    }
    for (size_t i = 0; i < batch.size(); ++i) batch[i].reply(std::move(replies[i]));
  }
}

}  // namespace assay::evals
