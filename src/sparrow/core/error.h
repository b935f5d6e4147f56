// Errors and checks. Bad input (a request, a file, a flag) throws InputError, which the
// request boundary turns into a 400 / a clear CLI message; the process keeps serving.
// Broken invariants throw Error. Nothing here aborts.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace sparrow {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The caller's input is wrong (argument, request field, checkpoint file).
class InputError : public Error {
 public:
  using Error::Error;
};

template <typename... Args>
[[noreturn]] void throw_error(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

template <typename... Args>
[[noreturn]] void throw_input_error(fmt::format_string<Args...> f, Args&&... args) {
  throw InputError(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace sparrow

// SPARROW_CHECK(cond, "fmt {}", x): internal invariant; throws sparrow::Error with location.
#define SPARROW_CHECK(cond, ...)                                                           \
  do {                                                                                     \
    if (!(cond)) [[unlikely]]                                                              \
      throw ::sparrow::Error(fmt::format("{}:{}: check failed: {}: {}", __FILE__, __LINE__, \
                                         #cond, fmt::format(__VA_ARGS__)));                \
  } while (0)

// SPARROW_REQUIRE(cond, "fmt {}", x): validates caller input; throws sparrow::InputError.
#define SPARROW_REQUIRE(cond, ...)                                        \
  do {                                                                    \
    if (!(cond)) [[unlikely]]                                             \
      throw ::sparrow::InputError(fmt::format(__VA_ARGS__));              \
  } while (0)
