// The CLI tests' view of the assay binary: sh("args") runs it as a user would.
#pragma once

#include <string>

#include "support/run_cmd.h"

namespace assay::testing::cli {

struct Out {
  int rc;            // exit code; -1 when killed by a signal
  std::string text;  // stdout and stderr together
};

// The assay binary with `args`, as a user would run it.
inline Out sh(const std::string& args) {
  auto r = assay::testing::run_cmd(std::string(ASSAY_EXE) + " " + args);
  return {r.code, std::move(r.out)};
}

}  // namespace assay::testing::cli
