#include "metric_batch.h"

#include <charconv>
#include <cmath>
#include <limits>

namespace assay::coordinator {

namespace {

// A cursor over the body; every reader returns false on anything outside the
// accepted subset.
struct Cursor {
  const char* p;
  const char* end;

  void ws() {
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')) ++p;
  }
  bool eat(char c) {
    ws();
    if (p < end && *p == c) {
      ++p;
      return true;
    }
    return false;
  }
  bool peek(char c) {
    ws();
    return p < end && *p == c;
  }
  // A string without escapes, control characters or non-ASCII bytes.
  bool str(std::string_view* out) {
    if (!eat('"')) return false;
    const char* b = p;
    while (p < end && *p != '"') {
      const unsigned char c = static_cast<unsigned char>(*p);
      if (c == '\\' || c < 0x20 || c >= 0x80) return false;
      ++p;
    }
    if (p == end) return false;
    *out = std::string_view(b, static_cast<size_t>(p - b));
    ++p;
    return true;
  }
  bool literal(std::string_view word) {
    ws();
    if (static_cast<size_t>(end - p) < word.size() || std::string_view(p, word.size()) != word)
      return false;
    p += word.size();
    return true;
  }
  // End of the JSON number at p (RFC 8259: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?),
  // or nullptr. from_chars alone also takes leading zeros, "1." and "-.5",
  // which JSON forbids; such a body goes to the general parser (a 400).
  static const char* number_end(const char* q, const char* e, bool* integral) {
    auto digit = [&](const char* x) { return x < e && *x >= '0' && *x <= '9'; };
    if (q < e && *q == '-') ++q;
    if (!digit(q)) return nullptr;
    if (*q == '0') ++q;
    else while (digit(q)) ++q;
    *integral = true;
    if (q < e && *q == '.') {
      ++q;
      if (!digit(q)) return nullptr;
      while (digit(q)) ++q;
      *integral = false;
    }
    if (q < e && (*q == 'e' || *q == 'E')) {
      ++q;
      if (q < e && (*q == '+' || *q == '-')) ++q;
      if (!digit(q)) return nullptr;
      while (digit(q)) ++q;
      *integral = false;
    }
    return q;
  }
  // A JSON integer: no fraction or exponent.
  bool integer(int64_t* out) {
    ws();
    bool integral = false;
    const char* stop = number_end(p, end, &integral);
    if (!stop || !integral) return false;
    auto r = std::from_chars(p, stop, *out);
    if (r.ec != std::errc() || r.ptr != stop) return false;
    p = stop;
    return true;
  }
  // A finite JSON number.
  bool number(double* out) {
    ws();
    bool integral = false;
    const char* stop = number_end(p, end, &integral);
    if (!stop) return false;
    auto r = std::from_chars(p, stop, *out);
    if (r.ec != std::errc() || r.ptr != stop || !std::isfinite(*out)) return false;
    p = stop;
    return true;
  }
};

bool point(Cursor& c, MetricBatch::Point* pt) {
  if (!c.eat('{')) return false;
  bool key = false, step = false, value = false;
  if (!c.peek('}')) {
    do {
      std::string_view name, s;
      if (!c.str(&name) || !c.eat(':')) return false;
      if (name == "key") {
        if (!c.str(&s)) return false;
        pt->key.assign(s);
        key = true;
      } else if (name == "step") {
        if (!c.integer(&pt->step)) return false;
        step = true;
      } else if (name == "value") {
        if (c.literal("null")) pt->value = std::numeric_limits<double>::quiet_NaN();
        else if (!c.number(&pt->value)) return false;
        value = true;
      } else if (name == "time") {
        double t = 0;
        if (c.literal("null")) pt->time.reset();
        else if (c.number(&t)) pt->time = t;
        else return false;
      } else {
        return false;
      }
    } while (c.eat(','));
  }
  return c.eat('}') && key && step && value;
}

bool points(Cursor& c, std::vector<MetricBatch::Point>* out) {
  if (!c.eat('[')) return false;
  out->clear();
  if (c.eat(']')) return true;
  do {
    out->emplace_back();
    if (!point(c, &out->back())) return false;
  } while (c.eat(','));
  return c.eat(']');
}

}  // namespace

bool parse_metric_batch_fast(std::string_view body, MetricBatch* out) {
  Cursor c{body.data(), body.data() + body.size()};
  *out = MetricBatch{};
  bool worker = false, have_points = false;
  if (!c.eat('{')) return false;
  if (!c.peek('}')) {
    do {
      std::string_view name, s;
      if (!c.str(&name) || !c.eat(':')) return false;
      if (name == "worker_id") {
        if (!c.str(&s)) return false;
        out->worker_id.assign(s);
        worker = true;
      } else if (name == "attempt") {
        int64_t a = 0;
        if (!c.integer(&a)) return false;
        out->attempt = a;
      } else if (name == "batch_seq") {
        int64_t q = 0;
        if (c.literal("null")) out->batch_seq.reset();
        else if (c.integer(&q)) out->batch_seq = q;
        else return false;
      } else if (name == "points") {
        if (!points(c, &out->points)) return false;
        have_points = true;
      } else {
        return false;
      }
    } while (c.eat(','));
  }
  if (!c.eat('}')) return false;
  c.ws();
  return c.p == c.end && worker && out->attempt && have_points;
}

}  // namespace assay::coordinator
