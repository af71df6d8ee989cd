#include "llm/in_flight.h"

#include <condition_variable>
#include <deque>
#include <mutex>

namespace seqit::llm {

void for_each_reply(Backend& backend, size_t count,
                    const std::function<std::optional<Request>(size_t)>& make, int max_in_flight,
                    const std::function<bool()>& stop,
                    const std::function<bool(size_t, Result<Response>&&)>& on_reply) {
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<std::pair<size_t, Result<Response>>> done;
  int in_flight = 0;
  size_t next = 0;
  bool stopped = false;
  for (;;) {
    while (!stopped && in_flight < max_in_flight && next < count) {
      if (stop && stop()) {
        stopped = true;
        break;
      }
      const size_t i = next++;
      std::optional<Request> request = make(i);
      if (!request) continue;
      ++in_flight;
      backend.submit(std::move(*request), [&, i](Result<Response> r) {
        std::lock_guard lock(mutex);
        done.emplace_back(i, std::move(r));
        cv.notify_one();
      });
    }
    if (in_flight == 0) return;
    std::pair<size_t, Result<Response>> reply{0, LlmError{}};
    {
      std::unique_lock lock(mutex);
      cv.wait(lock, [&] { return !done.empty(); });
      reply = std::move(done.front());
      done.pop_front();
    }
    --in_flight;
    if (!on_reply(reply.first, std::move(reply.second))) stopped = true;
  }
}

}  // namespace seqit::llm
