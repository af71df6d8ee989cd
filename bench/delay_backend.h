// Bench scaffolding shared by bench_llm and bench_seqinstruct: a backend that answers every request
// after a fixed delay, so that only the costs around the model (HTTP, pipelines) are measured.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "llm/backend.h"

namespace seqit::bench {

// A backend that answers every request with a fixed text after `delay_s` (0: at once, on the
// caller's thread). Bench scaffolding: it stands in for a model so that only HTTP costs are
// measured.
class DelayBackend final : public llm::Backend {
 public:
  using Clock = std::chrono::steady_clock;
  // `reply` gives the text of each answer (default "ok").
  explicit DelayBackend(double delay_s, std::function<std::string(const llm::Request&)> reply = {})
      : delay_s_(delay_s), reply_(std::move(reply)) {
    if (delay_s_ > 0) timer_ = std::thread([this] { run(); });
  }
  ~DelayBackend() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (timer_.joinable()) timer_.join();
  }
  void submit(llm::Request request, llm::ResponseCallback done) override {
    std::string text = reply_ ? reply_(request) : std::string("ok");
    if (delay_s_ <= 0) {
      done(answer(std::move(text)));
      return;
    }
    auto when = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(delay_s_));
    {
      std::lock_guard lock(mutex_);
      queue_.emplace(when, std::make_pair(std::move(text), std::move(done)));
    }
    cv_.notify_all();
  }
  std::string default_model() const override { return "delay"; }
  std::string describe() const override { return "delay"; }

 private:
  static llm::Response answer(std::string text) {
    llm::Response r;
    r.choices = {{std::move(text), "stop", {}}};
    r.usage = {5, 1};
    return r;
  }
  void run() {
    std::unique_lock lock(mutex_);
    for (;;) {
      if (stopping_ && queue_.empty()) return;
      if (queue_.empty()) {
        cv_.wait(lock);
        continue;
      }
      auto first = queue_.begin();
      if (first->first > Clock::now()) {
        cv_.wait_until(lock, first->first);
        continue;
      }
      auto [text, done] = std::move(first->second);
      queue_.erase(first);
      lock.unlock();
      done(answer(std::move(text)));
      lock.lock();
    }
  }
  double delay_s_;
  std::function<std::string(const llm::Request&)> reply_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::multimap<Clock::time_point, std::pair<std::string, llm::ResponseCallback>> queue_;
  bool stopping_ = false;
  std::thread timer_;
};

}  // namespace seqit::bench
