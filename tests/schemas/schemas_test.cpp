#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "assay/specs.h"
#include "assay/validate.h"
#include "support/temp_dir.h"

namespace fs = std::filesystem;
using assay::schemas::Json;

namespace {

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The C++ verdict for one corpus document.
assay::Status cpp_verdict(const std::string& kind, const fs::path& file) {
  const std::string text = read(file);
  if (kind == "metric-line") {
    // The protocol is one line: re-serialise compactly.
    return assay::schemas::parse_metric_line(Json::parse(text).dump()).status();
  }
  Json doc = Json::parse(text);
  const std::string src = file.filename().string();
  if (kind == "sweep") return assay::schemas::parse_sweep_spec(doc, src).status();
  if (kind == "run") return assay::schemas::parse_run_spec(doc, src).status();
  return assay::schemas::parse_suite_spec(doc, src).status();
}

std::string run_capture(const std::string& cmd, int* rc) {
  std::array<char, 4096> buf;
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) { *rc = -1; return out; }
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int st = pclose(p);
  *rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

const fs::path kCorpus = fs::path(ASSAY_SOURCE_DIR) / "tests/schemas/corpus";

}  // namespace

// Every document's verdict is fixed by the folder it sits in (good/bad), and
// the C++ parser must agree with that.
TEST(SpecCorpus, CppVerdictMatchesFolder) {
  int n = 0;
  for (const auto& kind_dir : fs::directory_iterator(kCorpus)) {
    const std::string kind = kind_dir.path().filename();
    for (const char* verdict : {"good", "bad"}) {
      for (const auto& f : fs::directory_iterator(kind_dir.path() / verdict)) {
        auto st = cpp_verdict(kind, f.path());
        EXPECT_EQ(st.ok(), std::string(verdict) == "good")
            << kind << "/" << verdict << "/" << f.path().filename().string() << ": " << st.to_string();
        ++n;
      }
    }
  }
  EXPECT_GT(n, 50);
}

// The same verdict from python3-jsonschema (Draft 2020-12) on every document.
TEST(SpecCorpus, JsonSchemaReferenceAgrees) {
  const std::string py = ASSAY_REF_PYTHON;
  if (!fs::exists(py)) GTEST_SKIP() << py << " not found: reference peer absent";
  int rc = 0;
  const std::string cmd = py + " " + ASSAY_SOURCE_DIR + "/tests/schemas/reference_verdicts.py " +
                          ASSAY_SOURCE_DIR + "/schemas " + kCorpus.string() + " 2>&1";
  const std::string out = run_capture(cmd, &rc);
  if (rc == 3) GTEST_SKIP() << "python3-jsonschema not installed: reference peer absent";
  ASSERT_EQ(rc, 0) << out;
  Json ref = Json::parse(out);
  ASSERT_GT(ref.size(), 50u);
  for (auto it = ref.begin(); it != ref.end(); ++it) {
    const fs::path p = kCorpus / it.key();
    const std::string kind = p.parent_path().parent_path().filename();
    auto st = cpp_verdict(kind, p);
    EXPECT_EQ(st.ok(), it.value().get<bool>())
        << it.key() << ": jsonschema says " << (it.value().get<bool>() ? "valid" : "invalid")
        << ", C++ says " << st.to_string();
  }
}

TEST(SpecErrors, NamePathExpectationAndFoundValue) {
  Json doc = Json::parse(R"({"name":"s","command":"x","space":{"lr":{"type":"loguniform","low":-1,"high":1}}})");
  auto r = assay::schemas::parse_sweep_spec(doc, "sweep.json");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "sweep.json: /space/lr/low: expected a number > 0, got -1");

  doc = Json::parse(R"({"name":"s","command":"x","resources":{"gpus":9}})");
  EXPECT_EQ(assay::schemas::parse_sweep_spec(doc, "sweep.json").status().message(),
            "sweep.json: /resources/gpus: expected an integer in 0..8, got 9");

  doc = Json::parse(R"({"name":"s","command":"x","evals":[{"suite":"g","on":"sometimes"}]})");
  EXPECT_EQ(assay::schemas::parse_sweep_spec(doc, "s.json").status().message(),
            R"(s.json: /evals/0/on: expected one of "final", "every", got "sometimes")");

  doc = Json::parse(R"({"command":"x"})");
  EXPECT_EQ(assay::schemas::parse_sweep_spec(doc, "s.json").status().message(),
            "s.json: /name: required field is missing");

  doc = Json::parse(R"({"name":"s","command":"x","resourcez":{}})");
  auto m = assay::schemas::parse_sweep_spec(doc, "s.json").status().message();
  EXPECT_EQ(m.rfind("s.json: /resourcez: unknown field; expected one of ", 0), 0u) << m;
}

TEST(SpecErrors, ChecksBeyondJsonSchema) {
  Json doc = Json::parse(R"({"name":"s","command":"x","space":{"lr":{"type":"uniform","low":2,"high":1}}})");
  EXPECT_EQ(assay::schemas::parse_sweep_spec(doc, "s.json").status().message(),
            "s.json: /space/lr/high: expected a number > low (2), got 1");
  doc = Json::parse(R"({"name":"s","command":"run --lr {lr} --x {wd}","space":{"lr":{"type":"grid","values":[1]}}})");
  auto m = assay::schemas::parse_sweep_spec(doc, "s.json").status().message();
  EXPECT_NE(m.find("/command: placeholder {wd}"), std::string::npos) << m;
  // Shell ${VAR} and JSON braces are not placeholders.
  doc = Json::parse(R"({"name":"s","command":"echo ${HOME} '{\"a\": 1}' {seed}","seeds":[1]})");
  EXPECT_TRUE(assay::schemas::parse_sweep_spec(doc, "s.json").ok());
}

TEST(SpecParse, SweepFieldsAreTyped) {
  Json doc = Json::parse(R"({"name":"s","command":"t {lr} {opt}",
    "space":{"lr":{"type":"loguniform","low":1e-4,"high":1e-2},"opt":{"type":"grid","values":["a","b"]}},
    "samples":3,"seed":9,"seeds":[1,2],"resources":{"gpus":1,"gpu_mem_mb":4000},
    "priority":2,"labels":{"zone":"a"},"max_attempts":4,"timeout":30,
    "evals":[{"suite":"gsm8k"}]})");
  auto r = assay::schemas::parse_sweep_spec(doc, "s.json");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->space.at("lr").kind, assay::schemas::Dimension::Kind::kLogUniform);
  EXPECT_DOUBLE_EQ(r->space.at("lr").low, 1e-4);
  EXPECT_EQ(r->space.at("opt").values.size(), 2u);
  EXPECT_EQ(r->samples, 3);
  EXPECT_EQ(r->seed, 9u);
  EXPECT_EQ(r->seeds, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(r->resources.gpus, 1);
  EXPECT_EQ(r->resources.gpu_mem_mb, 4000);
  EXPECT_EQ(r->resources.cpus, 1);
  EXPECT_EQ(r->labels.at("zone"), "a");
  EXPECT_EQ(r->max_attempts, 4);
  EXPECT_EQ(r->timeout_s, 30.0);
  ASSERT_EQ(r->evals.size(), 1u);
  EXPECT_EQ(r->evals[0].on, "final");
}

TEST(SpecParse, MetricLines) {
  auto m = assay::schemas::parse_metric_line(R"({"step": 10, "metrics": {"loss": 1.23}})");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->step, 10);
  EXPECT_DOUBLE_EQ(m->metrics.at("loss"), 1.23);
  auto c = assay::schemas::parse_metric_line(R"({"checkpoint": "ck/10", "step": 10})");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->checkpoint, "ck/10");
  EXPECT_TRUE(c->metrics.empty());
  auto bad = assay::schemas::parse_metric_line("{not json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("not valid JSON"), std::string::npos);
  auto wrong = assay::schemas::parse_metric_line(R"({"step": 1, "metrics": {"loss": "x"}})");
  EXPECT_EQ(wrong.status().message(), R"(metric line: /metrics/loss: expected a number, got "x")");
}

TEST(SpecFiles, JsonSyntaxErrorsNameFileLineAndColumn) {
  assay::testing::TempDir dir("schemas");
  const std::string path = dir.file("broken-sweep.json");
  { std::ofstream(path) << "{\n  \"name\": \"x\",\n  \"command\": oops\n}\n"; }
  auto r = assay::schemas::load_sweep_spec(path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(path + ": line 3"), std::string::npos) << r.status().message();
  auto missing = assay::schemas::load_sweep_spec("/nonexistent/s.json");
  EXPECT_EQ(missing.status().code(), assay::Code::kNotFound);
}

TEST(SchemaValidator, RejectsUnsupportedKeywords) {
  Json schema = Json::parse(R"({"type":"object","anyOf":[{"type":"object"}]})");
  auto r = assay::schemas::validate(schema, Json::object());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("anyOf"), std::string::npos);
}
