// GPT-2 byte-level BPE: the GPT-2 pre-tokenizer pattern matched by hand,
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// then each piece's bytes mapped through byte_to_unicode and merged by rank.
#include <algorithm>
#include <climits>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "assay/json_limits.h"
#include "assay/engine.h"
#include "tokenizer_internal.h"

namespace assay::engine {
namespace {

using unicode::decode_utf8;
using unicode::is_letter;
using unicode::is_number;
using unicode::is_space;

bool is_other(char32_t c) { return !is_space(c) && !is_letter(c) && !is_number(c); }

}  // namespace

// `cps` holds the decoded code points and `pos` their byte offsets
// (pos.back() == text.size()).
std::vector<std::string_view> gpt2_pretokenize(std::string_view text) {
  std::vector<char32_t> cps;
  std::vector<size_t> pos;
  for (size_t i = 0; i < text.size();) {
    size_t len;
    cps.push_back(decode_utf8(text, i, &len));
    pos.push_back(i);
    i += len;
  }
  pos.push_back(text.size());
  const size_t n = cps.size();
  std::vector<std::string_view> out;
  size_t i = 0;
  auto emit = [&](size_t j) {
    out.push_back(text.substr(pos[i], pos[j] - pos[i]));
    i = j;
  };
  // ` ?X+` for a class X: the end of the match at i, or i when it fails.
  auto run = [&](bool (*cls)(char32_t)) {
    size_t j = i;
    if (cps[j] == U' ' && j + 1 < n && cls(cps[j + 1])) j++;
    if (!cls(cps[j])) return i;
    while (j < n && cls(cps[j])) j++;
    return j;
  };
  while (i < n) {
    if (cps[i] == U'\'' && i + 1 < n) {
      const char32_t a = cps[i + 1], b = i + 2 < n ? cps[i + 2] : 0;
      if (a == U's' || a == U't' || a == U'm' || a == U'd') {
        emit(i + 2);
        continue;
      }
      if ((a == U'r' && b == U'e') || (a == U'v' && b == U'e') || (a == U'l' && b == U'l')) {
        emit(i + 3);
        continue;
      }
    }
    size_t j;
    if ((j = run(is_letter)) > i || (j = run(is_number)) > i || (j = run(is_other)) > i) {
      emit(j);
      continue;
    }
    // cps[i] is whitespace. \s+(?!\S): the run, less its last character
    // when a non-space follows; a single space before a non-space is \s+.
    j = i;
    while (j < n && is_space(cps[j])) j++;
    if (j < n && j - i > 1) j--;
    emit(j);
  }
  return out;
}

namespace {

class BpeTokenizer final : public Tokenizer {
 public:
  BpeTokenizer(std::unordered_map<std::string, int32_t> vocab,
               std::vector<std::pair<std::string, std::string>> merges,
               std::vector<std::pair<std::string, int32_t>> specials)
      : vocab_(std::move(vocab)), merges_(std::move(merges)), specials_(std::move(specials)) {
    for (size_t r = 0; r < merges_.size(); r++) {
      ranks_.emplace(merges_[r].first + " " + merges_[r].second, (int)r);
    }
    int32_t max_id = -1;
    for (const auto& [tok, id] : vocab_) max_id = std::max(max_id, id);
    for (const auto& [tok, id] : specials_) max_id = std::max(max_id, id);
    id_to_token_.resize(max_id + 1);
    for (const auto& [tok, id] : vocab_) id_to_token_[id] = tok;
    for (const auto& [tok, id] : specials_) id_to_token_[id] = tok;
    special_id_.assign(max_id + 1, 0);
    for (const auto& [tok, id] : specials_) special_id_[id] = 1;
    // Longest first, so that a special token is never cut by a shorter one.
    std::sort(specials_.begin(), specials_.end(),
              [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
    for (const auto& [tok, id] : specials_) {
      if (tok == "<|endoftext|>") eos_ = id;
    }
  }

  std::vector<int32_t> encode(std::string_view text, bool allow_special) const override {
    std::vector<int32_t> ids;
    size_t start = 0;
    if (allow_special && !specials_.empty()) {
      for (size_t i = 0; i < text.size();) {
        const std::pair<std::string, int32_t>* hit = nullptr;
        for (const auto& s : specials_) {
          if (text.compare(i, s.first.size(), s.first) == 0) {
            hit = &s;
            break;
          }
        }
        if (!hit) {
          i++;
          continue;
        }
        encode_plain(text.substr(start, i - start), ids);
        ids.push_back(hit->second);
        i += hit->first.size();
        start = i;
      }
    }
    encode_plain(text.substr(start), ids);
    return ids;
  }

  std::string decode(std::span<const int32_t> ids) const override {
    std::string out;
    for (int32_t id : ids) {
      if (id < 0 || id >= (int32_t)id_to_token_.size()) continue;
      const std::string& tok = id_to_token_[id];
      if (special_id_[id]) {
        out += tok;
        continue;
      }
      for (size_t i = 0; i < tok.size();) {
        size_t len;
        const int b = unicode::unicode_to_byte(decode_utf8(tok, i, &len));
        if (b >= 0) out += (char)b;
        i += len;
      }
    }
    return out;
  }

  int vocab_size() const override { return (int)id_to_token_.size(); }
  int eos_id() const override { return eos_; }
  int bos_id() const override { return eos_; }
  std::string kind() const override { return "gpt2-bpe"; }
  Status save(const std::string& dir) const override {
    return write_gpt2_tokenizer_files(dir, id_to_token_, merges_, "gpt2-bpe",
                                      eos_ >= 0 ? id_to_token_[eos_] : "<|endoftext|>",
                                      add_bos_token());
  }

 private:
  void encode_plain(std::string_view text, std::vector<int32_t>& ids) const {
    for (std::string_view piece : gpt2_pretokenize(text)) {
      {
        std::lock_guard<std::mutex> lock(cache_mu_);
        auto it = cache_.find(std::string(piece));
        if (it != cache_.end()) {
          ids.insert(ids.end(), it->second.begin(), it->second.end());
          continue;
        }
      }
      std::vector<int32_t> piece_ids = bpe(piece);
      ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
      std::lock_guard<std::mutex> lock(cache_mu_);
      if (cache_.size() > 200000) cache_.clear();  // bound memory on huge corpora
      cache_.emplace(std::string(piece), std::move(piece_ids));
    }
  }

  // Merges the symbols of one pre-token: repeatedly the pair of lowest rank,
  // all its non-overlapping occurrences left to right.
  std::vector<int32_t> bpe(std::string_view piece) const {
    std::vector<std::string> sym;
    for (unsigned char c : piece) {
      std::string s;
      unicode::append_utf8(unicode::byte_to_unicode(c), s);
      sym.push_back(std::move(s));
    }
    while (sym.size() > 1) {
      int best = INT_MAX;
      size_t at = 0;
      for (size_t k = 0; k + 1 < sym.size(); k++) {
        auto it = ranks_.find(sym[k] + " " + sym[k + 1]);
        if (it != ranks_.end() && it->second < best) {
          best = it->second;
          at = k;
        }
      }
      if (best == INT_MAX) break;
      const std::string a = sym[at], b = sym[at + 1];
      std::vector<std::string> next;
      for (size_t k = 0; k < sym.size();) {
        if (k + 1 < sym.size() && sym[k] == a && sym[k + 1] == b) {
          next.push_back(a + b);
          k += 2;
        } else {
          next.push_back(std::move(sym[k++]));
        }
      }
      sym = std::move(next);
    }
    std::vector<int32_t> out;
    for (const std::string& s : sym) {
      auto it = vocab_.find(s);
      if (it != vocab_.end()) {
        out.push_back(it->second);
        continue;
      }
      // An inconsistent vocabulary (merge result missing): fall back to the
      // symbol's single characters; characters missing too are dropped.
      for (size_t i = 0; i < s.size();) {
        size_t len;
        decode_utf8(s, i, &len);
        auto c = vocab_.find(s.substr(i, len));
        if (c != vocab_.end()) out.push_back(c->second);
        i += len;
      }
    }
    return out;
  }

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::pair<std::string, std::string>> merges_;
  std::vector<std::pair<std::string, int32_t>> specials_;
  std::unordered_map<std::string, int> ranks_;
  std::vector<std::string> id_to_token_;
  std::vector<uint8_t> special_id_;
  int32_t eos_ = -1;
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

Status read_json(const std::string& path, nlohmann::json* out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::IoError(path + ": cannot open");
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  // A tokenizer.json is deep only by accident or malice: the depth limit
  // keeps a crafted file from exhausting the stack.
  auto parsed = parse_json(text, path);
  if (!parsed.ok()) return Status::Corruption(parsed.status().message());
  *out = std::move(*parsed);
  return Status::Ok();
}

Status parse_vocab(const std::string& what, const nlohmann::json& j,
                   std::unordered_map<std::string, int32_t>* vocab) {
  if (!j.is_object()) return Status::Corruption(what + ": vocab must be a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() >= (1 << 24)) {
      return Status::Corruption(what + ": id of token '" + it.key() + "' must be 0..16777215");
    }
    (*vocab)[it.key()] = it->get<int32_t>();
  }
  return Status::Ok();
}

// Byte-level tokens of the form <|...|> (GPT-2's "<|endoftext|>") are special.
std::vector<std::pair<std::string, int32_t>> specials_from_vocab(
    const std::unordered_map<std::string, int32_t>& vocab) {
  std::vector<std::pair<std::string, int32_t>> s;
  for (const auto& [tok, id] : vocab) {
    if (tok.size() > 4 && tok.rfind("<|", 0) == 0 && tok.compare(tok.size() - 2, 2, "|>") == 0) {
      s.emplace_back(tok, id);
    }
  }
  std::sort(s.begin(), s.end());
  return s;
}

}  // namespace

Result<std::unique_ptr<Tokenizer>> load_bpe_tokenizer(const std::string& vocab_json,
                                                      const std::string& merges_txt) {
  nlohmann::json j;
  ASSAY_RETURN_IF_ERROR(read_json(vocab_json, &j));
  std::unordered_map<std::string, int32_t> vocab;
  ASSAY_RETURN_IF_ERROR(parse_vocab(vocab_json, j, &vocab));
  std::ifstream f(merges_txt);
  if (!f) return Status::IoError(merges_txt + ": cannot open");
  std::vector<std::pair<std::string, std::string>> merges;
  std::string line;
  int lineno = 0;
  while (std::getline(f, line)) {
    lineno++;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (lineno == 1 && line.rfind("#version", 0) == 0)) continue;
    const size_t sp = line.find(' ');
    if (sp == std::string::npos || sp == 0 || sp + 1 >= line.size() ||
        line.find(' ', sp + 1) != std::string::npos) {
      return Status::Corruption(merges_txt + ":" + std::to_string(lineno) +
                                ": expected two tokens separated by one space, got '" + line + "'");
    }
    merges.emplace_back(line.substr(0, sp), line.substr(sp + 1));
  }
  auto specials = specials_from_vocab(vocab);
  return std::unique_ptr<Tokenizer>(
      new BpeTokenizer(std::move(vocab), std::move(merges), std::move(specials)));
}

Result<std::unique_ptr<Tokenizer>> load_tokenizer_json(const std::string& path) {
  nlohmann::json j;
  ASSAY_RETURN_IF_ERROR(read_json(path, &j));
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) {
    return Status::Corruption(path + ": missing object field model");
  }
  const nlohmann::json& model = j["model"];
  if (model.contains("type") && model["type"] != "BPE") {
    return Status::Invalid(path + ": model.type must be \"BPE\", got " + model["type"].dump());
  }
  if (j.contains("pre_tokenizer") && j["pre_tokenizer"].is_object() &&
      j["pre_tokenizer"].value("type", "") != "ByteLevel") {
    return Status::Invalid(path + ": pre_tokenizer.type must be \"ByteLevel\" (GPT-2), got " +
                           j["pre_tokenizer"].value("type", std::string("?")));
  }
  std::unordered_map<std::string, int32_t> vocab;
  ASSAY_RETURN_IF_ERROR(
      parse_vocab(path + ": model.vocab", model.value("vocab", nlohmann::json()), &vocab));
  std::vector<std::pair<std::string, std::string>> merges;
  const nlohmann::json m = model.value("merges", nlohmann::json::array());
  for (size_t k = 0; k < m.size(); k++) {
    // Two encodings exist: "a b" strings (older) and ["a", "b"] pairs (newer).
    if (m[k].is_string()) {
      const std::string s = m[k].get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || sp == 0 || sp + 1 >= s.size()) {
        return Status::Corruption(path + ": model.merges[" + std::to_string(k) + "] = '" + s +
                                  "' is not 'a b'");
      }
      merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (m[k].is_array() && m[k].size() == 2 && m[k][0].is_string() && m[k][1].is_string()) {
      merges.emplace_back(m[k][0].get<std::string>(), m[k][1].get<std::string>());
    } else {
      return Status::Corruption(path + ": model.merges[" + std::to_string(k) +
                                "] must be \"a b\" or [\"a\", \"b\"]");
    }
  }
  std::vector<std::pair<std::string, int32_t>> specials;
  for (const auto& t : j.value("added_tokens", nlohmann::json::array())) {
    if (!t.is_object() || !t.contains("id") || !t.contains("content")) continue;
    const std::string content = t["content"].get<std::string>();
    const int32_t id = t["id"].get<int32_t>();
    specials.emplace_back(content, id);
    vocab.erase(content);  // decoded verbatim, never through the byte map
  }
  if (specials.empty()) specials = specials_from_vocab(vocab);
  return std::unique_ptr<Tokenizer>(
      new BpeTokenizer(std::move(vocab), std::move(merges), std::move(specials)));
}

}  // namespace assay::engine
