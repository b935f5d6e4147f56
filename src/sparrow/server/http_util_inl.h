#pragma once

#include "sparrow/core/log.h"

namespace sparrow::server {

template <typename Fn>
void guarded(httplib::Response& res, Fn&& fn) {
  try {
    fn();
  } catch (const HttpError& e) {
    send_error(res, e.status(), e.what(), e.param());
  } catch (const InputError& e) {
    send_error(res, 400, e.what());
  } catch (const std::exception& e) {
    log(LogLevel::kError, "request failed: {}", e.what());
    send_error(res, 500, std::string("internal error: ") + e.what());
  }
}

}  // namespace sparrow::server
