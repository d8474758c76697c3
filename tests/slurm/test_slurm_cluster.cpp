// The SLURM test fixture itself: a real cluster accepts and runs a batch
// job, and nothing of it outlives a test process that dies without teardown.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "slurm_fixture.h"

namespace assay::slurmtest {
namespace {

using namespace std::chrono_literals;

#define START_CLUSTER(var, name)                          \
  std::string skip_, error_;                              \
  auto var = SlurmCluster::start(name, &skip_, &error_);  \
  if (!var && !skip_.empty()) GTEST_SKIP() << skip_;      \
  ASSERT_TRUE(var) << error_

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Processes whose environment holds `entry`.
int count_marked(const std::string& entry) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    std::string pid = e.path().filename().string();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in("/proc/" + pid + "/environ", std::ios::binary);
    std::string var;
    while (std::getline(in, var, '\0'))
      if (var == entry) {
        ++n;
        break;
      }
  }
  return n;
}

TEST(SlurmCluster, SbatchRunsAJobThatWritesAFile) {
  START_CLUSTER(c, "smoke");
  const fs::path out = c->dir() / "hello.txt";
  std::ofstream(c->dir() / "job.sh") << "#!/bin/sh\n"
                                        "#SBATCH --job-name=smoke\n"
                                        "#SBATCH --output=" << (c->dir() / "job-%j.out").string()
                                     << "\nsleep 2\necho \"hello from $SLURM_JOB_ID on "
                                        "$SLURMD_NODENAME\" > " << out.string() << "\n";
  auto sub = c->sh("sbatch --parsable " + (c->dir() / "job.sh").string());
  ASSERT_EQ(sub.code, 0) << sub.out << c->logs();
  const std::string id = sub.out.substr(0, sub.out.find_first_of(";\n"));
  auto q = c->sh("squeue -h -j " + id + " -o '%i %j %T'");
  EXPECT_EQ(q.code, 0) << q.out;
  EXPECT_NE(q.out.find(id + " smoke"), std::string::npos) << q.out;
  auto show = c->sh("scontrol show job " + id);
  EXPECT_NE(show.out.find("JobName=smoke"), std::string::npos) << show.out;
  ASSERT_TRUE(c->wait_queue_empty(30)) << c->sh("squeue").out << c->logs();
  EXPECT_EQ(slurp(out), "hello from " + id + " on " + c->node() + "\n");
  show = c->sh("scontrol show job " + id);
  EXPECT_NE(show.out.find("JobState=COMPLETED"), std::string::npos) << show.out;
  // The job-completion log has it too (the triage source without slurmdbd).
  EXPECT_NE(slurp(c->jobcomp_log()).find("JobId=" + id + " "), std::string::npos);
}

// Starts a cluster in a child that then dies by SIGKILL, and checks that
// the watchdog killed every daemon and job process of it.
void nothing_outlives_a_killed_test_process(const SlurmCluster::Options& opts) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  pid_t child = fork();
  if (child == 0) {
    close(p[0]);
    std::string skip, error;
    auto c = SlurmCluster::start("crash", &skip, &error, opts);
    if (c && opts.accounting && !c->accounting()) skip = c->accounting_skip(), c.reset();
    std::string msg = c ? c->dir().string() : "!" + skip + error;
    (void)!write(p[1], msg.data(), msg.size());
    close(p[1]);
    if (c) {
      // A job running too: its processes must go as well.
      (void)c->sh("sbatch --output=/dev/null --wrap 'sleep 300'");
      std::this_thread::sleep_for(1s);
    }
    raise(SIGKILL);  // no destructor runs
  }
  close(p[1]);
  std::string msg;
  char buf[512];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof buf)) > 0) msg.append(buf, n);
  close(p[0]);
  int st = 0;
  waitpid(child, &st, 0);
  ASSERT_FALSE(msg.empty());
  if (msg[0] == '!') {
    if (msg.find("not found") != std::string::npos || msg.find("sudo") != std::string::npos)
      GTEST_SKIP() << msg.substr(1);
    FAIL() << msg.substr(1);
  }
  const std::string marker = "ASSAY_SLURM_FIXTURE=" + msg;
  const std::string conf = "SLURM_CONF=" + msg + "/slurm.conf";
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    gone = count_marked(marker) == 0 && count_marked(conf) == 0;
    if (!gone) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(gone) << count_marked(marker) << " daemon process(es) and " << count_marked(conf)
                    << " job/client process(es) of " << msg << " still alive";
  std::error_code ec;
  fs::remove_all(msg, ec);
}

TEST(SlurmCluster, NothingOutlivesATestProcessKilledWithoutTeardown) {
  nothing_outlives_a_killed_test_process({});
}

// The same with job accounting: mariadbd and slurmdbd go too.
TEST(SlurmCluster, NothingOutlivesATestProcessKilledWithoutTeardownWithAccounting) {
  SlurmCluster::Options opts;
  opts.accounting = true;
  nothing_outlives_a_killed_test_process(opts);
}

}  // namespace
}  // namespace assay::slurmtest
