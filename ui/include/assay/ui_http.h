// The dashboard over HTTP: one request handler shared by the coordinator
// (installed as its route hook) and `assay ui`.
//
//   GET /ui/...     the embedded pages and /ui/chart.js; no token needed:
//                   they hold no data. GET /ui answers 302 to /ui/.
//   /v1/ui/...      the JSON API (assay/ui.h), user token required in
//                   `Authorization: Bearer`; run as Response::deferred when
//                   the server can defer, so SQL never runs on its io thread.
//   /v1/ui/changes  the change feed pages wait on (a long-poll): answered by
//                   coordinator_hook() and serve(), which keep one
//                   (src/live.h); handle_http alone answers it 404.
#pragma once

#include <optional>
#include <string>

#include "assay/coordinator.h"
#include "assay/coordinator_routes.h"
#include "assay/ui.h"

namespace assay::ui {

struct HttpConfig {
  std::string db_path;
  std::string user_token;  // empty: every /v1/ui request is refused (401)
  std::string logs_dir;    // run logs; empty: <db_path>.logs (the coordinator's default)
  ApiLimits limits;        // cancel is set per request by the server
};

// The answer for /ui and /v1/ui paths; nullopt for any other path.
std::optional<coordinator::Response> handle_http(const coordinator::Request& req,
                                                 const HttpConfig& cfg);

// The coordinator hook: handle_http with the coordinator's database, user
// token and query budgets. Install with coordinator::set_route_hook.
coordinator::RouteHook coordinator_hook();

// Serves the dashboard read-only from cfg.db_path until SIGINT/SIGTERM or
// *stop (coordinator::serve_http_async; a pool runs the SQL, a thread
// watches the file for the change feed).
Status serve(const HttpConfig& cfg, const coordinator::ServerOptions& opts,
             const std::atomic<bool>* stop = nullptr);

}  // namespace assay::ui
