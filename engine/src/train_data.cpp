// Training data: loading text / JSONL examples, batching, sampling.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "assay/json_limits.h"
#include "assay/datagen.h"
#include "train_internal.h"

namespace assay::train::detail {

namespace {

Result<std::string> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::NotFound(path + ": cannot open data file");
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

bool is_jsonl(const std::string& path) {
  const auto ext = std::filesystem::path(path).extension().string();
  return ext == ".jsonl" || ext == ".json";
}

// Calls fn(line_no, object) for every non-empty line of a JSONL file.
Status for_each_jsonl(const std::string& path,
                      const std::function<Status(int64_t, const Json&)>& fn) {
  ASSAY_ASSIGN_OR_RETURN(std::string text, read_file(path));
  std::istringstream in(text);
  std::string line;
  int64_t no = 0;
  while (std::getline(in, line)) {
    ++no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto parsed = parse_json(line, path + ":" + std::to_string(no));
    if (!parsed.ok()) return Status::Invalid(parsed.status().message());
    Json j = std::move(*parsed);
    if (!j.is_object())
      return Status::Invalid(path + ":" + std::to_string(no) + ": expected a JSON object");
    ASSAY_RETURN_IF_ERROR(fn(no, j));
  }
  return Status::Ok();
}

std::string line_id(const std::string& path, int64_t no, const Json& j) {
  if (j.contains("id") && j["id"].is_string()) return j["id"].get<std::string>();
  if (j.contains("id") && j["id"].is_number_integer()) return std::to_string(j["id"].get<int64_t>());
  return std::filesystem::path(path).filename().string() + ":" + std::to_string(no);
}

Result<std::string> str_field(const std::string& path, int64_t no, const Json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_string())
    return Status::Invalid(path + ":" + std::to_string(no) + ": field '" + key + "' must be a string");
  return j[key].get<std::string>();
}

}  // namespace

Result<std::vector<Seq>> load_sequences(const std::string& path, const engine::Tokenizer& tok,
                                        int chunk_tokens) {
  std::vector<Seq> out;
  if (!is_jsonl(path)) {
    // Plain text: contiguous chunks; the loss covers every token.
    ASSAY_ASSIGN_OR_RETURN(std::string text, read_file(path));
    const auto ids = tok.encode(text);
    const std::string name = std::filesystem::path(path).filename().string();
    for (std::size_t at = 0, k = 0; at < ids.size(); at += static_cast<std::size_t>(chunk_tokens), ++k) {
      Seq s;
      s.id = name + "#" + std::to_string(k);
      const std::size_t end = std::min(ids.size(), at + static_cast<std::size_t>(chunk_tokens));
      s.completion.assign(ids.begin() + static_cast<std::ptrdiff_t>(at), ids.begin() + static_cast<std::ptrdiff_t>(end));
      out.push_back(std::move(s));
    }
  } else {
    ASSAY_RETURN_IF_ERROR(for_each_jsonl(path, [&](int64_t no, const Json& j) -> Status {
      Seq s;
      s.id = line_id(path, no, j);
      std::string prompt, completion;
      if (j.contains("question")) {
        ASSAY_ASSIGN_OR_RETURN(std::string q, str_field(path, no, j, "question"));
        ASSAY_ASSIGN_OR_RETURN(std::string a, str_field(path, no, j, "answer"));
        prompt = data::qa_prompt(q);
        completion = " " + a;
      } else if (j.contains("prompt")) {
        ASSAY_ASSIGN_OR_RETURN(prompt, str_field(path, no, j, "prompt"));
        const char* key = j.contains("completion") ? "completion" : "chosen";
        ASSAY_ASSIGN_OR_RETURN(completion, str_field(path, no, j, key));
      } else if (j.contains("text")) {
        ASSAY_ASSIGN_OR_RETURN(completion, str_field(path, no, j, "text"));
      } else {
        return Status::Invalid(path + ":" + std::to_string(no) +
                               ": expected fields text, question/answer or prompt/completion");
      }
      s.prompt = tok.encode(prompt);
      s.completion = tok.encode(completion);
      out.push_back(std::move(s));
      return Status::Ok();
    }));
  }
  if (out.empty()) return Status::Invalid(path + ": no examples");
  return out;
}

Result<std::vector<Seq>> load_sequences(const std::vector<std::string>& paths,
                                        const engine::Tokenizer& tok, int chunk_tokens) {
  std::vector<Seq> all;
  for (const auto& p : paths) {
    ASSAY_ASSIGN_OR_RETURN(auto part, load_sequences(p, tok, chunk_tokens));
    all.insert(all.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
  }
  return all;
}

Result<std::vector<PrefSeq>> load_prefs(const std::string& path, const engine::Tokenizer& tok) {
  std::vector<PrefSeq> out;
  ASSAY_RETURN_IF_ERROR(for_each_jsonl(path, [&](int64_t no, const Json& j) -> Status {
    PrefSeq p;
    p.id = line_id(path, no, j);
    ASSAY_ASSIGN_OR_RETURN(std::string prompt, str_field(path, no, j, "prompt"));
    ASSAY_ASSIGN_OR_RETURN(std::string chosen, str_field(path, no, j, "chosen"));
    ASSAY_ASSIGN_OR_RETURN(std::string rejected, str_field(path, no, j, "rejected"));
    if (chosen.empty() || rejected.empty())
      return Status::Invalid(path + ":" + std::to_string(no) + ": chosen and rejected must be non-empty");
    p.prompt = tok.encode(prompt);
    p.chosen = tok.encode(chosen);
    p.rejected = tok.encode(rejected);
    out.push_back(std::move(p));
    return Status::Ok();
  }));
  if (out.empty()) return Status::Invalid(path + ": no preference pairs");
  return out;
}

Batch make_batch(const std::vector<const Seq*>& seqs, int max_T, int bos, int eos, bool mask_prompt) {
  // Full token rows [bos] prompt completion [eos], cut to max_T + 1 tokens.
  std::vector<std::vector<int32_t>> rows;
  std::vector<std::size_t> loss_from;  // first target index counted in the loss
  const std::size_t cap = static_cast<std::size_t>(max_T) + 1;
  int T = 1;
  for (const Seq* s : seqs) {
    std::size_t np = s->prompt.size(), nc = s->completion.size();
    const bool fits = 2 + np + nc <= cap;  // a cut sequence gets no eos
    if (!fits) {
      const std::size_t over = 1 + np + nc - cap;
      const std::size_t cut_p = std::min(over, np);
      np -= cut_p;
      nc -= std::min(nc, over - cut_p);
    }
    std::vector<int32_t> r;
    r.reserve(2 + np + nc);
    r.push_back(bos);
    r.insert(r.end(), s->prompt.end() - static_cast<std::ptrdiff_t>(np), s->prompt.end());
    r.insert(r.end(), s->completion.begin(), s->completion.begin() + static_cast<std::ptrdiff_t>(nc));
    if (fits) r.push_back(eos);
    // Targets are r[1..]; target index i predicts r[i+1]. Prompt tokens sit at
    // r[1..np], so with masking the loss starts at target index np.
    loss_from.push_back(mask_prompt ? np : 0);
    T = std::max(T, static_cast<int>(r.size()) - 1);
    rows.push_back(std::move(r));
  }
  Batch b;
  b.B = static_cast<int>(seqs.size());
  b.T = T;
  b.x.assign(static_cast<std::size_t>(b.B) * T, eos);
  b.y.assign(b.x.size(), -1);
  b.mask.assign(b.x.size(), 0.0f);
  for (int i = 0; i < b.B; ++i) {
    const auto& r = rows[static_cast<std::size_t>(i)];
    const std::size_t n = r.size() - 1;  // targets in this row
    for (std::size_t t = 0; t < n; ++t) {
      const std::size_t k = static_cast<std::size_t>(i) * T + t;
      b.x[k] = r[t];
      b.y[k] = r[t + 1];
      b.mask[k] = t >= loss_from[static_cast<std::size_t>(i)] ? 1.0f : 0.0f;
    }
    b.tokens += static_cast<int64_t>(n);
  }
  return b;
}

Sampler::Sampler(std::size_t n, uint64_t seed) : n_(n), seed_(seed) {}

void Sampler::reshuffle() {
  ++epoch_;
  perm_.resize(n_);
  for (std::size_t i = 0; i < n_; ++i) perm_[i] = i;
  data::Rng rng(seed_ * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(epoch_));
  for (std::size_t i = n_; i > 1; --i)
    std::swap(perm_[i - 1], perm_[static_cast<std::size_t>(rng.uniform(0, static_cast<int64_t>(i) - 1))]);
  pos_ = 0;
}

Status Sampler::restore(int64_t epoch, std::size_t pos) {
  if (epoch < -1 || pos > n_)
    return Status::Invalid("sampler state: epoch " + std::to_string(epoch) + ", position " +
                           std::to_string(pos) + " out of range for " + std::to_string(n_) +
                           " examples");
  epoch_ = -1;
  pos_ = 0;
  if (epoch >= 0) {
    while (epoch_ < epoch) reshuffle();  // reshuffle() advances epoch_ and rebuilds perm_
    pos_ = pos;
  }
  return Status::Ok();
}

std::vector<std::size_t> Sampler::next(int k) {
  std::vector<std::size_t> out;
  out.reserve(static_cast<std::size_t>(k));
  while (static_cast<int>(out.size()) < k) {
    if (epoch_ < 0 || pos_ >= n_) reshuffle();
    out.push_back(perm_[pos_++]);
  }
  return out;
}

Result<std::span<const float>> forward(engine::GPT& m, const Batch& b) {
  return m.forward(b.x.data(), b.B, b.T);
}

}  // namespace assay::train::detail
