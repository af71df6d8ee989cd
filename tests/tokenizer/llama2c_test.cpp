// llama2.c tokenizer.bin: ids against an independent re-implementation of llama2.c's encode()
// (written here from its published algorithm, quadratic and allocation-happy on purpose), and the
// 32000-piece export against libsentencepiece on the original tokenizer.model.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <limits>
#include <map>

#include "testing.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace seqit::tokenizer {
namespace {

using seqit::testing::shared_data;

struct RawVocab {
  std::vector<std::string> tokens;
  std::vector<float> scores;
};

RawVocab read_raw(const std::filesystem::path& path) {
  std::string bytes = seqit::testing::slurp(path);
  RawVocab v;
  size_t pos = 4;
  while (pos < bytes.size()) {
    float score;
    int32_t len;
    std::memcpy(&score, bytes.data() + pos, 4);
    std::memcpy(&len, bytes.data() + pos + 4, 4);
    v.scores.push_back(score);
    v.tokens.push_back(bytes.substr(pos + 8, size_t(len)));
    pos += 8 + size_t(len);
  }
  return v;
}

// llama2.c's encode(): dummy " " token, one token per UTF-8 character (bytes + 3 when unknown),
// then repeatedly merge the pair whose concatenation has the best score (first among equals).
std::vector<TokenId> llama2c_encode(const RawVocab& v, const std::string& text, bool bos) {
  std::map<std::string, int> lookup;
  for (size_t i = 0; i < v.tokens.size(); ++i) lookup.emplace(v.tokens[i], int(i));
  std::vector<int> tokens;
  if (bos) tokens.push_back(1);
  std::vector<int> body;
  if (!text.empty()) body.push_back(lookup.at(" "));
  for (size_t i = 0; i < text.size();) {
    size_t len = 1;
    while (i + len < text.size() && (static_cast<unsigned char>(text[i + len]) & 0xC0) == 0x80 &&
           len < 4)
      ++len;
    std::string ch = text.substr(i, len);
    auto it = lookup.find(ch);
    if (it != lookup.end()) {
      body.push_back(it->second);
    } else {
      for (unsigned char c : ch) body.push_back(int(c) + 3);
    }
    i += len;
  }
  while (true) {
    float best = -1e10f;
    int best_id = -1, best_idx = -1;
    for (size_t i = 0; i + 1 < body.size(); ++i) {
      auto it = lookup.find(v.tokens[body[i]] + v.tokens[body[i + 1]]);
      if (it != lookup.end() && v.scores[it->second] > best) {
        best = v.scores[it->second];
        best_id = it->second;
        best_idx = int(i);
      }
    }
    if (best_idx < 0) break;
    body[best_idx] = best_id;
    body.erase(body.begin() + best_idx + 1);
  }
  tokens.insert(tokens.end(), body.begin(), body.end());
  return tokens;
}

const std::vector<std::string>& sample_texts() {
  static const std::vector<std::string> texts = {
      "Once upon a time, there was a little girl named Lily.",
      "She loved to play outside in the park. One day, she saw a big, red ball!",
      "  two leading spaces and trailing   ",
      "Numbers 12345 and 3.14159; emoji 🙂 and accents: café, naïve.",
      "Tom said, \"Let's go!\"\nThe end.\n\nNew paragraph\twith tab.",
      "日本語のテキスト 和 中文 混合 with English.",
      "x",
      " ",
      "",
  };
  return texts;
}

TEST(Llama2cTokenizer, Stories260kVocabularyMatchesLlama2cEncode) {
  auto path = shared_data("models/stories260K/tok512.bin");
  auto tok = load_tokenizer(path);
  RawVocab raw = read_raw(path);
  EXPECT_EQ(tok->vocab_size(), 512u);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->token_text(1), "<s>");
  EXPECT_EQ(tok->token_text(2), "</s>");
  EXPECT_TRUE(tok->is_special(1));
  EXPECT_FALSE(tok->is_special(300));
  EXPECT_NE(tok->describe().find("llama2.c"), std::string::npos);
  for (const auto& text : sample_texts()) {
    EXPECT_EQ(tok->encode(text), llama2c_encode(raw, text, true)) << text;
    EXPECT_EQ(tok->encode(text, {.add_special = false}), llama2c_encode(raw, text, false)) << text;
  }
}

TEST(Llama2cTokenizer, Stories260kRoundTripsAndDecodesLikeSentencePiece) {
  auto tok = load_tokenizer(shared_data("models/stories260K/tok512.bin"));
  for (const auto& text : sample_texts()) {
    auto ids = tok->encode(text);
    EXPECT_EQ(tok->decode(ids, /*skip_special=*/true), text) << text;
  }
  auto ids = tok->encode("Once upon a time");
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(tok->decode(ids), "<s> Once upon a time");
  // Byte pieces decode to bytes; a lone continuation byte becomes U+FFFD.
  auto b0 = tok->token_id("<0xC3>"), b1 = tok->token_id("<0xA9>");
  ASSERT_TRUE(b0 && b1);
  std::vector<TokenId> e_acute = {*b0, *b1};
  EXPECT_EQ(tok->decode(e_acute), "é");
  std::vector<TokenId> stray = {*b1};
  EXPECT_EQ(tok->decode(stray), "\xEF\xBF\xBD");
  EXPECT_EQ(tok->token_bytes(*b0), "\xC3");
  auto the = tok->encode("the", {.add_special = false});
  ASSERT_EQ(the.size(), 1u);
  EXPECT_EQ(tok->token_bytes(the[0]), " the");
  EXPECT_EQ(tok->token_text(the[0]), "\xE2\x96\x81the");
}

TEST(Llama2cTokenizer, SpansCoverTheInput) {
  auto tok = load_tokenizer(shared_data("models/stories260K/tok512.bin"));
  std::string text = "Lily saw a café.";
  std::vector<Span> spans;
  auto ids = tok->encode(text, {}, &spans);
  ASSERT_EQ(ids.size(), spans.size());
  EXPECT_EQ(spans[0].begin, 0u);
  EXPECT_EQ(spans[0].end, 0u);  // BOS
  size_t covered = 0;
  for (size_t i = 1; i < spans.size(); ++i) {
    EXPECT_LE(spans[i].begin, spans[i].end);
    EXPECT_GE(spans[i].begin, covered > 0 ? covered - 1 : 0);
    covered = std::max(covered, spans[i].end);
  }
  EXPECT_EQ(covered, text.size());
}

TEST(Llama2cTokenizer, FullLlama2ExportMatchesSentencePieceModel) {
  auto bin = load_tokenizer(shared_data("tokenizers/llama2/llama2c_tokenizer.bin"));
  auto model = load_tokenizer(shared_data("tokenizers/llama2/tokenizer.model"));
  EXPECT_EQ(bin->vocab_size(), 32000u);
  for (const auto& text : sample_texts()) {
    EXPECT_EQ(bin->encode(text), model->encode(text)) << text;
  }
  for (TokenId id : {0, 1, 2, 3, 13, 259, 450, 29871, 31999}) {
    EXPECT_EQ(bin->token_text(id), model->token_text(id)) << id;
  }
}

TEST(Llama2cTokenizer, MalformedFilesGiveClearErrors) {
  seqit::testing::TempDir dir;
  std::string good = seqit::testing::slurp(shared_data("models/stories260K/tok512.bin"));
  auto truncated = dir / "truncated.bin";
  seqit::testing::spit(truncated, good.substr(0, good.size() - 3));
  try {
    load_tokenizer(truncated);
    FAIL() << "a truncated tokenizer.bin loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("truncated.bin"), std::string::npos) << e.what();
  }
  auto garbage = dir / "garbage.bin";
  seqit::testing::spit(garbage, std::string("\xFF\xFF\xFF\x7F\x01\x02", 6));
  EXPECT_THROW(load_tokenizer(garbage), Error);
  EXPECT_THROW(load_tokenizer(dir / "missing.bin"), Error);
  auto empty = dir / "empty.bin";
  seqit::testing::spit(empty, "");
  EXPECT_THROW(load_tokenizer(empty), Error);
}

// Each corruption of a real tokenizer.bin is reported as what it is: which token, which field, at
// which byte — not "unrecognised tokenizer format".
TEST(Llama2cTokenizer, CorruptFilesNameTheTokenFieldAndByte) {
  seqit::testing::TempDir dir;
  const std::string good = seqit::testing::slurp(shared_data("models/stories260K/tok512.bin"));
  // Token 0 starts at byte 4: score (4-7), len (8-11), bytes (12..).
  int32_t len0;
  std::memcpy(&len0, good.data() + 8, 4);
  const size_t token1 = 12 + size_t(len0);
  auto put_i32 = [](std::string s, size_t at, int32_t v) {
    std::memcpy(s.data() + at, &v, 4);
    return s;
  };
  auto put_f32 = [](std::string s, size_t at, float v) {
    std::memcpy(s.data() + at, &v, 4);
    return s;
  };
  auto with_ff_at = [](std::string s, size_t at) {
    s[at] = '\xFF';
    return s;
  };
  auto error_for = [&](const std::string& name, const std::string& bytes) -> std::string {
    seqit::testing::spit(dir / name, bytes);
    try {
      load_tokenizer(dir / name);
    } catch (const Error& e) {
      return e.what();
    }
    return "(loaded)";
  };
  struct Case {
    std::string name, bytes;
    std::vector<std::string> expected;  // substrings of the error
  };
  const std::vector<Case> cases = {
      {"negative_len.bin",
       put_i32(good, token1 + 4, -5),
       {"corrupt llama2.c tokenizer.bin", "token 1 (at byte " + std::to_string(token1) + ")",
        "len field (byte " + std::to_string(token1 + 4) + ") is -5", "max_token_length"}},
      {"long_len.bin",
       put_i32(good, 8, 1 << 20),
       {"token 0 (at byte 4)", "len field (byte 8) is 1048576"}},
      {"nan_score.bin",
       put_f32(good, token1, std::numeric_limits<float>::quiet_NaN()),
       {"token 1 (at byte " + std::to_string(token1) + ")", "score", "not a finite number"}},
      {"cut_in_fields.bin",
       good.substr(0, token1 + 5),
       {"token 1 (at byte " + std::to_string(token1) + ") is truncated", "score and len fields",
        "5 left"}},
      {"cut_in_bytes.bin", good.substr(0, good.size() - 1), {"is truncated: its len field says"}},
      {"header_only.bin", good.substr(0, 4), {"holds no tokens"}},
      {"bad_utf8.bin",
       with_ff_at(good, 12),  // "<unk>" becomes "\xFFunk>"
       {"token 0 (bytes at 12) is not valid UTF-8 (byte 12)"}},
  };
  for (const Case& c : cases) {
    const std::string what = error_for(c.name, c.bytes);
    EXPECT_NE(what.find(c.name), std::string::npos) << what;
    EXPECT_EQ(what.find("unrecognised"), std::string::npos) << what;
    for (const std::string& e : c.expected)
      EXPECT_NE(what.find(e), std::string::npos) << c.name << ": " << what;
  }
}

}  // namespace
}  // namespace seqit::tokenizer
