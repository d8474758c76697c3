// The pipelined worker's side of the protocol (API.md v1.11): leases held
// ahead of free CPU slots, and batches of run reports.
#pragma once

#include <string>
#include <vector>

#include "core_internal.h"

namespace assay::coordinator {

// Places runs on `w` with its CPU slots and run cap raised by `ahead` for
// this request only; see the definition.
std::vector<Assignment> lease_ahead(Coordinator::Impl& c, WorkerInfo& w, int max_runs, int ahead,
                                    double lease_expires_at);

// Applies a heartbeat's `reports` (a batch of single-run reports) in order,
// one result each.
Response apply_reports(Coordinator::Impl& c, const std::string& id, const std::string& instance,
                       const Json& reports);

}  // namespace assay::coordinator
