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

namespace {
std::atomic<uint64_t> next_cache_id{1};

struct LocalEntry {
  uint64_t owner = 0;
  size_t hash = 0;
  std::string word;
  std::vector<WordToken> tokens;
};
constexpr size_t kLocalEntries = 4096;
std::vector<LocalEntry>& local_entries() {
  thread_local std::vector<LocalEntry> entries(kLocalEntries);
  return entries;
}
void remember(uint64_t owner, size_t h, std::string_view word, const WordToken* tokens,
              size_t count) {
  LocalEntry& e = local_entries()[h % kLocalEntries];
  e.owner = owner;
  e.hash = h;
  e.word.assign(word);
  e.tokens.assign(tokens, tokens + count);
}
}  // namespace

WordCache::WordCache(size_t capacity) : id_(next_cache_id++), per_shard_(capacity / kShards + 1) {}

bool WordCache::lookup(std::string_view word, std::vector<WordToken>& out) const {
  size_t h = StringHash{}(word);
  LocalEntry& e = local_entries()[h % kLocalEntries];
  if (e.owner == id_ && e.hash == h && e.word == word) {
    out.insert(out.end(), e.tokens.begin(), e.tokens.end());
    return true;
  }
  const Shard& shard = shards_[(h >> 20) % kShards];
  std::shared_lock lock(shard.mutex);
  auto it = shard.map.find(word);
  if (it == shard.map.end()) return false;
  out.insert(out.end(), it->second.begin(), it->second.end());
  remember(id_, h, word, it->second.data(), it->second.size());
  return true;
}

void WordCache::insert(std::string_view word, const WordToken* tokens, size_t count) {
  size_t h = StringHash{}(word);
  remember(id_, h, word, tokens, count);
  Shard& shard = shards_[(h >> 20) % kShards];
  std::unique_lock lock(shard.mutex);
  if (shard.map.size() >= per_shard_) return;
  shard.map.emplace(std::string(word), std::vector<WordToken>(tokens, tokens + count));
}

}  // namespace seqit::tokenizer
