// Small containers behind the merge loops: an open-addressing map for (left id, right id) merge
// pairs, and a thread-safe cache of finished words. std::unordered_map allocates a node per entry
// and chases a pointer per lookup; the merge map is probed for every adjacent pair of every word,
// so a flat table is worth its few lines.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace seqit::tokenizer {

// uint64 -> uint64 open-addressing hash map (linear probing, power-of-two capacity); the key
// UINT64_MAX is reserved as "empty". Insert-only, which is all a vocabulary needs.
class FlatU64Map {
 public:
  static constexpr uint64_t kEmpty = UINT64_MAX;
  void reserve(size_t n);
  // Inserts or overwrites.
  void set(uint64_t key, uint64_t value);
  // The value, or kEmpty.
  uint64_t get(uint64_t key) const {
    if (slots_.empty()) return kEmpty;
    size_t i = hash(key) & mask_;
    while (true) {
      const Slot& s = slots_[i];
      if (s.key == key) return s.value;
      if (s.key == kEmpty) return kEmpty;
      i = (i + 1) & mask_;
    }
  }
  size_t size() const { return size_; }

 private:
  static size_t hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return static_cast<size_t>(k);
  }
  struct Slot {
    uint64_t key = kEmpty, value = 0;
  };
  std::vector<Slot> slots_;
  size_t mask_ = 0, size_ = 0;
};

// Transparent string hashing so maps keyed by std::string can be probed with a string_view.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
struct StringEqual {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const { return a == b; }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, StringEqual>;

// One token of a word: its id and the bytes [begin, end) of the word it covers.
struct WordToken {
  TokenId id;
  uint32_t begin, end;
};

// word -> its tokens, shared by every thread encoding with the same
// tokenizer. Sharded read-write locks keep two encoding threads from contending; a shard stops
// growing at its capacity (as HF's BPE cache does), which bounds memory on endless input.
class WordCache {
 public:
  explicit WordCache(size_t capacity = 1 << 18);
  // Appends the cached tokens of `word` and returns true, or returns false.
  bool lookup(std::string_view word, std::vector<WordToken>& out) const;
  void insert(std::string_view word, const WordToken* tokens, size_t count);

 private:
  static constexpr size_t kShards = 32;
  // Each thread also keeps a small direct-mapped copy of the words it met last, so most lookups
  // take no lock at all; entries carry the cache's unique id, never its address (a new cache may
  // reuse a freed one's address).
  uint64_t id_;
  struct Shard {
    mutable std::shared_mutex mutex;
    StringMap<std::vector<WordToken>> map;
  };
  size_t per_shard_;
  std::array<Shard, kShards> shards_;
};

}  // namespace seqit::tokenizer
