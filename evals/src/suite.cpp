// ResultRow serialization and suite spec lookup (shipped names or paths).
#include <cstdlib>
#include <filesystem>

#include "assay/evals_gsm8k.h"
#include "assay/evals_suite.h"

#ifndef ASSAY_EVALS_DEFAULT_SUITES_DIR
#define ASSAY_EVALS_DEFAULT_SUITES_DIR "evals/suites"
#endif

namespace assay::evals {

namespace fs = std::filesystem;

nlohmann::json to_json(const ResultRow& r) {
  nlohmann::json j{{"suite", r.suite},   {"metric", r.metric}, {"filter", r.filter},
                   {"value", r.value},   {"n", r.n},           {"suite_version", r.suite_version}};
  j["stderr"] = r.stderr_ ? nlohmann::json(*r.stderr_) : nlohmann::json(nullptr);
  return j;
}

std::string shipped_suites_dir() {
  if (const char* d = std::getenv("ASSAY_EVALS_SUITES"); d && *d) return d;
  return ASSAY_EVALS_DEFAULT_SUITES_DIR;
}

Result<schemas::SuiteSpec> find_suite_spec(const std::string& name_or_path,
                                           std::string* spec_dir) {
  std::string path = name_or_path;
  const bool looks_like_path = name_or_path.find('/') != std::string::npos ||
                               name_or_path.find(".json") != std::string::npos;
  if (!looks_like_path) {
    path = shipped_suites_dir() + "/" + name_or_path + ".json";
    std::error_code ec;
    if (!fs::exists(path, ec)) {
      std::string known;
      for (const auto& e : fs::directory_iterator(shipped_suites_dir(), ec))
        if (e.path().extension() == ".json")
          known += (known.empty() ? "" : ", ") + e.path().stem().string();
      return Status::NotFound("suite \"" + name_or_path + "\": no shipped suite of that name in " +
                              shipped_suites_dir() + " (known: " + known +
                              "); pass a path to a suite spec JSON file instead");
    }
  }
  ASSAY_ASSIGN_OR_RETURN(auto spec, schemas::load_suite_spec(path));
  if (spec_dir) *spec_dir = fs::path(path).parent_path().string();
  return spec;
}

std::string resolve_data_path(const std::string& path, const std::string& spec_dir) {
  if (path.empty() || fs::path(path).is_absolute()) return path;
  std::error_code ec;
  if (!spec_dir.empty() && fs::exists(fs::path(spec_dir) / path, ec))
    return (fs::path(spec_dir) / path).string();
  if (fs::exists(path, ec)) return path;
  return (fs::path(default_data_dir()) / path).string();
}

}  // namespace assay::evals
