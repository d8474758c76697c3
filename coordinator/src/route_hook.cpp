// The extra-route hook (assay/coordinator_routes.h).
#include "assay/coordinator_routes.h"

#include <utility>

namespace assay::coordinator {

namespace {
RouteHook& hook_slot() {
  static RouteHook hook;
  return hook;
}
}  // namespace

void set_route_hook(RouteHook hook) { hook_slot() = std::move(hook); }

std::optional<Response> run_route_hook(const Request& req, const Options& opts) {
  const RouteHook& h = hook_slot();
  if (!h) return std::nullopt;
  return h(req, opts);
}

}  // namespace assay::coordinator
