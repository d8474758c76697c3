// Routes a program adds to the coordinator beside its own API: the dashboard
// (/ui/ and /v1/ui/, assay/ui_http.h) is one. The coordinator library does
// not depend on what serves them; `assay coordinator` and `assay local --ui`
// install the hook before they open a Coordinator.
#pragma once

#include <functional>
#include <optional>

#include "assay/coordinator.h"

namespace assay::coordinator {

// Asked first for every request; nullopt lets the coordinator's own routing
// answer. Runs on the server thread: slow work goes into Response::deferred
// (when Request::can_defer), like /v1/query. Gets the coordinator's options
// (database path, user token, query budgets).
using RouteHook = std::function<std::optional<Response>(const Request&, const Options&)>;

// Installs the hook for every Coordinator of this process (empty = none).
// Call before serving; not synchronised with requests in flight.
void set_route_hook(RouteHook hook);

// The router's side (core.cpp): the hook's answer, if any.
std::optional<Response> run_route_hook(const Request& req, const Options& opts);

}  // namespace assay::coordinator
