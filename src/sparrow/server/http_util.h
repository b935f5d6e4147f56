// HTTP plumbing shared by the routes: errors in OpenAI's / SGLang's JSON shape, JSON bodies,
// ids and clocks.
#pragma once

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <string>

#include "sparrow/core/error.h"

namespace sparrow::server {

using nlohmann::json;

// A failed request: HTTP status, message, OpenAI error type and (optionally) the field at fault.
class HttpError : public InputError {
 public:
  HttpError(int status, std::string message, std::string param = {})
      : InputError(std::move(message)), status_(status), param_(std::move(param)) {}
  int status() const { return status_; }
  const std::string& param() const { return param_; }

 private:
  int status_;
  std::string param_;
};

// Bad input (400) naming the field.
class FieldError : public HttpError {
 public:
  FieldError(std::string param, std::string message) : HttpError(400, std::move(message), std::move(param)) {}
};

// OpenAI's error type for a status: invalid_request_error, authentication_error, ...
const char* error_type(int status);
// {"error": {"message", "type", "param", "code"}}; both route families use this shape.
json error_json(int status, const std::string& message, const std::string& param = {});
void send_error(httplib::Response& res, int status, const std::string& message, const std::string& param = {});
void send_json(httplib::Response& res, const json& body, int status = 200);
// Serializes without throwing on invalid UTF-8 (replaced by U+FFFD).
std::string dump(const json& j);

// Parses a request body that must be a JSON object (HttpError 400 otherwise).
json parse_body(const httplib::Request& req);

// Runs `fn`, turning exceptions into error responses: HttpError -> its status,
// InputError -> 400, anything else -> 500.
template <typename Fn>
void guarded(httplib::Response& res, Fn&& fn);

std::string random_id(size_t hex_chars = 32);
int64_t unix_time();
double now_s();  // steady clock, seconds

}  // namespace sparrow::server

#include "sparrow/server/http_util_inl.h"
