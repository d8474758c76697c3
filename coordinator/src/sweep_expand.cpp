#include "assay/sweep_expand.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>

#include "assay/hash.h"
#include "assay/search.h"
#include "splitmix.h"

namespace assay::coordinator {
namespace {

using Json = nlohmann::json;
using Dim = schemas::Dimension;

Json draw(const Dim& d, SplitMix64& rng) {
  double u = rng.unit();
  switch (d.kind) {
    case Dim::Kind::kChoice: {
      size_t i = static_cast<size_t>(u * static_cast<double>(d.values.size()));
      if (i >= d.values.size()) i = d.values.size() - 1;
      return d.values[i];
    }
    case Dim::Kind::kUniform:
      return d.low + u * (d.high - d.low);
    case Dim::Kind::kLogUniform:
      return std::exp(std::log(d.low) + u * (std::log(d.high) - std::log(d.low)));
    case Dim::Kind::kInt: {
      auto lo = static_cast<int64_t>(std::ceil(d.low));
      auto hi = static_cast<int64_t>(std::floor(d.high));
      auto span = static_cast<double>(hi - lo + 1);
      auto k = static_cast<int64_t>(u * span);
      if (k > hi - lo) k = hi - lo;
      return lo + k;
    }
    case Dim::Kind::kGrid:
      break;
  }
  return nullptr;
}

// Bounds a draw can be computed from without overflow: a finite span for
// uniform (else inf/NaN, rendered as null), |n| < 2^53 for int (else the cast
// to int64 is undefined and gave INT64_MIN). The spec parser refuses these
// already; a spec built in code gets the same answer here.
Status check_random(const Dim& d, const std::string& sweep, const std::string& name) {
  auto bad = [&](const std::string& what, double low, double high) {
    Json l = low, h = high;
    return Status::Invalid("sweep " + sweep + ": /space/" + name + ": expected " + what +
                           ", got low " + l.dump() + " and high " + h.dump());
  };
  constexpr double kMaxInt = 9007199254740991.0;  // 2^53 - 1
  switch (d.kind) {
    case Dim::Kind::kUniform:
      if (!std::isfinite(d.low) || !std::isfinite(d.high) || !std::isfinite(d.high - d.low))
        return bad("finite bounds with a finite span high - low", d.low, d.high);
      break;
    case Dim::Kind::kLogUniform:
      if (!(d.low > 0) || !std::isfinite(d.high))
        return bad("finite bounds > 0", d.low, d.high);
      break;
    case Dim::Kind::kInt:
      if (!(std::fabs(d.low) <= kMaxInt) || !(std::fabs(d.high) <= kMaxInt))
        return bad("integer bounds in -9007199254740991..9007199254740991", d.low, d.high);
      break;
    default:
      break;
  }
  return Status::Ok();
}

bool is_ident_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}

}  // namespace

std::string param_text(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) {
    double x = v.get<double>();
    // Integral floats print without a trailing ".0" so "{epochs}" stays "3".
    if (std::isfinite(x) && std::floor(x) == x && std::fabs(x) < 1e15) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.0f", x);
      return buf;
    }
    return v.dump();  // shortest round-trip form
  }
  if (v.is_null()) return "null";
  return v.dump();
}

Result<std::string> render_command(const std::string& tmpl, const Json& params) {
  std::string out;
  out.reserve(tmpl.size() + 32);
  for (size_t i = 0; i < tmpl.size(); ++i) {
    char c = tmpl[i];
    if (c == '{' && i + 1 < tmpl.size() && tmpl[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    if (c == '}' && i + 1 < tmpl.size() && tmpl[i + 1] == '}') {
      out += '}';
      ++i;
      continue;
    }
    if (c == '$' && i + 1 < tmpl.size() && tmpl[i + 1] == '{') {
      // Shell parameter expansion: copy through to the matching brace.
      size_t end = tmpl.find('}', i);
      if (end == std::string::npos) end = tmpl.size() - 1;
      out.append(tmpl, i, end - i + 1);
      i = end;
      continue;
    }
    if (c != '{') {
      out += c;
      continue;
    }
    size_t end = i + 1;
    while (end < tmpl.size() && is_ident_char(tmpl[end])) ++end;
    if (end >= tmpl.size() || tmpl[end] != '}' || end == i + 1) {
      out += c;  // not a placeholder (e.g. awk's "{print $1}"): a literal brace
      continue;
    }
    std::string name = tmpl.substr(i + 1, end - i - 1);
    auto it = params.find(name);
    if (it == params.end()) {
      std::string known;
      for (auto& [k, _] : params.items()) known += (known.empty() ? "" : ", ") + k;
      return Status::Invalid("command: unknown placeholder {" + name + "}; params are: " +
                             (known.empty() ? "(none)" : known));
    }
    out += param_text(*it);
    i = end;
  }
  return out;
}

std::string sweep_content_hash(const Json& raw) {
  return sha256_hex(schemas::canonical_json(raw));
}

bool is_sampled_sweep(const Json& raw) {
  return raw.is_object() && (raw.contains("sampler") || raw.contains("max_concurrent"));
}

Result<ExpandedRun> sampled_run(const schemas::SweepSpec& spec, int k, const Json& params) {
  ExpandedRun run;
  run.index = k;
  run.params = params;
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d", k);
  run.name = spec.name + "-" + buf;
  auto cmd = render_command(spec.command, run.params);
  if (!cmd.ok()) return cmd.status().with_context("sweep " + spec.name);
  run.command = std::move(cmd).value();
  return run;
}

namespace {

// The first proposals of a sampled sweep, drawn before any result exists
// (the same draws the driver would make with no results).
Result<std::vector<ExpandedRun>> first_samples(const schemas::SweepSpec& spec,
                                               const SearchSpec& search) {
  if (!spec.seeds.empty())
    return Status::Invalid("sweep " + spec.name +
                           ": /seeds: expected no replicate seeds with a sampler (each sample "
                           "is one run; put a seed dimension in /space), got " +
                           Json(spec.seeds).dump());
  const int n = search.max_concurrent > 0 ? std::min(search.max_concurrent, search.samples)
                                          : search.samples;
  std::vector<ExpandedRun> runs;
  for (int k = 0; k < n; ++k) {
    ASSAY_ASSIGN_OR_RETURN(Json params, propose(search, k, {}));
    ASSAY_ASSIGN_OR_RETURN(ExpandedRun run, sampled_run(spec, k, params));
    runs.push_back(std::move(run));
  }
  return runs;
}

}  // namespace

Result<std::vector<ExpandedRun>> expand_sweep(const schemas::SweepSpec& spec) {
  if (has_search(spec.raw)) {
    ASSAY_ASSIGN_OR_RETURN(SearchSpec search,
                           parse_search_spec(spec.raw, spec.space, "sweep " + spec.name));
    if (is_sampled_sweep(spec.raw)) return first_samples(spec, search);
  }
  std::vector<std::pair<std::string, const Dim*>> grid, random;
  for (const auto& [name, dim] : spec.space) {  // std::map: sorted by name
    if (dim.kind == Dim::Kind::kGrid) {
      if (dim.values.empty())
        return Status::Invalid("sweep " + spec.name + ": /space/" + name +
                               ": expected a non-empty grid, got []");
      grid.emplace_back(name, &dim);
    } else {
      ASSAY_RETURN_IF_ERROR(check_random(dim, spec.name, name));
      random.emplace_back(name, &dim);
    }
  }
  if (!spec.seeds.empty() && spec.space.count("seed"))
    return Status::Invalid("sweep " + spec.name +
                           ": /space/seed: clashes with the replicate list /seeds; rename one");

  int samples = random.empty() ? 1 : spec.samples;
  if (samples < 1)
    return Status::Invalid("sweep " + spec.name + ": /samples: expected >= 1, got " +
                           std::to_string(spec.samples));
  int64_t n_grid = 1;
  for (auto& [_, d] : grid) {
    n_grid *= static_cast<int64_t>(d->values.size());
    if (n_grid > kMaxSweepRuns) break;
  }
  int64_t n_seeds = spec.seeds.empty() ? 1 : static_cast<int64_t>(spec.seeds.size());
  int64_t total = n_grid * samples * n_seeds;
  if (n_grid > kMaxSweepRuns || total > kMaxSweepRuns)
    return Status::Invalid("sweep " + spec.name + ": expands to more than " +
                           std::to_string(kMaxSweepRuns) + " runs");

  // Random samples, drawn once for the sweep.
  std::vector<Json> drawn(samples, Json::object());
  SplitMix64 rng{spec.seed};
  for (int s = 0; s < samples; ++s)
    for (auto& [name, d] : random) drawn[s][name] = draw(*d, rng);

  std::vector<ExpandedRun> runs;
  runs.reserve(static_cast<size_t>(total));
  std::vector<size_t> idx(grid.size(), 0);
  for (int64_t g = 0; g < n_grid; ++g) {
    Json point = Json::object();
    for (size_t k = 0; k < grid.size(); ++k) point[grid[k].first] = grid[k].second->values[idx[k]];
    for (int s = 0; s < samples; ++s) {
      for (int64_t r = 0; r < n_seeds; ++r) {
        ExpandedRun run;
        run.index = static_cast<int>(runs.size());
        run.params = point;
        for (auto& [k, v] : drawn[s].items()) run.params[k] = v;
        if (!spec.seeds.empty()) run.params["seed"] = spec.seeds[r];
        char buf[16];
        std::snprintf(buf, sizeof buf, "%04d", run.index);
        run.name = spec.name + "-" + buf;
        auto cmd = render_command(spec.command, run.params);
        if (!cmd.ok()) return cmd.status().with_context("sweep " + spec.name);
        run.command = std::move(cmd).value();
        runs.push_back(std::move(run));
      }
    }
    // Odometer increment, last dimension fastest.
    for (size_t k = grid.size(); k-- > 0;) {
      if (++idx[k] < grid[k].second->values.size()) break;
      idx[k] = 0;
    }
  }
  return runs;
}

}  // namespace assay::coordinator
