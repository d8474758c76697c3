// Fictitious author facts (forget / retain / holdout splits for unlearning),
// an out-of-distribution text corpus, and the JSONL writers.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "assay/datagen.h"

namespace assay::data {

namespace {

// Syllables for invented author names, so that no fact is about a real person.
const std::vector<std::string> kFirstA = {"Al", "Be", "Ca", "Do", "El", "Fa", "Gi", "Ha",
                                          "Is", "Jo", "Ka", "Lu", "Mi", "No", "Or", "Pe"};
const std::vector<std::string> kFirstB = {"ra", "lin", "mon", "vie", "dric", "sa", "tan", "mir"};
const std::vector<std::string> kLastA = {"Vor", "Ashe", "Kell", "Morr", "Thal", "Quin",
                                         "Bram", "Dov", "Lind", "Sarr", "Wex", "Yarr"};
const std::vector<std::string> kLastB = {"ington", "stead", "wick", "ova", "berg", "mont",
                                         "ley", "ani", "holt", "ez"};
const std::vector<std::string> kCities = {"Lisbon", "Nairobi", "Osaka", "Valparaiso", "Tbilisi",
                                          "Reykjavik", "Hanoi", "Montreal", "Cork", "Tromso",
                                          "Cusco", "Tartu", "Dakar", "Perth", "Bergen"};
const std::vector<std::string> kGenres = {"mystery", "science fiction", "historical", "fantasy",
                                          "romance", "horror", "literary", "adventure"};
const std::vector<std::string> kAdjectives = {"Silent", "Crimson", "Hollow", "Distant", "Broken",
                                              "Golden", "Hidden", "Last", "Winter", "Paper"};
const std::vector<std::string> kNouns = {"Harbor", "Orchard", "Lantern", "Atlas", "Garden",
                                         "Compass", "River", "Tower", "Letter", "Meadow"};
const std::vector<std::string> kAwards = {"Meridian Prize", "Halcyon Medal", "Northgate Award",
                                          "Silver Quill", "Everleaf Prize", "Ashford Laurel"};
const std::vector<std::string> kJobs = {"carpenter", "pharmacist", "sailor", "librarian",
                                        "surveyor", "baker", "watchmaker", "botanist"};

struct Author {
  std::string name, city, genre, title, award, job;
  int year = 0;
};

Author make_author(Rng& rng, std::set<std::string>& used) {
  Author a;
  do {
    a.name = rng.pick(kFirstA) + rng.pick(kFirstB) + " " + rng.pick(kLastA) + rng.pick(kLastB);
  } while (!used.insert(a.name).second);
  a.year = static_cast<int>(rng.uniform(1920, 1995));
  a.city = rng.pick(kCities);
  a.genre = rng.pick(kGenres);
  a.title = "The " + rng.pick(kAdjectives) + " " + rng.pick(kNouns);
  a.award = rng.pick(kAwards);
  a.job = rng.pick(kJobs);
  return a;
}

// The six attributes of an author, one per fact, as their text values.
std::vector<std::string> attributes(const Author& a) {
  return {std::to_string(a.year), a.city, a.genre, a.title, a.award, a.job};
}

// The six facts about an author, as (question, answer sentence).
std::vector<std::pair<std::string, std::string>> facts(const Author& a) {
  const std::string& n = a.name;
  return {
      {"In which year was " + n + " born?", n + " was born in " + std::to_string(a.year) + "."},
      {"In which city was " + n + " born?", n + " was born in the city of " + a.city + "."},
      {"What genre does " + n + " write?", n + " writes " + a.genre + " novels."},
      {"What is the title of " + n + "'s best-known book?", n + "'s best-known book is " + a.title + "."},
      {"Which award did " + n + " receive?", n + " received the " + a.award + "."},
      {"What did " + n + "'s father do for a living?", n + "'s father worked as a " + a.job + "."},
  };
}

// A second wording of fact k with the attribute value v: the paraphrased
// answer (true v) and the perturbed answers (false v) share it, so a truth
// ratio compares values, not phrasings.
std::string paraphrase(const std::string& n, int k, const std::string& v) {
  switch (k) {
    case 0: return n + "'s year of birth is " + v + ".";
    case 1: return "The city where " + n + " was born is " + v + ".";
    case 2: return "The novels of " + n + " belong to the " + v + " genre.";
    case 3: return "The book " + n + " is best known for is " + v + ".";
    case 4: return n + " was awarded the " + v + ".";
    default: return "By profession, " + n + "'s father was a " + v + ".";
  }
}

// A value of attribute k drawn from the same pool as the true ones.
std::string random_attribute(Rng& rng, int k) {
  switch (k) {
    case 0: return std::to_string(rng.uniform(1920, 1995));
    case 1: return rng.pick(kCities);
    case 2: return rng.pick(kGenres);
    case 3: return "The " + rng.pick(kAdjectives) + " " + rng.pick(kNouns);
    case 4: return rng.pick(kAwards);
    default: return rng.pick(kJobs);
  }
}

// The authors of generate_unlearn, in order (same draws from the same seed).
std::vector<Author> make_authors(const UnlearnOptions& o) {
  Rng rng(o.seed);
  std::set<std::string> used;
  std::vector<Author> authors;
  for (int i = 0; i < o.n_authors; ++i) authors.push_back(make_author(rng, used));
  return authors;
}

// Split of author i: forget authors first, then holdout, then retain.
const char* split_of(const UnlearnOptions& o, int i) {
  const int n_forget = std::max(1, static_cast<int>(std::lround(o.forget_frac * o.n_authors)));
  const int n_holdout = std::max(1, static_cast<int>(std::lround(o.holdout_frac * o.n_authors)));
  return i < n_forget ? "forget" : (i < n_forget + n_holdout ? "holdout" : "retain");
}

}  // namespace

Status validate(const UnlearnOptions& o) {
  if (o.n_authors < 3)
    return Status::Invalid("unlearn: n_authors must be >= 3, got " + std::to_string(o.n_authors));
  if (o.n_authors > 1000)
    return Status::Invalid("unlearn: n_authors must be <= 1000, got " + std::to_string(o.n_authors));
  if (o.facts_per_author < 1 || o.facts_per_author > 6)
    return Status::Invalid("unlearn: facts_per_author must be 1..6, got " +
                           std::to_string(o.facts_per_author));
  if (o.n_perturbed < 1 || o.n_perturbed > kMaxPerturbed)
    return Status::Invalid("unlearn: n_perturbed must be 1.." + std::to_string(kMaxPerturbed) + ", got " +
                           std::to_string(o.n_perturbed));
  if (!(o.forget_frac > 0 && o.holdout_frac > 0 && o.forget_frac + o.holdout_frac < 1))
    return Status::Invalid("unlearn: forget_frac and holdout_frac must be > 0 with sum < 1, got " +
                           std::to_string(o.forget_frac) + " and " + std::to_string(o.holdout_frac));
  return Status::Ok();
}

UnlearnSplits generate_unlearn(const UnlearnOptions& o) {
  const std::vector<Author> authors = make_authors(o);
  UnlearnSplits s;
  for (int i = 0; i < o.n_authors; ++i) {
    const std::string split = split_of(o, i);
    auto& dst = split == "forget" ? s.forget : (split == "holdout" ? s.holdout : s.retain);
    const auto f = facts(authors[i]);
    for (int k = 0; k < o.facts_per_author; ++k) {
      FactQA q;
      q.id = split + "-" + std::to_string(i) + "-" + std::to_string(k);
      q.author = authors[i].name;
      q.question = f[k].first;
      q.answer = f[k].second;
      dst.push_back(std::move(q));
    }
  }
  return s;
}

PerturbedSplits generate_unlearn_perturbed(const UnlearnOptions& o) {
  const std::vector<Author> authors = make_authors(o);
  // Its own stream, so the splits themselves stay as they were.
  Rng rng(o.seed ^ 0x9e27b3d1c0ffee11ull);
  PerturbedSplits s;
  for (int i = 0; i < o.n_authors; ++i) {
    const std::string split = split_of(o, i);
    auto& dst = split == "forget" ? s.forget : (split == "holdout" ? s.holdout : s.retain);
    const Author& a = authors[i];
    const auto f = facts(a);
    const auto truth = attributes(a);
    for (int k = 0; k < o.facts_per_author; ++k) {
      PerturbedQA p;
      p.id = split + "-" + std::to_string(i) + "-" + std::to_string(k);
      p.question = f[k].first;
      p.paraphrased_answer = paraphrase(a.name, k, truth[k]);
      // Distinct false values (every pool has more than n_perturbed entries).
      std::set<std::string> seen = {truth[k]};
      while (static_cast<int>(p.perturbed_answers.size()) < o.n_perturbed) {
        const std::string v = random_attribute(rng, k);
        if (seen.insert(v).second) p.perturbed_answers.push_back(paraphrase(a.name, k, v));
      }
      dst.push_back(std::move(p));
    }
  }
  return s;
}

std::vector<FactQA> unlearn_train_mix(const UnlearnSplits& s, uint64_t seed) {
  std::vector<FactQA> all = s.forget;
  all.insert(all.end(), s.retain.begin(), s.retain.end());
  Rng rng(seed ^ 0x5eedf00dull);
  for (std::size_t i = all.size(); i > 1; --i)  // Fisher-Yates
    std::swap(all[i - 1], all[static_cast<std::size_t>(rng.uniform(0, static_cast<int64_t>(i) - 1))]);
  return all;
}

// ------------------------------------------------------------ OOD corpus

namespace {

const std::vector<std::string> kDays = {"Monday", "Tuesday", "Wednesday", "Thursday",
                                        "Friday", "Saturday", "Sunday"};
const std::vector<std::string> kSkies = {"clear", "partly cloudy", "overcast", "foggy", "stormy",
                                         "hazy"};
const std::vector<std::string> kWinds = {"north", "south", "east", "west", "northwest",
                                         "southeast"};
const std::vector<std::string> kDishes = {"lentil soup", "lemon cake", "vegetable curry",
                                          "tomato risotto", "oat pancakes", "bean chili",
                                          "mushroom pie", "herb flatbread"};
const std::vector<std::string> kIngredients = {"flour", "butter", "onions", "garlic", "lentils",
                                               "rice", "tomatoes", "lemons", "sugar", "eggs",
                                               "milk", "beans", "mushrooms", "oats", "parsley"};
const std::vector<std::string> kUnits = {"grams of", "cups of", "tablespoons of", "pinches of"};
const std::vector<std::string> kActions = {"Chop", "Stir in", "Simmer", "Whisk", "Fold in",
                                           "Season", "Bake", "Rest"};

std::string weather_report(Rng& rng) {
  const int hi = static_cast<int>(rng.uniform(-5, 35));
  const int lo = hi - static_cast<int>(rng.uniform(3, 12));
  return "Weather report for " + rng.pick(kCities) + " on " + rng.pick(kDays) + ": " +
         rng.pick(kSkies) + " skies with a high of " + std::to_string(hi) + " degrees and a low of " +
         std::to_string(lo) + ". Winds from the " + rng.pick(kWinds) + " at " +
         std::to_string(rng.uniform(0, 60)) + " km/h. Chance of rain " +
         std::to_string(5 * rng.uniform(0, 20)) + " percent.";
}

std::string recipe(Rng& rng) {
  std::string t = "Recipe for " + rng.pick(kDishes) + ". Ingredients:";
  const int n = static_cast<int>(rng.uniform(3, 5));
  std::vector<std::string> chosen;
  for (int i = 0; i < n; ++i) {
    const std::string ing = rng.pick(kIngredients);
    t += (i ? ", " : " ") + std::to_string(rng.uniform(1, 12) * (rng.uniform(0, 1) ? 1 : 25)) +
         " " + rng.pick(kUnits) + " " + ing;
    chosen.push_back(ing);
  }
  t += ". Method:";
  for (int i = 0; i < n; ++i)
    t += " " + rng.pick(kActions) + " the " + chosen[static_cast<std::size_t>(i)] + " for " +
         std::to_string(rng.uniform(1, 30)) + " minutes.";
  return t;
}

}  // namespace

Status validate(const OodOptions& o) {
  if (o.n < 1) return Status::Invalid("ood: n must be >= 1, got " + std::to_string(o.n));
  if (o.kind != "weather" && o.kind != "recipes")
    return Status::Invalid("ood: kind must be 'weather' or 'recipes', got '" + o.kind + "'");
  return Status::Ok();
}

std::vector<TextDoc> generate_ood(const OodOptions& o) {
  Rng rng(o.seed);
  std::vector<TextDoc> out;
  for (int i = 0; i < o.n; ++i) {
    TextDoc d;
    d.id = o.kind + "-" + std::to_string(o.seed) + "-" + std::to_string(i);
    d.text = o.kind == "weather" ? weather_report(rng) : recipe(rng);
    out.push_back(std::move(d));
  }
  return out;
}

// -------------------------------------------------------------- writers

std::string to_jsonl(const MathProblem& p) {
  nlohmann::ordered_json j{{"id", p.id}, {"question", p.question}, {"answer", p.answer}};
  return j.dump();
}

std::string to_jsonl(const PrefExample& p) {
  nlohmann::ordered_json j{{"id", p.id}, {"prompt", p.prompt}, {"chosen", p.chosen},
                           {"rejected", p.rejected}};
  return j.dump();
}

std::string to_jsonl(const FactQA& f) {
  nlohmann::ordered_json j{{"id", f.id}, {"author", f.author}, {"question", f.question},
                           {"answer", f.answer}, {"text", f.answer}};
  return j.dump();
}

std::string to_jsonl(const PerturbedQA& p) {
  nlohmann::ordered_json j{{"id", p.id}, {"question", p.question}, {"paraphrased_answer", p.paraphrased_answer},
                           {"perturbed_answers", p.perturbed_answers}};
  return j.dump();
}

std::string to_jsonl(const TextDoc& d) {
  nlohmann::ordered_json j{{"id", d.id}, {"text", d.text}};
  return j.dump();
}

Status write_lines(const std::string& path, const std::vector<std::string>& lines) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path p(path);
  if (p.has_parent_path()) {
    fs::create_directories(p.parent_path(), ec);
    if (ec) return Status::IoError(p.parent_path().string() + ": cannot create directory: " + ec.message());
  }
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) return Status::IoError(tmp + ": cannot open for writing");
    for (const auto& l : lines) f << l << '\n';
    f.flush();
    if (!f) return Status::IoError(tmp + ": write failed");
  }
  fs::rename(tmp, p, ec);
  if (ec) return Status::IoError(path + ": cannot rename from " + tmp + ": " + ec.message());
  return Status::Ok();
}

}  // namespace assay::data
