// Helpers shared by the train tests.
#pragma once

#include <gtest/gtest.h>

#include <string>

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

}  // namespace seqit::train
