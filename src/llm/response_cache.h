// A persistent response cache in SQLite, and a Backend wrapper that uses it.
//
// The key is the SHA-256 of the model id and the request's canonical JSON (canonical_request()), so
// any change to the messages, prompt or sampling parameters is a different entry. Each response is
// committed as it arrives (WAL journal, one transaction per response): a job killed at any moment
// keeps every answer it had received, and its rerun sends only the requests that had not completed.
// Errors are never stored. Several processes may share one cache file.
//
// Note that a sampled request (temperature > 0) is cached like any other: repeating it returns the
// stored sample. Ask for several samples with n, or vary the seed.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "llm/backend.h"

struct sqlite3;
struct sqlite3_stmt;

namespace seqit::llm {

class ResponseCache {
 public:
  // Opens or creates the cache file (and its folder). Throws seqit::Error naming the file when it
  // cannot be opened or is not a seqit response cache.
  explicit ResponseCache(const std::filesystem::path& path);
  ~ResponseCache();
  ResponseCache(const ResponseCache&) = delete;
  ResponseCache& operator=(const ResponseCache&) = delete;

  // Hex SHA-256 of `model` + "\n" + canonical_request(request, model).dump().
  static std::string key_for(const Request& request, const std::string& model);

  std::optional<Response> get(const std::string& key);
  // Stores (or replaces) an entry; committed before it returns. Throws seqit::Error on a write
  // failure (disk full, read-only file).
  void put(const std::string& key, const Request& request, const std::string& model,
           const Response& response);
  int64_t size();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::mutex mutex_;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* get_ = nullptr;
  sqlite3_stmt* put_ = nullptr;
};

struct CacheStats {
  int64_t hits = 0;            // answered from the cache file
  int64_t misses = 0;          // sent to the backend
  int64_t deduplicated = 0;    // identical to a request already in flight: shares its answer
  int64_t store_failures = 0;  // answers that could not be written (logged; still delivered)
};

// Wraps a backend with a ResponseCache: a hit answers at once (marked `cached`, streamed as one
// delta per choice when the request streams); a miss goes to `inner` and its answer is stored
// before the caller's callback runs. Identical requests in flight at the same time are sent once.
class CachedBackend final : public Backend {
 public:
  CachedBackend(std::shared_ptr<Backend> inner, const std::filesystem::path& cache_path);
  // Waits for the requests it sent to `inner` to come back.
  ~CachedBackend() override;

  void submit(Request request, ResponseCallback done) override;
  std::string default_model() const override { return inner_->default_model(); }
  std::string describe() const override;

  CacheStats stats() const;
  ResponseCache& cache() { return *cache_; }
  Backend& inner() { return *inner_; }

 private:
  struct Waiter {
    ResponseCallback done;
    Request request;  // for its on_delta
  };
  void complete(const std::string& key, Result<Response> result);

  std::shared_ptr<Backend> inner_;
  std::unique_ptr<ResponseCache> cache_;
  mutable std::mutex mutex_;
  std::condition_variable idle_;
  std::unordered_map<std::string, std::vector<Waiter>> in_flight_;  // key -> callers waiting for it
  int64_t sent_ = 0;  // requests given to inner_ whose callbacks have not finished
  CacheStats stats_;
};

}  // namespace seqit::llm
