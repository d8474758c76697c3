// Content hashing for sweeps, checkpoints and artifacts (SHA-256, hex).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "assay/status.h"

namespace assay {

// Incremental SHA-256 (FIPS 180-4).
class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t n);
  void update(std::string_view s) { update(s.data(), s.size()); }
  // 64 lowercase hex characters. The object must not be updated afterwards.
  std::string hex_digest();

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

std::string sha256_hex(std::string_view data);
// Hash of a file's bytes, streamed.
Result<std::string> sha256_file(const std::string& path);
// Hash of the bytes of several files, concatenated in the given order.
Result<std::string> sha256_files(const std::vector<std::string>& paths);

// The content id of an artifact path, the same on every machine:
// - a regular file: sha256 of its bytes;
// - a model checkpoint directory (holding model.safetensors and
//   config.json): sha256 over model.safetensors then config.json, so
//   tokenizer or optimizer files beside them do not change the model's id;
// - any other directory: sha256 over its regular files in sorted relative
//   path order, each contributing "<path>\0<sha256 hex>\n".
Result<std::string> artifact_hash(const std::string& path);

}  // namespace assay
