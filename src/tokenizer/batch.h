// Encoding many texts at once on a thread pool, and counting tokens (what `seqit data stats` and
// dataset packing need). A Tokenizer is safe to use from several threads at once.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"
#include "util/thread_pool.h"

namespace seqit::tokenizer {

// ids[i] = tokenizer.encode(texts[i], options), computed on `pool`'s workers.
std::vector<std::vector<TokenId>> encode_batch(const Tokenizer& tokenizer,
                                               std::span<const std::string_view> texts,
                                               const EncodeOptions& options, ThreadPool& pool);
// The same with a pool of `threads` workers (0 = one per core) made for the call.
std::vector<std::vector<TokenId>> encode_batch(const Tokenizer& tokenizer,
                                               std::span<const std::string_view> texts,
                                               const EncodeOptions& options = {},
                                               size_t threads = 0);

// Number of tokens `text` encodes to; by default without BOS/EOS (add_special = false).
size_t count_tokens(const Tokenizer& tokenizer, std::string_view text,
                    const EncodeOptions& options = {.add_special = false, .parse_special = true});

}  // namespace seqit::tokenizer
