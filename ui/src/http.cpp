// The dashboard's HTTP face (assay/ui_http.h).
#include "assay/ui_http.h"

#include <utility>

#include <nlohmann/json.hpp>

#include "assay/coordinator_routes.h"
#include "live.h"

namespace assay::ui {

namespace co = coordinator;

namespace {

co::Response from_reply(Reply r) {
  co::Response resp;
  resp.status = r.status;
  resp.content_type = std::move(r.content_type);
  resp.body = std::move(r.body);
  resp.headers.push_back({"Cache-Control", "no-store"});
  return resp;
}

co::Response error(int status, const std::string& code, const std::string& message) {
  nlohmann::json body{{"error", {{"code", code}, {"message", message}}}};
  return from_reply(
      Reply{status, "application/json", body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)});
}

bool authorized(const std::string& authorization, const std::string& token) {
  static const std::string kBearer = "Bearer ";
  if (token.empty() || authorization.compare(0, kBearer.size(), kBearer) != 0) return false;
  return co::tokens_equal(authorization.substr(kBearer.size()), token);
}

// The pages: same-origin scripts only; inline style attributes (progress
// bars) allowed; blob: for the CSV download.
void add_page_headers(co::Response& r) {
  r.headers.push_back({"Content-Security-Policy",
                       "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:"});
  r.headers.push_back({"X-Content-Type-Options", "nosniff"});
  r.headers.push_back({"Referrer-Policy", "no-referrer"});
}

co::Response unauthenticated() {
  return error(401, "unauthenticated",
               "missing or unknown bearer token (send 'Authorization: Bearer <user token>')");
}

// GET /v1/ui/changes: checked here, then parked by the feed; nullopt when
// the request is fine (the caller hands it to its feed).
std::optional<co::Response> changes_precheck(const co::Request& req, const std::string& token,
                                             Result<ChangesQuery>& q) {
  if (!authorized(req.authorization, token)) return unauthenticated();
  if (req.method != "GET") return error(400, "bad_request", "use GET for /v1/ui/changes");
  q = parse_changes(req.target);
  if (!q.ok()) return error(400, "bad_request", q.status().message());
  return std::nullopt;
}

bool is_changes(const std::string& target) {
  return target.compare(0, 14, "/v1/ui/changes") == 0 &&
         (target.size() == 14 || target[14] == '?');
}

co::Response static_file(const std::string& name) {
  co::Response r;
  const Asset* a = find_asset(name);
  if (!a) return error(404, "not_found", "no such page: /ui/" + name);
  r.content_type = std::string(a->content_type);
  r.body = std::string(a->body);
  add_page_headers(r);
  return r;
}

co::Response chartjs_file() {
  auto js = chartjs();
  if (!js.ok()) return error(500, "internal", js.status().message());
  co::Response r;
  r.content_type = "text/javascript; charset=utf-8";
  r.body = *js;
  r.headers.push_back({"Cache-Control", "max-age=3600"});
  add_page_headers(r);
  return r;
}

}  // namespace

std::optional<co::Response> handle_http(const co::Request& req, const HttpConfig& cfg) {
  const std::string path = req.target.substr(0, req.target.find('?'));
  if (path == "/ui") {
    co::Response r;
    r.status = 302;
    r.content_type = "text/plain";
    r.headers.push_back({"Location", "/ui/"});
    return r;
  }
  if (path.rfind("/ui/", 0) == 0) {
    if (req.method != "GET") return error(405, "method_not_allowed", "use GET for /ui/ pages");
    const std::string name = path.substr(4);
    if (name != "chart.js") return static_file(name);
    if (!req.can_defer) return chartjs_file();
    co::Response r;
    r.deferred = [](const std::atomic<bool>&) { return chartjs_file(); };
    return r;
  }
  if (!is_api_path(path)) return std::nullopt;
  if (!authorized(req.authorization, cfg.user_token)) return unauthenticated();
  if (path == "/v1/ui/changes")
    return error(404, "not_found", "this server keeps no change feed for /v1/ui/changes");
  auto work = [cfg, method = req.method, target = req.target,
               body = req.body](const std::atomic<bool>& cancel) {
    ApiLimits lim = cfg.limits;
    lim.cancel = &cancel;
    return from_reply(api(cfg.db_path, method, target, body, lim, cfg.logs_dir));
  };
  if (!req.can_defer) {
    std::atomic<bool> never{false};
    return work(never);
  }
  co::Response r;
  r.deferred = std::move(work);
  return r;
}

co::RouteHook coordinator_hook() {
  // One feed for the process: it sees every request the coordinator gets.
  auto feed = std::make_shared<ChangeFeed>();
  return [feed](const co::Request& req, const co::Options& o) -> std::optional<co::Response> {
    feed->observe(req);
    // Cheap test first: most requests are the coordinator's own.
    if (req.target.rfind("/ui", 0) != 0 && req.target.rfind("/v1/ui", 0) != 0) return std::nullopt;
    if (is_changes(req.target)) {
      Result<ChangesQuery> q = ChangesQuery{};
      if (auto bad = changes_precheck(req, o.user_token, q)) return bad;
      return feed->coordinator_changes(req, *q);
    }
    HttpConfig cfg;
    cfg.db_path = o.db_path;
    cfg.logs_dir = o.logs_dir;
    cfg.user_token = o.user_token;
    cfg.limits.time_budget_s = o.query_time_budget_s;
    cfg.limits.budget_name = "the coordinator's --query-time-budget";
    cfg.limits.max_rows = o.query_max_rows;
    return handle_http(req, cfg);
  };
}

Status serve(const HttpConfig& cfg, const co::ServerOptions& opts, const std::atomic<bool>* stop) {
  ChangeFeed feed;
  feed.start_polling(cfg.db_path, cfg.logs_dir.empty() ? cfg.db_path + ".logs" : cfg.logs_dir,
                     cfg.limits.time_budget_s);
  auto handler = [&cfg, &feed](const co::Request& req, co::HttpRespond reply) {
    if (is_changes(req.target)) {
      Result<ChangesQuery> q = ChangesQuery{};
      if (auto bad = changes_precheck(req, cfg.user_token, q)) return reply(std::move(*bad));
      return feed.park(*q, std::move(reply));
    }
    if (auto r = handle_http(req, cfg)) return reply(std::move(*r));
    if (req.target == "/" || req.target.rfind("/?", 0) == 0) {
      co::Response r;
      r.status = 302;
      r.content_type = "text/plain";
      r.headers.push_back({"Location", "/ui/"});
      return reply(std::move(r));
    }
    reply(error(404, "not_found", "no such path: this server has the dashboard at /ui/ only"));
  };
  return co::serve_http_async(handler, opts, 1 << 20, stop);
}

}  // namespace assay::ui
