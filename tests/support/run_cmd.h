// Runs a shell command as a user would and keeps what it printed: the one
// helper the tests that drive real binaries share.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace assay::testing {

struct CmdResult {
  int code = -1;    // exit status; -1 when the command did not exit normally
  std::string out;  // stdout and stderr together
};

inline CmdResult run_cmd(const std::string& cmd) {
  CmdResult r;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

}  // namespace assay::testing
