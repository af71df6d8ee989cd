// Many requests in flight through a Backend, answers handled on the calling thread: the loop that
// jobs asking one request per item share (manual chains, the study's world evaluation, ...).
#pragma once

#include <cstddef>
#include <functional>
#include <optional>

#include "llm/backend.h"

namespace seqit::llm {

// For i in [0, count): make(i) gives item i's request, or nullopt to skip it (already answered).
// At most `max_in_flight` requests are outstanding; on_reply(i, result) runs on this thread for
// each answer, in arrival order, and returns false to stop submitting (an error the caller keeps).
// `stop` (optional) is polled before each submission. Requests in flight are always waited for, so
// on return no callback is pending.
void for_each_reply(Backend& backend, size_t count,
                    const std::function<std::optional<Request>(size_t)>& make, int max_in_flight,
                    const std::function<bool()>& stop,
                    const std::function<bool(size_t, Result<Response>&&)>& on_reply);

}  // namespace seqit::llm
