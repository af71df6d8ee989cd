#include "tokenizer/word_cache.h"

namespace seqit::tokenizer {

void FlatU64Map::reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  if (cap <= slots_.size()) return;
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(cap, Slot{});
  mask_ = cap - 1;
  size_ = 0;
  for (const Slot& s : old) {
    if (s.key != kEmpty) set(s.key, s.value);
  }
}

void FlatU64Map::set(uint64_t key, uint64_t value) {
  if ((size_ + 1) * 2 > slots_.size()) reserve(size_ + 1 < 8 ? 8 : (size_ + 1) * 2);
  size_t i = hash(key) & mask_;
  while (true) {
    Slot& s = slots_[i];
    if (s.key == key) {
      s.value = value;
      return;
    }
    if (s.key == kEmpty) {
      s.key = key;
      s.value = value;
      ++size_;
      return;
    }
    i = (i + 1) & mask_;
  }
}

bool WordCache::lookup(std::string_view word, std::vector<WordToken>& out) const {
  size_t h = StringHash{}(word);
  const Shard& shard = shards_[h % kShards];
  std::shared_lock lock(shard.mutex);
  auto it = shard.map.find(word);
  if (it == shard.map.end()) return false;
  out.insert(out.end(), it->second.begin(), it->second.end());
  return true;
}

void WordCache::insert(std::string_view word, const WordToken* tokens, size_t count) {
  size_t h = StringHash{}(word);
  Shard& shard = shards_[h % kShards];
  std::unique_lock lock(shard.mutex);
  if (shard.map.size() >= per_shard_) return;
  shard.map.emplace(std::string(word), std::vector<WordToken>(tokens, tokens + count));
}

}  // namespace seqit::tokenizer
