// Helpers shared by the train tests.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "testing.h"
#include "util/error.h"

namespace seqit::train {

// The error text of `f()`, which must throw seqit::Error (a test failure otherwise).
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

// `count` short Alpaca records (output < 200 characters, instruction < 120) in DIR/data.json.
inline std::filesystem::path short_alpaca(const seqit::testing::TempDir& dir, size_t count) {
  using nlohmann::json;
  const json all = json::parse(
      seqit::testing::slurp(seqit::testing::shared_data("train/alpaca/alpaca_5000.json")));
  json picked = json::array();
  for (const json& r : all) {
    if (r["output"].get<std::string>().size() < 200 &&
        r["instruction"].get<std::string>().size() < 120)
      picked.push_back(r);
    if (picked.size() == count) break;
  }
  const std::filesystem::path path = dir / "data.json";
  seqit::testing::spit(path, picked.dump());
  return path;
}

}  // namespace seqit::train
