// `assay serve` under load: a small model trained for a few steps is saved,
// served by the real `assay serve` on 127.0.0.1, and hit with completions
// (greedy, 16 new tokens) first by one client at a time, then by 8 clients
// at once. Prints requests/s and latency p50/p99 for each, with the machine.
// Usage: bench_serve [requests per client, default 16]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "assay/engine.h"

namespace fs = std::filesystem;
namespace en = assay::engine;

namespace {

// One POST on a fresh connection; true on a 200.
bool post(int port, const std::string& body) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    if (fd >= 0) close(fd);
    return false;
  }
  const std::string req = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                          "Content-Type: application/json\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body;
  if (write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    close(fd);
    return false;
  }
  std::string resp;
  char buf[8192];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) resp.append(buf, static_cast<size_t>(n));
  close(fd);
  return resp.compare(0, 12, "HTTP/1.1 200") == 0;
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

// Runs `clients` threads, each sending `per_client` requests one after another.
void load(int port, int clients, int per_client, const char* label) {
  std::vector<double> lat;
  std::vector<std::vector<double>> per(clients);
  int failed = 0;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> ts;
  std::vector<int> fails(clients, 0);
  for (int c = 0; c < clients; ++c)
    ts.emplace_back([&, c] {
      for (int r = 0; r < per_client; ++r) {
        const std::string body = "{\"prompt\": \"Question " + std::to_string(c * 1000 + r) +
                                 ": the cat sat on\", \"max_tokens\": 16, \"temperature\": 0}";
        const auto s = std::chrono::steady_clock::now();
        if (!post(port, body)) ++fails[c];
        per[c].push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s).count());
      }
    });
  for (auto& t : ts) t.join();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (int c = 0; c < clients; ++c) {
    lat.insert(lat.end(), per[c].begin(), per[c].end());
    failed += fails[c];
  }
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double q) { return lat[std::min(lat.size() - 1, static_cast<size_t>(q * lat.size()))]; };
  std::printf("%-26s %4zu requests  %7.1f req/s  p50 %7.1f ms  p99 %7.1f ms  failed %d\n", label,
              lat.size(), lat.size() / wall, pct(0.50), pct(0.99), failed);
}

}  // namespace

int main(int argc, char** argv) {
  const int per_client = argc > 1 ? std::max(1, std::atoi(argv[1])) : 16;
  const fs::path dir = fs::temp_directory_path() / ("bench-serve-" + std::to_string(getpid()));
  fs::create_directories(dir);
  // A small GPT (byte vocabulary) trained 40 steps on repeated text.
  en::GPTConfig cfg;
  cfg.vocab_size = 257;
  cfg.n_positions = 256;
  cfg.n_layer = 4;
  cfg.n_head = 4;
  cfg.n_embd = 128;
  auto model = en::GPT::init_random(cfg, 1, en::Mode::kTrain);
  if (!model.ok()) return std::fprintf(stderr, "%s\n", model.status().message().c_str()), 1;
  auto tok = en::make_byte_tokenizer();
  tok->set_add_bos_token(true);
  {
    en::AdamW opt(en::AdamWConfig{}, *model);
    std::vector<int32_t> ids{tok->bos_id()};
    for (int i = 0; i < 8; ++i) {
      auto t = tok->encode("Question: the cat sat on the mat. Answer: yes. ");
      ids.insert(ids.end(), t.begin(), t.end());
    }
    ids.resize(129);
    const int T = 128, V = cfg.vocab_size;
    std::vector<float> d(static_cast<size_t>(T) * V);
    for (int step = 0; step < 40; ++step) {
      model->zero_grad();
      auto logits = model->forward(ids.data(), 1, T);
      (void)en::lm_cross_entropy(logits->data(), ids.data() + 1, T, V, d.data());
      (void)model->backward(d.data());
      (void)opt.step(*model, 1e-3f);
    }
  }
  const std::string ckpt = (dir / "final").string();
  if (auto st = en::save_checkpoint(ckpt, *model, *tok, {}); !st.ok())
    return std::fprintf(stderr, "%s\n", st.status().message().c_str()), 1;
  const std::string port_file = (dir / "port").string();
  pid_t pid = fork();
  if (pid == 0) {
    FILE* f = std::freopen((dir / "serve.log").c_str(), "w", stdout);
    (void)f;
    execl(ASSAY_EXE, ASSAY_EXE, "serve", ckpt.c_str(), "--port", "0", "--port-file",
          port_file.c_str(), "--model-name", "bench", (char*)nullptr);
    _exit(127);
  }
  int port = 0;
  for (int i = 0; i < 400 && port == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::ifstream pf(port_file);
    pf >> port;
  }
  if (port == 0) return std::fprintf(stderr, "assay serve did not start\n"), 1;
  std::printf("machine: %s, %u hardware threads (engine threads: assay serve's default)\n",
              cpu_model().c_str(), std::thread::hardware_concurrency());
  std::printf("model: GPT %d layers, %d heads, n_embd %d, n_positions %d, byte vocabulary; "
              "requests: ~30-token prompt, 16 new tokens, greedy\n",
              cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.n_positions);
  post(port, "{\"prompt\": \"warm up\", \"max_tokens\": 4}");
  load(port, 1, per_client * 2, "1 client, sequential");
  load(port, 8, per_client, "8 concurrent clients");
  kill(pid, SIGTERM);
  int st = 0;
  waitpid(pid, &st, 0);
  std::error_code ec;
  fs::remove_all(dir, ec);
  return 0;
}
