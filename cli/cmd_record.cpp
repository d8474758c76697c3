// assay record: run one command on this machine under the run metric
// protocol and record the run, its metrics and checkpoints in a database.
// No coordinator or worker needed; useful for smoke tests and quick trials.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <algorithm>
#include <iostream>
#include <vector>

#include <nlohmann/json.hpp>

#include "assay/hash.h"
#include "assay/specs.h"
#include "assay/store.h"
#include "registry.h"

namespace {

namespace fs = std::filesystem;
using assay::Status;
namespace st = assay::store;

struct Opts {
  std::string db = "assay.db";
  std::string name;
  std::string out_dir;
  std::vector<std::string> command;
};

int record(const Opts& o) {
  auto opened = st::Store::open(o.db);
  if (!opened.ok()) { std::cerr << "assay record: " << opened.status().message() << "\n"; return 1; }
  auto& store = **opened;
  std::string cmd;
  for (const auto& a : o.command) cmd += (cmd.empty() ? "" : " ") + a;
  st::NewRun nr;
  nr.name = o.name.empty() ? o.command.front() : o.name;
  nr.command = cmd;
  nr.spec_json = nlohmann::json{{"command", cmd}, {"name", nr.name}}.dump();
  auto id = store.insert_run(nr, "cli");
  if (!id.ok()) { std::cerr << "assay record: " << id.status().message() << "\n"; return 1; }
  const std::string out_dir = o.out_dir.empty() ? o.db + ".runs/" + std::to_string(*id) : o.out_dir;
  fs::create_directories(out_dir);
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  for (auto s : {store.upsert_worker({.id = "local", .host = host}),
                 store.transition({.run_id = *id, .to = st::RunState::kLeased, .actor = "cli",
                                   .worker_id = "local"}),
                 store.transition({.run_id = *id, .to = st::RunState::kRunning, .actor = "cli"})}) {
    if (!s.ok()) { std::cerr << "assay record: " << s.message() << "\n"; return 1; }
  }

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) { std::perror("assay record: pipe"); return 1; }
  pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    dup2(fds[1], 3);  // dup2 clears O_CLOEXEC on the new descriptor
    setenv("ASSAY_METRICS_FD", "3", 1);
    setenv("ASSAY_RUN_ID", std::to_string(*id).c_str(), 1);
    setenv("ASSAY_OUTPUT_DIR", out_dir.c_str(), 1);
    setenv("ASSAY_PARAMS", "{}", 1);
    if (o.command.size() == 1) {
      execl("/bin/sh", "sh", "-c", cmd.c_str(), (char*)nullptr);
    } else {  // several words: run them as given, no shell re-parsing
      std::vector<char*> argv;
      for (const auto& a : o.command) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execvp(argv[0], argv.data());
    }
    std::fprintf(stderr, "assay record: cannot start %s: %s\n", o.command[0].c_str(), strerror(errno));
    _exit(127);
  }
  close(fds[1]);
  FILE* in = fdopen(fds[0], "r");
  char* line = nullptr;
  size_t cap = 0;
  int64_t lineno = 0, bad = 0, points = 0;
  while (getline(&line, &cap, in) > 0) {
    ++lineno;
    auto m = assay::schemas::parse_metric_line(line);
    if (!m.ok()) {
      ++bad;
      (void)store.add_event(*id, "cli", "malformed_metric",
                            "line " + std::to_string(lineno) + ": " + m.status().message());
      continue;
    }
    if (m->checkpoint) {
      std::string p = fs::path(*m->checkpoint).is_absolute() ? *m->checkpoint
                                                              : out_dir + "/" + *m->checkpoint;
      auto h = assay::artifact_hash(p);
      if (!h.ok()) {
        (void)store.add_event(*id, "cli", "artifact_error", h.status().message());
        continue;
      }
      (void)store.put_artifact({.run_id = *id, .content_hash = *h, .path = p, .step = m->step});
      continue;
    }
    std::vector<st::MetricPoint> pts;
    for (const auto& [k, v] : m->metrics)
      pts.push_back({*id, k, m->step, v, m->time.value_or(store.now())});
    points += int64_t(pts.size());
    if (auto s = store.put_metrics(pts); !s.ok()) std::cerr << "assay record: " << s.message() << "\n";
  }
  free(line);
  fclose(in);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  st::Transition t{.run_id = *id, .actor = "cli"};
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    t.to = st::RunState::kSucceeded;
    t.exit_code = 0;
  } else {
    t.to = st::RunState::kFailed;
    if (WIFSIGNALED(status)) {
      t.failure_reason = st::FailureReason::kSignal;
      t.failure_detail = strsignal(WTERMSIG(status));
    } else {
      t.failure_reason = st::FailureReason::kExitCode;
      t.exit_code = WEXITSTATUS(status);
    }
  }
  if (auto s = store.transition(t); !s.ok()) std::cerr << "assay record: " << s.message() << "\n";
  std::cerr << "assay record: run " << *id << " " << st::to_string(t.to) << ", " << points
            << " metric point(s)" << (bad ? ", " + std::to_string(bad) + " malformed line(s)" : "")
            << "\n";
  return t.to == st::RunState::kSucceeded ? 0 : 1;
}

void add_record(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  auto* r = app.add_subcommand("record", "Run one command here and record its metrics in a database");
  r->add_option("--db", o->db, "Database file (created and migrated when missing)")->capture_default_str();
  r->add_option("--name", o->name, "Run name (default: the command's first word)");
  r->add_option("--out-dir", o->out_dir, "ASSAY_OUTPUT_DIR for the run (default: <db>.runs/<id>)");
  r->add_option("command", o->command, "The command, after --: one word runs through /bin/sh -c, several run as given")->required();
  r->footer(
      "\nThe command sees ASSAY_RUN_ID, ASSAY_OUTPUT_DIR and ASSAY_METRICS_FD, and writes JSON\n"
      "lines to that descriptor:\n"
      "  {\"step\": 10, \"metrics\": {\"loss\": 1.23}}\n"
      "  {\"checkpoint\": \"ckpt-10\", \"step\": 10}   (path relative to ASSAY_OUTPUT_DIR)\n\n"
      "Example:\n"
      "  assay record --db r.db -- sh -c 'for i in 1 2 3; do\n"
      "    echo \"{\\\"step\\\": $i, \\\"metrics\\\": {\\\"loss\\\": 0.$i}}\" >&$ASSAY_METRICS_FD; done'");
  r->callback([o] { assay::cli::set_exit_code(record(*o)); });
}

}  // namespace

ASSAY_REGISTER_COMMAND(30, add_record);
