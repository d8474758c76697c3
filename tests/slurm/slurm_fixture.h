// A real single-node SLURM cluster for tests: munged, slurmctld and slurmd
// started in a temp dir on free ports, with a slurm.conf for this machine
// (its host name, CPUs and memory), torn down after the test.
//
// With Options::accounting, job accounting too: a private MariaDB server
// (its datadir, socket and a free port on 127.0.0.1 in the temp dir) and
// slurmdbd, so that `sacct` answers as on a production cluster. Without
// mariadbd or slurmdbd the cluster starts as without it and
// accounting_skip() says why.
//
// Every daemon and everything it starts (slurmstepd, the jobs' processes)
// carries ASSAY_SLURM_FIXTURE=<dir> in its environment. Teardown kills each
// process carrying it; a watchdog process started first does the same when
// the test process dies without tearing down (a crash, SIGKILL), so no
// cluster outlives its test.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "support/run_cmd.h"

namespace assay::slurmtest {

namespace fs = std::filesystem;

class SlurmCluster {
 public:
  struct Options {
    // MariaDB + slurmdbd (about a second more to start): only the tests of
    // the sacct path ask for it, so the others keep testing the scontrol and
    // jobcomp paths of clusters without accounting.
    bool accounting = false;
  };
  // Starts a cluster, or returns null with *skip (a reason to skip: not root
  // and no passwordless sudo, a binary missing) or *error (something that
  // should have worked did not) set.
  static std::unique_ptr<SlurmCluster> start(const std::string& name, std::string* skip,
                                             std::string* error);
  static std::unique_ptr<SlurmCluster> start(const std::string& name, std::string* skip,
                                             std::string* error, const Options& opts);
  ~SlurmCluster();
  SlurmCluster(const SlurmCluster&) = delete;
  SlurmCluster& operator=(const SlurmCluster&) = delete;

  const fs::path& dir() const { return dir_; }
  fs::path conf() const { return dir_ / "slurm.conf"; }
  const std::string& node() const { return node_; }
  const std::string& partition() const { return partition_; }
  const std::string& jobcomp_log() const { return jobcomp_; }
  // Whether slurmdbd keeps accounting (sacct answers); when it was asked for
  // and is not, accounting_skip() says why (a binary missing).
  bool accounting() const { return accounting_; }
  const std::string& accounting_skip() const { return accounting_skip_; }
  // Seconds start() took, until the node was idle (and, with accounting,
  // slurmdbd had registered the cluster).
  double startup_s() const { return startup_s_; }
  // An accounting outage: slurmdbd killed (SIGKILL) and started again on
  // the same port and database. Meanwhile slurmctld keeps what it has to
  // send and delivers it once it reconnects.
  bool stop_slurmdbd(std::string* error);
  bool start_slurmdbd(std::string* error);
  // "SLURM_CONF='<conf>' ": prefix for a client command line.
  std::string env() const;
  // Runs a shell command with SLURM_CONF set (stdout and stderr together).
  testing::CmdResult sh(const std::string& cmd) const;
  // Everything the daemons logged, for failure messages.
  std::string logs() const;
  // Waits until no job is left in squeue (seconds); true when none is.
  bool wait_queue_empty(double seconds) const;

 private:
  SlurmCluster() = default;
  bool write_config(std::string* error);
  bool write_accounting_config(std::string* error);
  // mariadb-install-db and mariadbd; then, once munged is up, slurmdbd.
  bool start_database(std::string* error);
  bool wait_accounting(std::string* error);
  bool spawn(const std::string& name, const std::vector<std::string>& argv, std::string* error);
  void kill_marked();

  fs::path dir_;
  std::string node_, partition_ = "assaytest", jobcomp_;
  std::string sudo_;  // "sudo -n " when not root
  bool accounting_ = false;
  std::string accounting_skip_;
  int db_port_ = 0, dbd_port_ = 0;  // mariadbd and slurmdbd on 127.0.0.1
  double startup_s_ = 0;
  std::vector<pid_t> daemons_;
  pid_t watchdog_ = -1;
  int watchdog_fd_ = -1;  // closing it (or dying) wakes the watchdog
};

}  // namespace assay::slurmtest
