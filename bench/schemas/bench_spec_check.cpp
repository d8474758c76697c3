// How long the spec checker (parse_json + parse_sweep_spec: schema validation
// and the checks JSON Schema cannot express) takes on sweep specs of a given
// size, shaped to hit each check's worst case:
//   seeds-unique   an array of distinct seeds            (uniqueItems, items)
//   seeds-dup      the same seed repeated                (uniqueItems with repeats)
//   labels         many string labels                    (additionalProperties)
//   space          many grid dimensions                  (propertyNames pattern, oneOf)
//   grid-values    one grid dimension with many values   (oneOf over a long array)
//   evals          many eval hooks with unknown fields   (additionalProperties false)
//   braces         a command of '{' ending in one '}'    (placeholder scan)
//   bad-types      many seeds of the wrong type          (one error per item)
//   long-key       a half-size dimension name over a grid of wrong-typed
//                  values                                (errors under a long pointer)
// Each line: shape, document bytes, seconds to parse, seconds to check, and
// the first line of the verdict.
// Usage: bench_spec_check [bytes=1048576] [shape,shape,...]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "assay/json_limits.h"
#include "assay/specs.h"

namespace {

using Clock = std::chrono::steady_clock;

double secs_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

const std::string kHead = R"({"name": "bench", "command": "train --lr {lr}", )";

// Repeats `item(i)` joined by ", " until the text reaches about `bytes`.
std::string fill(size_t bytes, const std::function<std::string(size_t)>& item) {
  std::string out;
  for (size_t i = 0; out.size() < bytes; ++i) out += (i ? ", " : "") + item(i);
  return out;
}

std::string shape(const std::string& name, size_t bytes) {
  const std::string lr = R"("space": {"lr": {"type": "grid", "values": [0.1]}})";
  if (name == "seeds-unique")
    return kHead + lr + R"(, "seeds": [)" + fill(bytes, [](size_t i) { return std::to_string(i); }) + "]}";
  if (name == "seeds-dup")
    return kHead + lr + R"(, "seeds": [)" + fill(bytes, [](size_t) { return std::string("7"); }) + "]}";
  if (name == "labels")
    return kHead + lr + R"(, "labels": {)" +
           fill(bytes, [](size_t i) { return "\"k" + std::to_string(i) + "\": \"v\""; }) + "}}";
  if (name == "space")
    return kHead + R"("space": {"lr": {"type": "grid", "values": [0.1]}, )" +
           fill(bytes, [](size_t i) {
             return "\"d" + std::to_string(i) + "\": {\"type\": \"grid\", \"values\": [1, 2]}";
           }) + "}}";
  if (name == "grid-values")
    return kHead + R"("space": {"lr": {"type": "grid", "values": [)" +
           fill(bytes, [](size_t i) { return std::to_string(i) + ".5"; }) + "]}}}";
  if (name == "evals")
    return kHead + lr + R"(, "evals": [)" +
           fill(bytes, [](size_t i) { return "{\"suite\": \"s" + std::to_string(i) + "\", \"x\": 1}"; }) + "]}";
  if (name == "braces")
    return R"({"name": "bench", "command": ")" + std::string(bytes, '{') + "}\"}";
  if (name == "long-key")
    return kHead + R"("space": {"lr": {"type": "grid", "values": [0.1]}, ")" + std::string(bytes / 2, 'a') +
           R"(": {"type": "grid", "values": [)" + fill(bytes / 2, [](size_t) { return std::string("{}"); }) +
           "]}}}";
  if (name == "bad-types")
    return kHead + lr + R"(, "seeds": [)" + fill(bytes, [](size_t) { return std::string("\"x\""); }) + "]}";
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  const size_t bytes = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : (size_t{1} << 20);
  const std::vector<std::string> shapes = {"seeds-unique", "seeds-dup", "labels",   "space",
                                           "grid-values",  "evals",     "braces",   "bad-types",
                                           "long-key"};
  const std::string only = argc > 2 ? "," + std::string(argv[2]) + "," : "";
  std::printf("%-13s %9s %9s %9s  %s\n", "shape", "bytes", "parse_s", "check_s", "verdict");
  for (const auto& name : shapes) {
    if (!only.empty() && only.find("," + name + ",") == std::string::npos) continue;
    const std::string text = shape(name, bytes);
    auto t0 = Clock::now();
    auto doc = assay::parse_json(text, "bench.json");
    const double parse_s = secs_since(t0);
    if (!doc.ok()) {
      std::printf("%-13s %9zu %9.3f %9s  parse: %s\n", name.c_str(), text.size(), parse_s, "-",
                  doc.status().message().substr(0, 100).c_str());
      continue;
    }
    auto t1 = Clock::now();
    auto spec = assay::schemas::parse_sweep_spec(*doc, "bench.json");
    const double check_s = secs_since(t1);
    std::string verdict = spec.ok() ? "ok" : spec.status().message();
    if (verdict.size() > 100) verdict = verdict.substr(0, 97) + "...";
    std::printf("%-13s %9zu %9.3f %9.3f  %s\n", name.c_str(), text.size(), parse_s, check_s,
                verdict.c_str());
    std::fflush(stdout);
  }
  return 0;
}
