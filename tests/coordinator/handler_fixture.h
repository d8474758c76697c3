// The coordinator's request handler without sockets: a fresh database in a
// temporary directory, a fake clock, and helpers that send requests with the
// user or worker token.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "assay/coordinator.h"

namespace assay::coordinator::test_util {

inline const char* kUser = "u0123456789abcdef";
inline const char* kWorker = "w0123456789abcdef";

class HandlerTest : public ::testing::Test {
 protected:
  using Json = nlohmann::json;

  void SetUp() override {
    char tmpl[] = "/tmp/assay_coord_handler_XXXXXX";
    dir_ = mkdtemp(tmpl);
    open();
  }
  void TearDown() override {
    coord_.reset();
    std::filesystem::remove_all(dir_);
  }
  // Per-suite options on top of the common ones.
  virtual void configure(Options& o) {}
  // (Re)opens the coordinator on the same database, as after a restart.
  void open() {
    coord_.reset();
    Options o;
    o.db_path = dir_ + "/results.db";
    o.user_token = kUser;
    o.worker_token = kWorker;
    o.lease_ttl_s = 30;
    o.clock = [this] { return now_; };
    configure(o);
    auto c = Coordinator::open(o);
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    coord_ = std::move(c).value();
  }
  Response raw(const std::string& method, const std::string& target, const std::string& body,
               const char* token) {
    Request r;
    r.method = method;
    r.target = target;
    r.body = body;
    if (token) r.authorization = std::string("Bearer ") + token;
    r.wait_expired = true;  // no long-polls in these tests
    return coord_->handle_request(r);
  }
  // Expects `want_status`; every error must have the {"error": {code, message}} shape.
  Json call(const std::string& method, const std::string& target, const Json& body,
            const char* token, int want_status) {
    Response r = raw(method, target, body.is_null() ? "" : body.dump(), token);
    EXPECT_EQ(r.status, want_status) << method << " " << target << " -> " << r.body;
    Json j = Json::parse(r.body, nullptr, false);
    if (r.status >= 400) {
      EXPECT_TRUE(j.is_object() && j.contains("error") && j["error"]["code"].is_string() &&
                  j["error"]["message"].is_string())
          << r.body;
    }
    return j;
  }
  Json user(const std::string& m, const std::string& t, const Json& b = nullptr, int st = 200) {
    return call(m, t, b, kUser, st);
  }

  std::string dir_;
  double now_ = 1'700'000'000;
  std::unique_ptr<Coordinator> coord_;
};

}  // namespace assay::coordinator::test_util
