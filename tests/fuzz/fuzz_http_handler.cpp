// Coordinator::handle_request with both tokens: routing, auth, every
// handler's validation and state changes, without sockets.
//
// Input: up to 8 requests separated by "\n=====\n". Each request is
//   <role> <METHOD> <target>\n<body>
// with role U (user token), W (worker token), X (unknown token) or - (none).
// "{run}" in the target or body stands for the last run id an earlier answer
// named, so one input can submit, lease, start, report and finish a run.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_coordinator.h"

using namespace assay;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& fc = fuzz::FuzzCoordinator::get();
  for (std::string_view part : fuzz::split(fuzz::as_view(data, size), "\n=====\n", 8)) {
    const size_t nl = part.find('\n');
    const std::string_view line = part.substr(0, nl);
    const std::string_view body = nl == std::string_view::npos ? "" : part.substr(nl + 1);
    auto words = fuzz::split(line, " ", 3);
    while (words.size() < 3) words.push_back("");
    coordinator::Request req;
    req.authorization = fuzz::authorization_for(words[0]);
    req.method = std::string(words[1]);
    req.target = fuzz::with_run(std::string(words[2]), fc.last_run());
    req.body = fuzz::with_run(std::string(body), fc.last_run());
    fc.send(std::move(req));
  }
  return 0;
}
