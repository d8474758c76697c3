// The metric protocol reader: line framing, numbering, malformed lines, and
// checkpoint content hashes.
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "assay/hash.h"
#include "assay/worker_protocol.h"

namespace fs = std::filesystem;
using namespace assay::worker;

namespace {

TEST(MetricLineReader, ParsesLinesSplitAcrossChunks) {
  std::string text =
      "{\"step\": 1, \"metrics\": {\"loss\": 2.5, \"acc\": 0.1}}\n"
      "{\"step\": 2, \"metrics\": {\"loss\": 2.0}}\r\n"
      "{\"checkpoint\": \"ckpt/2\", \"step\": 2}\n";
  // Every split point gives the same result.
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    MetricLineReader r;
    r.feed(std::string_view(text).substr(0, cut));
    r.feed(std::string_view(text).substr(cut));
    r.finish();
    auto lines = r.take_parsed();
    ASSERT_EQ(lines.size(), 3u) << "cut at " << cut;
    EXPECT_EQ(lines[0].line_no, 1);
    EXPECT_EQ(lines[0].line.step, 1);
    EXPECT_DOUBLE_EQ(lines[0].line.metrics.at("acc"), 0.1);
    EXPECT_DOUBLE_EQ(lines[1].line.metrics.at("loss"), 2.0);
    ASSERT_TRUE(lines[2].line.checkpoint);
    EXPECT_EQ(*lines[2].line.checkpoint, "ckpt/2");
    EXPECT_EQ(lines[2].line_no, 3);
    EXPECT_EQ(r.malformed_total(), 0);
  }
}

TEST(MetricLineReader, MalformedLinesAreCountedWithTheirLineNumbers) {
  MetricLineReader r;
  r.feed("{\"step\": 1, \"metrics\": {\"loss\": 1}}\n"
         "oops not json\n"
         "\n"
         "{\"step\": 2, \"metrics\": {\"loss\": \"high\"}}\n"
         "{\"metrics\": {\"loss\": 1}}\n"
         "{\"step\": 3, \"metrics\": {\"loss\": 0.5}}\n"
         "[1,2,3]\n"
         "{\"step\": 4, \"metr");  // the stream ends mid-line
  r.finish();
  auto good = r.take_parsed();
  ASSERT_EQ(good.size(), 2u);
  EXPECT_EQ(good[0].line_no, 1);
  EXPECT_EQ(good[1].line_no, 6);
  auto bad = r.take_malformed();
  ASSERT_EQ(bad.size(), 5u);
  std::vector<int64_t> nos;
  for (auto& m : bad) nos.push_back(m.line_no);
  EXPECT_EQ(nos, (std::vector<int64_t>{2, 4, 5, 7, 8}));
  EXPECT_EQ(bad[0].excerpt, "oops not json");
  EXPECT_FALSE(bad[1].error.empty());
  EXPECT_EQ(r.malformed_total(), 5);
  EXPECT_EQ(r.lines_seen(), 8);
  EXPECT_TRUE(r.take_malformed().empty()) << "take empties the list";
}

TEST(MetricLineReader, OverlongLineIsMalformedAndReadingContinues) {
  MetricLineReader r;
  std::string huge(MetricLineReader::kMaxLineBytes + 10, 'x');
  r.feed("{\"step\": 1, \"metrics\": {\"a\": 1}}\n");
  r.feed(huge.substr(0, huge.size() / 2));
  r.feed(huge.substr(huge.size() / 2));
  r.feed("\n{\"step\": 2, \"metrics\": {\"a\": 2}}\n");
  auto good = r.take_parsed();
  ASSERT_EQ(good.size(), 2u);
  EXPECT_EQ(good[1].line_no, 3);
  auto bad = r.take_malformed();
  ASSERT_EQ(bad.size(), 1u);
  EXPECT_EQ(bad[0].line_no, 2);
  EXPECT_NE(bad[0].error.find("longer than"), std::string::npos);
}

TEST(MetricLineReader, DrainsANonBlockingPipeToEof) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_NONBLOCK), 0);
  MetricLineReader r;
  std::string a = "{\"step\": 5, \"metrics\": {\"x\": 1}}\n{\"step\": 6, ";
  ASSERT_EQ(write(p[1], a.data(), a.size()), static_cast<ssize_t>(a.size()));
  EXPECT_TRUE(drain_fd(p[0], r)) << "still open";
  EXPECT_EQ(r.take_parsed().size(), 1u);
  std::string b = "\"metrics\": {\"x\": 2}}\n";
  ASSERT_EQ(write(p[1], b.data(), b.size()), static_cast<ssize_t>(b.size()));
  close(p[1]);
  EXPECT_FALSE(drain_fd(p[0], r)) << "end of file";
  auto lines = r.take_parsed();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].line.step, 6);
  close(p[0]);
}

}  // namespace

// 200 KB of nested brackets (well under the 1 MiB line limit) is one
// malformed line naming the depth limit; the lines around it still parse.
TEST(MetricLineReader, DeeplyNestedLineIsMalformedAndReadingGoesOn) {
  MetricLineReader r;
  r.feed("{\"step\": 1, \"metrics\": {\"loss\": 1}}\n");
  r.feed(std::string(100000, '[') + std::string(100000, ']') + "\n");
  r.feed("{\"step\": 2, \"metrics\": {\"loss\\u0000x\": 1}}\n");
  r.feed("{\"step\": 3, \"metrics\": {\"loss\": 0.5}}\n");
  r.finish();
  auto good = r.take_parsed();
  ASSERT_EQ(good.size(), 2u);
  EXPECT_EQ(good[1].line_no, 4);
  auto bad = r.take_malformed();
  ASSERT_EQ(bad.size(), 2u);
  EXPECT_EQ(bad[0].line_no, 2);
  EXPECT_NE(bad[0].error.find("JSON nested deeper than the limit of 64 levels"), std::string::npos)
      << bad[0].error;
  EXPECT_EQ(bad[0].excerpt, std::string(80, '['));
  EXPECT_EQ(bad[1].line_no, 3);
  EXPECT_NE(bad[1].error.find("without control characters"), std::string::npos) << bad[1].error;
}
