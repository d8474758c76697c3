// A worker's metric batch (POST /v1/worker/runs/{id}/metrics), and a parser
// for its usual shape that skips the general JSON tree: batches are the bulk
// of the coordinator's input, and building a DOM for 2,000 points cost a
// quarter of its time (bench/coordinator ingest).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace assay::coordinator {

struct MetricBatch {
  struct Point {
    std::string key;
    int64_t step = 0;
    double value = 0;           // NaN for a JSON null
    std::optional<double> time;  // unix seconds; absent: time of receipt
  };
  std::string worker_id;
  std::optional<int64_t> attempt;
  std::optional<int64_t> batch_seq;
  std::vector<Point> points;
};

// True when `body` is exactly an object of worker_id (string), attempt
// (integer), batch_seq (integer or null) and points (array of objects of key
// (string), step (integer), value (number or null), time (number or null)), in any
// order, with strings free of escapes and non-ASCII bytes. Anything else,
// valid or not, returns false: the caller then takes the general JSON path,
// which also words the errors. Range checks (key length, counts, signs) are
// the caller's, on either path.
bool parse_metric_batch_fast(std::string_view body, MetricBatch* out);

}  // namespace assay::coordinator
