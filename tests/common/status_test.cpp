#include <gtest/gtest.h>

#include "assay/status.h"

namespace {

assay::Result<int> half(int x) {
  if (x % 2) return assay::Status::Invalid("half: expected an even number, got " + std::to_string(x));
  return x / 2;
}

assay::Result<int> quarter(int x) {
  ASSAY_ASSIGN_OR_RETURN(int h, half(x));
  return half(h);
}

TEST(Status, CodesMessagesAndContext) {
  EXPECT_TRUE(assay::Status::Ok().ok());
  auto s = assay::Status::NotFound("run 42: no such run");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), assay::Code::kNotFound);
  EXPECT_EQ(s.to_string(), "not_found: run 42: no such run");
  EXPECT_EQ(s.with_context("show").message(), "show: run 42: no such run");
  EXPECT_TRUE(assay::Status::Ok().with_context("x").ok());
}

TEST(Result, ValueOrErrorPropagates) {
  EXPECT_EQ(*quarter(8), 2);
  auto bad = quarter(6);  // 6 -> 3 -> odd
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "half: expected an even number, got 3");
  EXPECT_TRUE(quarter(4).status().ok());
}

}  // namespace
