#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "assay/coordinator.h"

namespace assay::coordinator {

namespace {

Result<std::string> random_hex(size_t bytes) {
  int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IoError(std::string("/dev/urandom: ") + std::strerror(errno));
  std::string raw(bytes, '\0');
  size_t got = 0;
  while (got < bytes) {
    ssize_t n = ::read(fd, raw.data() + got, bytes - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      return Status::IoError("/dev/urandom: short read");
    }
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

Status write_private(const std::string& path, const std::string& text, bool force) {
  int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (force ? O_TRUNC : O_EXCL);
  int fd = ::open(path.c_str(), flags, 0600);
  if (fd < 0) {
    if (errno == EEXIST)
      return Status::AlreadyExists(path + " already exists (use --force to replace the tokens)");
    return Status::IoError(path + ": " + std::strerror(errno));
  }
  // An existing file keeps its old mode under O_TRUNC: tighten it.
  ::fchmod(fd, 0600);
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      return Status::IoError(path + ": write failed: " + std::strerror(errno));
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0)
    return Status::IoError(path + ": " + std::strerror(errno));
  return Status::Ok();
}

}  // namespace

Status init_tokens(const std::string& dir, bool force) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IoError(dir + ": cannot create directory: " + ec.message());
  for (const char* name : {"user.token", "worker.token"}) {
    std::string path = dir + "/" + name;
    if (!force && std::filesystem::exists(path, ec))
      return Status::AlreadyExists(path + " already exists (use --force to replace the tokens)");
  }
  for (const char* name : {"user.token", "worker.token"}) {
    ASSAY_ASSIGN_OR_RETURN(auto tok, random_hex(32));
    ASSAY_RETURN_IF_ERROR(write_private(dir + "/" + name, tok + "\n", force));
  }
  return Status::Ok();
}

Result<std::string> read_token_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("token file " + path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  size_t b = s.find_first_not_of(" \t\r\n");
  size_t e = s.find_last_not_of(" \t\r\n");
  if (b == std::string::npos) return Status::Invalid("token file " + path + " is empty");
  return s.substr(b, e - b + 1);
}

bool tokens_equal(const std::string& a, const std::string& b) {
  // Accumulate differences over every byte so the time depends only on sizes.
  size_t n = std::max(a.size(), b.size());
  unsigned char diff = static_cast<unsigned char>(a.size() != b.size());
  for (size_t i = 0; i < n; ++i) {
    unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

}  // namespace assay::coordinator
