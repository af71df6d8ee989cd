#include "llm/http_backend.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <ctime>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "llm/openai_json.h"
#include "util/error.h"
#include "util/log.h"

namespace seqit::llm {
using nlohmann::json;

namespace {

constexpr size_t kMaxResponseBytes = size_t{256} << 20;  // a runaway body is cut here and fails
constexpr double kMaxUrlCooldownS = 60.0;

// libcurl's global state is set up once per process, before any thread uses it.
void ensure_curl_global() {
  static const bool once = [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
      throw Error("libcurl could not be initialised");
    return true;
  }();
  (void)once;
}

std::string normalise_base_url(std::string url) {
  if (!url.starts_with("http://") && !url.starts_with("https://"))
    throw Error(fmt::format("base URL '{}' must start with http:// or https://", url));
  while (url.ends_with("/")) url.pop_back();
  const size_t host_start = url.find("//") + 2;
  if (url.find('/', host_start) == std::string::npos)
    url += "/v1";  // "http://host:port" -> ".../v1"
  return url;
}

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

Clock::time_point after(Clock::time_point t, double seconds) {
  return t + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

// One submitted request, from submit() until its callback.
struct Job {
  Request request;
  ResponseCallback done;
  std::string model;
  std::string body;  // the JSON sent, built once
  std::string path;  // "/chat/completions" or "/completions"
  double estimated_tokens = 0;
  int attempts = 0;
  Clock::time_point not_before;
  LlmError last_error;
  int last_url = -1;
};

// One attempt on the wire.
struct Transfer {
  std::unique_ptr<Job> job;
  CURL* easy = nullptr;
  int url = -1;
  std::string response;
  bool overflow = false;
  char error_text[CURL_ERROR_SIZE] = {};
};

size_t write_body(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  if (t->response.size() + n > kMaxResponseBytes) {
    t->overflow = true;
    return 0;  // makes curl fail the transfer with CURLE_WRITE_ERROR
  }
  t->response.append(data, n);
  return n;
}

struct UrlState {
  std::string base;
  int in_flight = 0;
  Clock::time_point dead_until{};  // skipped until then
  double cooldown_s = 0;           // the next cooldown if it fails again
  int64_t attempts = 0;
};

}  // namespace

struct HttpBackend::Impl {
  HttpBackendOptions options;
  std::vector<UrlState> urls;
  std::string api_key;
  curl_slist* headers = nullptr;
  CURLM* multi = nullptr;
  std::mt19937_64 rng{std::random_device{}()};
  TokenBucket request_bucket, token_bucket;

  // Shared with submitters (under mutex).
  std::mutex mutex;
  std::condition_variable drained;
  std::deque<std::unique_ptr<Job>> incoming;
  bool stopping = false;
  int64_t outstanding = 0;  // submitted and not yet called back

  // Owned by the loop thread.
  std::deque<std::unique_ptr<Job>> ready;                          // may start now
  std::multimap<Clock::time_point, std::unique_ptr<Job>> waiting;  // retries waiting for their time
  std::map<CURL*, std::unique_ptr<Transfer>> active;
  std::vector<CURL*> spare_handles;
  size_t round_robin = 0;

  std::atomic<int64_t> stat_attempts{0}, stat_retries{0}, stat_succeeded{0}, stat_failed{0};
  std::vector<std::atomic<int64_t>> stat_url_attempts;

  std::thread loop_thread;

  explicit Impl(HttpBackendOptions opts)
      : options(std::move(opts)),
        request_bucket(options.requests_per_minute / 60.0,
                       std::max(1.0, options.requests_per_minute / 60.0)),
        token_bucket(options.tokens_per_minute / 60.0,
                     std::max(1.0, options.tokens_per_minute / 60.0)),
        stat_url_attempts(options.base_urls.size()) {}

  // ------------------------------------------------------------ completion of a request

  void finish(std::unique_ptr<Job> job, Result<Response> result) {
    (result.ok() ? stat_succeeded : stat_failed).fetch_add(1);
    try {
      job->done(std::move(result));
    } catch (const std::exception& e) {
      log::error("llm: a response callback threw: {}", e.what());
    }
    job.reset();
    std::lock_guard lock(mutex);
    if (--outstanding == 0) drained.notify_all();
  }

  void fail(std::unique_ptr<Job> job, ErrorKind kind, std::string message, int status = 0) {
    LlmError e{kind, std::move(message), status, job->attempts,
               job->last_url >= 0 ? urls[job->last_url].base + job->path : std::string()};
    finish(std::move(job), std::move(e));
  }

  // Schedules another attempt, or fails the job when its retries are spent.
  void retry_or_fail(std::unique_ptr<Job> job, LlmError error, std::optional<double> retry_after_s,
                     bool url_died) {
    job->last_error = error;
    if (job->attempts > options.retry.max_retries) {
      error.attempts = job->attempts;
      finish(std::move(job), std::move(error));
      return;
    }
    const auto now = Clock::now();
    double delay = retry_delay_s(options.retry, job->attempts, retry_after_s, rng);
    // A dead URL is not the request's fault: go to another live URL at once when there is one.
    if (url_died && !retry_after_s && live_url_count(now) > 0) delay = 0;
    log::debug("llm: retry {} of a {} request in {:.2f}s after: {}", job->attempts,
               to_string(job->request.kind), delay, error.describe());
    job->not_before = after(now, delay);
    waiting.emplace(job->not_before, std::move(job));
  }

  // ------------------------------------------------------------ URLs

  int live_url_count(Clock::time_point now) const {
    return static_cast<int>(std::count_if(urls.begin(), urls.end(),
                                          [&](const UrlState& u) { return u.dead_until <= now; }));
  }

  // The live URL with the fewest requests in flight (ties: round robin). When every URL is in its
  // cooldown, the one that comes back first: requests keep trying rather than stall.
  int choose_url(Clock::time_point now) {
    int best = -1;
    const size_t n = urls.size();
    for (size_t k = 0; k < n; ++k) {
      const size_t i = (round_robin + k) % n;
      if (urls[i].dead_until > now) continue;
      if (best < 0 || urls[i].in_flight < urls[best].in_flight) best = static_cast<int>(i);
    }
    if (best < 0) {
      for (size_t i = 0; i < n; ++i)
        if (best < 0 || urls[i].dead_until < urls[best].dead_until) best = static_cast<int>(i);
    }
    round_robin = (static_cast<size_t>(best) + 1) % n;
    return best;
  }

  void mark_dead(int url, Clock::time_point now) {
    UrlState& u = urls[url];
    // Requests that were in flight when it went down fail one after another: count the outage once.
    if (u.dead_until > now) return;
    u.cooldown_s = u.cooldown_s == 0 ? options.dead_url_cooldown_s
                                     : std::min(kMaxUrlCooldownS, u.cooldown_s * 2);
    u.dead_until = after(now, u.cooldown_s);
    log::warn("llm: {} is not answering; leaving it out for {:.3g}s", u.base, u.cooldown_s);
  }

  void mark_alive(int url) {
    urls[url].cooldown_s = 0;
    urls[url].dead_until = {};
  }

  // ------------------------------------------------------------ starting attempts

  double estimate_tokens(const Request& r) const {
    double prompt_bytes = static_cast<double>(r.prompt.size());
    for (const auto& m : r.messages) prompt_bytes += static_cast<double>(m.content.size() + 4);
    for (const auto& c : r.continuations)
      prompt_bytes += static_cast<double>(r.prompt.size() + c.size());
    const double out =
        r.kind == RequestKind::score ? 1.0 : double(r.params.max_tokens) * r.params.n;
    return prompt_bytes / 4.0 + out;
  }

  bool start(std::unique_ptr<Job>& job, Clock::time_point now) {
    CURL* easy;
    if (!spare_handles.empty()) {
      easy = spare_handles.back();
      spare_handles.pop_back();
      curl_easy_reset(easy);
    } else {
      easy = curl_easy_init();
      if (!easy) return false;
    }
    const int url = choose_url(now);
    auto t = std::make_unique<Transfer>();
    t->easy = easy;
    t->url = url;
    const std::string full_url = urls[url].base + job->path;
    curl_easy_setopt(easy, CURLOPT_URL, full_url.c_str());
    curl_easy_setopt(easy, CURLOPT_POST, 1L);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, job->body.data());
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(job->body.size()));
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(options.request_timeout_s * 1000));
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(options.connect_timeout_s * 1000));
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, t.get());
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, t->error_text);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, t.get());
    if (curl_multi_add_handle(multi, easy) != CURLM_OK) {
      curl_easy_cleanup(easy);
      return false;
    }
    if (job->attempts > 0) stat_retries.fetch_add(1);
    ++job->attempts;
    job->last_url = url;
    ++urls[url].in_flight;
    ++urls[url].attempts;
    stat_url_attempts[url].fetch_add(1);
    stat_attempts.fetch_add(1);
    request_bucket.take(1, now);
    if (job->attempts == 1) token_bucket.take(job->estimated_tokens, now);
    t->job = std::move(job);
    active.emplace(easy, std::move(t));
    return true;
  }

  // Starts what may start; returns when the next thing may start (or max() when nothing waits).
  Clock::time_point start_ready(Clock::time_point now) {
    while (!waiting.empty() && waiting.begin()->first <= now) {
      // Retries go first: they were submitted earlier.
      ready.push_front(std::move(waiting.begin()->second));
      waiting.erase(waiting.begin());
    }
    Clock::time_point wake = waiting.empty() ? Clock::time_point::max() : waiting.begin()->first;
    while (!ready.empty() && static_cast<int>(active.size()) < options.max_in_flight) {
      std::unique_ptr<Job>& job = ready.front();
      if (job->request.cancelled && job->request.cancelled->load()) {
        auto j = std::move(job);
        ready.pop_front();
        fail(std::move(j), ErrorKind::cancelled, "cancelled before it was sent");
        continue;
      }
      double wait = request_bucket.wait_s(1, now);
      if (job->attempts == 0)
        wait = std::max(wait, token_bucket.wait_s(job->estimated_tokens, now));
      if (wait > 0) {
        wake = std::min(wake, after(now, wait));
        break;
      }
      if (!start(job, now)) {
        auto j = std::move(job);
        ready.pop_front();
        fail(std::move(j), ErrorKind::internal, "libcurl could not start a transfer");
        continue;
      }
      ready.pop_front();
    }
    return wake;
  }

  // ------------------------------------------------------------ finished attempts

  void release(Transfer& t) {
    curl_multi_remove_handle(multi, t.easy);
    --urls[t.url].in_flight;
    if (spare_handles.size() < static_cast<size_t>(options.max_in_flight))
      spare_handles.push_back(t.easy);
    else
      curl_easy_cleanup(t.easy);
    t.easy = nullptr;
  }

  static std::optional<double> header_retry_after(CURL* easy) {
    curl_header* h = nullptr;
    // retry-after-ms is OpenAI's finer-grained variant; either may come.
    if (curl_easy_header(easy, "retry-after-ms", 0, CURLH_HEADER, -1, &h) == CURLHE_OK && h &&
        h->value) {
      if (auto ms = parse_retry_after(h->value, 0);
          ms && std::isdigit(static_cast<unsigned char>(h->value[0])))
        return *ms / 1000.0;
    }
    if (curl_easy_header(easy, "retry-after", 0, CURLH_HEADER, -1, &h) == CURLHE_OK && h &&
        h->value)
      return parse_retry_after(h->value, static_cast<int64_t>(std::time(nullptr)));
    return std::nullopt;
  }

  void on_done(CURL* easy, CURLcode code) {
    auto it = active.find(easy);
    if (it == active.end()) return;
    std::unique_ptr<Transfer> t = std::move(it->second);
    active.erase(it);
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    std::optional<double> retry_after = code == CURLE_OK ? header_retry_after(easy) : std::nullopt;
    const int url = t->url;
    const std::string where = urls[url].base + t->job->path;
    release(*t);
    std::unique_ptr<Job> job = std::move(t->job);
    const auto now = Clock::now();

    if (code != CURLE_OK) {
      if (t->overflow) {
        fail(std::move(job), ErrorKind::bad_response,
             fmt::format("response larger than {} bytes", kMaxResponseBytes));
        return;
      }
      const bool timed_out = code == CURLE_OPERATION_TIMEDOUT;
      const std::string detail = t->error_text[0] ? t->error_text : curl_easy_strerror(code);
      // The URL is down (refused, reset, unreachable) or hung: leave it out for a while.
      mark_dead(url, now);
      LlmError e{timed_out ? ErrorKind::timeout : ErrorKind::network,
                 timed_out ? fmt::format("no answer within {:.3g}s ({})", options.request_timeout_s,
                                         detail)
                           : detail,
                 0, job->attempts, where};
      retry_or_fail(std::move(job), std::move(e), std::nullopt, true);
      return;
    }
    mark_alive(url);

    json body;
    bool parsed = true;
    try {
      body = json::parse(t->response);
    } catch (const json::exception&) {
      parsed = false;
    }
    if (status >= 200 && status < 300) {
      if (!parsed) {
        // A cut-off or empty body (a proxy or a dying server): worth another attempt.
        LlmError e{
            ErrorKind::bad_response,
            fmt::format("HTTP {} with a body that is not JSON: '{:.200}'", status, t->response),
            static_cast<int>(status), job->attempts, where};
        retry_or_fail(std::move(job), std::move(e), std::nullopt, false);
        return;
      }
      Result<Response> result = parse_openai_response(job->request, body);
      if (result.ok()) {
        Response& r = result.value();
        if (r.model.empty()) r.model = job->model;
        // Correct the token budget with what the server counted.
        if (r.usage.total() > 0)
          token_bucket.adjust(job->estimated_tokens - double(r.usage.total()), now);
      } else {
        LlmError e = result.error();
        e.http_status = static_cast<int>(status);
        e.attempts = job->attempts;
        e.url = where;
        result = std::move(e);
      }
      finish(std::move(job), std::move(result));
      return;
    }
    std::string message = parsed ? openai_error_message(body) : std::string();
    if (message.empty()) message = fmt::format("{:.300}", t->response);
    LlmError e{ErrorKind::invalid_request, message, static_cast<int>(status), job->attempts, where};
    if (is_retryable_status(static_cast<int>(status))) {
      e.kind = status == 429   ? ErrorKind::rate_limited
               : status == 408 ? ErrorKind::timeout
                               : ErrorKind::server;
      retry_or_fail(std::move(job), std::move(e), retry_after, false);
      return;
    }
    if (status == 401 || status == 403)
      e.kind = ErrorKind::authentication;
    else if (status == 404)
      e.kind = ErrorKind::not_found;
    finish(std::move(job), std::move(e));
  }

  void cancel_active_if_asked() {
    for (auto it = active.begin(); it != active.end();) {
      Transfer& t = *it->second;
      if (t.job->request.cancelled && t.job->request.cancelled->load()) {
        std::unique_ptr<Transfer> owned = std::move(it->second);
        it = active.erase(it);
        release(*owned);
        fail(std::move(owned->job), ErrorKind::cancelled, "cancelled while in flight");
      } else {
        ++it;
      }
    }
  }

  // ------------------------------------------------------------ the loop

  void run() {
    for (;;) {
      {
        std::lock_guard lock(mutex);
        while (!incoming.empty()) {
          ready.push_back(std::move(incoming.front()));
          incoming.pop_front();
        }
        if (stopping && outstanding == 0) break;
      }
      cancel_active_if_asked();
      auto now = Clock::now();
      const Clock::time_point wake = start_ready(now);
      // Drive the transfers (new ones start connecting here), then collect the finished ones.
      int running = 0;
      curl_multi_perform(multi, &running);
      int queued = 0;
      bool finished_any = false;
      while (CURLMsg* msg = curl_multi_info_read(multi, &queued)) {
        if (msg->msg != CURLMSG_DONE) continue;
        on_done(msg->easy_handle, msg->data.result);
        finished_any = true;
      }
      if (finished_any) continue;  // slots were freed and retries scheduled: start what can start
      // Sleep until a socket is ready, curl's own timers fire, a retry or rate-limit wait ends, or
      // submit() wakes us. The 1 s cap bounds how late a cancellation is noticed.
      int timeout_ms = 1000;
      if (wake != Clock::time_point::max())
        timeout_ms = std::clamp(static_cast<int>(seconds_between(Clock::now(), wake) * 1000.0) + 1,
                                0, timeout_ms);
      curl_multi_poll(multi, nullptr, 0, timeout_ms, nullptr);
    }
  }
};

HttpBackend::HttpBackend(HttpBackendOptions options) {
  ensure_curl_global();
  if (options.base_urls.empty()) throw Error("the HTTP backend needs at least one base URL");
  if (options.max_in_flight < 1) throw Error("max_in_flight must be at least 1");
  if (options.request_timeout_s <= 0) throw Error("the request timeout must be positive");
  if (options.retry.max_retries < 0) throw Error("max_retries must be >= 0");
  for (auto& u : options.base_urls) u = normalise_base_url(u);
  impl_ = std::make_unique<Impl>(std::move(options));
  Impl& im = *impl_;
  for (const auto& u : im.options.base_urls) im.urls.push_back(UrlState{u});
  if (!im.options.api_key.empty()) {
    im.api_key = im.options.api_key;
  } else if (!im.options.api_key_env.empty()) {
    if (const char* key = std::getenv(im.options.api_key_env.c_str())) im.api_key = key;
  }
  im.headers = curl_slist_append(im.headers, "Content-Type: application/json");
  im.headers = curl_slist_append(im.headers, "Expect:");  // no 100-continue round trip
  if (!im.api_key.empty())
    im.headers = curl_slist_append(im.headers, ("Authorization: Bearer " + im.api_key).c_str());
  im.multi = curl_multi_init();
  if (!im.multi) throw Error("libcurl could not create a multi handle");
  // Keep a connection per request in flight so keep-alive works at full concurrency.
  curl_multi_setopt(im.multi, CURLMOPT_MAXCONNECTS,
                    static_cast<long>(im.options.max_in_flight + 4));
  im.loop_thread = std::thread([&im] { im.run(); });
}

HttpBackend::~HttpBackend() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
  }
  curl_multi_wakeup(impl_->multi);
  impl_->loop_thread.join();
  for (CURL* easy : impl_->spare_handles) curl_easy_cleanup(easy);
  curl_multi_cleanup(impl_->multi);
  curl_slist_free_all(impl_->headers);
}

void HttpBackend::submit(Request request, ResponseCallback done) {
  if (auto problem = validate_request(request)) {
    done(std::move(*problem));
    return;
  }
  auto job = std::make_unique<Job>();
  job->model = request.model.empty() ? impl_->options.model : request.model;
  job->body = to_openai_request(request, job->model).dump();
  job->path = endpoint_path(request.kind);
  job->estimated_tokens = impl_->estimate_tokens(request);
  job->request = std::move(request);
  job->done = std::move(done);
  {
    std::lock_guard lock(impl_->mutex);
    if (!impl_->stopping) {
      ++impl_->outstanding;
      impl_->incoming.push_back(std::move(job));
    }
  }
  if (job) {
    // Only reachable from a callback that submits while the destructor drains.
    job->done(LlmError{ErrorKind::cancelled, "the HTTP backend is shutting down", 0, 0, {}});
    return;
  }
  curl_multi_wakeup(impl_->multi);
}

std::string HttpBackend::default_model() const {
  return impl_->options.model;
}

std::string HttpBackend::describe() const {
  // The servers by address (any user:password@ left out: reports are shared).
  std::string where;
  for (const auto& u : impl_->urls) {
    std::string shown = u.base;
    const size_t scheme = shown.find("://"), at = shown.find('@');
    if (scheme != std::string::npos && at != std::string::npos && at > scheme &&
        at < shown.find('/', scheme + 3))
      shown.erase(scheme + 3, at + 1 - (scheme + 3));
    where += (where.empty() ? "" : ", ") + shown;
  }
  return fmt::format("http {} ({} in flight, {} retries)", where, impl_->options.max_in_flight,
                     impl_->options.retry.max_retries);
}

HttpStats HttpBackend::stats() const {
  HttpStats s;
  s.attempts = impl_->stat_attempts.load();
  s.retries = impl_->stat_retries.load();
  s.succeeded = impl_->stat_succeeded.load();
  s.failed = impl_->stat_failed.load();
  for (const auto& a : impl_->stat_url_attempts) s.attempts_per_url.push_back(a.load());
  return s;
}

const std::vector<std::string>& HttpBackend::base_urls() const {
  return impl_->options.base_urls;
}

}  // namespace seqit::llm
