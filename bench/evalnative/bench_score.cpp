// Continuation log-likelihood throughput of the native backend.
//
// Makes (or reuses) a checkpoint, builds a fixed set of scoring requests
// (random byte contexts and continuations, lengths drawn from a seeded RNG),
// scores them with NativeBackend::score `repeats` times after one warm-up and
// prints the median throughput: continuation tokens/s (the tokens whose
// log-likelihood is returned) and processed tokens/s (context + continuation).
// --dump FILE writes the requests as token ids and the log-likelihood sums,
// so torch_score.py can time the same work and check the same answers.
//
// usage: bench_score --ckpt DIR [--make] [--layers 4 --embd 256 --heads 4 --seq 256]
//                    [--threads 1] [--batch 16] [--requests 256] [--repeats 3] [--dump FILE]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "assay/evals_native.h"

namespace {

struct Args {
  std::string ckpt, dump;
  bool make = false;
  int layers = 4, embd = 256, heads = 4, seq = 256, threads = 1, batch = 16, requests = 256,
      repeats = 3;
};

bool parse(int argc, char** argv, Args* a) {
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (k == "--make") { a->make = true; continue; }
    if (i + 1 >= argc) return false;
    std::string v = argv[++i];
    if (k == "--ckpt") a->ckpt = v;
    else if (k == "--dump") a->dump = v;
    else if (k == "--layers") a->layers = std::stoi(v);
    else if (k == "--embd") a->embd = std::stoi(v);
    else if (k == "--heads") a->heads = std::stoi(v);
    else if (k == "--seq") a->seq = std::stoi(v);
    else if (k == "--threads") a->threads = std::stoi(v);
    else if (k == "--batch") a->batch = std::stoi(v);
    else if (k == "--requests") a->requests = std::stoi(v);
    else if (k == "--repeats") a->repeats = std::stoi(v);
    else return false;
  }
  return !a->ckpt.empty();
}

}  // namespace

int main(int argc, char** argv) {
  namespace ev = assay::evals;
  namespace en = assay::engine;
  Args a;
  if (!parse(argc, argv, &a)) {
    std::fprintf(stderr, "usage: bench_score --ckpt DIR [--make] [--layers L --embd C --heads NH --seq T]\n"
                         "       [--threads N] [--batch B] [--requests N] [--repeats N] [--dump FILE]\n");
    return 2;
  }
  en::set_num_threads(a.threads);
  if (a.make) {
    en::GPTConfig cfg{257, a.seq, a.layers, a.heads, a.embd};
    auto m = en::GPT::init_random(cfg, 1, en::Mode::kFrozen);
    if (!m.ok()) { std::fprintf(stderr, "%s\n", m.status().message().c_str()); return 1; }
    auto tok = en::make_byte_tokenizer();
    auto h = en::save_checkpoint(a.ckpt, *m, *tok, {});
    if (!h.ok()) { std::fprintf(stderr, "%s\n", h.status().message().c_str()); return 1; }
  }
  ev::NativeOptions no;
  no.batch_size = a.batch;
  no.max_batch_tokens = static_cast<int64_t>(a.batch) * a.seq;
  auto be = ev::load_native_backend(a.ckpt, no);
  if (!be.ok()) { std::fprintf(stderr, "%s\n", be.status().message().c_str()); return 1; }
  const int P = (*be)->model().config().n_positions;
  // Requests: contexts of 1/4..3/4 of the window, continuations of 8..32 bytes.
  std::mt19937 rng(7);
  std::vector<ev::ScoreRequest> reqs;
  for (int i = 0; i < a.requests; ++i) {
    const int ctx = P / 4 + static_cast<int>(rng() % (P / 2));
    const int cont = 8 + static_cast<int>(rng() % 25);
    std::string context, continuation(1, ' ');
    for (int k = 0; k < ctx; ++k) context.push_back(static_cast<char>('a' + rng() % 26));
    for (int k = 1; k < std::min(cont, P - ctx); ++k) continuation.push_back(static_cast<char>('a' + rng() % 26));
    reqs.push_back({std::move(context), std::move(continuation)});
  }
  int64_t cont_tokens = 0, all_tokens = 0;
  nlohmann::json dump = nlohmann::json::array();
  for (const auto& r : reqs) {
    auto [c, t] = (*be)->encode_pair(r.context, r.continuation);
    cont_tokens += static_cast<int64_t>(t.size());
    all_tokens += static_cast<int64_t>(c.size() + t.size());
    dump.push_back({{"context", c}, {"continuation", t}});
  }
  std::vector<double> secs;
  std::vector<ev::LoglikResult> ll;
  for (int rep = 0; rep <= a.repeats; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    auto r = ev::loglikelihood(**be, reqs);
    auto t1 = std::chrono::steady_clock::now();
    if (!r.ok()) { std::fprintf(stderr, "%s\n", r.status().message().c_str()); return 1; }
    if (rep > 0) secs.push_back(std::chrono::duration<double>(t1 - t0).count());
    ll = std::move(r).value();
  }
  std::sort(secs.begin(), secs.end());
  const double s = secs[secs.size() / 2];
  std::printf("native cont_tok_s=%.1f all_tok_s=%.1f seconds=%.4f requests=%d cont_tokens=%lld "
              "threads=%d batch=%d\n",
              cont_tokens / s, all_tokens / s, s, a.requests, (long long)cont_tokens, a.threads, a.batch);
  if (!a.dump.empty()) {
    for (size_t i = 0; i < ll.size(); ++i) dump[i]["logprob"] = ll[i].logprob;
    std::ofstream(a.dump) << dump.dump();
  }
  return 0;
}
