// A stand-in coordinator for worker tests: a real HTTP/1.1 server on
// 127.0.0.1 (one request per connection) whose replies a test chooses per
// path, including replies no real coordinator would send.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace worker_test {

struct FakeReply {
  int status = 200;
  std::string body;
};

class FakeCoordinator {
 public:
  // reply(path, body) -> what to answer; path excludes the query string.
  using Handler = std::function<FakeReply(const std::string& path, const std::string& body)>;

  explicit FakeCoordinator(Handler h) : handler_(std::move(h)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd_, 64);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeCoordinator() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int hits(const std::string& path) {
    std::lock_guard lock(mu_);
    return hits_[path];
  }
  // Request bodies received on `path`, in order.
  std::vector<std::string> bodies(const std::string& path) {
    std::lock_guard lock(mu_);
    return bodies_[path];
  }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      handle(c);
      ::close(c);
    }
  }
  void handle(int c) {
    std::string in;
    char buf[65536];
    size_t head_end = std::string::npos, want = 0;
    while (true) {
      pollfd p{c, POLLIN, 0};
      if (::poll(&p, 1, 2000) <= 0) return;
      ssize_t n = ::read(c, buf, sizeof buf);
      if (n <= 0) return;
      in.append(buf, static_cast<size_t>(n));
      if (head_end == std::string::npos) {
        head_end = in.find("\r\n\r\n");
        if (head_end == std::string::npos) continue;
        auto cl = in.find("Content-Length:");
        if (cl == std::string::npos) cl = in.find("content-length:");
        want = cl == std::string::npos || cl > head_end ? 0 : std::stoul(in.substr(cl + 15));
      }
      if (in.size() >= head_end + 4 + want) break;
    }
    size_t sp1 = in.find(' '), sp2 = in.find(' ', sp1 + 1);
    std::string target = in.substr(sp1 + 1, sp2 - sp1 - 1);
    std::string path = target.substr(0, target.find('?'));
    {
      std::lock_guard lock(mu_);
      ++hits_[path];
      bodies_[path].push_back(in.substr(head_end + 4, want));
    }
    FakeReply r = handler_(path, in.substr(head_end + 4, want));
    std::string out = "HTTP/1.1 " + std::to_string(r.status) + " X\r\nContent-Type: application/json\r\n" +
                      "Content-Length: " + std::to_string(r.body.size()) +
                      "\r\nConnection: close\r\n\r\n" + r.body;
    size_t off = 0;
    while (off < out.size()) {
      ssize_t n = ::write(c, out.data() + off, out.size() - off);
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  }

  Handler handler_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::map<std::string, int> hits_;
  std::map<std::string, std::vector<std::string>> bodies_;
};

}  // namespace worker_test
