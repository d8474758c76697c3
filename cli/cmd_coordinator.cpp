// assay coordinator: the scheduling daemon (HTTP API) and its token setup.
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "assay/coordinator.h"
#include "assay/coordinator_routes.h"
#include "assay/ui_http.h"
#include "registry.h"

namespace {

namespace co = assay::coordinator;

struct CoordOpts {
  std::string db = "assay.db";
  std::string listen = "127.0.0.1:8470";
  std::string token_dir;
  std::string port_file;
  double lease_ttl = 30;
  double read_timeout = 30;
  size_t max_body_mb = 8;
  size_t max_connections = 512;
  double query_time_budget = 10;
  size_t query_max_rows = 1000000;
  std::string durability = "normal";
  std::string init_dir;
  bool force = false;
};

// Warnings (not errors: the operator may have reasons) about tokens that
// others on the host can read, or one token serving both roles.
void warn_about_tokens(const std::string& dir, const std::string& user, const std::string& worker) {
  for (const char* name : {"user.token", "worker.token"}) {
    std::string path = dir + "/" + name;
    struct stat st{};
    if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
      char mode[8];
      std::snprintf(mode, sizeof mode, "%04o", unsigned(st.st_mode & 07777));
      std::cerr << "assay coordinator: warning: " << path << " has mode " << mode
                << ": other users can read it and act as that role; run chmod 600 " << path
                << "\n";
    }
  }
  if (co::tokens_equal(user, worker))
    std::cerr << "assay coordinator: warning: user.token and worker.token in " << dir
              << " are equal: every user can act as a worker and the other way round; "
                 "create distinct ones with: assay coordinator init --force --dir "
              << dir << "\n";
}

int serve(const CoordOpts& o) {
  auto fail = [](const std::string& m) {
    std::cerr << "assay coordinator: " << m << "\n";
    return 1;
  };
  size_t colon = o.listen.rfind(':');
  if (colon == std::string::npos) return fail("--listen: expected HOST:PORT, got '" + o.listen + "'");
  co::ServerOptions so;
  so.host = o.listen.substr(0, colon);
  try {
    so.port = std::stoi(o.listen.substr(colon + 1));
  } catch (const std::exception&) {
    return fail("--listen: port is not a number in '" + o.listen + "'");
  }
  if (so.port < 0 || so.port > 65535) return fail("--listen: port must be 0..65535");
  so.max_connections = o.max_connections;
  so.read_timeout_s = o.read_timeout;

  std::string dir = o.token_dir;
  if (dir.empty()) {
    dir = std::filesystem::path(o.db).parent_path().string();
    if (dir.empty()) dir = ".";
  }
  auto user = co::read_token_file(dir + "/user.token");
  auto worker = co::read_token_file(dir + "/worker.token");
  if (!user.ok() || !worker.ok())
    return fail("no tokens in " + dir + " (" +
                (!user.ok() ? user.status().message() : worker.status().message()) +
                "); create them with: assay coordinator init --dir " + dir);
  warn_about_tokens(dir, *user, *worker);

  co::Options opts;
  opts.db_path = o.db;
  opts.user_token = *user;
  opts.worker_token = *worker;
  opts.lease_ttl_s = o.lease_ttl;
  opts.max_body_bytes = o.max_body_mb << 20;
  opts.query_time_budget_s = o.query_time_budget;
  opts.query_max_rows = o.query_max_rows;
  opts.durability = o.durability;
  co::set_route_hook(assay::ui::coordinator_hook());  // the dashboard at /ui/
  auto coord = co::Coordinator::open(opts);
  if (!coord.ok()) return fail(coord.status().message());
  std::string port_file = o.port_file;
  so.on_listening = [&](int port) {
    std::cout << "assay coordinator: listening on http://" << so.host << ":" << port
              << " (db " << o.db << ", durability " << o.durability << ")" << std::endl;
    // The token rides in the fragment, which browsers never send to a server.
    std::cout << "assay coordinator: dashboard at http://" << so.host << ":" << port
              << "/ui/#token=" << *user << std::endl;
    if (!port_file.empty()) {
      std::string tmp = port_file + ".tmp";
      std::ofstream(tmp) << port << "\n";
      std::filesystem::rename(tmp, port_file);
    }
  };
  auto st = co::serve(**coord, so);
  if (!st.ok()) return fail(st.message());
  return 0;
}

void add_coordinator(CLI::App& app) {
  auto o = std::make_shared<CoordOpts>();
  auto* c = app.add_subcommand(
      "coordinator", "Run the coordinator: the HTTP API that schedules runs onto workers");
  c->add_option("--db", o->db, "Results database (created and migrated when missing)")
      ->capture_default_str();
  c->add_option("--listen", o->listen, "HOST:PORT to listen on (port 0 = any free port)")
      ->capture_default_str();
  c->add_option("--token-dir", o->token_dir,
                "Directory with user.token and worker.token (default: the database's directory)");
  c->add_option("--port-file", o->port_file, "Write the bound port to this file once listening");
  c->add_option("--lease-ttl", o->lease_ttl,
                "Seconds a worker may stay silent before its runs are requeued")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  c->add_option("--read-timeout", o->read_timeout,
                "Seconds a request may take to arrive; idle connections close after it")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  c->add_option("--max-body-mb", o->max_body_mb, "Largest accepted request body (MiB)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  c->add_option("--max-connections", o->max_connections,
                "Concurrent connections; more are answered 503")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  c->add_option("--query-time-budget", o->query_time_budget,
                "Seconds one /v1/query may run before it is interrupted")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  c->add_option("--query-max-rows", o->query_max_rows,
                "Most rows one /v1/query may ask for (its max_rows)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{100000000}));
  c->add_option("--durability", o->durability,
                "When an acknowledged write is durable: normal = it survives a crash of this "
                "process; full = also power loss and OS crashes (WAL fsync at every commit)")
      ->capture_default_str()
      ->check(CLI::IsMember({"full", "normal"}));
  c->footer(
      "\nState lives in the database: after a crash, restart with the same --db and queued\n"
      "runs stay queued, running runs stay with workers that reconnect within the lease ttl.\n"
      "Logs are stored next to the database in <db>.logs/.\n\n"
      "Examples:\n"
      "  assay coordinator init --dir ~/assay            create user.token and worker.token\n"
      "  assay coordinator --db ~/assay/results.db --listen 0.0.0.0:8470\n"
      "  assay worker --coordinator http://HOST:8470 --token-file ~/assay/worker.token");

  auto* init = c->add_subcommand("init", "Create user.token and worker.token (mode 0600)");
  init->add_option("--dir", o->init_dir, "Directory for the token files")->required();
  init->add_flag("--force", o->force, "Replace existing tokens");
  init->footer("\nExample:\n  assay coordinator init --dir ~/assay");
  init->callback([o] {
    auto st = co::init_tokens(o->init_dir, o->force);
    if (!st.ok()) {
      std::cerr << "assay coordinator init: " << st.message() << "\n";
      assay::cli::set_exit_code(1);
      return;
    }
    std::cout << "wrote " << o->init_dir << "/user.token and " << o->init_dir
              << "/worker.token (mode 0600)\n";
  });
  auto* run = c->add_subcommand("run", "Serve the API (the default when no subcommand is given)");
  run->fallthrough();
  c->callback([o, init] {
    if (init->parsed()) return;
    assay::cli::set_exit_code(serve(*o));
  });
}

}  // namespace

ASSAY_REGISTER_COMMAND(60, add_coordinator);
