// Eval identity, the results cache in the store, and metric lines for the
// run metric protocol. See evals_store.h.
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "assay/eval_key.h"
#include "assay/evals_store.h"
#include "assay/hash.h"

namespace assay::evals {

namespace fs = std::filesystem;

std::string versioned(const std::string& version, const nlohmann::json& inputs) {
  return version + "+" + sha256_hex(schemas::canonical_json(inputs)).substr(0, 8);
}

Result<std::optional<std::vector<ResultRow>>> cached_results(store::Store& db,
                                                             const EvalIdentity& id) {
  ASSAY_ASSIGN_OR_RETURN(auto got, db.eval_results(id.checkpoint_hash, id.suite,
                                                   id.suite_version, id.seed));
  if (got.empty()) return std::optional<std::vector<ResultRow>>();
  std::vector<ResultRow> rows;
  for (const auto& e : got) {
    ResultRow r;
    r.suite = e.suite;
    r.metric = e.metric;
    r.filter = e.filter;
    r.value = e.value ? *e.value : std::nan("");
    r.stderr_ = e.stderr_value;
    r.n = e.n ? *e.n : 0;
    r.suite_version = e.suite_version;
    rows.push_back(std::move(r));
  }
  return std::optional<std::vector<ResultRow>>(std::move(rows));
}

Status record_results(store::Store& db, const EvalIdentity& id, const std::vector<ResultRow>& rows,
                      std::string* note) {
  std::optional<int64_t> run_id = id.run_id;
  if (run_id) {
    auto run = db.get_run(*run_id);
    if (!run.ok()) {
      if (note)
        *note = "run " + std::to_string(*run_id) + " is not in " + db.path() +
                "; rows are stored without a run id";
      run_id.reset();
    }
  }
  std::vector<store::EvalResult> out;
  for (const auto& r : rows) {
    store::EvalResult e;
    e.run_id = run_id;
    e.suite = id.suite;
    e.metric = r.metric;
    e.filter = r.filter.empty() ? "none" : r.filter;
    if (std::isfinite(r.value)) e.value = r.value;
    if (r.stderr_ && std::isfinite(*r.stderr_)) e.stderr_value = *r.stderr_;
    e.n = r.n;
    e.suite_version = id.suite_version;
    e.checkpoint_hash = id.checkpoint_hash;
    e.seed = id.seed;
    out.push_back(std::move(e));
  }
  return db.put_eval_results(out);
}

Status record_results_artifact(store::Store& db, int64_t run_id, const std::string& path,
                               const EvalIdentity& id) {
  ASSAY_ASSIGN_OR_RETURN(std::string digest, sha256_file(path));
  store::Artifact a;
  a.run_id = run_id;
  a.kind = "eval_results";
  a.content_hash = digest;
  std::error_code ec;
  fs::path abs = fs::absolute(path, ec);
  a.path = ec ? path : abs.lexically_normal().string();
  a.metadata_json = nlohmann::json{{"suite", id.suite},
                                   {"suite_version", id.suite_version},
                                   {"checkpoint_hash", id.checkpoint_hash},
                                   {"seed", id.seed}}
                        .dump();
  return db.put_artifact(a).status();
}

std::string metric_line(const EvalIdentity& id, const std::vector<ResultRow>& rows) {
  nlohmann::json m = nlohmann::json::object();
  for (const auto& r : rows) {
    EvalKey k;
    k.suite = id.suite;
    k.version = id.suite_version;
    k.metric = r.metric;
    k.filter = r.filter.empty() ? "none" : r.filter;
    // Non-finite numbers cannot travel in JSON; the row keeps its n.
    if (std::isfinite(r.value)) m[format_eval_key(k)] = r.value;
    if (r.stderr_ && std::isfinite(*r.stderr_)) {
      k.stat = EvalKey::Stat::kStderr;
      m[format_eval_key(k)] = *r.stderr_;
    }
    k.stat = EvalKey::Stat::kN;
    m[format_eval_key(k)] = r.n;
  }
  return nlohmann::json{{"step", 0}, {"metrics", m}}.dump() + "\n";
}

Status write_metric_line(int fd, const std::string& line) {
  if (fd < 0) return Status::Ok();
  size_t off = 0;
  while (off < line.size()) {
    ssize_t w = ::write(fd, line.data() + off, line.size() - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::IoError("ASSAY_METRICS_FD " + std::to_string(fd) + ": write failed: " +
                             std::strerror(errno));
    }
    off += static_cast<size_t>(w);
  }
  return Status::Ok();
}

}  // namespace assay::evals
