// Student-t and Kolmogorov-Smirnov distributions, and the two-sample KS test.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "assay/evals_metrics.h"

namespace assay::evals {
namespace {

// Continued fraction for I_x(a, b) (modified Lentz), valid for
// x < (a + 1) / (a + b + 2), where it converges quickly.
double betacf(double a, double b, double x) {
  const double tiny = 1e-300, eps = 1e-16;
  double c = 1.0, d = 1.0 - (a + b) * x / (a + 1.0);
  if (std::fabs(d) < tiny) d = tiny;
  d = 1.0 / d;
  double h = d;
  for (int m = 1; m <= 10000; ++m) {
    double m2 = 2.0 * m;
    // even step: d_{2m} = m (b - m) x / ((a + 2m - 1)(a + 2m))
    double aa = m * (b - m) * x / ((a + m2 - 1) * (a + m2));
    d = 1.0 + aa * d;
    if (std::fabs(d) < tiny) d = tiny;
    c = 1.0 + aa / c;
    if (std::fabs(c) < tiny) c = tiny;
    d = 1.0 / d;
    h *= d * c;
    // odd step: d_{2m+1} = -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1))
    aa = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1));
    d = 1.0 + aa * d;
    if (std::fabs(d) < tiny) d = tiny;
    c = 1.0 + aa / c;
    if (std::fabs(c) < tiny) c = tiny;
    d = 1.0 / d;
    double del = d * c;
    h *= del;
    if (std::fabs(del - 1.0) < eps) break;
  }
  return h;
}

}  // namespace

double betainc(double a, double b, double x) {
  if (std::isnan(a) || std::isnan(b) || std::isnan(x) || a <= 0 || b <= 0 || x < 0 || x > 1)
    return std::nan("");
  if (x == 0) return 0;
  if (x == 1) return 1;
  // log of x^a (1-x)^b / B(a, b)
  double lfront = std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) +
                  b * std::log1p(-x);
  if (x < (a + 1) / (a + b + 2)) return std::exp(lfront) * betacf(a, b, x) / a;
  return 1.0 - std::exp(lfront) * betacf(b, a, 1 - x) / b;
}

double student_t_sf(double t, double df) {
  if (std::isnan(t) || !(df > 0)) return std::nan("");
  if (std::isinf(t)) return t > 0 ? 0.0 : 1.0;
  // P(T > t) = I_{df/(df+t^2)}(df/2, 1/2) / 2 for t >= 0.
  double tail = 0.5 * betainc(df / 2, 0.5, df / (df + t * t));
  return t >= 0 ? tail : 1.0 - tail;
}

double smirnov_sf(int64_t n, double d) {
  if (std::isnan(d) || n <= 0) return std::nan("");
  if (d <= 0) return 1.0;
  if (d >= 1) return 0.0;
  // Birnbaum-Tingey: d * sum_{j=0}^{floor(n(1-d))} C(n,j) (1-d-j/n)^(n-j) (d+j/n)^(j-1);
  // every term is positive, so summing in log space loses no precision.
  const double nn = static_cast<double>(n);
  int64_t jmax = static_cast<int64_t>(std::floor(nn * (1 - d)));
  double lgn1 = std::lgamma(nn + 1);
  double sum = 0;
  for (int64_t j = 0; j <= jmax; ++j) {
    double dj = static_cast<double>(j);
    double u = 1 - d - dj / nn;
    if (u <= 0) continue;
    double lt = lgn1 - std::lgamma(dj + 1) - std::lgamma(nn - dj + 1) + (nn - dj) * std::log(u) +
                (dj - 1) * std::log(d + dj / nn);
    sum += std::exp(lt);
  }
  return std::clamp(d * sum, 0.0, 1.0);
}

namespace {

// P(D_n < d) by the Durbin matrix (Marsaglia, Tsang & Wang 2003): with
// k = floor(n d) + 1, m = 2k - 1 and h = k - n d, the probability is
// n!/n^n * (H^n)[k-1][k-1]. Exact; costs O(m^3 log n).
double kolmogorov_cdf_durbin(int64_t n, double d) {
  const double nd = static_cast<double>(n) * d;
  const int k = static_cast<int>(nd) + 1;
  const int m = 2 * k - 1;
  const double h = k - nd;
  using Mat = std::vector<double>;  // row-major m x m
  Mat H(static_cast<size_t>(m) * m);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) H[i * m + j] = (i - j + 1 >= 0) ? 1.0 : 0.0;
  for (int i = 0; i < m; ++i) {
    H[i * m] -= std::pow(h, i + 1);
    H[(m - 1) * m + i] -= std::pow(h, m - i);
  }
  if (2 * h - 1 > 0) H[(m - 1) * m] += std::pow(2 * h - 1, m);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j)
      if (i - j + 1 > 0)
        for (int g = 1; g <= i - j + 1; ++g) H[i * m + j] /= g;

  auto mul = [m](const Mat& A, const Mat& B) {
    Mat C(A.size(), 0.0);
    for (int i = 0; i < m; ++i)
      for (int l = 0; l < m; ++l) {
        double a = A[i * m + l];
        if (a == 0) continue;
        for (int j = 0; j < m; ++j) C[i * m + j] += a * B[l * m + j];
      }
    return C;
  };
  // Binary powering with a decimal exponent kept aside to avoid overflow.
  const double kScale = 1e140;
  Mat R(static_cast<size_t>(m) * m, 0.0);
  for (int i = 0; i < m; ++i) R[i * m + i] = 1.0;
  int64_t e_r = 0, e_b = 0;
  Mat B = H;
  for (int64_t p = n; p > 0; p >>= 1) {
    if (p & 1) {
      R = mul(R, B);
      e_r += e_b;
      if (R[(k - 1) * m + (k - 1)] > kScale) {
        for (double& v : R) v /= kScale;
        e_r += 1;
      }
    }
    if (p > 1) {
      B = mul(B, B);
      e_b *= 2;
      if (B[(k - 1) * m + (k - 1)] > kScale) {
        for (double& v : B) v /= kScale;
        e_b += 1;
      }
    }
  }
  double s = R[(k - 1) * m + (k - 1)];
  for (int64_t i = 1; i <= n; ++i) {
    s *= static_cast<double>(i) / static_cast<double>(n);
    if (s < 1.0 / kScale) {
      s *= kScale;
      e_r -= 1;
    }
  }
  return s * std::pow(kScale, static_cast<double>(e_r));
}

// Limiting Kolmogorov distribution P(K > z) with Vrbik's finite-n correction,
// for the large-n corner where the Durbin matrix would be too big.
double kolmogorov_sf_limit(int64_t n, double d) {
  double sn = std::sqrt(static_cast<double>(n));
  double z = sn * d + 1.0 / (6 * sn) + (d - 1.0 / sn) / (4 * sn);
  double sum = 0;
  for (int j = 1; j <= 100; ++j) {
    double t = std::exp(-2.0 * j * j * z * z);
    sum += (j % 2 ? 2.0 : -2.0) * t;
    if (t < 1e-18) break;
  }
  return std::clamp(sum, 0.0, 1.0);
}

}  // namespace

double kstwo_sf(double d, int64_t n) {
  if (std::isnan(d) || n <= 0) return std::nan("");
  if (d >= 1) return 0.0;
  if (d <= 0) return 1.0;
  const double nn = static_cast<double>(n);
  const double t = nn * d;
  // Region split follows Simard & L'Ecuyer (2011), as scipy's kstwo does.
  if (t <= 1.0) {  // Ruben-Gambino: P(D_n < d) = n!/n^n (2t-1)^n for 1/2n <= d <= 1/n
    if (t <= 0.5) return 1.0;
    double cdf = 1;
    for (int64_t i = 1; i <= n; ++i) cdf *= static_cast<double>(i) / nn * (2 * t - 1);
    return std::clamp(1.0 - cdf, 0.0, 1.0);
  }
  if (t >= nn - 1) return std::clamp(2 * std::pow(1.0 - d, nn), 0.0, 1.0);
  if (d >= 0.5) return std::clamp(2 * smirnov_sf(n, d), 0.0, 1.0);
  const double nx2 = t * d;
  if (n <= 140) {
    if (nx2 > 4) return std::clamp(2 * smirnov_sf(n, d), 0.0, 1.0);
    return std::clamp(1.0 - kolmogorov_cdf_durbin(n, d), 0.0, 1.0);
  }
  if (nx2 >= 370.0) return 0.0;
  if (nx2 >= 2.2) return std::clamp(2 * smirnov_sf(n, d), 0.0, 1.0);
  // Durbin's matrix is exact; its size grows as 2 n d, so cap it and use the
  // corrected limiting law beyond (scipy switches to Pelz-Good there).
  if (2 * t + 1 <= 301) return std::clamp(1.0 - kolmogorov_cdf_durbin(n, d), 0.0, 1.0);
  return kolmogorov_sf_limit(n, d);
}

namespace {

// Probability that a uniformly random lattice path from (0,0) to (n1,n2)
// touches |i*n2g - j*n1g| >= h (i.e. |i/n1 - j/n2| >= h/lcm). The path is
// walked as sampling without replacement; mass leaving the band is summed,
// so small p-values keep full relative precision.
double ks_exact_outside(int64_t n1, int64_t n2, int64_t h) {
  const int64_t g = std::gcd(n1, n2);
  const int64_t n1g = n1 / g, n2g = n2 / g;
  std::vector<double> cur(n2 + 1, 0.0), next(n2 + 1, 0.0);
  cur[0] = 1.0;
  double outside = 0;
  auto is_out = [&](int64_t i, int64_t j) { return std::llabs(i * n2g - j * n1g) >= h; };
  for (int64_t i = 0; i <= n1; ++i) {
    std::fill(next.begin(), next.end(), 0.0);
    for (int64_t j = 0; j <= n2; ++j) {
      double p = cur[j];
      if (p == 0) continue;
      double rem = static_cast<double>((n1 - i) + (n2 - j));
      if (rem == 0) break;
      double px = static_cast<double>(n1 - i) / rem;  // next sample from the first set
      if (i < n1) {
        if (is_out(i + 1, j)) outside += p * px;
        else next[j] += p * px;
      }
      if (j < n2) {
        if (is_out(i, j + 1)) outside += p * (1 - px);
        else cur[j + 1] += p * (1 - px);
      }
    }
    std::swap(cur, next);
  }
  return outside;
}

}  // namespace

Result<KsResult> ks_2samp(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.empty() || b.empty())
    return Status::Invalid("ks_2samp: both samples must be non-empty, got sizes " +
                           std::to_string(a.size()) + " and " + std::to_string(b.size()));
  for (double v : a)
    if (std::isnan(v)) return Status::Invalid("ks_2samp: first sample contains NaN");
  for (double v : b)
    if (std::isnan(v)) return Status::Invalid("ks_2samp: second sample contains NaN");
  std::vector<double> x = a, y = b;
  std::sort(x.begin(), x.end());
  std::sort(y.begin(), y.end());
  const int64_t n1 = static_cast<int64_t>(x.size()), n2 = static_cast<int64_t>(y.size());
  // D over the pooled sample, in integer units of 1/lcm: |c1*n2g - c2*n1g|.
  const int64_t g = std::gcd(n1, n2);
  const int64_t n1g = n1 / g, n2g = n2 / g;
  int64_t h = 0;
  size_t i = 0, j = 0;
  while (i < x.size() || j < y.size()) {
    double v = (j == y.size() || (i < x.size() && x[i] <= y[j])) ? x[i] : y[j];
    while (i < x.size() && x[i] == v) ++i;
    while (j < y.size() && y[j] == v) ++j;
    h = std::max<int64_t>(h, std::llabs(static_cast<int64_t>(i) * n2g - static_cast<int64_t>(j) * n1g));
  }
  const double lcm = static_cast<double>(n1g) * static_cast<double>(n2);
  KsResult r;
  r.statistic = static_cast<double>(h) / lcm;
  if (std::max(n1, n2) <= 10000 && lcm < 2147483647.0) {
    r.exact = true;
    r.p_value = h == 0 ? 1.0 : std::clamp(ks_exact_outside(n1, n2, h), 0.0, 1.0);
  } else {
    double en = std::round(static_cast<double>(n1) * n2 / (n1 + n2));
    r.p_value = std::clamp(kstwo_sf(r.statistic, static_cast<int64_t>(en)), 0.0, 1.0);
  }
  return r;
}

}  // namespace assay::evals
