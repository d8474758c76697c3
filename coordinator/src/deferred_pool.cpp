#include "deferred_pool.h"

#include <algorithm>
#include <utility>

namespace assay::coordinator {

DeferredPool::DeferredPool(size_t threads, size_t max_jobs) : max_jobs_(max_jobs) {
  for (size_t i = 0; i < std::max<size_t>(threads, 1); ++i) threads_.emplace_back([this] { loop(); });
}

DeferredPool::~DeferredPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    queue_.clear();
  }
  cancel_ = true;
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

bool DeferredPool::submit(Job job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_ || in_flight_ >= max_jobs_) return false;
    ++in_flight_;
    queue_.push_back(std::move(job));
  }
  cv_.notify_one();
  return true;
}

void DeferredPool::loop() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    job(cancel_);  // jobs catch their own exceptions (server.cpp)
    std::lock_guard<std::mutex> lock(mu_);
    --in_flight_;
  }
}

}  // namespace assay::coordinator
