// CPU of an idle `assay coordinator` holding parked long-polls.
//
// Starts the real binary on loopback, registers workers, submits one run no
// worker can take (a label nobody has, so it stays queued and its log stays
// open), then parks N long-polls: half `POST /v1/worker/lease` with wait_s,
// half `GET /v1/runs/<id>/logs?wait_s=`. Nothing changes while they wait, so
// any CPU the coordinator burns is the cost of waiting. Reports its CPU
// (utime + stime from /proc/<pid>/stat) over the measuring window, first with
// no polls parked, then with N.
//
// Usage: bench_longpoll [POLLS=100] [SECONDS=10] [ASSAY_EXE]
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "assay/coord_client.h"
#include "assay/coordinator.h"

extern char** environ;

using namespace assay::coordinator;
using Json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// Seconds of CPU (user + system) the process has used.
double cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the command name (which may hold spaces) start after ')'.
  std::istringstream rest(all.substr(all.rfind(')') + 2));
  std::string f;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> f; ++i) {
    if (i == 14) utime = std::stoull(f);
    if (i == 15) stime = std::stoull(f);
  }
  return double(utime + stime) / double(sysconf(_SC_CLK_TCK));
}

double measure(pid_t pid, double seconds) {
  double c0 = cpu_seconds(pid);
  auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return (cpu_seconds(pid) - c0) / wall;
}

int fail(const std::string& m) {
  std::cerr << "bench_longpoll: " << m << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  int polls = argc > 1 ? std::atoi(argv[1]) : 100;
  double seconds = argc > 2 ? std::atof(argv[2]) : 10;
  std::string exe = argc > 3 ? argv[3] : ASSAY_EXE;
  char tmpl[] = "/tmp/assay_bench_longpoll_XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::string init = exe + " coordinator init --dir " + dir + " > /dev/null";
  if (std::system(init.c_str()) != 0) return fail("cannot create tokens with " + exe);
  std::string user = read_token_file(dir + "/user.token").value();
  std::string worker = read_token_file(dir + "/worker.token").value();

  std::vector<std::string> args{exe, "coordinator", "--db", dir + "/bench.db", "--listen",
                                "127.0.0.1:0", "--port-file", dir + "/port"};
  std::vector<char*> cargv;
  for (auto& a : args) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  std::string log = dir + "/coordinator.log";
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = -1;
  if (posix_spawn(&pid, cargv[0], &fa, nullptr, cargv.data(), environ) != 0)
    return fail("cannot start " + exe);
  posix_spawn_file_actions_destroy(&fa);
  for (int i = 0; i < 400 && !fs::exists(dir + "/port"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  int port = 0;
  std::ifstream(dir + "/port") >> port;
  if (port == 0) return fail("coordinator did not start; see " + log);
  Endpoint ep{"127.0.0.1", port};

  HttpClient u(ep, user, 60), w(ep, worker, 60);
  int workers = (polls + 1) / 2;
  for (int i = 0; i < workers; ++i) {
    Json reg = {{"worker_id", "w" + std::to_string(i)}, {"instance", "a"}, {"cpus", 1}};
    if (!w.call("POST", "/v1/worker/register", &reg).ok()) return fail("register failed");
  }
  Json run = {{"name", "parked"}, {"command", "true"}, {"labels", {{"pool", "nobody"}}}};
  auto sub = u.call("POST", "/v1/runs", &run);
  if (!sub.ok()) return fail("submit failed: " + sub.status().to_string());
  int64_t run_id = (*sub)["run"]["id"].get<int64_t>();

  std::this_thread::sleep_for(std::chrono::seconds(1));
  double idle = measure(pid, seconds);

  std::atomic<bool> stop{false};
  std::atomic<int64_t> answered{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < polls; ++i) {
    threads.emplace_back([&, i] {
      bool lease = i % 2 == 0;
      HttpClient c(ep, lease ? worker : user, 60);
      Json body = {{"worker_id", "w" + std::to_string(i / 2)}, {"wait_s", kLongPollCapS}};
      std::string logs = "/v1/runs/" + std::to_string(run_id) + "/logs?wait_s=" +
                         std::to_string(int(kLongPollCapS));
      while (!stop) {
        auto r = lease ? c.request("POST", "/v1/worker/lease", body.dump()) : c.request("GET", logs);
        if (r.ok()) ++answered;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(2));
  int64_t answered_before = answered.load();
  double parked = measure(pid, seconds);
  int64_t early = answered.load() - answered_before;

  std::printf("coordinator CPU, idle, no long-polls:      %6.2f%% of one core\n", idle * 100);
  std::printf("coordinator CPU, idle, %3d parked polls:   %6.2f%% of one core\n", polls,
              parked * 100);
  std::printf("polls answered during the window:          %lld (cap %.0f s)\n",
              static_cast<long long>(early), kLongPollCapS);
  stop = true;
  ::kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  for (auto& t : threads) t.join();
  fs::remove_all(dir);
  return 0;
}
