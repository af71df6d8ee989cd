#include "llm/response_cache.h"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <sqlite3.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "llm/openai_json.h"
#include "util/error.h"
#include "util/log.h"

namespace seqit::llm {
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr int kSchemaVersion = 1;

std::string sha256_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &length, EVP_sha256(), nullptr) != 1)
    throw Error("SHA-256 failed (OpenSSL)");
  static const char* hex = "0123456789abcdef";
  std::string out;
  out.reserve(2 * length);
  for (unsigned int i = 0; i < length; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 15];
  }
  return out;
}

json response_to_json(const Response& r) {
  json choices = json::array();
  // Token bytes as byte arrays: a token may hold part of a UTF-8 character.
  auto bytes = [](const std::string& s) {
    json b = json::array();
    for (char ch : s) b.push_back(static_cast<unsigned char>(ch));
    return b;
  };
  for (const auto& c : r.choices) {
    json choice = {{"text", c.text}, {"finish_reason", c.finish_reason}};
    if (!c.logprobs.empty()) {
      json tokens = json::array();
      for (const auto& t : c.logprobs) {
        json top = json::array();
        for (const auto& [text, lp] : t.top) top.push_back({bytes(text), lp});
        tokens.push_back({bytes(t.token), t.logprob, std::move(top)});
      }
      choice["logprobs"] = std::move(tokens);
    }
    choices.push_back(std::move(choice));
  }
  json tokens = json::array();
  for (const auto& per : r.token_logprobs) {
    json list = json::array();
    for (const auto& t : per)
      list.push_back({t.text, t.logprob ? json(*t.logprob) : json(nullptr), t.offset});
    tokens.push_back(std::move(list));
  }
  return {{"choices", std::move(choices)},
          {"logprobs", r.logprobs},
          {"token_counts", r.token_counts},
          {"token_logprobs", std::move(tokens)},
          {"usage", {r.usage.prompt_tokens, r.usage.completion_tokens}},
          {"model", r.model},
          {"format_check", {r.format_check, r.format_attempts}}};
}

Response response_from_json(const json& j) {
  Response r;
  auto text_of = [](const json& b) {
    std::string s;
    for (const json& v : b) s += static_cast<char>(v.get<int>());
    return s;
  };
  for (const auto& c : j.at("choices")) {
    Choice choice{c.at("text").get<std::string>(), c.at("finish_reason").get<std::string>(), {}};
    if (auto lp = c.find("logprobs"); lp != c.end()) {
      for (const auto& t : *lp) {
        GeneratedToken g{text_of(t.at(0)), t.at(1).get<double>(), {}};
        for (const auto& e : t.at(2)) g.top.push_back({text_of(e.at(0)), e.at(1).get<double>()});
        choice.logprobs.push_back(std::move(g));
      }
    }
    r.choices.push_back(std::move(choice));
  }
  r.logprobs = j.at("logprobs").get<std::vector<double>>();
  r.token_counts = j.at("token_counts").get<std::vector<int64_t>>();
  for (const auto& per : j.at("token_logprobs")) {
    std::vector<TokenLogprob> list;
    for (const auto& t : per) {
      TokenLogprob tl;
      tl.text = t.at(0).get<std::string>();
      if (!t.at(1).is_null()) tl.logprob = t.at(1).get<double>();
      tl.offset = t.at(2).get<size_t>();
      list.push_back(std::move(tl));
    }
    r.token_logprobs.push_back(std::move(list));
  }
  r.usage.prompt_tokens = j.at("usage").at(0).get<int64_t>();
  r.usage.completion_tokens = j.at("usage").at(1).get<int64_t>();
  r.model = j.at("model").get<std::string>();
  if (auto fc = j.find("format_check"); fc != j.end()) {  // absent in entries of older versions
    r.format_check = fc->at(0).get<std::string>();
    r.format_attempts = fc->at(1).get<int>();
  }
  return r;
}

}  // namespace

ResponseCache::ResponseCache(const fs::path& path) : path_(path) {
  std::error_code ec;
  if (path.has_parent_path()) fs::create_directories(path.parent_path(), ec);
  auto fail = [&](const std::string& what) {
    std::string detail = db_ ? sqlite3_errmsg(db_) : "out of memory";
    if (get_) sqlite3_finalize(get_);
    if (put_) sqlite3_finalize(put_);
    if (db_) sqlite3_close(db_);
    db_ = nullptr;
    get_ = put_ = nullptr;
    throw Error(fmt::format("response cache: {}: {}", what, detail)).in_file(path.string());
  };
  if (sqlite3_open_v2(path.c_str(), &db_,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK)
    fail("cannot open");
  sqlite3_busy_timeout(db_, 30000);  // other processes sharing the file
  auto exec = [&](const char* sql, const char* what) {
    if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) fail(what);
  };
  // WAL: readers never block the writer, and a commit survives the process being killed.
  // synchronous=NORMAL: a commit is durable against a crash of this process (not of the machine).
  // Switching a new file to WAL takes an exclusive lock without calling the busy handler: when
  // several processes open a new cache at once (ranks of one job), the losers retry.
  for (const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);;) {
    const int rc = sqlite3_exec(db_, "PRAGMA journal_mode=WAL", nullptr, nullptr, nullptr);
    if (rc == SQLITE_OK) break;
    if ((rc != SQLITE_BUSY && rc != SQLITE_LOCKED) || std::chrono::steady_clock::now() > until)
      fail("not a seqit response cache (cannot set WAL mode)");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  exec("PRAGMA synchronous=NORMAL", "cannot set synchronous mode");
  int version = 0;
  {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, "PRAGMA user_version", -1, &st, nullptr) != SQLITE_OK)
      fail("cannot read the schema version");
    if (sqlite3_step(st) == SQLITE_ROW) version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
  }
  if (version > kSchemaVersion) {
    sqlite3_close(db_);
    db_ = nullptr;
    throw Error(
        fmt::format("response cache has schema version {}, newer than this seqit understands ({})",
                    version, kSchemaVersion))
        .in_file(path.string());
  }
  exec(
      "CREATE TABLE IF NOT EXISTS responses ("
      " key TEXT PRIMARY KEY,"  // hex SHA-256 of model + canonical request
      " model TEXT NOT NULL,"
      " request TEXT NOT NULL,"   // the canonical request JSON, for people inspecting the file
      " response TEXT NOT NULL,"  // seqit's own compact JSON of the Response
      " created_unix INTEGER NOT NULL"
      ") WITHOUT ROWID",
      "not a seqit response cache (cannot create the table)");
  exec(fmt::format("PRAGMA user_version={}", kSchemaVersion).c_str(),
       "cannot set the schema version");
  if (sqlite3_prepare_v2(db_, "SELECT response FROM responses WHERE key = ?1", -1, &get_,
                         nullptr) != SQLITE_OK)
    fail("not a seqit response cache");
  if (sqlite3_prepare_v2(
          db_,
          "INSERT OR REPLACE INTO responses (key, model, request, response, created_unix) "
          "VALUES (?1, ?2, ?3, ?4, ?5)",
          -1, &put_, nullptr) != SQLITE_OK)
    fail("not a seqit response cache");
}

ResponseCache::~ResponseCache() {
  sqlite3_finalize(get_);
  sqlite3_finalize(put_);
  sqlite3_close(db_);
}

std::string ResponseCache::key_for(const Request& request, const std::string& model) {
  return sha256_hex(model + "\n" + canonical_request(request, model).dump());
}

std::optional<Response> ResponseCache::get(const std::string& key) {
  std::lock_guard lock(mutex_);
  sqlite3_reset(get_);
  sqlite3_bind_text(get_, 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
  const int rc = sqlite3_step(get_);
  if (rc == SQLITE_DONE) return std::nullopt;
  if (rc != SQLITE_ROW)
    throw Error(fmt::format("response cache: lookup failed: {}", sqlite3_errmsg(db_)))
        .in_file(path_.string());
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(get_, 0));
  const int length = sqlite3_column_bytes(get_, 0);
  try {
    Response r =
        response_from_json(json::parse(std::string_view(text, static_cast<size_t>(length))));
    r.cached = true;
    sqlite3_reset(get_);
    return r;
  } catch (const json::exception& e) {
    // A damaged entry is treated as a miss and rewritten when the answer comes.
    log::warn("response cache {}: entry {} is unreadable ({}); asking again", path_.string(), key,
              e.what());
    sqlite3_reset(get_);
    return std::nullopt;
  }
}

void ResponseCache::put(const std::string& key, const Request& request, const std::string& model,
                        const Response& response) {
  const std::string request_text = canonical_request(request, model).dump();
  const std::string response_text = response_to_json(response).dump();
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
      std::chrono::system_clock::now().time_since_epoch());
  std::lock_guard lock(mutex_);
  sqlite3_reset(put_);
  sqlite3_bind_text(put_, 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
  sqlite3_bind_text(put_, 2, model.data(), static_cast<int>(model.size()), SQLITE_TRANSIENT);
  sqlite3_bind_text(put_, 3, request_text.data(), static_cast<int>(request_text.size()),
                    SQLITE_TRANSIENT);
  sqlite3_bind_text(put_, 4, response_text.data(), static_cast<int>(response_text.size()),
                    SQLITE_TRANSIENT);
  sqlite3_bind_int64(put_, 5, now.count());
  const int rc = sqlite3_step(put_);
  sqlite3_reset(put_);
  if (rc != SQLITE_DONE)
    throw Error(fmt::format("response cache: cannot store a response: {}", sqlite3_errmsg(db_)))
        .in_file(path_.string());
}

int64_t ResponseCache::size() {
  std::lock_guard lock(mutex_);
  sqlite3_stmt* st = nullptr;
  int64_t n = 0;
  if (sqlite3_prepare_v2(db_, "SELECT COUNT(*) FROM responses", -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return n;
}

// ------------------------------------------------------------------ CachedBackend

CachedBackend::CachedBackend(std::shared_ptr<Backend> inner, const fs::path& cache_path)
    : inner_(std::move(inner)), cache_(std::make_unique<ResponseCache>(cache_path)) {}

CachedBackend::~CachedBackend() {
  std::unique_lock lock(mutex_);
  idle_.wait(lock, [this] { return sent_ == 0; });
}

std::string CachedBackend::describe() const {
  return fmt::format("{} with cache {}", inner_->describe(), cache_->path().string());
}

CacheStats CachedBackend::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

namespace {
// A cached answer delivered to a streaming caller: the whole text of each choice as one delta,
// with all its tokens.
void replay_deltas(const Request& request, const Response& response) {
  if (!request.on_delta) return;
  for (size_t i = 0; i < response.choices.size(); ++i)
    if (!response.choices[i].text.empty())
      request.on_delta(static_cast<int>(i), response.choices[i].text, response.choices[i].logprobs);
}
}  // namespace

void CachedBackend::submit(Request request, ResponseCallback done) {
  if (auto problem = validate_request(request)) {
    done(std::move(*problem));
    return;
  }
  const std::string model = request.model.empty() ? inner_->default_model() : request.model;
  const std::string key = ResponseCache::key_for(request, model);
  std::optional<Response> hit;
  try {
    hit = cache_->get(key);
  } catch (const Error& e) {
    done(LlmError{ErrorKind::internal, e.what(), 0, 0, {}});
    return;
  }
  if (hit) {
    {
      std::lock_guard lock(mutex_);
      ++stats_.hits;
    }
    replay_deltas(request, *hit);
    done(std::move(*hit));
    return;
  }
  {
    std::lock_guard lock(mutex_);
    auto it = in_flight_.find(key);
    if (it != in_flight_.end()) {
      ++stats_.deduplicated;
      it->second.push_back({std::move(done), std::move(request)});
      return;
    }
    ++stats_.misses;
    ++sent_;
    in_flight_[key].push_back({std::move(done), Request{}});
  }
  Request for_cache = request;  // the inner backend consumes `request`
  for_cache.on_delta = nullptr;
  for_cache.cancelled = nullptr;
  inner_->submit(std::move(request),
                 [this, key, model, for_cache = std::move(for_cache)](Result<Response> result) {
                   if (result.ok()) {
                     try {
                       cache_->put(key, for_cache, model, result.value());
                     } catch (const Error& e) {
                       log::warn("{}", e.what());
                       std::lock_guard lock(mutex_);
                       ++stats_.store_failures;
                     }
                   }
                   complete(key, std::move(result));
                 });
}

void CachedBackend::complete(const std::string& key, Result<Response> result) {
  std::vector<Waiter> waiters;
  {
    std::lock_guard lock(mutex_);
    auto it = in_flight_.find(key);
    waiters = std::move(it->second);
    in_flight_.erase(it);
  }
  // The first waiter sent the request (its deltas were streamed); the others share the answer.
  for (size_t i = 0; i < waiters.size(); ++i) {
    if (i > 0 && result.ok()) replay_deltas(waiters[i].request, result.value());
    waiters[i].done(i + 1 < waiters.size() ? Result<Response>(result) : std::move(result));
  }
  std::lock_guard lock(mutex_);
  if (--sent_ == 0) idle_.notify_all();
}

}  // namespace seqit::llm
