// Starts tests/evals/fake_openai_server.py on a free 127.0.0.1 port and stops
// it again; the server prints "PORT <port> PID <pid>" when it is listening.
#pragma once

#include <signal.h>

#include <cstdio>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

namespace assay::evals::testing {

class FakeOpenAiServer {
 public:
  // Empty string on success, else why the server could not start.
  std::string start() {
    std::string py = ASSAY_REF_PYTHON;
    if (!std::ifstream(py)) return py + " not found";
    std::string cmd = "exec " + py + " " + ASSAY_SOURCE_DIR + "/tests/evals/fake_openai_server.py";
    pipe_ = popen(cmd.c_str(), "r");
    if (!pipe_) return "popen failed";
    char line[128] = {0};
    if (!fgets(line, sizeof line, pipe_)) return "server printed nothing";
    if (sscanf(line, "PORT %d PID %d", &port_, &pid_) != 2) return std::string("bad banner: ") + line;
    return "";
  }
  ~FakeOpenAiServer() {
    if (pid_ > 0) kill(pid_, SIGTERM);
    if (pipe_) pclose(pipe_);
  }
  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }
  // GET /stats, fetched with the reference Python to stay independent of the client under test.
  nlohmann::json stats() const {
    std::string cmd = std::string(ASSAY_REF_PYTHON) +
                      " -c \"import urllib.request,sys;sys.stdout.write(urllib.request.urlopen("
                      "'http://127.0.0.1:" + std::to_string(port_) + "/stats').read().decode())\"";
    FILE* f = popen(cmd.c_str(), "r");
    std::string out;
    char buf[512];
    size_t n;
    while (f && (n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    if (f) pclose(f);
    return nlohmann::json::parse(out, nullptr, false);
  }

 private:
  FILE* pipe_ = nullptr;
  int port_ = 0, pid_ = 0;
};

}  // namespace assay::evals::testing
