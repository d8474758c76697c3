// The run metric protocol line (schemas::parse_metric_line, which the worker
// applies to every line a run writes) and the coordinator's fast path for
// metric batches (coordinator/src/metric_batch.h), held to the general JSON
// parser: whatever the fast path accepts must be the same batch to nlohmann.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "assay/specs.h"
#include "fuzz_common.h"
#include "metric_batch.h"

using namespace assay;
using Json = nlohmann::json;

namespace {

[[noreturn]] void mismatch(std::string_view body, const std::string& what) {
  fprintf(stderr, "fuzz: parse_metric_batch_fast accepted a body that nlohmann reads "
                  "differently: %s\n  body: %.*s\n",
          what.c_str(), static_cast<int>(std::min<size_t>(body.size(), 2000)), body.data());
  abort();
}

bool same_number(double fast, const Json& v) {
  if (v.is_null()) return std::isnan(fast);
  if (!v.is_number()) return false;
  return fast == v.get<double>();
}

// The fast path's verdict against the general parser's reading of `body`.
void check_fast_path(std::string_view body) {
  coordinator::MetricBatch b;
  if (!coordinator::parse_metric_batch_fast(body, &b)) return;
  Json j;
  try {
    j = Json::parse(body);
  } catch (const Json::exception& e) {
    // Whatever the fast path takes must be JSON (numbers included).
    mismatch(body, std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object() || !j.contains("points") || !j["points"].is_array())
    mismatch(body, "no points array");
  if (!j.contains("worker_id") || j["worker_id"] != b.worker_id) mismatch(body, "worker_id");
  const Json& pts = j["points"];
  if (pts.size() != b.points.size()) mismatch(body, "number of points");
  for (size_t i = 0; i < pts.size(); i++) {
    const Json& p = pts[i];
    const auto& q = b.points[i];
    const std::string at = "points[" + std::to_string(i) + "]";
    if (!p.is_object() || !p.contains("key") || p["key"] != q.key) mismatch(body, at + ".key");
    if (!p.contains("step") || !p["step"].is_number_integer() ||
        p["step"].get<int64_t>() != q.step) {
      mismatch(body, at + ".step");
    }
    if (!p.contains("value") || !same_number(q.value, p["value"])) mismatch(body, at + ".value");
    const bool has_time = p.contains("time") && !p["time"].is_null();
    if (has_time != q.time.has_value() || (has_time && !same_number(*q.time, p["time"])))
      mismatch(body, at + ".time");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in = fuzz::as_view(data, size);
  (void)schemas::parse_metric_line(in);
  check_fast_path(in);
  return 0;
}
