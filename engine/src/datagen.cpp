// GSM8K-format arithmetic word problems and preference pairs built from them.
// Every problem tracks one quantity of one item through `difficulty` steps;
// the answer explains each step with a GSM8K calculator annotation
// "<<a+b=c>>" and ends with "#### N".
#include "assay/datagen.h"

#include <algorithm>
#include <string>
#include <vector>

namespace assay::data {

// ------------------------------------------------------------------ RNG

namespace {
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

Rng::Rng(uint64_t seed) {
  uint64_t x = seed;
  for (auto& s : s_) s = splitmix64(x);
}

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

int64_t Rng::uniform(int64_t lo, int64_t hi) {
  const uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
  if (span == 0) return static_cast<int64_t>(next());  // full 64-bit range
  // Rejection sampling: no modulo bias.
  const uint64_t limit = UINT64_MAX - UINT64_MAX % span;
  uint64_t x;
  do x = next(); while (x >= limit);
  return lo + static_cast<int64_t>(x % span);
}

double Rng::uniform01() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

std::string qa_prompt(const std::string& question) { return "Question: " + question + "\nAnswer:"; }

// ---------------------------------------------------------------- GSM8K

namespace {

struct Person {
  const char* name;
  const char* pronoun;  // subject pronoun, lower case
};

const std::vector<Person> kPeople = {
    {"Maria", "she"}, {"James", "he"},  {"Aisha", "she"}, {"Tom", "he"},    {"Lena", "she"},
    {"Ravi", "he"},   {"Chen", "he"},   {"Sofia", "she"}, {"Omar", "he"},   {"Grace", "she"},
    {"Mateo", "he"},  {"Yuki", "she"},  {"Noah", "he"},   {"Priya", "she"}, {"Elif", "she"},
    {"Kwame", "he"},  {"Ingrid", "she"}, {"Pablo", "he"}, {"Hana", "she"},  {"Luca", "he"}};

const std::vector<std::string> kItems = {
    "apples",  "marbles", "stickers", "books",   "pencils", "cookies", "stamps",
    "shells",  "cards",   "candles",  "buttons", "coins",   "oranges", "beads"};

const std::vector<std::string> kFriends = {"a friend", "a neighbour", "a cousin", "a classmate",
                                           "a teacher", "a brother", "a sister"};

std::string cap(std::string s) {
  if (!s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = static_cast<char>(s[0] - 'a' + 'A');
  return s;
}

std::string num(int64_t x) { return std::to_string(x); }

std::string annotate(const MathStep& s) {
  const std::string expr = num(s.a) + s.op + num(s.b);
  return expr + " = <<" + expr + "=" + num(s.result) + ">>" + num(s.result);
}

int64_t apply(char op, int64_t a, int64_t b) {
  switch (op) {
    case '+': return a + b;
    case '-': return a - b;
    case '*': return a * b;
    default: return b != 0 ? a / b : 0;
  }
}

// Picks the next operation on quantity x; returns the step (result filled in).
MathStep next_step(Rng& rng, int64_t x, int d) {
  const int64_t add_max = 10 * d, fac_max = std::min(2 + d, 9);
  for (;;) {
    MathStep s;
    const int64_t kind = rng.uniform(0, 3);
    if (kind == 0) {
      s = {'+', x, rng.uniform(1, add_max), 0};
    } else if (kind == 1) {
      if (x < 2) continue;
      s = {'-', x, rng.uniform(1, std::min<int64_t>(x - 1, add_max)), 0};
    } else if (kind == 2) {
      if (x > 200 * d) continue;  // keep numbers readable
      s = {'*', x, rng.uniform(2, fac_max), 0};
    } else {
      std::vector<int64_t> divisors;
      for (int64_t k = 2; k <= fac_max; ++k)
        if (x % k == 0 && x / k >= 1) divisors.push_back(k);
      if (divisors.empty()) continue;
      s = {'/', x, rng.pick(divisors), 0};
    }
    s.result = apply(s.op, s.a, s.b);
    return s;
  }
}

// Question sentence for a step.
std::string step_question(const MathStep& s, const std::string& pron, const std::string& item,
                          const std::string& friend_) {
  switch (s.op) {
    case '+': return cap(pron) + " buys " + num(s.b) + " more " + item + ".";
    case '-': return cap(pron) + " gives " + num(s.b) + " " + item + " to " + friend_ + ".";
    case '*': return cap(pron) + " then ends up with " + num(s.b) + " times as many " + item + ".";
    default:
      return cap(pron) + " splits the " + item + " equally into " + num(s.b) +
             " bags and keeps only one bag.";
  }
}

// Answer sentence for a step.
std::string step_answer(const MathStep& s, const std::string& pron, const std::string& item) {
  switch (s.op) {
    case '+': return "After buying more, " + pron + " has " + annotate(s) + " " + item + ".";
    case '-': return "After giving some away, " + pron + " has " + annotate(s) + " " + item + ".";
    case '*': return "Then " + pron + " has " + annotate(s) + " " + item + ".";
    default: return "One bag holds " + annotate(s) + " " + item + ".";
  }
}

std::string render_answer(const std::string& name, const std::string& pron, const std::string& item,
                          int64_t start, const std::vector<MathStep>& steps) {
  std::string a = name + " starts with " + num(start) + " " + item + ".\n";
  for (const auto& s : steps) a += step_answer(s, pron, item) + "\n";
  a += "#### " + num(steps.empty() ? start : steps.back().result);
  return a;
}

struct Generated {
  MathProblem p;
  std::string name, pron, item;
  int64_t start = 0;
};

Generated make_problem(Rng& rng, int d, const std::string& id) {
  Generated g;
  const Person& who = rng.pick(kPeople);
  g.name = who.name;
  g.pron = who.pronoun;
  g.item = rng.pick(kItems);
  g.start = rng.uniform(2, 20 * d);
  std::string q = g.name + " has " + num(g.start) + " " + g.item + ".";
  int64_t x = g.start;
  for (int i = 0; i < d; ++i) {
    MathStep s = next_step(rng, x, d);
    q += ' ';  // appends, not "literal" + temporary: GCC 12 warns falsely (-Wrestrict) on that
    q += step_question(s, g.pron, g.item, rng.pick(kFriends));
    g.p.steps.push_back(s);
    x = s.result;
  }
  q += " How many " + g.item + " does " + g.name + " have now?";
  g.p.id = id;
  g.p.question = std::move(q);
  g.p.final_answer = x;
  g.p.answer = render_answer(g.name, g.pron, g.item, g.start, g.p.steps);
  return g;
}

std::string make_id(const char* prefix, uint64_t seed, int i) {
  std::string idx = std::to_string(i);
  if (idx.size() < 5) idx.insert(0, 5 - idx.size(), '0');
  return std::string(prefix) + "-" + std::to_string(seed) + "-" + idx;
}

// A wrong solution: one step's result is off by a small slip, and the later
// steps are computed correctly from the wrong value (a plausible mistake).
// Falls back to a slip in the final step when propagation would break an
// operation (negative count or an inexact division).
std::vector<MathStep> corrupt(Rng& rng, const std::vector<MathStep>& steps) {
  const int n = static_cast<int>(steps.size());
  for (int attempt = 0; attempt < 2; ++attempt) {
    const int at = attempt == 0 ? static_cast<int>(rng.uniform(0, n - 1)) : n - 1;
    std::vector<MathStep> out = steps;
    const int64_t r = out[at].result;
    const int64_t slip = rng.uniform(1, std::max<int64_t>(2, r / 5));
    out[at].result = (rng.uniform(0, 1) == 0 && r - slip >= 1) ? r - slip : r + slip;
    bool ok = true;
    for (int i = at + 1; i < n && ok; ++i) {
      out[i].a = out[i - 1].result;
      if (out[i].op == '-' && out[i].a - out[i].b < 0) ok = false;
      if (out[i].op == '/' && out[i].a % out[i].b != 0) ok = false;
      out[i].result = apply(out[i].op, out[i].a, out[i].b);
    }
    if (ok && out.back().result != steps.back().result) return out;
  }
  std::vector<MathStep> out = steps;
  out.back().result += 1;  // unreachable in practice: keeps the pair well-formed
  return out;
}

}  // namespace

Status validate(const GsmOptions& o) {
  if (o.n < 1) return Status::Invalid("gsm8k: n must be >= 1, got " + std::to_string(o.n));
  if (o.difficulty < 1 || o.difficulty > 8)
    return Status::Invalid("gsm8k: difficulty must be 1..8, got " + std::to_string(o.difficulty));
  return Status::Ok();
}

std::vector<MathProblem> generate_gsm8k(const GsmOptions& o) {
  Rng rng(o.seed);
  std::vector<MathProblem> out;
  out.reserve(static_cast<std::size_t>(o.n));
  for (int i = 0; i < o.n; ++i) out.push_back(make_problem(rng, o.difficulty, make_id("gsm", o.seed, i)).p);
  return out;
}

std::vector<PrefExample> generate_prefs(const GsmOptions& o) {
  Rng rng(o.seed);
  std::vector<PrefExample> out;
  out.reserve(static_cast<std::size_t>(o.n));
  for (int i = 0; i < o.n; ++i) {
    Generated g = make_problem(rng, o.difficulty, make_id("pref", o.seed, i));
    const auto wrong = corrupt(rng, g.p.steps);
    PrefExample e;
    e.id = g.p.id;
    e.prompt = qa_prompt(g.p.question);
    e.chosen = " " + g.p.answer;
    e.rejected = ' ' + render_answer(g.name, g.pron, g.item, g.start, wrong);
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace assay::data
