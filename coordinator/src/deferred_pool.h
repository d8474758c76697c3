// A few threads for work a server must not do on its own thread (users' SQL:
// Response::deferred). Private to the coordinator library.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace assay::coordinator {

class DeferredPool {
 public:
  // A job gets the pool's cancel flag, set when the pool is destroyed; long
  // work polls it and returns early.
  using Job = std::function<void(const std::atomic<bool>& cancel)>;

  DeferredPool(size_t threads, size_t max_jobs);
  // Sets the cancel flag, drops jobs not yet started and joins the threads
  // (a running job returns once it sees the flag).
  ~DeferredPool();
  DeferredPool(const DeferredPool&) = delete;
  DeferredPool& operator=(const DeferredPool&) = delete;

  // False when max_jobs are already queued or running: the caller refuses.
  bool submit(Job job);
  size_t max_jobs() const { return max_jobs_; }

 private:
  void loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;    // guarded by mu_
  size_t in_flight_ = 0;     // queued + running; guarded by mu_
  bool stop_ = false;        // guarded by mu_
  std::atomic<bool> cancel_{false};
  const size_t max_jobs_;
  std::vector<std::thread> threads_;
};

}  // namespace assay::coordinator
