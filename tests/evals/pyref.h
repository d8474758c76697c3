// Runs a reference Python script (ASSAY_REF_PYTHON) and parses its stdout as
// JSON. Tests skip when the interpreter or a needed module is missing.
#pragma once

#include <cstdio>
#include <fstream>
#include <optional>
#include <string>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "support/temp_dir.h"

namespace assay::evals::testing {

// Runs the body file given as argv[1]; an ImportError (a reference module
// such as scipy or sklearn is missing) prints {"skip": reason} instead.
inline const char* kPyWrapper =
    "import json, sys, warnings\n"
    "warnings.simplefilter('ignore')\n"
    "src = open(sys.argv[1]).read()\n"
    "try:\n"
    "    exec(compile(src, sys.argv[1], 'exec'), {'json': json, '__name__': '__main__'})\n"
    "except ImportError as e:\n"
    "    print(json.dumps({'skip': 'reference module missing: ' + str(e)}))\n";

// Empty optional when python is missing or the script fails; `why` says which
// and `*skip` tells a missing dependency (skip) from a broken script (fail).
inline std::optional<nlohmann::json> run_python(const std::string& body, std::string* why,
                                                bool* skip) {
  std::string py = ASSAY_REF_PYTHON;
  *skip = true;
  if (!std::ifstream(py)) {
    *why = py + " not found";
    return std::nullopt;
  }

  static int counter = 0;
  // Scripts live in a directory of this program's, removed when it exits.
  static assay::testing::TempDir dir("pyref");
  std::string path = dir.file("pyref_" + std::to_string(counter++) + ".py");
  std::ofstream(path) << kPyWrapper;
  std::ofstream(path + ".body") << body;
  std::string cmd = py + " " + path + " " + path + ".body 2>&1";
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) {
    *why = "cannot run " + py;
    return std::nullopt;
  }
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  int rc = pclose(f);
  *skip = false;
  if (rc != 0) {
    *why = "reference script failed: " + out.substr(0, 2000);
    return std::nullopt;
  }
  auto j = nlohmann::json::parse(out, nullptr, false);
  if (j.is_discarded()) {
    *why = "reference script printed non-JSON: " + out.substr(0, 2000);
    return std::nullopt;
  }
  if (j.is_object() && j.contains("skip")) {
    *skip = true;
    *why = j["skip"].get<std::string>();
    return std::nullopt;
  }
  return j;
}

}  // namespace assay::evals::testing

// Runs `script`, binding the JSON to `var`, or skips the test with the reason.
#define ASSAY_PYREF_OR_SKIP(var, script)                                          \
  std::string var##_why;                                                          \
  bool var##_skip = false;                                                        \
  auto var##_opt = ::assay::evals::testing::run_python(script, &var##_why, &var##_skip); \
  if (!var##_opt && var##_skip) GTEST_SKIP() << var##_why;                        \
  ASSERT_TRUE(var##_opt.has_value()) << var##_why;                                \
  const nlohmann::json& var = *var##_opt
