// A scripted llm::Backend for control-flow tests: a function turns each request into a reply (or an
// error), answered from a worker thread, newest first, so replies come back out of order.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "llm/backend.h"

namespace seqit::testing {

class ScriptedBackend final : public llm::Backend {
 public:
  using Script = std::function<llm::Result<llm::Response>(const llm::Request&)>;
  explicit ScriptedBackend(Script script) : script_(std::move(script)) {
    worker_ = std::thread([this] { loop(); });
  }
  ~ScriptedBackend() override {
    {
      std::lock_guard lock(mutex_);
      quit_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }
  void submit(llm::Request request, llm::ResponseCallback done) override {
    std::lock_guard lock(mutex_);
    requests_.push_back(request);
    queue_.push_back({std::move(request), std::move(done)});
    max_outstanding_ = std::max(max_outstanding_, queue_.size());
    cv_.notify_one();
  }
  std::string default_model() const override { return "scripted"; }
  std::string describe() const override { return "scripted"; }

  std::vector<llm::Request> requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
  }
  size_t max_outstanding() const {
    std::lock_guard lock(mutex_);
    return max_outstanding_;
  }

  static llm::Response reply(std::string text) {
    llm::Response r;
    r.choices.push_back({std::move(text), "stop", {}});
    r.model = "scripted";
    return r;
  }

 private:
  void loop() {
    for (;;) {
      std::pair<llm::Request, llm::ResponseCallback> job;
      {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [&] { return quit_ || !queue_.empty(); });
        if (queue_.empty()) return;
        job = std::move(queue_.back());  // newest first: out of order
        queue_.pop_back();
      }
      job.second(script_(job.first));
    }
  }

  Script script_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::pair<llm::Request, llm::ResponseCallback>> queue_;
  std::vector<llm::Request> requests_;
  size_t max_outstanding_ = 0;
  bool quit_ = false;
  std::thread worker_;
};

}  // namespace seqit::testing
