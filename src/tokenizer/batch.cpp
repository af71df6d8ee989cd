#include "tokenizer/batch.h"

namespace seqit::tokenizer {

std::vector<std::vector<TokenId>> encode_batch(const Tokenizer& tokenizer,
                                               std::span<const std::string_view> texts,
                                               const EncodeOptions& options, ThreadPool& pool) {
  std::vector<std::vector<TokenId>> ids(texts.size());
  pool.parallel_for(texts.size(), [&](size_t i) { ids[i] = tokenizer.encode(texts[i], options); });
  return ids;
}

std::vector<std::vector<TokenId>> encode_batch(const Tokenizer& tokenizer,
                                               std::span<const std::string_view> texts,
                                               const EncodeOptions& options, size_t threads) {
  ThreadPool pool(threads);
  return encode_batch(tokenizer, texts, options, pool);
}

size_t count_tokens(const Tokenizer& tokenizer, std::string_view text,
                    const EncodeOptions& options) {
  return tokenizer.encode(text, options).size();
}

}  // namespace seqit::tokenizer
