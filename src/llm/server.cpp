#include "llm/server.h"

#include <fmt/format.h>
#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>

#include "llm/http_connection.h"
#include "llm/http_listen.h"
#include "llm/openai_json.h"
#include "util/error.h"
#include "util/log.h"

namespace seqit::llm {
using nlohmann::json;

namespace {

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int status_for(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::invalid_request:
      return 400;
    case ErrorKind::authentication:
      return 401;
    case ErrorKind::not_found:
      return 404;
    case ErrorKind::rate_limited:
      return 429;
    case ErrorKind::timeout:
      return 504;
    case ErrorKind::cancelled:
      return 503;
    default:
      return 500;
  }
}

const char* type_for(int status) {
  switch (status) {
    case 400:
    case 404:
    case 413:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 429:
      return "rate_limit_error";
    default:
      return "server_error";
  }
}

// How often a handler waiting for the engine checks whether its client is still there.
constexpr auto kClientCheckInterval = std::chrono::milliseconds(50);

// Whether the client of the request this thread serves has gone (see http_connection.h); a 100
// Continue probe is allowed before any of the answer is written, to an HTTP/1.1 client.
bool client_gone(const httplib::Request& req) {
  ClientConnection* client = ClientConnection::current();
  return client && client->gone(/*may_probe=*/req.version == "HTTP/1.1");
}

void send_error(httplib::Response& res, int status, const std::string& message,
                const std::string& code = {}, const std::string& param = {}) {
  res.status = status;
  res.set_content(openai_error_body(message, type_for(status), code, param).dump(),
                  "application/json");
}

// Everything a streaming answer needs, shared by the backend's callbacks (producer) and httplib's
// content provider (consumer) until both are done with it.
struct StreamState {
  std::mutex mutex;
  std::condition_variable changed;
  struct Delta {
    int choice;
    std::string text;
    std::vector<GeneratedToken> tokens;  // with logprobs: the tokens since the previous delta
  };
  std::deque<Delta> deltas;  // not yet sent
  std::optional<Result<Response>> done;
  std::shared_ptr<std::atomic<bool>> cancelled = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace

struct OpenAiServer::Impl {
  Backend& backend;
  ServerOptions options;
  ConnectionServer http;
  std::unique_ptr<HttpListener> listener;
  std::mutex stop_mutex;
  std::condition_variable finished_cv;
  bool started = false, stopped = false, finished = false;
  std::atomic<int64_t> next_id{1};
  std::atomic<int64_t> requests{0}, succeeded{0}, failed{0}, streamed{0}, cancelled{0};
  // Requests whose backend work has not finished; shared with the backend's callbacks, which may
  // come after the handler (and even the server) is gone.
  std::shared_ptr<std::atomic<int64_t>> running = std::make_shared<std::atomic<int64_t>>(0);

  Impl(Backend& b, ServerOptions o) : backend(b), options(std::move(o)) {
    if (options.model_names.empty()) options.model_names.push_back(backend.default_model());
  }

  bool authorized(const httplib::Request& req, httplib::Response& res) {
    if (options.api_key.empty()) return true;
    const std::string header = req.get_header_value("Authorization");
    if (header.empty()) {
      send_error(
          res, 401,
          "You didn't provide an API key. Send it in the Authorization header as 'Bearer <key>'.",
          "missing_api_key");
      return false;
    }
    if (header != "Bearer " + options.api_key) {
      send_error(res, 401, "Incorrect API key provided.", "invalid_api_key");
      return false;
    }
    return true;
  }

  void fail(httplib::Response& res, int status, const std::string& message,
            const std::string& code = {}, const std::string& param = {}) {
    failed.fetch_add(1);
    send_error(res, status, message, code, param);
  }

  // The counters of stats() in Prometheus' text format (what vLLM and llama.cpp serve at /metrics).
  std::string metrics() const {
    std::string out;
    auto add = [&out](const char* name, const char* type, const char* help, int64_t value) {
      out += fmt::format("# HELP seqit_{0} {1}\n# TYPE seqit_{0} {2}\nseqit_{0} {3}\n", name, help,
                         type, value);
    };
    add("requests_total", "counter", "API requests received.", requests.load());
    add("requests_succeeded_total", "counter", "Requests answered 200.", succeeded.load());
    add("requests_failed_total", "counter", "Requests answered with an error status.",
        failed.load());
    add("requests_streamed_total", "counter", "Succeeded requests answered as server-sent events.",
        streamed.load());
    add("requests_cancelled_total", "counter",
        "Requests abandoned by a client that went away before the answer was done.",
        cancelled.load());
    add("requests_running", "gauge", "Requests whose backend work has not finished.",
        running->load());
    return out;
  }

  void models(const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    json data = json::array();
    for (const auto& name : options.model_names)
      data.push_back({{"id", name}, {"object", "model"}, {"created", 0}, {"owned_by", "seqit"}});
    res.set_content(json{{"object", "list"}, {"data", std::move(data)}}.dump(), "application/json");
  }

  void generate(RequestKind endpoint, const httplib::Request& req, httplib::Response& res) {
    requests.fetch_add(1);
    if (!authorized(req, res)) {
      failed.fetch_add(1);
      return;
    }
    Result<ServerRequest> parsed = parse_openai_request_body(endpoint, req.body);
    if (!parsed.ok()) {
      fail(res, 400, parsed.error().message);
      return;
    }
    ServerRequest request = std::move(parsed).value();
    std::string model = request.model.empty() ? options.model_names.front() : request.model;
    if (std::find(options.model_names.begin(), options.model_names.end(), model) ==
        options.model_names.end()) {
      fail(res, 404,
           fmt::format("The model '{}' does not exist (this server has: {})", model,
                       fmt::join(options.model_names, ", ")),
           "model_not_found", "model");
      return;
    }
    for (Request& r : request.requests) r.model.clear();  // the backend serves one model
    const std::string id = fmt::format("{}-{}", endpoint == RequestKind::chat ? "chatcmpl" : "cmpl",
                                       next_id.fetch_add(1));
    if (request.stream)
      stream(request, id, model, req, res);
    else
      answer(request, id, model, req, res);
  }

  // A request abandoned by its client: the status is for the log, the client reads nothing.
  void abandon(httplib::Response& res) {
    cancelled.fetch_add(1);
    send_error(res, 499, "The client closed the connection before the answer was ready.");
  }

  void answer(ServerRequest& request, const std::string& id, const std::string& model,
              const httplib::Request& req, httplib::Response& res) {
    // One flag for all of the request's prompts: a client that goes away abandons them all, and
    // the engine drops their sequences at its next step.
    auto abandoned = std::make_shared<std::atomic<bool>>(false);
    std::vector<std::future<Result<Response>>> futures;
    running->fetch_add(1);
    for (Request& r : request.requests) {
      r.cancelled = abandoned;
      futures.push_back(backend.submit_async(r));
    }
    std::vector<Response> responses;
    std::optional<LlmError> error;
    for (auto& f : futures) {
      // Every future is waited for, even after an error or a cancellation.
      while (f.wait_for(kClientCheckInterval) == std::future_status::timeout)
        if (!abandoned->load() && client_gone(req)) abandoned->store(true);
      Result<Response> r = f.get();
      if (r.ok())
        responses.push_back(std::move(r).value());
      else if (!error)
        error = r.error();
    }
    running->fetch_sub(1);
    if (abandoned->load()) {
      abandon(res);
      return;
    }
    if (error) {
      fail(res, status_for(error->kind), error->message);
      return;
    }
    const int64_t created = unix_now();
    json out = request.endpoint == RequestKind::chat
                   ? to_openai_chat_response(responses.front(), id, created, model)
                   : to_openai_completion_response(request, responses, id, created, model);
    res.set_content(out.dump(), "application/json");
    succeeded.fetch_add(1);
  }

  void stream(ServerRequest& request, const std::string& id, const std::string& model,
              const httplib::Request& req, httplib::Response& res) {
    auto state = std::make_shared<StreamState>();
    Request r = request.requests.front();
    r.cancelled = state->cancelled;
    // With tools the reply is read as a whole (a call is not text): the choice comes in one delta
    // at the end, its calls in `tool_calls`.
    const bool whole = !r.tools.empty() && r.tool_choice.mode != ToolChoice::Mode::none;
    if (!whole)
      r.on_delta = [state](int choice, std::string_view text,
                           const std::vector<GeneratedToken>& tokens) {
        {
          std::lock_guard lock(state->mutex);
          state->deltas.push_back({choice, std::string(text), tokens});
        }
        state->changed.notify_all();
      };
    running->fetch_add(1);
    backend.submit(std::move(r), [running = running, state](Result<Response> result) {
      {
        std::lock_guard lock(state->mutex);
        state->done = std::move(result);
      }
      state->changed.notify_all();
      running->fetch_sub(1);
    });
    // Wait for the first piece of text or the end, so that a request the backend refuses (a prompt
    // longer than the context, say) still gets a proper status and JSON error instead of a stream.
    // Until then nothing is written, so the client is watched as a non-streaming one is.
    {
      std::unique_lock lock(state->mutex);
      while (!state->changed.wait_for(lock, kClientCheckInterval, [&] {
        return !state->deltas.empty() || state->done.has_value();
      })) {
        if (client_gone(req)) {
          state->cancelled->store(true);
          abandon(res);
          return;
        }
      }
      if (state->deltas.empty() && !state->done->ok()) {
        fail(res, status_for(state->done->error().kind), state->done->error().message);
        return;
      }
    }
    const bool chat = request.endpoint == RequestKind::chat;
    const int n = request.requests.front().params.n;
    const int64_t created = unix_now();
    const bool include_usage = request.include_usage_in_stream;
    std::string echo_prefix = request.echo ? request.requests.front().prompt : std::string();
    auto chunk = [=](json choices) {
      json c = {{"id", id},
                {"object", chat ? "chat.completion.chunk" : "text_completion"},
                {"created", created},
                {"model", model},
                {"choices", std::move(choices)}};
      if (include_usage) c["usage"] = nullptr;
      return "data: " + c.dump() + "\n\n";
    };
    auto delta_choice = [chat](int index, const std::string& text, bool first,
                               const std::vector<GeneratedToken>& tokens = {}) {
      if (chat) {
        json delta = {{"content", text}};
        if (first) delta["role"] = "assistant";
        return json{{"index", index},
                    {"delta", std::move(delta)},
                    {"logprobs", chat_logprobs_json(tokens)},
                    {"finish_reason", nullptr}};
      }
      return json{
          {"index", index}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
    };
    auto started = std::make_shared<std::vector<bool>>(n, false);
    // Tokens whose text is still held back (a delta with tokens and no text): they ride on the
    // choice's next text delta, or on its last chunk.
    auto carried = std::make_shared<std::vector<std::vector<GeneratedToken>>>(n);
    const std::vector<GeneratedToken> no_tokens;
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [=, this](size_t, httplib::DataSink& sink) mutable {
          std::deque<StreamState::Delta> pending;
          std::optional<Result<Response>> finished;
          {
            std::unique_lock lock(state->mutex);
            state->changed.wait(lock,
                                [&] { return !state->deltas.empty() || state->done.has_value(); });
            pending.swap(state->deltas);
            if (state->done) finished = *state->done;
          }
          std::string out;
          for (auto& [choice, text, tokens] : pending) {
            if (choice < 0 || choice >= n) continue;
            auto& held = (*carried)[static_cast<size_t>(choice)];
            held.insert(held.end(), tokens.begin(), tokens.end());
            if (text.empty()) continue;
            const bool first = !(*started)[choice];
            (*started)[choice] = true;
            if (first && !echo_prefix.empty()) text = echo_prefix + text;
            out += chunk(json::array({delta_choice(choice, text, first, chat ? held : no_tokens)}));
            held.clear();
          }
          if (finished) {
            if (finished->ok()) {
              const Response& response = finished->value();
              for (int i = 0; i < n; ++i) {
                if (whole && i < static_cast<int>(response.choices.size())) {
                  const Choice& c = response.choices[i];
                  json delta = {{"role", "assistant"}, {"content", c.text}};
                  if (!c.tool_calls.empty()) {
                    if (c.text.empty()) delta["content"] = nullptr;
                    delta["tool_calls"] = tool_calls_json(c.tool_calls, /*with_index=*/true);
                  }
                  out += chunk(json::array({json{{"index", i},
                                                 {"delta", std::move(delta)},
                                                 {"logprobs", nullptr},
                                                 {"finish_reason", nullptr}}}));
                  (*started)[i] = true;
                }
                // A choice that produced no text still opens (chat: role) before it finishes.
                if (!(*started)[i] && (chat || !echo_prefix.empty()))
                  out += chunk(json::array({delta_choice(i, echo_prefix, true)}));
                const std::string reason = i < static_cast<int>(response.choices.size())
                                               ? response.choices[i].finish_reason
                                               : "stop";
                // Chat logprobs came with the text deltas; the tokens still held (a stop
                // string's, say) ride on the last chunk, and a choice answered whole (tools)
                // brings its own: clients that accumulate a stream concatenate the chunks'
                // logprobs.content arrays and get the non-streamed list.
                json logprobs = nullptr;
                if (chat) {
                  std::vector<GeneratedToken>& held = (*carried)[static_cast<size_t>(i)];
                  if (whole && i < static_cast<int>(response.choices.size()))
                    held = response.choices[i].logprobs;
                  logprobs = chat_logprobs_json(held);
                  held.clear();
                }
                json c = chat ? json{{"index", i},
                                     {"delta", json::object()},
                                     {"logprobs", std::move(logprobs)},
                                     {"finish_reason", reason}}
                              : json{{"index", i},
                                     {"text", ""},
                                     {"logprobs", nullptr},
                                     {"finish_reason", reason}};
                out += chunk(json::array({std::move(c)}));
              }
              if (include_usage) {
                json u = {{"id", id},
                          {"object", chat ? "chat.completion.chunk" : "text_completion"},
                          {"created", created},
                          {"model", model},
                          {"choices", json::array()},
                          {"usage",
                           {{"prompt_tokens", response.usage.prompt_tokens},
                            {"completion_tokens", response.usage.completion_tokens},
                            {"total_tokens", response.usage.total()}}}};
                out += "data: " + u.dump() + "\n\n";
              }
              succeeded.fetch_add(1);
              streamed.fetch_add(1);
            } else {
              // The status line is long gone: the error travels as an event, as OpenAI does.
              const LlmError& e = finished->error();
              out += "data: " + openai_error_body(e.message, type_for(status_for(e.kind))).dump() +
                     "\n\n";
              failed.fetch_add(1);
            }
            out += "data: [DONE]\n\n";
          }
          // A write that fails means the client went away: the releaser below stops the work.
          if (!out.empty() && !sink.write(out.data(), out.size())) return false;
          if (finished) sink.done();
          return true;
        },
        [this, state](bool success) {
          // The answer could not be written to the end: the client has gone.
          if (!success && !state->cancelled->exchange(true)) cancelled.fetch_add(1);
        });
  }
};

OpenAiServer::OpenAiServer(Backend& backend, ServerOptions options)
    : impl_(std::make_unique<Impl>(backend, std::move(options))) {
  Impl& im = *impl_;
  im.listener =
      std::make_unique<HttpListener>(im.http, static_cast<size_t>(std::max(4, im.options.threads)));
  im.http.set_keep_alive_timeout(im.options.keep_alive_timeout_s);
  // httplib writes headers and body separately; without this, Nagle + delayed ACK add ~40 ms.
  im.http.set_tcp_nodelay(true);
  // Clients keep connections open across requests; httplib's default closes one every 5 requests.
  im.http.set_keep_alive_max_count(100000);
  im.http.set_payload_max_length(im.options.max_body_bytes);
  im.http.set_read_timeout(60, 0);
  im.http.set_write_timeout(60, 0);
  im.http.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  im.http.Get("/metrics", [&im](const httplib::Request&, httplib::Response& res) {
    res.set_content(im.metrics(), "text/plain; version=0.0.4");
  });
  im.http.Get("/v1/models",
              [&im](const httplib::Request& req, httplib::Response& res) { im.models(req, res); });
  im.http.Post("/v1/chat/completions", [&im](const httplib::Request& req, httplib::Response& res) {
    im.generate(RequestKind::chat, req, res);
  });
  im.http.Post("/v1/completions", [&im](const httplib::Request& req, httplib::Response& res) {
    im.generate(RequestKind::completion, req, res);
  });
  im.http.set_error_handler([&im](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;  // a handler already wrote an OpenAI error
    if (res.status == 413) {
      const std::string sent = req.has_header("Content-Length")
                                   ? req.get_header_value("Content-Length") + " bytes"
                                   : std::string("a chunked body over the limit");
      send_error(res, 413,
                 fmt::format("The request body is too large ({}); this server accepts at most {} "
                             "bytes (--max-body-bytes)",
                             sent, im.options.max_body_bytes),
                 "request_too_large");
    } else if (res.status == 404) {
      send_error(res, 404, fmt::format("Unknown path: {} {}", req.method, req.path));
    } else {
      send_error(res, res.status, fmt::format("HTTP {}", res.status));
    }
  });
  im.http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "internal error";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        log::error("serve: {}", what);
        send_error(res, 500, what);
      });
}

OpenAiServer::~OpenAiServer() {
  stop();
  wait();
}

void OpenAiServer::start() {
  Impl& im = *impl_;
  std::lock_guard lock(im.stop_mutex);
  if (im.started) return;
  port_ = im.listener->start(im.options.host, im.options.port);
  im.started = true;
}

void OpenAiServer::wait() {
  Impl& im = *impl_;
  std::unique_lock lock(im.stop_mutex);
  im.finished_cv.wait(lock, [&im] { return !im.started || im.finished; });
}

void OpenAiServer::stop() {
  Impl& im = *impl_;
  {
    std::lock_guard lock(im.stop_mutex);
    if (!im.started || im.stopped) return;
    im.stopped = true;
  }
  // Requests taken before now are answered; later ones get 503 or a refused connection.
  im.listener->stop();
  {
    std::lock_guard lock(im.stop_mutex);
    im.finished = true;
  }
  im.finished_cv.notify_all();
}

ServerStats OpenAiServer::stats() const {
  return {impl_->requests.load(), impl_->succeeded.load(), impl_->failed.load(),
          impl_->streamed.load(), impl_->cancelled.load(), impl_->running->load()};
}

}  // namespace seqit::llm
