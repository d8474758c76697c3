// assay worker: the daemon that runs leased runs on this machine's GPUs/CPUs.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "assay/worker.h"
#include "registry.h"

namespace {

namespace wk = assay::worker;

struct WorkerOpts {
  std::string coordinator;
  std::string token_file;
  std::string id;
  std::string gpus;
  int cpus = -1;
  int max_runs = 0;
  std::string labels;
  std::string work_dir = "assay-work";
  std::string spool_dir;
  double kill_grace = 10;
  double lease_wait = 5;
  double preempt_grace = 30;
};

std::atomic<bool> g_stop{false};
std::atomic<bool> g_abort{false};
std::atomic<bool> g_preempt{false};

// SIGTERM (what SLURM sends before preempting or at a time limit): preempt;
// SIGINT: drain (finish running runs); a second signal of either: abandon.
void on_sigterm(int) {
  if (g_preempt.exchange(true) || g_stop) g_abort = true;
}
void on_sigint(int) {
  if (g_stop.exchange(true) || g_preempt) g_abort = true;
}

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof buf - 1) != 0) return "worker";
  return buf;
}

int run(const WorkerOpts& o) {
  auto fail = [](const std::string& m) {
    std::cerr << "assay worker: " << m << "\n";
    return 1;
  };
  wk::WorkerConfig cfg;
  cfg.coordinator_url = o.coordinator;
  std::ifstream tf(o.token_file);
  if (!tf) return fail("--token-file " + o.token_file + ": cannot read");
  std::stringstream ss;
  ss << tf.rdbuf();
  for (char c : ss.str())
    if (!std::isspace(static_cast<unsigned char>(c))) cfg.token += c;
  if (cfg.token.empty()) return fail("--token-file " + o.token_file + ": the file is empty");
  cfg.host = host_name();
  cfg.worker_id = o.id.empty() ? cfg.host : o.id;
  if (!o.gpus.empty()) {
    auto g = wk::parse_gpu_override(o.gpus);
    if (!g.ok()) return fail(g.status().message());
    cfg.gpus = *g;
  } else {
    std::string note;
    cfg.gpus = wk::discover_gpus(&note);
    cfg.gpus_from_nvml = !cfg.gpus.empty();
    std::cerr << "assay worker: GPUs: " << note << "\n";
  }
  unsigned hw = std::thread::hardware_concurrency();
  cfg.cpus = o.cpus >= 0 ? o.cpus : static_cast<int>(hw ? hw : 1);
  cfg.max_runs = o.max_runs;
  auto labels = wk::parse_labels(o.labels);
  if (!labels.ok()) return fail(labels.status().message());
  cfg.labels = *labels;
  cfg.work_dir = o.work_dir;
  cfg.spool_dir = o.spool_dir;
  cfg.kill_grace = std::chrono::milliseconds(static_cast<int64_t>(o.kill_grace * 1000));
  cfg.lease_wait_s = o.lease_wait;
  cfg.preempt_grace = std::chrono::milliseconds(static_cast<int64_t>(o.preempt_grace * 1000));

  struct sigaction sa {};
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = on_sigint;
  sigaction(SIGINT, &sa, nullptr);
  sa.sa_handler = on_sigterm;
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  auto st = wk::run_worker(cfg, g_stop, g_abort, g_preempt, std::cerr);
  if (!st.ok()) return fail(st.message());
  return 0;
}

void add_worker(CLI::App& app) {
  auto o = std::make_shared<WorkerOpts>();
  auto* w = app.add_subcommand(
      "worker", "Run leased runs on this machine: GPUs via NVML, metrics and logs to a coordinator");
  w->add_option("--coordinator", o->coordinator, "Coordinator URL, e.g. http://gpu-head:8470")
      ->required();
  w->add_option("--token-file", o->token_file,
                "File holding the worker token (worker.token from `assay coordinator init`)")
      ->required();
  w->add_option("--id", o->id, "Worker id, stable across restarts (default: the host name)");
  w->add_option("--gpus", o->gpus,
                "Override GPU discovery: a count (\"2\": 80 GB each) or INDEX:MEMORY list "
                "(\"0:80GB,1:24GB\"); \"0\" for none. Default: ask NVML (no driver: no GPUs)");
  w->add_option("--cpus", o->cpus, "CPU slots offered to runs (default: number of cores)")
      ->check(CLI::Range(0, 4096));
  w->add_option("--max-runs", o->max_runs, "Cap on concurrent runs (0: no cap beyond resources)")
      ->capture_default_str()
      ->check(CLI::Range(0, 10000));
  w->add_option("--labels", o->labels, "Labels runs can require, e.g. zone=a,arch=hopper");
  w->add_option("--work-dir", o->work_dir,
                "Per-run directories (<dir>/runs/<run>.<attempt>/ with stdout.log, stderr.log, "
                "output/)")
      ->capture_default_str();
  w->add_option("--spool-dir", o->spool_dir,
                "Where undelivered reports wait while the coordinator is unreachable "
                "(default: <work-dir>/spool)");
  w->add_option("--kill-grace", o->kill_grace,
                "Seconds between SIGTERM and SIGKILL on cancel or timeout")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  w->add_option("--lease-wait", o->lease_wait, "Long-poll seconds of one lease request")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 25.0));
  w->add_option("--preempt-grace", o->preempt_grace,
                "Seconds runs get to checkpoint after SIGTERM before they are stopped and "
                "reported preempted")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  w->footer(
      "\nEach run starts as its own process group via /bin/sh -c with CUDA_VISIBLE_DEVICES set to\n"
      "its GPUs (empty for CPU-only runs), ASSAY_RUN_ID, ASSAY_PARAMS (JSON), ASSAY_OUTPUT_DIR and\n"
      "ASSAY_METRICS_FD. A run reports by writing JSON lines to that descriptor:\n"
      "  {\"step\": 10, \"metrics\": {\"loss\": 1.23}}     {\"checkpoint\": \"ckpt/10\", \"step\": 10}\n"
      "Reports are spooled on disk while the coordinator is unreachable and resent in order.\n"
      "SIGTERM: preempt - lease nothing more, send each run SIGUSR1 and create its\n"
      "ASSAY_PREEMPT_FILE, wait up to --preempt-grace for it to checkpoint and exit, deliver, and\n"
      "report it preempted (it is requeued and resumes from its last checkpoint via\n"
      "ASSAY_RESUME_FROM). SIGINT: finish running runs and deliver, then exit. Twice: exit now.\n\n"
      "Examples:\n"
      "  assay worker --coordinator http://gpu-head:8470 --token-file ~/assay/worker.token\n"
      "  assay worker --coordinator http://127.0.0.1:8470 --token-file worker.token \\\n"
      "      --id cpu-box --gpus 0 --cpus 4 --labels zone=a");
  w->callback([o] { assay::cli::set_exit_code(run(*o)); });
}

}  // namespace

ASSAY_REGISTER_COMMAND(61, add_worker);
