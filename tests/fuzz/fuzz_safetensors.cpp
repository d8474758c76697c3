// SafeTensors::parse over arbitrary bytes, and the fp32 conversion of every
// tensor a file that parses declares (engine/include/assay/engine.h).
#include <cstddef>
#include <cstdint>
#include <string>

#include "assay/engine.h"
#include "fuzz_common.h"

using namespace assay;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto st = engine::SafeTensors::parse(std::string(fuzz::as_view(data, size)), "fuzz.safetensors");
  if (!st.ok()) return 0;
  for (const auto& t : st->tensors()) (void)st->to_f32(t.name);
  return 0;
}
