// A tiny GPT-2 style BPE vocabulary written as vocab.json + merges.txt,
// shared by the tokenizer tests and the transformers interop tests.
#pragma once

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "temp_dir.h"

// GPT-2's printable form of a byte (the byte_to_unicode map), as UTF-8.
inline std::string byte_char(int b) {
  const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
  int cp = b;
  if (!printable) {
    int k = 0;
    for (int x = 0; x < b; x++) {
      if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE)) k++;
    }
    cp = 256 + k;
  }
  std::string s;
  if (cp < 0x80) {
    s += (char)cp;
  } else {
    s += (char)(0xC0 | (cp >> 6));
    s += (char)(0x80 | (cp & 0x3F));
  }
  return s;
}

// A tiny GPT-2 style vocabulary: bytes are ids 0..255 (id = byte value),
// then merged tokens, then <|endoftext|> = 262.
inline const std::vector<std::pair<std::string, std::string>> kMerges = {
    {"t", "h"}, {"th", "e"}, {"Ġ", "c"}, {"a", "t"}, {"Ġc", "at"}, {"h", "at"}};

inline nlohmann::json tiny_vocab(bool with_special) {
  nlohmann::json v = nlohmann::json::object();
  for (int b = 0; b < 256; b++) v[byte_char(b)] = b;
  v["th"] = 256;
  v["the"] = 257;
  v["Ġc"] = 258;
  v["at"] = 259;
  v["Ġcat"] = 260;
  v["hat"] = 261;
  if (with_special) v["<|endoftext|>"] = 262;
  return v;
}

inline std::filesystem::path write_vocab_merges(const std::string& name) {
  const std::filesystem::path d = temp_dir(name);
  std::ofstream(d / "vocab.json") << tiny_vocab(true).dump();
  std::ofstream m(d / "merges.txt");
  m << "#version: 0.2\n";
  for (const auto& [a, b] : kMerges) m << a << " " << b << "\n";
  return d;
}
