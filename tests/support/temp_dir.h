// The one temporary directory helper for tests: a fresh directory under
// $TMPDIR (or /tmp), unique per process and per test, removed with
// everything in it when the object goes out of scope. Every file a test
// writes belongs in one, never in the shared temp folder itself.
//
//   assay::testing::TempDir tmp("spec-limits");
//   std::ofstream(tmp.file("sweep.json")) << text;
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

namespace assay::testing {

class TempDir {
 public:
  // `prefix` names the directory for whoever finds one left by a crash.
  explicit TempDir(const std::string& prefix = "test") {
    std::string tmpl = (std::filesystem::temp_directory_path() / ("assay-" + prefix + "-XXXXXX")).string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp " + tmpl + " failed");
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;  // a test's leftovers must not turn into a crash here
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string file(const std::string& name) const { return path + "/" + name; }

  std::string path;
};

}  // namespace assay::testing
