// GPU inventory: NVML through dlopen (absent, present through a stand-in
// library, and whatever this machine really has) and the --gpus override.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include <gtest/gtest.h>

#include "assay/worker_gpu.h"
#include "support/temp_dir.h"

using namespace assay::worker;

TEST(Nvml, MissingLibraryMeansNoGpusNotAnError) {
  std::string note;
  auto gpus = discover_gpus(&note, "libnvidia-ml-absent-for-test.so.1");
  EXPECT_TRUE(gpus.empty());
  EXPECT_NE(note.find("libnvidia-ml-absent-for-test.so.1"), std::string::npos) << note;
  EXPECT_EQ(Nvml::open(nullptr, "libnvidia-ml-absent-for-test.so.1"), nullptr);
}

TEST(Nvml, LibraryWithoutNvmlSymbolsIsRejected) {
  std::string why;
  EXPECT_EQ(Nvml::open(&why, "libc.so.6"), nullptr);
  EXPECT_NE(why.find("missing NVML entry points"), std::string::npos) << why;
}

TEST(Nvml, DiscoversDevicesThroughTheLoadedLibrary) {
  std::string note;
  auto gpus = discover_gpus(&note, ASSAY_FAKE_NVML);
  ASSERT_EQ(gpus.size(), 2u) << note;
  EXPECT_EQ(gpus[0].index, 0);
  EXPECT_EQ(gpus[1].index, 1);
  EXPECT_EQ(gpus[0].name, "Fake H100 0");
  EXPECT_EQ(gpus[1].uuid, "GPU-fake-0001");
  EXPECT_EQ(gpus[0].mem_total_mb, 80 * 1024);
  EXPECT_EQ(gpus[1].mem_free_mb, 80 * 1024 - 2 * 1024);
  EXPECT_EQ(gpus[1].util_pct, 20);
  auto j = to_json(gpus[1]);
  EXPECT_EQ(j["uuid"], "GPU-fake-0001");
  EXPECT_EQ(j["mem_total_mb"], 81920);
}

TEST(Nvml, ListsComputeProcessesPerDevice) {
  auto nvml = Nvml::open(nullptr, ASSAY_FAKE_NVML);
  ASSERT_NE(nvml, nullptr);
  std::vector<GpuProcess> p;
  ::unsetenv("FAKE_NVML_PROCS_FILE");
  ASSERT_TRUE(nvml->processes(0, &p));
  EXPECT_TRUE(p.empty());
  assay::testing::TempDir dir("nvml");
  std::string file = dir.file("procs");
  {
    std::ofstream out(file);
    for (int i = 0; i < 100; ++i) out << "1 " << 1000 + i << " " << i << "\n";  // > the first buffer
    out << "0 42 2048\n";
  }
  ::setenv("FAKE_NVML_PROCS_FILE", file.c_str(), 1);
  ASSERT_TRUE(nvml->processes(0, &p));
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].pid, 42);
  EXPECT_EQ(p[0].used_mb, 2048);
  ASSERT_TRUE(nvml->processes(1, &p));
  ASSERT_EQ(p.size(), 100u);
  EXPECT_EQ(p[99].pid, 1099);
  EXPECT_FALSE(nvml->processes(7, &p));  // no such device
  ::unsetenv("FAKE_NVML_PROCS_FILE");
  std::remove(file.c_str());
}

TEST(Nvml, ThisMachine) {
  std::string note;
  auto gpus = discover_gpus(&note);
  std::string why;
  auto nvml = Nvml::open(&why);
  if (!nvml) {
    EXPECT_TRUE(gpus.empty()) << "no NVML here, yet discovery returned devices";
    EXPECT_FALSE(note.empty());
    GTEST_SKIP() << "no NVML driver on this machine (" << why << "); discovery returned 0 GPUs";
  }
  EXPECT_EQ(nvml->query().size(), gpus.size());
  for (const auto& g : gpus) {
    EXPECT_FALSE(g.uuid.empty());
    EXPECT_GT(g.mem_total_mb, 0);
    EXPECT_LE(g.mem_free_mb, g.mem_total_mb);
    std::vector<GpuProcess> p;
    EXPECT_TRUE(nvml->processes(g.index, &p)) << "device " << g.index;
  }
}

TEST(GpuOverride, CountsAndLists) {
  auto a = parse_gpu_override("2");
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(a->size(), 2u);
  EXPECT_EQ((*a)[1].index, 1);
  EXPECT_EQ((*a)[1].mem_total_mb, 81920);
  auto none = parse_gpu_override("0");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  auto b = parse_gpu_override("0:80GB, 3:24GiB,5:40960MB,6:512");
  ASSERT_TRUE(b.ok()) << b.status().message();
  ASSERT_EQ(b->size(), 4u);
  EXPECT_EQ((*b)[1].index, 3);
  EXPECT_EQ((*b)[1].mem_total_mb, 24576);
  EXPECT_EQ((*b)[2].mem_total_mb, 40960);
  EXPECT_EQ((*b)[3].mem_total_mb, 512);
  EXPECT_EQ((*b)[3].mem_free_mb, 512);
}

TEST(GpuOverride, ErrorsNameTheItem) {
  for (const char* bad : {"-1", "two", "0:80XB", "0:80GB,0:40GB", "0:", ":80GB", "0:0GB", "99:1GB"}) {
    auto r = parse_gpu_override(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_NE(r.status().message().find("--gpus"), std::string::npos) << bad;
    }
  }
  auto r = parse_gpu_override("0:80XB");
  EXPECT_NE(r.status().message().find("XB"), std::string::npos) << r.status().message();
}
