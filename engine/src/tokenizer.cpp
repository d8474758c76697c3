// Byte-level tokenizer, the GPT-2 byte <-> unicode map, UTF-8 helpers, the
// tokenizer file writer and load_tokenizer(dir).
//
// The byte tokenizer is a GPT-2 byte-level BPE with no merges: its saved
// vocab.json maps byte_to_unicode(b) -> b and "<|endoftext|>" -> 256, so
// transformers' GPT2Tokenizer reproduces its ids exactly.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "assay/json_limits.h"
#include "assay/engine.h"
#include "tokenizer_internal.h"

namespace fs = std::filesystem;

namespace assay::engine {
namespace unicode {

char32_t decode_utf8(std::string_view s, size_t i, size_t* len) {
  const auto c0 = (uint8_t)s[i];
  *len = 1;
  if (c0 < 0x80) return c0;
  int n;
  char32_t cp;
  if ((c0 & 0xE0) == 0xC0) {
    n = 2, cp = c0 & 0x1F;
  } else if ((c0 & 0xF0) == 0xE0) {
    n = 3, cp = c0 & 0x0F;
  } else if ((c0 & 0xF8) == 0xF0) {
    n = 4, cp = c0 & 0x07;
  } else {
    return 0xFFFD;
  }
  if (i + n > s.size()) return 0xFFFD;
  for (int k = 1; k < n; k++) {
    const auto c = (uint8_t)s[i + k];
    if ((c & 0xC0) != 0x80) return 0xFFFD;
    cp = (cp << 6) | (c & 0x3F);
  }
  // Reject overlong forms, surrogates and values past U+10FFFF.
  static const char32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0xFFFD;
  *len = n;
  return cp;
}

void append_utf8(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += (char)cp;
  } else if (cp < 0x800) {
    out += (char)(0xC0 | (cp >> 6));
    out += (char)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += (char)(0xE0 | (cp >> 12));
    out += (char)(0x80 | ((cp >> 6) & 0x3F));
    out += (char)(0x80 | (cp & 0x3F));
  } else {
    out += (char)(0xF0 | (cp >> 18));
    out += (char)(0x80 | ((cp >> 12) & 0x3F));
    out += (char)(0x80 | ((cp >> 6) & 0x3F));
    out += (char)(0x80 | (cp & 0x3F));
  }
}

namespace {
// Printable bytes keep their code point: '!'..'~', '¡'..'¬', '®'..'ÿ'.
bool printable_byte(int b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

struct ByteMap {
  char32_t to_cp[256];
  ByteMap() {
    int next = 0;
    for (int b = 0; b < 256; b++)
      to_cp[b] = printable_byte(b) ? (char32_t)b : (char32_t)(256 + next++);
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}
}  // namespace

char32_t byte_to_unicode(uint8_t b) { return byte_map().to_cp[b]; }

int unicode_to_byte(char32_t cp) {
  if (cp < 256) return printable_byte((int)cp) ? (int)cp : -1;
  if (cp >= 256 + 68) return -1;
  // The k-th non-printable byte maps to 256 + k.
  int k = (int)(cp - 256);
  for (int b = 0; b < 256; b++) {
    if (!printable_byte(b) && k-- == 0) return b;
  }
  return -1;
}

}  // namespace unicode

namespace {

Status write_text(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  if (!f) return Status::IoError(p.string() + ": cannot open for writing");
  f << text;
  if (!f) return Status::IoError(p.string() + ": write failed");
  return Status::Ok();
}

constexpr const char* kEndOfText = "<|endoftext|>";

class ByteTokenizer final : public Tokenizer {
 public:
  std::vector<int32_t> encode(std::string_view text, bool allow_special) const override {
    std::vector<int32_t> ids;
    ids.reserve(text.size());
    const std::string_view eot = kEndOfText;
    for (size_t i = 0; i < text.size();) {
      if (allow_special && text.compare(i, eot.size(), eot) == 0) {
        ids.push_back(256);
        i += eot.size();
      } else {
        ids.push_back((uint8_t)text[i++]);
      }
    }
    return ids;
  }
  std::string decode(std::span<const int32_t> ids) const override {
    std::string out;
    for (int32_t id : ids) {
      if (id >= 0 && id < 256)
        out += (char)id;
      else if (id == 256)
        out += kEndOfText;
    }
    return out;
  }
  int vocab_size() const override { return 257; }
  int eos_id() const override { return 256; }
  int bos_id() const override { return 256; }
  std::string kind() const override { return "byte"; }
  Status save(const std::string& dir) const override {
    std::vector<std::string> id_to_token(257);
    for (int b = 0; b < 256; b++)
      unicode::append_utf8(unicode::byte_to_unicode((uint8_t)b), id_to_token[b]);
    id_to_token[256] = kEndOfText;
    return write_gpt2_tokenizer_files(dir, id_to_token, {}, "byte", kEndOfText, add_bos_token());
  }
};

}  // namespace

Status write_gpt2_tokenizer_files(const std::string& dir,
                                  const std::vector<std::string>& id_to_token,
                                  const std::vector<std::pair<std::string, std::string>>& merges,
                                  const std::string& kind, const std::string& special,
                                  bool add_bos) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::IoError(dir + ": cannot create directory: " + ec.message());
  nlohmann::json vocab = nlohmann::json::object();
  for (size_t id = 0; id < id_to_token.size(); id++) {
    if (!id_to_token[id].empty()) vocab[id_to_token[id]] = id;
  }
  std::string m = "#version: 0.2\n";
  for (const auto& [a, b] : merges) m += a + " " + b + "\n";
  nlohmann::json cfg = {{"tokenizer_class", "GPT2Tokenizer"},
                        {"assay_tokenizer", kind},
                        {"add_prefix_space", false},
                        {"add_bos_token", add_bos},
                        {"add_eos_token", false},
                        // decode() returns the text as encoded; transformers'
                        // default clean-up would rewrite " ," to ",".
                        {"clean_up_tokenization_spaces", false},
                        {"bos_token", special},
                        {"eos_token", special},
                        {"unk_token", special},
                        {"model_max_length", 1024}};
  nlohmann::json smap = {{"bos_token", special}, {"eos_token", special}, {"unk_token", special}};
  const fs::path d(dir);
  ASSAY_RETURN_IF_ERROR(write_text(d / "vocab.json", vocab.dump() + "\n"));
  ASSAY_RETURN_IF_ERROR(write_text(d / "merges.txt", m));
  ASSAY_RETURN_IF_ERROR(write_text(d / "tokenizer_config.json", cfg.dump(2) + "\n"));
  ASSAY_RETURN_IF_ERROR(write_text(d / "special_tokens_map.json", smap.dump(2) + "\n"));
  // transformers prefers tokenizer.json to the files above and would ignore
  // add_bos_token there; without it, AutoTokenizer builds its fast tokenizer
  // from vocab.json + merges.txt and honours add_bos_token (a BOS template).
  // A tokenizer.json left in the directory would describe another tokenizer.
  fs::remove(d / "tokenizer.json", ec);
  if (ec) return Status::IoError((d / "tokenizer.json").string() + ": cannot remove stale file: " +
                                 ec.message());
  return Status::Ok();
}

std::unique_ptr<Tokenizer> make_byte_tokenizer() { return std::make_unique<ByteTokenizer>(); }

Result<std::unique_ptr<Tokenizer>> load_tokenizer(const std::string& dir) {
  const fs::path d(dir);
  const fs::path cfg = d / "tokenizer_config.json";
  nlohmann::json j = nlohmann::json::object();
  if (fs::exists(cfg)) {
    std::ifstream f(cfg, std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto parsed = parse_json(text, cfg.string());
    if (!parsed.ok()) return Status::Corruption(parsed.status().message());
    j = std::move(*parsed);
    if (!j.is_object()) return Status::Corruption(cfg.string() + ": must be a JSON object");
  }
  bool add_bos = false;
  if (j.contains("add_bos_token") && !j["add_bos_token"].is_null()) {
    if (!j["add_bos_token"].is_boolean())
      return Status::Invalid(cfg.string() + ": field add_bos_token must be true or false, got " +
                             j["add_bos_token"].dump());
    add_bos = j["add_bos_token"].get<bool>();
  }
  std::unique_ptr<Tokenizer> tok;
  if (j.value("assay_tokenizer", nlohmann::json()) == "byte") {
    tok = make_byte_tokenizer();
  } else if (fs::exists(d / "vocab.json") && fs::exists(d / "merges.txt")) {
    ASSAY_ASSIGN_OR_RETURN(tok, load_bpe_tokenizer((d / "vocab.json").string(),
                                                   (d / "merges.txt").string()));
  } else if (fs::exists(d / "tokenizer.json")) {
    ASSAY_ASSIGN_OR_RETURN(tok, load_tokenizer_json((d / "tokenizer.json").string()));
  } else {
    return Status::NotFound(dir +
                            ": no tokenizer (expected tokenizer_config.json with "
                            "assay_tokenizer \"byte\", vocab.json + merges.txt, or tokenizer.json)");
  }
  tok->set_add_bos_token(add_bos);
  return tok;
}

}  // namespace assay::engine
