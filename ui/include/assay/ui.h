// The dashboard: embedded pages plus the read-only JSON API they use.
//
// Both are transport-free: the coordinator serves them at /ui/ and /v1/ui/
// (coordinator/src/ui_routes.cpp), `assay ui` from any database file
// (cli/cmd_ui.cpp). The endpoints are documented in coordinator/API.md
// ("Dashboard").
//
// Threading: api() opens its own read-only SQLite connections (the same
// path as `assay query`) and may take as long as its time budget, so callers
// run it off any io thread. The other functions are cheap and thread-safe.
#pragma once

#include <atomic>
#include <cstddef>
#include <string>
#include <string_view>

#include "assay/status.h"

namespace assay::ui {

// One page file, as served.
struct Asset {
  std::string_view name;          // "index.html", "app.js", ...
  std::string_view content_type;  // "text/html; charset=utf-8", ...
  std::string_view body;
};

// The asset for a path under /ui/ ("" and "index.html" are the page;
// "chart.js" is not embedded: see chartjs()). nullptr when unknown.
const Asset* find_asset(std::string_view name);

// Chart.js as installed by Debian's libjs-chart.js, read once from
// ASSAY_CHARTJS_PATH (default /usr/share/javascript/chart.js/chart.min.js).
// Errors name the path and the package to install. Reads a file: keep it
// off io threads the first time.
Result<std::string> chartjs();

// The most points one series of /v1/ui/runs/{id}/series returns: longer
// series are reduced to the min and max of each of max/2 step buckets, so a
// spike anywhere stays visible.
constexpr size_t kMaxSeriesPoints = 2000;

struct Reply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

struct ApiLimits {
  double time_budget_s = 10;   // per SQL statement; 0 = none
  std::string budget_name = "the dashboard's query time budget";
  size_t max_rows = 100000;    // /v1/ui/query rows (more: "truncated": true)
  const std::atomic<bool>* cancel = nullptr;
};

// True for paths api() answers: /v1/ui and below.
bool is_api_path(std::string_view path);

// Answers one request under /v1/ui from the database at db_path (run logs
// from logs_dir, default <db_path>.logs, the coordinator's layout). `target`
// is the path plus query string. Never writes; never throws.
// GET /v1/ui/changes needs a server's change feed: see ui_http.h.
Reply api(const std::string& db_path, std::string_view method, std::string_view target,
          std::string_view body, const ApiLimits& limits, const std::string& logs_dir = "");

}  // namespace assay::ui
