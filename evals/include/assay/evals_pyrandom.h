// Python-compatible random numbers: MT19937 seeded as CPython's
// random.Random(int) and the index sequence of random.Random.sample, so that
// few-shot draws match tools that sample with Python's `random` module.
#pragma once

#include <cstdint>
#include <vector>

namespace assay::evals {

class PyRandom {
 public:
  // random.Random(seed) for a non-negative integer seed.
  explicit PyRandom(uint64_t seed);

  uint32_t genrand_uint32();
  // random.getrandbits(k), 0 < k <= 64.
  uint64_t getrandbits(int k);
  // random._randbelow(n): uniform in [0, n), n > 0.
  uint64_t randbelow(uint64_t n);
  // random.random(): 53-bit float in [0, 1).
  double random();
  // The indices random.sample(range(n), k) returns, in order; k <= n.
  std::vector<uint64_t> sample(uint64_t n, uint64_t k);

 private:
  void init_genrand(uint32_t s);
  void init_by_array(const std::vector<uint32_t>& key);
  uint32_t mt_[624];
  int mti_ = 625;
};

}  // namespace assay::evals
