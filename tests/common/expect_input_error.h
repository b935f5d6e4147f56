// Test helper: the message of the InputError that f() throws (failing the test if it
// throws none), so a test can check that bad input names what is wrong.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "sparrow/core/error.h"

namespace sparrow::test {

template <typename F>
std::string input_error(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected InputError";
  return "";
}

}  // namespace sparrow::test
