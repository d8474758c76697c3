// Shared by the commands that talk to a coordinator: submitting a sweep and
// following it to the end with counts per state.
#pragma once

#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "assay/coord_client.h"
#include "assay/status.h"

namespace assay::cli {

// "queued 3  running 2  succeeded 7".
std::string counts_line(const nlohmann::json& counts);
int64_t count_of(const nlohmann::json& counts, const char* state);

// Polls /v1/sweeps/NAME until no run is queued, leased or running, printing
// the counts whenever they change. Returns the final sweep document.
Result<nlohmann::json> wait_for_sweep(coordinator::HttpClient& client, const std::string& name,
                                      std::ostream& progress);

}  // namespace assay::cli
