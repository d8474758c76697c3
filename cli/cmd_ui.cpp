// assay ui --db results.db: the dashboard, read-only, over any database file.
#include <filesystem>
#include <fstream>
#include <iostream>

#include "assay/coordinator.h"
#include "assay/ui_http.h"
#include "registry.h"

namespace {

namespace co = assay::coordinator;

struct UiOpts {
  std::string db;
  std::string listen = "127.0.0.1:8471";
  std::string token_file;
  std::string port_file;
  double query_time_budget = 10;
};

int fail(const std::string& m) {
  std::cerr << "assay ui: " << m << "\n";
  return 1;
}

// 64 hex characters from /dev/urandom: the token of this one server.
assay::Result<std::string> fresh_token() {
  std::ifstream in("/dev/urandom", std::ios::binary);
  unsigned char b[32];
  if (!in.read(reinterpret_cast<char*>(b), sizeof b)) return assay::Status::IoError("/dev/urandom: cannot read");
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (unsigned char c : b) s += {hex[c >> 4], hex[c & 15]};
  return s;
}

int run_ui(const UiOpts& o) {
  if (!std::filesystem::exists(o.db)) return fail("--db " + o.db + ": no such file");
  size_t colon = o.listen.rfind(':');
  if (colon == std::string::npos) return fail("--listen: expected HOST:PORT, got '" + o.listen + "'");
  co::ServerOptions so;
  so.host = o.listen.substr(0, colon);
  so.server_name = "assay-ui";
  try {
    so.port = std::stoi(o.listen.substr(colon + 1));
  } catch (const std::exception&) {
    return fail("--listen: port is not a number in '" + o.listen + "'");
  }
  if (so.port < 0 || so.port > 65535) return fail("--listen: port must be 0..65535");
  assay::ui::HttpConfig cfg;
  cfg.db_path = o.db;
  cfg.limits.time_budget_s = o.query_time_budget;
  cfg.limits.budget_name = "assay ui --query-time-budget";
  auto token = o.token_file.empty() ? fresh_token() : co::read_token_file(o.token_file);
  if (!token.ok()) return fail(token.status().message());
  cfg.user_token = *token;
  so.on_listening = [&](int port) {
    // The token travels in the fragment, which browsers never send: it
    // reaches the page, not a server log.
    std::cout << "assay ui: serving " << o.db << " read-only at http://" << so.host << ":" << port
              << "/ui/#token=" << cfg.user_token << std::endl;
    if (!o.port_file.empty()) {
      std::string tmp = o.port_file + ".tmp";
      std::ofstream(tmp) << port << "\n";
      std::filesystem::rename(tmp, o.port_file);
    }
  };
  auto st = assay::ui::serve(cfg, so);
  if (!st.ok()) return fail(st.message());
  return 0;
}

void add_ui(CLI::App& app) {
  auto o = std::make_shared<UiOpts>();
  auto* u = app.add_subcommand("ui", "Serve the web dashboard (read-only) over a results database");
  u->add_option("--db", o->db, "Results database file")->required();
  u->add_option("--listen", o->listen, "HOST:PORT to listen on (port 0 = any free port)")
      ->capture_default_str();
  u->add_option("--token-file", o->token_file,
                "File holding the token the page must present (default: a fresh random token, "
                "printed in the URL)");
  u->add_option("--port-file", o->port_file, "Write the bound port to this file once listening");
  u->add_option("--query-time-budget", o->query_time_budget,
                "Seconds one query of the dashboard may run before it is interrupted")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  u->footer(
      "\nOpen the printed URL: the page keeps the token from its #token= fragment for the tab.\n"
      "The coordinator serves the same dashboard at /ui/ with its user token.\n\n"
      "Example:\n"
      "  assay ui --db results.db\n"
      "  assay ui --db results.db --listen 0.0.0.0:8471 --token-file ~/assay/user.token");
  u->callback([o] { assay::cli::set_exit_code(run_ui(*o)); });
}

}  // namespace

ASSAY_REGISTER_COMMAND(65, add_ui);
