// The sweep, run and suite spec loaders, from a file as `assay spec check`,
// `assay submit` and `assay eval` read them (schemas/include/assay/specs.h),
// and the canonical form the coordinator hashes.
#include <cstddef>
#include <cstdint>

#include "assay/specs.h"
#include "fuzz_common.h"

using namespace assay;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = (fuzz::ScratchDir::get() / "spec.json").string();
  fuzz::write_file(path, fuzz::as_view(data, size));
  (void)schemas::load_sweep_spec(path);
  (void)schemas::load_run_spec(path);
  (void)schemas::load_suite_spec(path);
  auto doc = schemas::load_json_file(path);
  if (doc.ok()) (void)schemas::canonical_json(*doc);
  return 0;
}
