// Timings of the eval primitives on sizes met in practice. Prints one line
// per case: name, size, milliseconds. Usage: bench_evals
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>

#include "assay/evals_gsm8k.h"
#include "assay/evals_metrics.h"

namespace ev = assay::evals;

static void time_it(const char* name, const std::string& size, const std::function<double()>& fn) {
  auto t0 = std::chrono::steady_clock::now();
  double sink = fn();
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%-28s %-16s %10.2f ms   (result %.6g)\n", name, size.c_str(), ms, sink);
}

int main() {
  ev::SplitMix64 rng(1);
  auto uniform = [&] { return static_cast<double>(rng.next() >> 11) / 9007199254740992.0; };
  std::vector<double> s(1000000);
  std::vector<int> y(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    y[i] = static_cast<int>(rng.below(2));
    s[i] = uniform() + 0.3 * y[i];
  }
  time_it("auroc", "n=1e6", [&] { return ev::auroc(s, y).value(); });
  time_it("aupr", "n=1e6", [&] { return ev::aupr(s, y).value(); });
  std::vector<double> a(2000), b(3000);
  for (auto& v : a) v = uniform();
  for (auto& v : b) v = uniform() + 0.02;
  time_it("ks_2samp exact", "2000 vs 3000", [&] { return ev::ks_2samp(a, b).value().p_value; });
  std::vector<double> a2(10000), b2(10000);
  for (auto& v : a2) v = uniform();
  for (auto& v : b2) v = uniform() + 0.01;
  time_it("ks_2samp exact", "10000 vs 10000", [&] { return ev::ks_2samp(a2, b2).value().p_value; });
  time_it("kstwo_sf (Durbin)", "n=100000", [&] { return ev::kstwo_sf(0.0035, 100000); });
  std::vector<double> o(2000), d(2000);
  for (size_t i = 0; i < o.size(); ++i) o[i] = i, d[i] = uniform() - 1e-4 * i;
  time_it("permutation test", "n=2000 T=1000", [&] {
    return ev::spearman_permutation_test(o, d, 1000, 7).value().p_value;
  });
  std::vector<std::string> resp(100000, std::string(600, 'x') + " so she pays $1,234.50.\n#### 1,234.5");
  time_it("gsm8k filters+em", "100000 x 640B", [&] {
    double hits = 0;
    for (const auto& r : resp)
      hits += ev::gsm8k_exact_match(ev::filter_flexible_extract(r), "#### 1234.5");
    return hits;
  });
  return 0;
}
