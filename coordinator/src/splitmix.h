// SplitMix64 (Steele, Lea and Flood 2014): a tiny, fully specified random
// stream. Sweep expansion and the TPE sampler draw from it instead of
// std:: distributions, whose output differs between standard libraries, so
// the same seed gives the same runs everywhere.
#pragma once

#include <cstdint>

namespace assay::coordinator {

struct SplitMix64 {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 53 random bits.
  double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
};

}  // namespace assay::coordinator
