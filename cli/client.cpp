#include "client.h"

#include <chrono>
#include <thread>

namespace assay::cli {

std::string counts_line(const nlohmann::json& counts) {
  std::string s;
  for (const char* k : {"queued", "leased", "running", "succeeded", "failed", "cancelled",
                        "pruned"})
    if (counts.is_object() && counts.contains(k)) s += std::string(s.empty() ? "" : "  ") + k + " " + counts[k].dump();
  return s.empty() ? "no runs" : s;
}

int64_t count_of(const nlohmann::json& counts, const char* k) {
  // Peer data: anything but an integer count reads as 0.
  return counts.is_object() && counts.contains(k) && counts[k].is_number_integer()
             ? counts[k].get<int64_t>()
             : 0;
}

Result<nlohmann::json> wait_for_sweep(coordinator::HttpClient& client, const std::string& name,
                                      std::ostream& progress) {
  std::string last;
  for (;;) {
    ASSAY_ASSIGN_OR_RETURN(nlohmann::json s,
                           client.call("GET", "/v1/sweeps/" + coordinator::url_encode(name)));
    const nlohmann::json& counts = s["counts"];
    std::string line = counts_line(counts);
    if (line != last) {
      progress << line << std::endl;
      last = line;
    }
    if (count_of(counts, "queued") + count_of(counts, "leased") + count_of(counts, "running") == 0)
      return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

}  // namespace assay::cli
