// The tokenizers: the byte tokenizer and a GPT-2 byte-level BPE must give
// back every byte string they encode (decode(encode(s)) == s, with and
// without special tokens), the GPT-2 pre-tokenizer's pieces must tile the
// text, and the loaders of tokenizer.json and vocab.json + merges.txt must
// refuse what they cannot read, without crashing.
//
// Input: one mode byte, then
//   0: text for the byte tokenizer     1: text for the tiny BPE
//   2: a tokenizer.json (then its round trip on the same bytes, unchecked)
//   3: vocab.json "\n#merges\n" merges.txt
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "assay/engine.h"
#include "fuzz_common.h"
#include "tiny_bpe.h"

using namespace assay;

namespace {

void check_round_trip(const engine::Tokenizer& tok, std::string_view text) {
  for (bool special : {false, true}) {
    const auto ids = tok.encode(text, special);
    const std::string back = tok.decode(ids);
    if (back != text) {
      fprintf(stderr, "fuzz: %s tokenizer (allow_special=%d) does not round-trip %zu bytes\n",
              tok.kind().c_str(), special ? 1 : 0, text.size());
      abort();
    }
  }
}

void check_pretokenize(std::string_view text) {
  std::string joined;
  size_t expect = 0;
  for (std::string_view piece : engine::gpt2_pretokenize(text)) {
    if (piece.empty() || piece.data() != text.data() + expect) {
      fprintf(stderr, "fuzz: gpt2_pretokenize pieces do not tile the text\n");
      abort();
    }
    expect += piece.size();
  }
  if (expect != text.size()) {
    fprintf(stderr, "fuzz: gpt2_pretokenize covers %zu of %zu bytes\n", expect, text.size());
    abort();
  }
}

const engine::Tokenizer& tiny_bpe() {
  static const std::unique_ptr<engine::Tokenizer> tok = [] {
    const auto d = fuzz::ScratchDir::get() / "tiny_bpe";
    std::filesystem::create_directories(d);
    fuzz::write_file(d / "vocab.json", tiny_vocab(true).dump());
    std::string merges = "#version: 0.2\n";
    for (const auto& [a, b] : kMerges) merges += a + " " + b + "\n";
    fuzz::write_file(d / "merges.txt", merges);
    auto t = engine::load_bpe_tokenizer((d / "vocab.json").string(), (d / "merges.txt").string());
    if (!t.ok()) abort();
    return std::move(t).value();
  }();
  return *tok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view in = fuzz::as_view(data + 1, size - 1);
  static const std::unique_ptr<engine::Tokenizer> bytes = engine::make_byte_tokenizer();
  const auto dir = fuzz::ScratchDir::get();
  switch (data[0] % 4) {
    case 0:
      check_round_trip(*bytes, in);
      check_pretokenize(in);
      break;
    case 1:
      check_round_trip(tiny_bpe(), in);
      break;
    case 2: {
      fuzz::write_file(dir / "tokenizer.json", in);
      auto t = engine::load_tokenizer_json((dir / "tokenizer.json").string());
      if (t.ok()) (void)(*t)->decode((*t)->encode(in, true));
      break;
    }
    case 3: {
      const auto parts = fuzz::split(in, "\n#merges\n", 2);
      fuzz::write_file(dir / "vocab.json", parts[0]);
      fuzz::write_file(dir / "merges.txt", parts.size() > 1 ? parts[1] : "");
      auto t = engine::load_bpe_tokenizer((dir / "vocab.json").string(),
                                          (dir / "merges.txt").string());
      if (t.ok()) (void)(*t)->decode((*t)->encode(in, true));
      break;
    }
  }
  return 0;
}
