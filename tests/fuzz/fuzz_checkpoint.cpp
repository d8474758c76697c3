// load_checkpoint over a directory written from the input: config.json,
// model.safetensors and the tokenizer files, as a checkpoint from anywhere
// (an HF export, a sweep's output) reaches `assay eval`.
//
// Input: the files' bytes separated by "\n#assay-fuzz-file\n", in the order
// of kFiles; a missing or empty part leaves that file out.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

#include "assay/engine.h"
#include "fuzz_common.h"

using namespace assay;

namespace {
const char* const kFiles[] = {"config.json",  "model.safetensors", "tokenizer_config.json",
                              "vocab.json",   "merges.txt",        "tokenizer.json"};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::filesystem::path dir = fuzz::ScratchDir::get() / "checkpoint";
  std::filesystem::create_directories(dir);
  const auto parts = fuzz::split(fuzz::as_view(data, size), "\n#assay-fuzz-file\n", 6);
  for (size_t i = 0; i < std::size(kFiles); i++) {
    const auto path = dir / kFiles[i];
    if (i < parts.size() && !parts[i].empty()) {
      fuzz::write_file(path, parts[i]);
    } else {
      std::error_code ec;
      std::filesystem::remove(path, ec);
    }
  }
  (void)engine::load_checkpoint(dir.string(), engine::Mode::kFrozen);
  return 0;
}
