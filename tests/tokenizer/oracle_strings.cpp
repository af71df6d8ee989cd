#include "oracle_strings.h"

#include <random>

namespace seqit::tokenizer::testing {

namespace {
const std::vector<std::string>& words() {
  static const std::vector<std::string> w = {
      // English, with case and contractions
      "the",
      "The",
      "THE",
      "quick",
      "brown",
      "fox",
      "don't",
      "DON'T",
      "I'm",
      "we'LL",
      "they've",
      "she'd",
      "it's",
      "'s",
      "'re",
      "o'clock",
      "rock'n'roll",
      "tokenization",
      "Internationalization",
      "hello",
      "world",
      "a",
      "I",
      "x",
      "naïve",
      "café",
      "résumé",
      "coöperate",
      "Mañana",
      "straße",
      "İstanbul",
      "ǅemal",
      "ﬁne",
      // other scripts
      "Привет",
      "мир",
      "Ελληνικά",
      "γλώσσα",
      "你好",
      "世界",
      "中文分词器",
      "繁體中文",
      "日本語",
      "こんにちは",
      "トークナイザー",
      "がぎぐげご",
      "안녕하세요",
      "한국어",
      "\u1112\u1161\u11ab\u1100\u1173\u11af",
      "مرحبا",
      "العربية",
      "שלום",
      "עולם",
      "नमस्ते",
      "हिन्दी",
      "संस्कृत",
      "สวัสดี",
      "ภาษาไทย",
      "ქართული",
      "Հայերեն",
      "ᚠᛇᚻ",
      "ꦧꦱꦗꦮ",
      "𝐀𝐁𝐂",
      "𝓐𝓑",
      "𓀀𓂀",
      "𒀭𒈠",
      // emoji
      "🙂",
      "👋",
      "🌍",
      "🚀",
      "🎉",
      "👨\u200d👩\u200d👧\u200d👦",
      "🏳️\u200d🌈",
      "👍🏽",
      "✊🏿",
      "🇯🇵",
      "🇩🇪🇺🇸",
      "1️⃣",
      "❤️",
      "☃",
      "★",
      "♠♣♥♦",
      "🀄",
      "🂡",
      // code and symbols
      "def",
      "f(x)",
      "x->y",
      "a::b",
      "i++",
      "{}",
      "[]",
      "<div>",
      "</div>",
      "&&",
      "||",
      "!=",
      "==",
      ">=",
      "=>",
      "#include",
      "std::vector<int>",
      "0xDEADBEEF",
      "snake_case",
      "camelCase",
      "__init__",
      "http://example.com/a?b=c",
      "user@example.com",
      "C:\\path\\file",
      "$HOME",
      "~/.bashrc",
      "Σ",
      "∀ε>0",
      "∃δ",
      "ℝ",
      "⇒",
      "≈",
      "€12.50",
      "¥",
      "£",
      "₿",
      "°C",
      "½",
      "²",
      "№",
      "™",
      "©",
      "§",
      "¶",
      "…",
      "—",
      "–",
      "‒",
      "―",
      "«",
      "»",
      "„",
      "“",
      "”",
      "‘",
      "’",
      // punctuation runs
      "!",
      "?",
      ".",
      ",",
      ";",
      ":",
      "...",
      "!!!",
      "?!",
      "\"",
      "'",
      "''",
      "'''",
      "(",
      ")",
      "-",
      "--",
      "___",
      "***",
      // invalid-looking text
      "<0xFF>",
      "<0x0A>",
      "<0x20>",
      "\\x80",
      "\\u00e9",
      "\\n",
      "\\t",
      "\xEF\xBF\xBD",
      "\xEF\xBF\xBF",
      "\xEE\x80\x80",
      "\xF4\x8F\xBF\xBF",
      "\u0301",
      "e\u0301",
      "A\u030A",
      "\u0345",
      "\x01",
      "\x1B[31m",
      "\x7F",
      "\u200B",
      "\u200D",
      "\u2060",
      "\uFE0F",
      "\u00AD",
      "\u202E",
      "Ġ",
      "Ċ",
      "▁",
      "▁▁",
      "Âł",
      "ðŁĺ",
  };
  return w;
}

const std::vector<std::string>& spaces() {
  static const std::vector<std::string> s = {
      " ",      " ",      " ",      " ",      "  ",     "   ",    "    ",   "\t",
      "\t\t",   "\n",     "\n\n",   "\r\n",   " \n",    "\n ",    " \t ",   "\u00A0",
      "\u3000", "\u2009", "\u2028", "\u2029", "\u0085", "\uFEFF", "\u200B", "\u1680",
      "\u202F", "\u205F", "\x0B",   "\x0C",   "\r",
  };
  return s;
}

const std::vector<std::string>& specials() {
  static const std::vector<std::string> s = {
      "<|endoftext|>",
      "<s>",
      "</s>",
      "<unk>",
      "<|begin_of_text|>",
      "<|end_of_text|>",
      "<|eot_id|>",
      "<|start_header_id|>",
      "<|end_header_id|>",
      "<|reserved_special_token_5|>",
      "<|im_start|>",
      "<|im_end|>",
      "<think>",
      "</think>",
      "<tool_call>",
      "<|fim_prefix|>",
      "<|endoftext",
      "endoftext|>",
      "< s>",
      "<s >",
      "<S>",
      "<<s>>",
      "<s><s>",
      "</s></s>",
      "<|im_start|>assistant\n",
      "<|im_end|>\n",
      "<|",
      "|>",
  };
  return s;
}
}  // namespace

std::vector<std::string> oracle_strings(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  auto pick = [&](size_t n) { return size_t(rng() % n); };
  std::vector<std::string> out;
  out.reserve(count);
  for (size_t k = 0; k < count; ++k) {
    std::string s;
    size_t pieces = 1 + pick(14);
    for (size_t p = 0; p < pieces; ++p) {
      switch (pick(16)) {
        case 0:
        case 1:
        case 2:
        case 3:
        case 4:
        case 5:
          s += words()[pick(words().size())];
          break;
        case 6:
        case 7:
        case 8:
          s += spaces()[pick(spaces().size())];
          break;
        case 9: {  // digit runs, sometimes non-ASCII digits
          size_t n = 1 + pick(12);
          static const char* digit_sets[] = {"0123456789", "0123456789", "٠١٢٣٤٥٦٧٨٩",
                                             "０１２３４５６７８９", "१२३४५"};
          size_t set = pick(5);
          for (size_t d = 0; d < n; ++d) {
            std::string digits = digit_sets[set];
            if (set == 0 || set == 1) {
              s += digits[pick(10)];
            } else {
              // multi-byte digit sets: every digit has the same UTF-8 length
              size_t width = set == 2 ? 2 : 3;
              size_t count_digits = digits.size() / width;
              s += digits.substr(pick(count_digits) * width, width);
            }
          }
          if (pick(3) == 0) s += pick(2) ? "." : ",";
          break;
        }
        case 10:
          s += specials()[pick(specials().size())];
          break;
        case 11: {  // a random code point from a few ranges
          static const std::pair<uint32_t, uint32_t> ranges[] = {
              {0x20, 0x7E},       {0xA0, 0x24F},    {0x370, 0x3FF},   {0x400, 0x4FF},
              {0x590, 0x6FF},     {0x900, 0x97F},   {0xE00, 0xE7F},   {0x1100, 0x11FF},
              {0x3040, 0x30FF},   {0x4E00, 0x9FFF}, {0xAC00, 0xD7A3}, {0x1F300, 0x1F64F},
              {0x1D400, 0x1D4FF}, {0x2000, 0x206F}, {0xFF00, 0xFFEF}};
          auto [lo, hi] = ranges[pick(std::size(ranges))];
          uint32_t cp = lo + uint32_t(pick(hi - lo + 1));
          if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0x41;
          std::string enc;
          if (cp < 0x80) {
            enc += char(cp);
          } else if (cp < 0x800) {
            enc += char(0xC0 | (cp >> 6));
            enc += char(0x80 | (cp & 0x3F));
          } else if (cp < 0x10000) {
            enc += char(0xE0 | (cp >> 12));
            enc += char(0x80 | ((cp >> 6) & 0x3F));
            enc += char(0x80 | (cp & 0x3F));
          } else {
            enc += char(0xF0 | (cp >> 18));
            enc += char(0x80 | ((cp >> 12) & 0x3F));
            enc += char(0x80 | ((cp >> 6) & 0x3F));
            enc += char(0x80 | (cp & 0x3F));
          }
          s += enc;
          break;
        }
        case 12: {  // a repeated character run
          static const char* runs[] = {"a", "e", "-", "=", "!", ".", " ", "\n", "😀", "ha", "ab"};
          std::string r = runs[pick(std::size(runs))];
          size_t n = 2 + pick(20);
          for (size_t i = 0; i < n; ++i) s += r;
          break;
        }
        default:
          s += pick(2) ? " " : "";
          s += words()[pick(words().size())];
          break;
      }
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace seqit::tokenizer::testing
