// Eval hooks: a sweep's `evals: [{"suite", "on": "final"|"every", "args"}]`
// turn a run's checkpoints into dependent eval runs.
//
// Design (the simplest one that survives re-sent reports and restarts):
//  - The hooks travel in each sweep run's spec_json ("evals"), written at
//    submission; eval runs carry none, so evals never cascade.
//  - on "every": each checkpoint artifact recorded for the run creates one
//    eval run per hook, in the transaction that records the artifact.
//  - on "final": when the run succeeds, the checkpoint with the highest step
//    (ties: the latest artifact id; a checkpoint without a step ranks below
//    any with one) gets one eval run per hook, in the transaction of the
//    'finished' report. A checkpoint reported after that (a late delivery)
//    that is then the highest gets its own final eval too.
//  - Idempotence: table eval_hook_runs (migration 0003) has primary key
//    (producer run, checkpoint hash, hook suite); its row is written with the
//    eval run, so a repeat report or a restart finds it and creates nothing.
//    A hook listed twice for the same suite, or on "every" and "final" at
//    once, therefore evaluates each checkpoint once.
//  - An eval run is an ordinary run of the same sweep: command
//    "<assay_exe> eval <suite> --model-path <checkpoint path> --<arg> <value>...",
//    the producer's resources, labels, priority, max_attempts and env. The
//    checkpoint path is the producer worker's, so by default (placement
//    "same_worker") the eval run is pinned to that worker with the reserved
//    label assay.worker; placement "any" lets it run anywhere, for workers
//    that share the checkpoint directory.
//  - args "transcript_from": "<run name or id>" (provenance) names another
//    run whose training order the checkpoint is tested against: resolved
//    when the eval run is made (that run must have succeeded) to its
//    'transcript' artifact, else to transcript.jsonl beside its final
//    checkpoint's directory, and passed as --transcript PATH (the eval reads the data from train_config.json beside
//    it). A name or run that does not resolve writes an 'eval_hook_error'
//    event on the producer and makes no eval run, so a later report retries.
//  - Results: the eval run reports its rows on ASSAY_METRICS_FD as eval keys
//    (common/include/assay/eval_key.h: "<suite>@<version>/<metric>[,<filter>]"
//    with ":stderr" and ":n" companions) like any metric; when it succeeds
//    (and for metrics that arrive after that) the latest value per key is
//    copied into eval_results with the checkpoint hash and seed of its hook
//    row, so eval_summary joins it to the producer. The version is the one
//    `assay eval --db` stores, so both paths fill the same cache row. Upserts
//    make the copy repeatable.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <optional>
#include <string_view>
#include <tuple>

#include "assay/eval_key.h"
#include "assay/sweep_expand.h"
#include "core_internal.h"
#include "search_driver.h"

namespace assay::coordinator {

namespace {

// args key naming another run whose transcript the eval reads (provenance:
// test this checkpoint against that run's training order).
constexpr const char* kTranscriptFrom = "transcript_from";

struct Hook {
  std::string suite;
  std::string on = "final";
  Json args = Json::object();
  bool same_worker = true;  // placement: "same_worker" (default) | "any"
};

// The hooks stored with a sweep run (validated by the schema at submission;
// anything malformed here is skipped rather than failing the report).
std::vector<Hook> hooks_of(const store::Run& r) {
  std::vector<Hook> out;
  if (!r.sweep_id) return out;
  Json spec = Json::parse(r.spec_json, nullptr, false);
  if (!spec.is_object() || !spec.contains("evals") || !spec["evals"].is_array()) return out;
  for (const Json& e : spec["evals"]) {
    if (!e.is_object() || !e.contains("suite") || !e["suite"].is_string()) continue;
    Hook h;
    h.suite = e["suite"].get<std::string>();
    if (e.contains("on") && e["on"].is_string()) h.on = e["on"].get<std::string>();
    if (e.contains("args") && e["args"].is_object()) h.args = e["args"];
    if (e.contains("placement") && e["placement"] == "any") h.same_worker = false;
    if (!h.suite.empty() && (h.on == "final" || h.on == "every")) out.push_back(std::move(h));
  }
  return out;
}

// Quotes a word for /bin/sh when it has anything beyond a safe set.
std::string shell_quote(const std::string& s) {
  bool safe = !s.empty();
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || std::string_view("_-./:=,+@%").find(c) !=
                                                             std::string_view::npos))
      safe = false;
  if (safe) return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// args {"num_fewshot": 5, "filter": ["strict-match"], "force": true} ->
// " --num-fewshot 5 --filter strict-match --force". Keys: '_' becomes '-'
// (the CLI's spelling); true is a bare flag, false and null are omitted, an
// array repeats the option, an object passes as JSON text.
std::string args_text(const Json& args) {
  std::string out;
  for (auto& [k, v] : args.items()) {
    if (k == kTranscriptFrom) continue;  // resolved by the coordinator (TranscriptSource)
    std::string key = k;
    std::replace(key.begin(), key.end(), '_', '-');
    std::string flag = " " + shell_quote("--" + key);
    if (v.is_null() || (v.is_boolean() && !v.get<bool>())) continue;
    if (v.is_boolean()) {
      out += flag;
    } else if (v.is_array()) {
      for (const Json& x : v) out += flag + " " + shell_quote(x.is_object() ? x.dump() : param_text(x));
    } else {
      out += flag + " " + shell_quote(v.is_object() ? v.dump() : param_text(v));
    }
  }
  return out;
}

int64_t hook_seed(const Hook& h) {
  auto it = h.args.find("seed");
  return it != h.args.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

// A suite as part of a run name: "suites/my.json" -> "suites_my.json".
std::string name_part(const std::string& suite) {
  std::string out;
  for (char c : suite)
    out += std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' ? c : '_';
  return out;
}

// The checkpoint `on: final` evaluates: highest step, then latest id.
const store::Artifact* final_checkpoint(const std::vector<store::Artifact>& arts) {
  const store::Artifact* best = nullptr;
  for (const auto& a : arts) {
    if (a.kind != "checkpoint") continue;
    if (!best) {
      best = &a;
      continue;
    }
    auto key = [](const store::Artifact& x) {
      return std::make_tuple(x.step.has_value(), x.step.value_or(0), x.id);
    };
    if (key(a) > key(*best)) best = &a;
  }
  return best;
}

// Resolves args.transcript_from to a run and the path of its transcript.
// A number (or a string that names no run but reads as one) is a run id; a
// string is a run name, looked up in the producer's sweep first, then among
// all runs, where it must be unique. The path: the run's latest artifact of
// kind 'transcript'; else transcript.jsonl in the directory above its final
// checkpoint (the engine writes <out>/transcript.jsonl beside <out>/final and
// <out>/ckpt-N). The run must have succeeded. Errors are for the producer's
// event log.
struct TranscriptSource {
  int64_t run_id = 0;
  std::string path;
};

Result<std::vector<store::Run>> runs_named(store::Store& db, const std::string& name,
                                           std::optional<int64_t> sweep_id) {
  store::RunFilter f;
  f.sweep_id = sweep_id;
  std::vector<store::Run> out;
  for (;;) {
    ASSAY_ASSIGN_OR_RETURN(auto page, db.list_runs(f));
    for (auto& r : page)
      if (r.name == name) out.push_back(std::move(r));
    if (page.size() < static_cast<size_t>(f.limit)) break;
    f.after_id = page.back().id;
  }
  return out;
}

Result<store::Run> named_run(store::Store& db, const store::Run& producer, const Json& ref) {
  const std::string shown = ref.is_string() ? ref.get<std::string>() : ref.dump();
  std::optional<int64_t> id;
  if (ref.is_number_integer()) {
    id = ref.get<int64_t>();
  } else if (ref.is_string() && !shown.empty()) {
    ASSAY_ASSIGN_OR_RETURN(auto same, runs_named(db, shown, producer.sweep_id));
    if (same.size() == 1) return same[0];
    ASSAY_ASSIGN_OR_RETURN(auto all, runs_named(db, shown, std::nullopt));
    if (all.size() == 1) return all[0];
    if (all.size() > 1) {
      std::string ids;
      for (const auto& r : all) ids += (ids.empty() ? "" : ", ") + std::to_string(r.id);
      return Status::Invalid(std::string(kTranscriptFrom) + " \"" + shown + "\": runs " + ids +
                             " have that name; give the run id");
    }
    if (shown.find_first_not_of("0123456789") == std::string::npos && shown.size() < 19)
      id = std::stoll(shown);
  } else {
    return Status::Invalid(std::string(kTranscriptFrom) +
                           ": expected a run name or id, got " + ref.dump());
  }
  if (!id)
    return Status::NotFound(std::string(kTranscriptFrom) + " \"" + shown + "\": no run has that name");
  auto r = db.get_run(*id);
  if (!r.ok() && r.status().code() == Code::kNotFound)
    return Status::NotFound(std::string(kTranscriptFrom) + " " + shown + ": no run has that id");
  return r;
}

Result<TranscriptSource> transcript_source(store::Store& db, const store::Run& producer,
                                           const Json& ref) {
  ASSAY_ASSIGN_OR_RETURN(store::Run src, named_run(db, producer, ref));
  // A run still training has a partial transcript (it grows step by step).
  if (src.state != store::RunState::kSucceeded)
    return Status::FailedPrecondition(std::string(kTranscriptFrom) + ": run " +
                                      std::to_string(src.id) + " (" + src.name + ") is " +
                                      std::string(to_string(src.state)) +
                                      "; its transcript is complete only once it has succeeded");
  ASSAY_ASSIGN_OR_RETURN(auto arts, db.artifacts(src.id));
  const store::Artifact* best = nullptr;
  for (const auto& a : arts)
    if (a.kind == "transcript" && (!best || a.id > best->id)) best = &a;
  if (best) return TranscriptSource{src.id, best->path};
  if (const store::Artifact* ck = final_checkpoint(arts)) {
    std::string dir = ck->path;
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    const size_t slash = dir.rfind('/');
    if (slash != std::string::npos && slash > 0)
      return TranscriptSource{src.id, dir.substr(0, slash) + "/transcript.jsonl"};
  }
  return Status::NotFound(std::string(kTranscriptFrom) + ": run " + std::to_string(src.id) + " (" +
                          src.name + ") has no 'transcript' artifact and no checkpoint to find "
                          "transcript.jsonl beside");
}

}  // namespace

namespace {

// Creates the eval run of `h` on checkpoint `a` of `p` unless it exists.
struct EvalMaker {
  Coordinator::Impl& c;
  const store::Run& p;

  Status make(const Hook& h, const store::Artifact& a, std::vector<int64_t>* created) {
    ASSAY_ASSIGN_OR_RETURN(auto existing, c.db->eval_hook_run(p.id, a.content_hash, h.suite));
    if (existing) return Status::Ok();
    // Another run's transcript: resolved now; when it cannot be, the producer's
    // log says why and no eval run is made (a re-sent report tries again).
    std::optional<TranscriptSource> from;
    if (auto it = h.args.find(kTranscriptFrom); it != h.args.end() && !it->is_null()) {
      Result<TranscriptSource> t = h.args.contains("transcript")
                                       ? Result<TranscriptSource>(Status::Invalid(
                                             "give either transcript or transcript_from, not both"))
                                       : transcript_source(*c.db, p, *it);
      if (!t.ok())
        return c.db->add_event(p.id, "coordinator", "eval_hook_error",
                               h.suite + " (on " + h.on + ") on checkpoint " +
                                   a.content_hash.substr(0, 12) + " not scheduled: " +
                                   t.status().message());
      from = *t;
    }
    Json spec = Json::parse(p.spec_json, nullptr, false);
    Json env = spec.is_object() && spec.contains("env") ? spec["env"] : Json::object();
    Json sweep = spec.is_object() && spec.contains("sweep") ? spec["sweep"] : Json(nullptr);
    store::NewRun nr;
    nr.sweep_id = p.sweep_id;
    nr.name = p.name + "-eval-" + name_part(h.suite) +
              (a.step ? "-step" + std::to_string(*a.step) : std::string());
    nr.spec_json = dump_json({{"sweep", sweep},
                              {"eval_of", p.id},
                              {"hook", {{"suite", h.suite}, {"on", h.on}, {"args", h.args}}},
                              {"env", env}});
    Json params = {{"eval_of", p.id},
                   {"suite", h.suite},
                   {"checkpoint", a.content_hash},
                   {"step", a.step ? Json(*a.step) : Json(nullptr)}};
    if (from) params[kTranscriptFrom] = from->run_id;
    nr.params_json = dump_json(params);
    nr.command = shell_quote(c.opts.assay_exe) + " eval " + shell_quote(h.suite) +
                 " --model-path " + shell_quote(a.path) +
                 (from ? " --transcript " + shell_quote(from->path) : std::string()) +
                 args_text(h.args);
    nr.priority = p.priority;
    nr.resources = p.resources;
    Json labels = Json::parse(p.labels_json, nullptr, false);
    if (!labels.is_object()) labels = Json::object();
    if (h.same_worker) {
      // The checkpoint lives on the disk of the worker that reported it.
      ASSAY_ASSIGN_OR_RETURN(auto where, c.db->placement(p.id));
      if (where) labels[kWorkerIdLabel] = where->worker_id;
    }
    nr.labels_json = dump_json(labels);
    nr.max_attempts = p.max_attempts;
    ASSAY_ASSIGN_OR_RETURN(int64_t id, c.db->insert_run(nr, "coordinator"));
    store::EvalHookRun row{p.id, a.content_hash, h.suite, id, a.step, hook_seed(h)};
    ASSAY_RETURN_IF_ERROR(c.db->put_eval_hook_run(row, c.now()));
    ASSAY_RETURN_IF_ERROR(c.db->add_event(
        p.id, "coordinator", "eval_scheduled",
        "run " + std::to_string(id) + " evaluates " + h.suite + " (on " + h.on +
            ") on checkpoint " + a.content_hash.substr(0, 12) +
            (a.step ? " at step " + std::to_string(*a.step) : std::string()) +
            (from ? " with the transcript of run " + std::to_string(from->run_id) + " (" +
                        from->path + ")"
                  : std::string())));
    created->push_back(id);
    return Status::Ok();
  }

  Status finals(const std::vector<Hook>& hooks, std::vector<int64_t>* created) {
    bool any = std::any_of(hooks.begin(), hooks.end(), [](const Hook& h) { return h.on == "final"; });
    if (!any) return Status::Ok();
    ASSAY_ASSIGN_OR_RETURN(auto arts, c.db->artifacts(p.id));
    const store::Artifact* best = final_checkpoint(arts);
    if (!best)
      return c.db->add_event(p.id, "coordinator", "eval_skipped",
                             "no checkpoint artifact was reported; final evals not scheduled");
    for (const Hook& h : hooks)
      if (h.on == "final") ASSAY_RETURN_IF_ERROR(make(h, *best, created));
    return Status::Ok();
  }
};

}  // namespace

Status Coordinator::Impl::on_checkpoint(const store::Run& producer, int64_t artifact_id,
                                        std::vector<int64_t>* created) {
  std::vector<Hook> hooks = hooks_of(producer);
  if (hooks.empty()) return Status::Ok();
  ASSAY_ASSIGN_OR_RETURN(auto arts, db->artifacts(producer.id));
  auto it = std::find_if(arts.begin(), arts.end(),
                         [&](const store::Artifact& a) { return a.id == artifact_id; });
  if (it == arts.end() || it->kind != "checkpoint") return Status::Ok();
  EvalMaker m{*this, producer};
  for (const Hook& h : hooks)
    if (h.on == "every") ASSAY_RETURN_IF_ERROR(m.make(h, *it, created));
  // A checkpoint delivered after the run succeeded may be its final one.
  if (producer.state == store::RunState::kSucceeded) {
    const store::Artifact* best = final_checkpoint(arts);
    if (best && best->id == artifact_id) ASSAY_RETURN_IF_ERROR(m.finals(hooks, created));
  }
  return Status::Ok();
}

namespace {

// Copies an eval run's latest metric values into eval_results: each value
// key with its ":stderr" and ":n" companions becomes one row (eval_key.h).
Status copy_eval_metrics(Coordinator::Impl& c, int64_t run_id) {
  ASSAY_ASSIGN_OR_RETURN(auto hook, c.db->eval_hook_of(run_id));
  if (!hook) return Status::Ok();
  ASSAY_ASSIGN_OR_RETURN(auto points, c.db->metrics(run_id));
  std::map<std::string, const store::MetricPoint*> latest;  // key -> point at its highest step
  for (const auto& p : points) {
    auto& slot = latest[p.key];
    if (!slot || p.step >= slot->step) slot = &p;
  }
  // One row per (suite, version, metric, filter), in key order.
  std::map<std::tuple<std::string, std::string, std::string, std::string>, store::EvalResult> rows;
  for (auto& [key, p] : latest) {
    EvalKey k;
    if (!parse_eval_key(key, &k)) continue;
    store::EvalResult& e = rows[{k.suite, k.version, k.metric, k.filter}];
    const bool finite = std::isfinite(p->value);
    switch (k.stat) {
      case EvalKey::Stat::kValue:
        if (finite) e.value = p->value;
        break;
      case EvalKey::Stat::kStderr:
        if (finite) e.stderr_value = p->value;
        break;
      case EvalKey::Stat::kN:
        if (finite && p->value >= 0) e.n = static_cast<int64_t>(p->value);
        break;
    }
    e.run_id = run_id;
    e.suite = k.suite;
    e.metric = k.metric;
    e.filter = k.filter;
    e.suite_version = k.version;
    e.checkpoint_hash = hook->checkpoint_hash;
    e.seed = hook->seed;
    e.created_at = c.now();
  }
  std::vector<store::EvalResult> out;
  for (auto& [key, e] : rows) out.push_back(std::move(e));
  if (out.empty()) return Status::Ok();
  return c.db->put_eval_results(out);
}

}  // namespace

Status Coordinator::Impl::on_succeeded(const store::Run& r, std::vector<int64_t>* created) {
  std::vector<Hook> hooks = hooks_of(r);
  if (!hooks.empty()) {
    EvalMaker m{*this, r};
    ASSAY_RETURN_IF_ERROR(m.finals(hooks, created));
  }
  ASSAY_RETURN_IF_ERROR(copy_eval_metrics(*this, r.id));
  // Adaptive search: a rung of the producer may have waited for this eval.
  return search_on_eval_results(*this, r);
}

Status Coordinator::Impl::on_metrics(const store::Run& r) {
  // Adaptive search: rung decisions on the new points (search_driver.cpp).
  ASSAY_RETURN_IF_ERROR(search_on_metrics(*this, r));
  if (r.state != store::RunState::kSucceeded) return Status::Ok();
  return copy_eval_metrics(*this, r.id);
}

void Coordinator::Impl::enqueue_runs(const std::vector<int64_t>& ids) {
  for (int64_t id : ids) {
    auto r = db->get_run(id);
    if (r.ok() && r->state == store::RunState::kQueued) sched.enqueue(needs_of(*r));
  }
}

}  // namespace assay::coordinator
