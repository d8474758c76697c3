// Unicode helpers for the GPT-2 byte-level tokenizers (private to the engine).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "assay/status.h"

namespace assay::engine::unicode {

bool is_letter(char32_t cp);  // general category L*
bool is_number(char32_t cp);  // general category N*
bool is_space(char32_t cp);   // White_Space property

// Decodes the UTF-8 sequence at s[i]; sets *len to its byte length. An
// invalid or truncated sequence yields U+FFFD with *len = 1, so every byte
// of the input belongs to exactly one decoded unit.
char32_t decode_utf8(std::string_view s, size_t i, size_t* len);
void append_utf8(char32_t cp, std::string& out);

// GPT-2's reversible byte -> printable code point map: printable Latin-1
// bytes map to themselves, the other 68 bytes to U+0100.. in byte order.
char32_t byte_to_unicode(uint8_t b);
// Inverse of byte_to_unicode; -1 when cp is not in its image.
int unicode_to_byte(char32_t cp);

}  // namespace assay::engine::unicode

namespace assay::engine {

// Writes a GPT-2 tokenizer directory readable by transformers' GPT2Tokenizer:
// vocab.json (token -> id for every non-empty id_to_token entry), merges.txt
// ("#version: 0.2" then one "a b" per line in rank order),
// tokenizer_config.json (with "assay_tokenizer": kind and "add_bos_token":
// add_bos) and special_tokens_map.json naming `special` as bos/eos/unk token.
Status write_gpt2_tokenizer_files(const std::string& dir,
                                  const std::vector<std::string>& id_to_token,
                                  const std::vector<std::pair<std::string, std::string>>& merges,
                                  const std::string& kind, const std::string& special,
                                  bool add_bos);

}  // namespace assay::engine
