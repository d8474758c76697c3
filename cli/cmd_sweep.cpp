// User commands that talk to a coordinator over HTTP: submit, runs, show,
// logs, cancel, retry, workers, metrics, export.
//
// The coordinator URL and token come from flags, then the environment
// (ASSAY_COORDINATOR, ASSAY_TOKEN or ASSAY_TOKEN_FILE), then the config file
// ($ASSAY_CONFIG or ~/.config/assay/config.json: {"coordinator": URL,
// "token_file": PATH} or {"token": TOKEN}).
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "assay/coord_client.h"
#include "assay/coordinator.h"
#include "assay/json_limits.h"
#include "assay/specs.h"
#include "client.h"
#include "registry.h"
#include "table.h"

namespace {

namespace co = assay::coordinator;
using Json = nlohmann::json;
using assay::Result;
using assay::Status;

struct Conn {
  std::string url, token_file;
};

void add_conn_flags(CLI::App* sub, std::shared_ptr<Conn> c) {
  sub->add_option("--coordinator", c->url, "Coordinator URL, e.g. http://127.0.0.1:8470")
      ->envname("ASSAY_COORDINATOR");
  sub->add_option("--token-file", c->token_file, "File holding the user token")
      ->envname("ASSAY_TOKEN_FILE");
}

Result<std::unique_ptr<co::HttpClient>> connect(const Conn& c) {
  std::string url = c.url, token;
  std::string token_file = c.token_file;
  if (const char* t = std::getenv("ASSAY_TOKEN"); t && token_file.empty()) token = t;
  if (url.empty() || (token.empty() && token_file.empty())) {
    std::string cfg_path;
    if (const char* p = std::getenv("ASSAY_CONFIG")) cfg_path = p;
    else if (const char* h = std::getenv("HOME")) cfg_path = std::string(h) + "/.config/assay/config.json";
    std::ifstream in(cfg_path);
    if (in) {
      std::stringstream text;
      text << in.rdbuf();
      ASSAY_ASSIGN_OR_RETURN(Json cfg, assay::parse_json(text.str(), "config file " + cfg_path));
      if (!cfg.is_object())
        return Status::Invalid("config file " + cfg_path + " is not a JSON object");
      auto str = [&](const char* key) -> Result<std::string> {
        auto it = cfg.find(key);
        if (it == cfg.end()) return std::string();
        if (!it->is_string())
          return Status::Invalid("config file " + cfg_path + ": " + key + ": expected a string, got " +
                                 it->dump());
        return it->get<std::string>();
      };
      if (url.empty()) {
        ASSAY_ASSIGN_OR_RETURN(url, str("coordinator"));
      }
      if (token.empty() && token_file.empty()) {
        ASSAY_ASSIGN_OR_RETURN(token_file, str("token_file"));
        ASSAY_ASSIGN_OR_RETURN(token, str("token"));
      }
    }
  }
  if (url.empty())
    return Status::Invalid("no coordinator URL: pass --coordinator, set ASSAY_COORDINATOR, or "
                           "put \"coordinator\" in ~/.config/assay/config.json");
  if (token.empty()) {
    if (token_file.empty())
      return Status::Invalid("no token: pass --token-file, set ASSAY_TOKEN_FILE or ASSAY_TOKEN, "
                             "or put \"token_file\" in ~/.config/assay/config.json");
    ASSAY_ASSIGN_OR_RETURN(token, co::read_token_file(token_file));
  }
  ASSAY_ASSIGN_OR_RETURN(auto ep, co::parse_coordinator_url(url));
  return std::make_unique<co::HttpClient>(ep, token);
}

int fail(const std::string& cmd, const Status& st) {
  std::cerr << "assay " << cmd << ": " << st.message() << "\n";
  return 1;
}

std::string text_of(const Json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) {
    std::ostringstream ss;
    ss << v.get<double>();
    return ss.str();
  }
  return v.dump();
}

std::string age(double t) {
  if (t <= 0) return "";
  using namespace std::chrono;
  double now = duration<double>(system_clock::now().time_since_epoch()).count();
  double d = now - t;
  std::ostringstream ss;
  if (d < 120) ss << static_cast<int>(d) << "s ago";
  else if (d < 7200) ss << static_cast<int>(d / 60) << "m ago";
  else ss << static_cast<int>(d / 3600) << "h ago";
  return ss.str();
}

// Prints rows of strings through the shared table printer.
void print_rows(const std::vector<std::string>& cols, const std::vector<std::vector<std::string>>& rows) {
  assay::store::QueryResult q;
  q.columns = cols;
  for (auto& r : rows) {
    std::vector<assay::store::Cell> cells;
    for (auto& s : r) cells.emplace_back(s);
    q.rows.push_back(std::move(cells));
  }
  assay::cli::print_table(std::cout, q);
}

std::string reason_of(const Json& r) {
  std::string s = text_of(r["state"]);
  if (!r["failure_reason"].is_null()) s += " (" + text_of(r["failure_reason"]) + ")";
  if (r.value("cancel_requested", false)) s += " (cancelling)";
  return s;
}

void print_runs(const Json& runs) {
  std::vector<std::vector<std::string>> rows;
  for (auto& r : runs) {
    std::string params;
    for (auto& [k, v] : r["params"].items()) params += (params.empty() ? "" : " ") + k + "=" + text_of(v);
    rows.push_back({text_of(r["id"]), text_of(r["name"]), reason_of(r), text_of(r["attempt"]),
                    text_of(r["worker_id"]), params});
  }
  print_rows({"id", "name", "state", "attempt", "worker", "params"}, rows);
}

using assay::cli::count_of;
using assay::cli::counts_line;

// ---- submit ------------------------------------------------------------------

int do_submit(const Conn& c, const std::string& file, bool single, bool wait, bool json) {
  auto doc = assay::schemas::load_json_file(file);
  if (!doc.ok()) return fail("submit", doc.status());
  // Checked here first, with the errors `assay local` and `assay spec check`
  // give ("sweep.json: /seeds/1: ..."), so a bad spec never needs a
  // coordinator; the coordinator checks it again.
  const std::string source = std::filesystem::path(file).filename().string();
  const Status valid = single ? assay::schemas::parse_run_spec(*doc, source).status()
                              : assay::schemas::parse_sweep_spec(*doc, source).status();
  if (!valid.ok()) return fail("submit", valid);
  auto cl = connect(c);
  if (!cl.ok()) return fail("submit", cl.status());
  auto& client = **cl;
  auto res = client.call("POST", single ? "/v1/runs" : "/v1/sweeps", &*doc);
  if (!res.ok()) return fail("submit", res.status().with_context(file));
  if (single) {
    if (json) std::cout << res->dump(2) << "\n";
    else std::cout << "submitted run " << (*res)["run"]["id"] << "\n";
    return 0;
  }
  std::string name = (*res)["sweep"]["name"];
  if (json && !wait) {
    std::cout << res->dump(2) << "\n";
    return 0;
  }
  std::cout << ((*res)["created"].get<bool>() ? "submitted" : "already submitted (same content)")
            << " sweep " << name << ": " << (*res)["runs"].size() << " runs\n";
  if (!wait) return 0;
  auto s = assay::cli::wait_for_sweep(client, name, std::cout);
  if (!s.ok()) return fail("submit", s.status());
  int64_t bad = count_of((*s)["counts"], "failed") + count_of((*s)["counts"], "cancelled");
  if (json) std::cout << s->dump(2) << "\n";
  if (bad > 0) {
    std::cerr << "assay submit: sweep " << name << ": " << bad << " run(s) did not succeed\n";
    return 1;
  }
  return 0;
}

void add_submit(CLI::App& app) {
  struct O {
    std::string file;
    bool run = false, wait = false, json = false;
  };
  auto o = std::make_shared<O>();
  auto c = std::make_shared<Conn>();
  auto* s = app.add_subcommand("submit", "Submit a sweep (or with --run a single run) to the coordinator");
  s->add_option("spec", o->file, "Sweep spec JSON file (run spec with --run)")->required()->check(CLI::ExistingFile);
  s->add_flag("--run", o->run, "The file is a single-run spec");
  s->add_flag("--wait", o->wait, "Show counts per state until the sweep ends; exit 1 if any run failed");
  s->add_flag("--json", o->json, "Print the reply as JSON");
  add_conn_flags(s, c);
  s->footer(
      "\nSubmitting the same named sweep with the same content again is a no-op that returns\n"
      "the existing runs; different content under an existing name is refused.\n\n"
      "Examples:\n"
      "  assay submit sweep.json --wait\n"
      "  assay submit --run one.json --coordinator http://gpu-box:8470 --token-file user.token");
  s->callback([o, c] { assay::cli::set_exit_code(do_submit(*c, o->file, o->run, o->wait, o->json)); });
}

// ---- runs / show ----------------------------------------------------------------

void add_runs(CLI::App& app) {
  struct O {
    std::string sweep, state;
    std::vector<std::string> params;
    int limit = 1000;
    bool json = false;
    bool pruned = false;
  };
  auto o = std::make_shared<O>();
  auto c = std::make_shared<Conn>();
  auto* s = app.add_subcommand("runs", "List runs, filtered by sweep, state and params");
  s->add_option("--sweep", o->sweep, "Sweep name");
  auto* state_opt =
      s->add_option("--state", o->state, "queued|leased|running|succeeded|failed|cancelled|pruned");
  s->add_flag("--pruned", o->pruned, "Only runs an adaptive search stopped at a rung (--state pruned)")
      ->excludes(state_opt);
  s->add_option("--param", o->params, "KEY=VALUE equality on a param (repeatable)");
  s->add_option("--limit", o->limit, "Most runs to list")->capture_default_str();
  s->add_flag("--json", o->json, "Print JSON");
  add_conn_flags(s, c);
  s->footer("\nExamples:\n  assay runs --sweep lr-search --state failed\n  assay runs --param lr=0.001 --json\n"
            "  assay runs --sweep asha-lr --pruned");
  s->callback([o, c] {
    auto cl = connect(*c);
    if (!cl.ok()) return assay::cli::set_exit_code(fail("runs", cl.status()));
    if (o->pruned) o->state = "pruned";
    std::string q = "/v1/runs?limit=" + std::to_string(o->limit);
    if (!o->sweep.empty()) q += "&sweep=" + co::url_encode(o->sweep);
    if (!o->state.empty()) q += "&state=" + co::url_encode(o->state);
    for (auto& p : o->params) {
      size_t eq = p.find('=');
      if (eq == std::string::npos || eq == 0)
        return assay::cli::set_exit_code(
            fail("runs", Status::Invalid("--param: expected KEY=VALUE, got '" + p + "'")));
      q += "&param." + co::url_encode(p.substr(0, eq)) + "=" + co::url_encode(p.substr(eq + 1));
    }
    auto res = (*cl)->call("GET", q);
    if (!res.ok()) return assay::cli::set_exit_code(fail("runs", res.status()));
    if (o->json) std::cout << (*res)["runs"].dump(2) << "\n";
    else print_runs((*res)["runs"]);
  });
}

void add_show(CLI::App& app) {
  struct O {
    int64_t id = 0;
    bool json = false;
  };
  auto o = std::make_shared<O>();
  auto c = std::make_shared<Conn>();
  auto* s = app.add_subcommand("show", "Show one run: state, failure reason, params and events");
  s->add_option("run", o->id, "Run id")->required();
  s->add_flag("--json", o->json, "Print JSON");
  add_conn_flags(s, c);
  s->footer("\nExample:\n  assay show 42");
  s->callback([o, c] {
    auto cl = connect(*c);
    if (!cl.ok()) return assay::cli::set_exit_code(fail("show", cl.status()));
    auto res = (*cl)->call("GET", "/v1/runs/" + std::to_string(o->id));
    if (!res.ok()) return assay::cli::set_exit_code(fail("show", res.status()));
    if (o->json) {
      std::cout << res->dump(2) << "\n";
      return;
    }
    const Json& r = (*res)["run"];
    std::cout << "run " << r["id"] << "  " << text_of(r["name"]) << "\n"
              << "  sweep:    " << text_of(r["sweep"]) << "\n"
              << "  state:    " << reason_of(r) << "\n";
    if (!text_of(r["failure_detail"]).empty())
      std::cout << "  detail:   " << text_of(r["failure_detail"]) << "\n";
    std::cout << "  attempt:  " << r["attempt"] << " of " << r["max_attempts"] << "\n"
              << "  worker:   " << text_of(r["worker_id"]) << "  gpus " << r["gpus"].dump() << "\n"
              << "  command:  " << text_of(r["command"]) << "\n"
              << "  params:   " << r["params"].dump() << "\n"
              << "  resources:" << " gpus " << r["resources"]["gpus"] << ", gpu_mem_mb "
              << r["resources"]["gpu_mem_mb"] << ", cpus " << r["resources"]["cpus"] << "\n";
    if (r.contains("peak_gpu_mem_mb") && !r["peak_gpu_mem_mb"].is_null())
      std::cout << "  gpu mem:  peak " << r["peak_gpu_mem_mb"] << " MiB (" << text_of(r["gpu_mem_source"])
                << ")\n";
    std::vector<std::vector<std::string>> rows;
    for (auto& e : (*res)["events"])
      rows.push_back({age(e["at"].get<double>()), text_of(e["actor"]), text_of(e["kind"]),
                      text_of(e["from"]) + (e["to"].is_null() ? "" : " -> " + text_of(e["to"])),
                      text_of(e["detail"])});
    std::cout << "events:\n";
    print_rows({"when", "actor", "kind", "state", "detail"}, rows);
    if (!(*res)["artifacts"].empty()) {
      std::vector<std::vector<std::string>> arts;
      for (auto& a : (*res)["artifacts"])
        arts.push_back({text_of(a["kind"]), text_of(a["step"]), text_of(a["content_hash"]).substr(0, 16),
                        text_of(a["path"])});
      std::cout << "artifacts:\n";
      print_rows({"kind", "step", "hash", "path"}, arts);
    }
  });
}

// ---- logs ---------------------------------------------------------------------------

void add_logs(CLI::App& app) {
  struct O {
    int64_t id = 0;
    bool follow = false;
    std::string stream = "stdout";
    int attempt = 0;
  };
  auto o = std::make_shared<O>();
  auto c = std::make_shared<Conn>();
  auto* s = app.add_subcommand("logs", "Print a run's stdout or stderr; -f follows until it ends");
  s->add_option("run", o->id, "Run id")->required();
  s->add_flag("-f,--follow", o->follow, "Keep printing new output until the run ends");
  s->add_option("--stream", o->stream, "stdout or stderr")->check(CLI::IsMember({"stdout", "stderr"}))->capture_default_str();
  s->add_option("--attempt", o->attempt, "Attempt number (default: the latest)");
  add_conn_flags(s, c);
  s->footer("\nExamples:\n  assay logs 42\n  assay logs 42 -f --stream stderr");
  s->callback([o, c] {
    auto cl = connect(*c);
    if (!cl.ok()) return assay::cli::set_exit_code(fail("logs", cl.status()));
    int64_t offset = 0;
    for (;;) {
      std::string q = "/v1/runs/" + std::to_string(o->id) + "/logs?stream=" + o->stream +
                      "&offset=" + std::to_string(offset);
      if (o->attempt > 0) q += "&attempt=" + std::to_string(o->attempt);
      if (o->follow) q += "&wait_s=20";
      auto rep = (*cl)->request("GET", q);
      if (!rep.ok()) return assay::cli::set_exit_code(fail("logs", rep.status()));
      if (rep->status != 200) {
        auto j = assay::parse_json(rep->body, "reply");
        std::string m = rep->body.substr(0, 300);
        if (j.ok() && j->is_object() && j->contains("error") && (*j)["error"].is_object() &&
            (*j)["error"].contains("message") && (*j)["error"]["message"].is_string())
          m = (*j)["error"]["message"].get<std::string>();
        return assay::cli::set_exit_code(fail("logs", Status::Invalid(m)));
      }
      std::cout << rep->body << std::flush;
      const std::string& next = rep->headers["x-assay-next-offset"];
      char* end = nullptr;
      long long n = std::strtoll(next.c_str(), &end, 10);
      if (next.empty() || *end != '\0' || n < offset)
        return assay::cli::set_exit_code(fail(
            "logs", Status::Corruption("reply header X-Assay-Next-Offset: expected an offset >= " +
                                       std::to_string(offset) + ", got '" + next + "'")));
      offset = n;
      bool complete = rep->headers["x-assay-complete"] == "1";
      if (!o->follow || (complete && rep->body.empty())) break;
      if (complete) continue;  // drain what is left
    }
  });
}

// ---- cancel / retry -----------------------------------------------------------------

void add_cancel_retry(CLI::App& app) {
  struct O {
    int64_t id = 0;
    std::string sweep;
  };
  auto o = std::make_shared<O>();
  auto c = std::make_shared<Conn>();
  auto* s = app.add_subcommand("cancel", "Cancel a run, or every unfinished run of a sweep");
  auto* id_opt = s->add_option("run", o->id, "Run id");
  s->add_option("--sweep", o->sweep, "Cancel the sweep's unfinished runs")->excludes(id_opt);
  add_conn_flags(s, c);
  s->footer("\nA running run is stopped by its worker (SIGTERM, then SIGKILL) and ends as\n"
            "cancelled.\n\nExamples:\n  assay cancel 42\n  assay cancel --sweep lr-search");
  s->callback([o, c, id_opt] {
    if (o->sweep.empty() && id_opt->count() == 0)
      return assay::cli::set_exit_code(
          fail("cancel", Status::Invalid("give a run id or --sweep NAME")));
    auto cl = connect(*c);
    if (!cl.ok()) return assay::cli::set_exit_code(fail("cancel", cl.status()));
    if (!o->sweep.empty()) {
      auto res = (*cl)->call("POST", "/v1/sweeps/" + co::url_encode(o->sweep) + "/cancel");
      if (!res.ok()) return assay::cli::set_exit_code(fail("cancel", res.status()));
      std::cout << "cancelled " << (*res)["cancelled"].size() << " run(s); stopping "
                << (*res)["cancel_requested"].size() << " running run(s)\n";
      return;
    }
    auto res = (*cl)->call("POST", "/v1/runs/" + std::to_string(o->id) + "/cancel");
    if (!res.ok()) return assay::cli::set_exit_code(fail("cancel", res.status()));
    std::cout << "run " << o->id << ": " << reason_of((*res)["run"]) << "\n";
  });

  auto r = std::make_shared<O>();
  auto rc = std::make_shared<Conn>();
  auto* rs = app.add_subcommand("retry", "Queue a failed or cancelled run again (attempt + 1)");
  rs->add_option("run", r->id, "Run id")->required();
  add_conn_flags(rs, rc);
  auto resume = std::make_shared<bool>(false);
  rs->add_flag("--resume", *resume,
               "Start from the run's last reported checkpoint (ASSAY_RESUME_FROM) instead of over");
  rs->footer("\nExamples:\n  assay retry 42\n  assay retry 42 --resume");
  rs->callback([r, rc, resume] {
    auto cl = connect(*rc);
    if (!cl.ok()) return assay::cli::set_exit_code(fail("retry", cl.status()));
    const nlohmann::json body = {{"resume", *resume}};
    auto res = (*cl)->call("POST", "/v1/runs/" + std::to_string(r->id) + "/retry", &body);
    if (!res.ok()) return assay::cli::set_exit_code(fail("retry", res.status()));
    std::cout << "run " << r->id << ": queued as attempt " << (*res)["run"]["attempt"] << "\n";
  });
}

// ---- workers / metrics ------------------------------------------------------------------

void add_workers(CLI::App& app) {
  auto json = std::make_shared<bool>(false);
  auto c = std::make_shared<Conn>();
  auto* s = app.add_subcommand("workers", "List workers, their GPUs and the runs they hold");
  s->add_flag("--json", *json, "Print JSON");
  add_conn_flags(s, c);
  s->footer("\nExample:\n  assay workers");
  s->callback([json, c] {
    auto cl = connect(*c);
    if (!cl.ok()) return assay::cli::set_exit_code(fail("workers", cl.status()));
    auto res = (*cl)->call("GET", "/v1/workers");
    if (!res.ok()) return assay::cli::set_exit_code(fail("workers", res.status()));
    if (*json) {
      std::cout << (*res)["workers"].dump(2) << "\n";
      return;
    }
    std::vector<std::vector<std::string>> rows;
    for (auto& w : (*res)["workers"]) {
      std::string gpus;
      for (auto& g : w["gpus"])
        gpus += (gpus.empty() ? "" : " ") + text_of(g["index"]) + ":" +
                (g["run_id"].is_null() ? "free" : "run " + text_of(g["run_id"])) +
                (g.value("util_pct", -1) >= 0 ? " " + text_of(g["util_pct"]) + "%" : "");
      rows.push_back({text_of(w["id"]), w["alive"].get<bool>() ? "alive" : "silent",
                      text_of(w["cpus_used"]) + "/" + text_of(w["cpus"]), gpus,
                      std::to_string(w["runs"].size()), age(w["last_heartbeat"].get<double>())});
    }
    print_rows({"worker", "status", "cpus", "gpus", "runs", "heartbeat"}, rows);
  });
}

void add_metrics(CLI::App& app) {
  struct O {
    int64_t id = 0;
    std::string key;
    int attempt = 0;  // 0: the run's current attempt
    bool all_attempts = false;
    bool json = false;
  };
  auto o = std::make_shared<O>();
  auto c = std::make_shared<Conn>();
  auto* s = app.add_subcommand("metrics", "Print a run's metric points");
  s->add_option("run", o->id, "Run id")->required();
  s->add_option("--key", o->key, "Only this metric");
  auto* att = s->add_option("--attempt", o->attempt,
                            "Points of this attempt (default: the run's current attempt)")
                  ->check(CLI::PositiveNumber);
  s->add_flag("--all-attempts", o->all_attempts, "Points of every attempt, with an attempt column")
      ->excludes(att);
  s->add_flag("--json", o->json, "Print JSON");
  add_conn_flags(s, c);
  s->footer("\nA run retried after its worker died keeps the earlier attempts' points; they\n"
            "are shown only on request.\n\nExamples:\n  assay metrics 42 --key loss\n"
            "  assay metrics 42 --all-attempts");
  s->callback([o, c] {
    auto cl = connect(*c);
    if (!cl.ok()) return assay::cli::set_exit_code(fail("metrics", cl.status()));
    std::string q = "/v1/runs/" + std::to_string(o->id) + "/metrics";
    std::vector<std::string> args;
    if (!o->key.empty()) args.push_back("key=" + co::url_encode(o->key));
    if (o->all_attempts) args.push_back("attempt=all");
    else if (o->attempt > 0) args.push_back("attempt=" + std::to_string(o->attempt));
    for (size_t i = 0; i < args.size(); ++i) q += (i ? "&" : "?") + args[i];
    auto res = (*cl)->call("GET", q);
    if (!res.ok()) return assay::cli::set_exit_code(fail("metrics", res.status()));
    if (o->json) {
      std::cout << (*res)["points"].dump(2) << "\n";
      return;
    }
    std::vector<std::vector<std::string>> rows;
    for (auto& p : (*res)["points"]) {
      std::vector<std::string> row = {text_of(p["key"]), text_of(p["step"]), text_of(p["value"])};
      if (o->all_attempts) row.insert(row.begin(), text_of(p.value("attempt", Json())));
      rows.push_back(std::move(row));
    }
    if (o->all_attempts) print_rows({"attempt", "key", "step", "value"}, rows);
    else print_rows({"key", "step", "value"}, rows);
  });
}

// ---- export --------------------------------------------------------------------------------

void add_export(CLI::App& app) {
  struct O {
    std::string sweep, format = "csv", out;
  };
  auto o = std::make_shared<O>();
  auto c = std::make_shared<Conn>();
  auto* s = app.add_subcommand("export", "Export a sweep's runs with params and final metrics");
  s->add_option("--sweep", o->sweep, "Sweep name")->required();
  s->add_option("--format", o->format, "csv or json")->check(CLI::IsMember({"csv", "json"}))->capture_default_str();
  s->add_option("-o,--output", o->out, "Write to this file instead of stdout");
  add_conn_flags(s, c);
  s->footer("\nOne row per run: id, name, state, failure_reason, attempt, each param, and\n"
            "<metric>_final for each metric; for an adaptive search, `rungs`: the run's rung\n"
            "decisions as a JSON array of {bracket, rung, step, reported_step, values, cutoff,\n"
            "decision}.\n\nExample:\n  assay export --sweep lr-search --format csv -o lr.csv");
  s->callback([o, c] {
    auto cl = connect(*c);
    if (!cl.ok()) return assay::cli::set_exit_code(fail("export", cl.status()));
    auto sw = (*cl)->call("GET", "/v1/sweeps/" + co::url_encode(o->sweep));
    if (!sw.ok()) return assay::cli::set_exit_code(fail("export", sw.status()));
    int64_t sid = (*sw)["sweep"]["id"];
    Json runs = Json::array();
    std::string after = "0";
    for (;;) {
      auto page = (*cl)->call("GET", "/v1/runs?limit=10000&sweep=" + co::url_encode(o->sweep) + "&after=" + after);
      if (!page.ok()) return assay::cli::set_exit_code(fail("export", page.status()));
      for (auto& r : (*page)["runs"]) runs.push_back(r);
      if ((*page)["next_after"].is_null()) break;
      after = text_of((*page)["next_after"]);
    }
    Json q = {{"sql", "SELECT s.run_id, s.metric, s.final FROM run_metric_summary s JOIN runs r "
                      "ON r.id = s.run_id WHERE r.sweep_id = " + std::to_string(sid)},
              {"max_rows", 1000000}};
    auto m = (*cl)->call("POST", "/v1/query", &q);
    if (!m.ok()) return assay::cli::set_exit_code(fail("export", m.status()));
    std::map<int64_t, std::map<std::string, Json>> finals;
    std::set<std::string> metric_keys, param_keys;
    for (auto& row : (*m)["rows"]) {
      finals[row[0].get<int64_t>()][text_of(row[1])] = row[2];
      metric_keys.insert(text_of(row[1]));
    }
    for (auto& r : runs)
      for (auto& [k, _] : r["params"].items()) param_keys.insert(k);
    // Rung history of an adaptive search (migration 0008), one JSON array per run.
    Json rq = {{"sql", "SELECT run_id, json_group_array(json_object('bracket', bracket, 'rung', rung, "
                       "'step', step, 'reported_step', reported_step, 'values', json(values_json), "
                       "'cutoff', json(cutoff_json), 'decision', decision)) FROM (SELECT * FROM "
                       "search_rungs WHERE sweep_id = " + std::to_string(sid) +
                       " ORDER BY run_id, bracket, rung) GROUP BY run_id"},
               {"max_rows", 1000000}};
    auto rg = (*cl)->call("POST", "/v1/query", &rq);
    if (!rg.ok()) return assay::cli::set_exit_code(fail("export", rg.status()));
    std::map<int64_t, std::string> rungs;
    for (auto& row : (*rg)["rows"]) rungs[row[0].get<int64_t>()] = text_of(row[1]);
    assay::store::QueryResult out;
    out.columns = {"run_id", "name", "state", "failure_reason", "attempt"};
    for (auto& k : param_keys) out.columns.push_back(k);
    for (auto& k : metric_keys) out.columns.push_back(k + "_final");
    if (!rungs.empty()) out.columns.push_back("rungs");
    bool csv = o->format == "csv";
    auto cell = [csv](const Json& v) -> assay::store::Cell {
      if (v.is_null()) return std::monostate{};
      if (v.is_number_integer()) return v.get<int64_t>();
      // CSV gets the shortest text that round-trips (0.1, not 0.10000000000000001).
      if (v.is_number()) return csv ? assay::store::Cell(v.dump()) : assay::store::Cell(v.get<double>());
      if (v.is_string()) return v.get<std::string>();
      return v.dump();
    };
    for (auto& r : runs) {
      std::vector<assay::store::Cell> row = {cell(r["id"]), cell(r["name"]), cell(r["state"]),
                                             cell(r["failure_reason"]), cell(r["attempt"])};
      for (auto& k : param_keys) row.push_back(r["params"].contains(k) ? cell(r["params"][k]) : std::monostate{});
      auto& f = finals[r["id"].get<int64_t>()];
      for (auto& k : metric_keys) row.push_back(f.count(k) ? cell(f[k]) : std::monostate{});
      if (!rungs.empty()) {
        auto it = rungs.find(r["id"].get<int64_t>());
        row.push_back(it != rungs.end() ? assay::store::Cell(it->second) : std::monostate{});
      }
      out.rows.push_back(std::move(row));
    }
    std::ofstream file;
    if (!o->out.empty()) {
      file.open(o->out);
      if (!file) return assay::cli::set_exit_code(fail("export", Status::IoError("cannot write " + o->out)));
    }
    std::ostream& os = o->out.empty() ? std::cout : file;
    if (o->format == "csv") assay::cli::print_csv(os, out);
    else assay::cli::print_json(os, out);
  });
}

void add_all(CLI::App& app) {
  add_submit(app);
  add_runs(app);
  add_show(app);
  add_logs(app);
  add_cancel_retry(app);
  add_workers(app);
  add_metrics(app);
  add_export(app);
}

}  // namespace

ASSAY_REGISTER_COMMAND(61, add_all);
