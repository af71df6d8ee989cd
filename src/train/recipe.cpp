#include "train/recipe.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <functional>
#include <map>
#include <type_traits>

#include "chat/chat_template.h"
#include "data/format.h"
#include "util/error.h"
#include "util/file_io.h"

namespace seqit::train {
namespace {

// ---- names ---------------------------------------------------------------------------------

template <typename E>
struct EnumNames;  // {value, name} pairs in the order errors list them

template <>
struct EnumNames<ScheduleKind> {
  static constexpr std::pair<ScheduleKind, std::string_view> items[] = {
      {ScheduleKind::linear, "linear"},
      {ScheduleKind::cosine, "cosine"},
      {ScheduleKind::constant, "constant"}};
  static constexpr std::string_view what = "schedule";
};
template <>
struct EnumNames<BatchMode> {
  static constexpr std::pair<BatchMode, std::string_view> items[] = {
      {BatchMode::packed, "packed"}, {BatchMode::length_grouped, "grouped"}};
  static constexpr std::string_view what = "batch mode";
};
template <>
struct EnumNames<TurnPolicy> {
  static constexpr std::pair<TurnPolicy, std::string_view> items[] = {
      {TurnPolicy::all_assistant, "all"}, {TurnPolicy::last_assistant, "last"}};
  static constexpr std::string_view what = "turn policy";
};
template <>
struct EnumNames<ComputeDtype> {
  static constexpr std::pair<ComputeDtype, std::string_view> items[] = {
      {ComputeDtype::auto_, "auto"}, {ComputeDtype::f32, "f32"}, {ComputeDtype::bf16, "bf16"}};
  static constexpr std::string_view what = "compute dtype";
};
template <>
struct EnumNames<TrainMethod> {
  static constexpr std::pair<TrainMethod, std::string_view> items[] = {{TrainMethod::full, "full"},
                                                                       {TrainMethod::lora, "lora"}};
  static constexpr std::string_view what = "method";
};
template <>
struct EnumNames<BaseDtype> {
  static constexpr std::pair<BaseDtype, std::string_view> items[] = {{BaseDtype::f32, "f32"},
                                                                     {BaseDtype::bf16, "bf16"}};
  static constexpr std::string_view what = "LoRA base dtype";
};

template <typename E>
std::string_view enum_name(E value) {
  for (const auto& [v, name] : EnumNames<E>::items)
    if (v == value) return name;
  return "?";
}

// Levenshtein distance (small strings only: keys and enum names).
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// " (did you mean 'x'?)" for the closest candidate within a third of the word's length (at least
// 2 edits), or for the dotted key whose last part is the word (`rank` -> `lora.rank`); else "".
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::max<size_t>(2, word.size() / 3) + 1;
  for (const std::string& c : candidates) {
    size_t dot = c.rfind('.');
    if (dot != std::string::npos && c.substr(dot + 1) == word)
      return fmt::format(" (did you mean '{}'?)", c);
    size_t d = edit_distance(word, c);
    if (d < best_d) best_d = d, best = c;
  }
  return best.empty() ? "" : fmt::format(" (did you mean '{}'?)", best);
}

std::string join(const std::vector<std::string>& items, std::string_view sep = ", ") {
  std::string out;
  for (const std::string& s : items) out += (out.empty() ? "" : std::string(sep)) + s;
  return out;
}

// ---- reading -------------------------------------------------------------------------------

// The parsed document with the overrides applied, and where each value came from.
class Reader {
 public:
  Reader(YAML::Node root, std::string source, std::map<std::string, std::string> overrides)
      : root_(std::move(root)), source_(std::move(source)), overrides_(std::move(overrides)) {}

  // The value at a dotted key; an undefined node when absent. (Only const access and reset():
  // yaml-cpp's Node::operator= would rewrite the tree.)
  YAML::Node find(std::string_view key) const {
    YAML::Node cur = root_;
    size_t start = 0;
    for (;;) {
      size_t dot = key.find('.', start);
      std::string part(key.substr(start, dot == std::string_view::npos ? key.npos : dot - start));
      if (!cur.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
      const YAML::Node& map = cur;
      YAML::Node next = map[part];
      if (!next.IsDefined()) return YAML::Node(YAML::NodeType::Undefined);
      if (dot == std::string_view::npos) return next;
      cur.reset(next);
      start = dot + 1;
    }
  }

  // Where the value of `key` was given: the override, or the file with line and column.
  ErrorContext where(std::string_view key) const {
    ErrorContext ctx;
    ctx.field = std::string(key);
    if (auto it = overrides_.find(std::string(key)); it != overrides_.end()) {
      ctx.file = fmt::format("override '{}'", it->second);
      return ctx;
    }
    ctx.file = source_;
    YAML::Node node = find(key);
    if (node.IsDefined()) {
      YAML::Mark mark = node.Mark();
      if (mark.line >= 0) {
        ctx.line = mark.line + 1;
        ctx.column = mark.column + 1;
      }
    }
    return ctx;
  }

  [[noreturn]] void fail(std::string_view key, const std::string& message) const {
    throw Error(message, where(key));
  }

  const YAML::Node& root() const { return root_; }
  const std::string& source() const { return source_; }

 private:
  YAML::Node root_;
  std::string source_;
  std::map<std::string, std::string> overrides_;  // dotted key -> the override text
};

std::string describe_node(const YAML::Node& node) {
  if (node.IsMap()) return "a mapping";
  if (node.IsSequence()) return "a list";
  if (node.IsNull()) return "null";
  return fmt::format("'{}'", node.Scalar());
}

// Codecs: decode a YAML value into the field type (errors through `in.fail(key, ...)`), encode a
// value as YAML text.
template <typename T>
struct Codec;

template <>
struct Codec<int64_t> {
  static int64_t decode(const Reader& in, std::string_view key, const YAML::Node& n) {
    int64_t v = 0;
    if (!n.IsScalar() || !YAML::convert<int64_t>::decode(n, v))
      in.fail(key, "expected an integer, found " + describe_node(n));
    return v;
  }
  static std::string encode(int64_t v) { return std::to_string(v); }
};
template <>
struct Codec<uint64_t> {
  static uint64_t decode(const Reader& in, std::string_view key, const YAML::Node& n) {
    uint64_t v = 0;
    const std::string& s = n.IsScalar() ? n.Scalar() : std::string();
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (!n.IsScalar() || s.empty() || ec != std::errc() || end != s.data() + s.size())
      in.fail(key, "expected a non-negative integer, found " + describe_node(n));
    return v;
  }
  static std::string encode(uint64_t v) { return std::to_string(v); }
};
template <>
struct Codec<double> {
  static double decode(const Reader& in, std::string_view key, const YAML::Node& n) {
    double v = 0;
    if (!n.IsScalar() || !YAML::convert<double>::decode(n, v) || !std::isfinite(v))
      in.fail(key, "expected a number, found " + describe_node(n));
    return v;
  }
  static std::string encode(double v) {
    char buf[64];
    auto [end, ec] =
        std::to_chars(buf, buf + sizeof buf, v);  // shortest text that reads back exactly
    std::string s(buf, end);
    // "16" would read back as a double too, but write "16.0"-like text so a reader sees a real.
    if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
    return s;
  }
};
template <>
struct Codec<bool> {
  static bool decode(const Reader& in, std::string_view key, const YAML::Node& n) {
    bool v = false;
    if (!n.IsScalar() || !YAML::convert<bool>::decode(n, v))
      in.fail(key, "expected true or false, found " + describe_node(n));
    return v;
  }
  static std::string encode(bool v) { return v ? "true" : "false"; }
};
template <>
struct Codec<std::string> {
  static std::string decode(const Reader& in, std::string_view key, const YAML::Node& n) {
    if (!n.IsScalar()) in.fail(key, "expected a string, found " + describe_node(n));
    return n.Scalar();
  }
  static std::string encode(const std::string& v) {
    YAML::Emitter e;
    e << YAML::DoubleQuoted << v;
    return e.c_str();
  }
};
template <>
struct Codec<std::vector<std::string>> {  // a list of strings; one string is a list of one
  static std::vector<std::string> decode(const Reader& in, std::string_view key,
                                         const YAML::Node& n) {
    std::vector<std::string> out;
    if (n.IsScalar()) return {n.Scalar()};
    if (!n.IsSequence()) in.fail(key, "expected a list of strings, found " + describe_node(n));
    for (const YAML::Node& item : n) {
      if (!item.IsScalar())
        in.fail(key, "expected a list of strings, found an item that is " + describe_node(item));
      out.push_back(item.Scalar());
    }
    return out;
  }
  static std::string encode(const std::vector<std::string>& v) {
    std::string out = "[";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + Codec<std::string>::encode(v[i]);
    return out + "]";
  }
};
template <typename E>
requires std::is_enum_v<E>
struct Codec<E> {
  static E decode(const Reader& in, std::string_view key, const YAML::Node& n) {
    std::vector<std::string> names;
    for (const auto& [v, name] : EnumNames<E>::items) {
      if (n.IsScalar() && n.Scalar() == name) return v;
      names.emplace_back(name);
    }
    // parse_batch_mode's other spelling
    if constexpr (std::is_same_v<E, BatchMode>) {
      if (n.IsScalar() && n.Scalar() == "length_grouped") return BatchMode::length_grouped;
    }
    std::string found = describe_node(n);
    in.fail(key, fmt::format("unknown {} {}{}: expected one of {}", EnumNames<E>::what, found,
                             n.IsScalar() ? did_you_mean(n.Scalar(), names) : "", join(names)));
  }
  static std::string encode(E v) { return std::string(enum_name(v)); }
};
template <typename T>
struct Codec<std::optional<T>> {
  static std::optional<T> decode(const Reader& in, std::string_view key, const YAML::Node& n) {
    return Codec<T>::decode(in, key, n);
  }
  static std::string encode(const std::optional<T>& v) {
    return v ? Codec<T>::encode(*v) : std::string("null");
  }
};

// LoRA targets: canonical short names in kLoraTargets order; q_proj ... and "all" accepted.
std::vector<std::string> decode_lora_targets(const Reader& in, std::string_view key,
                                             const YAML::Node& n) {
  std::vector<std::string> given = Codec<std::vector<std::string>>::decode(in, key, n);
  std::vector<std::string> valid(std::begin(kLoraTargets), std::end(kLoraTargets));
  std::vector<bool> chosen(valid.size(), false);
  for (std::string name : given) {
    if (name == "all") {
      chosen.assign(valid.size(), true);
      continue;
    }
    if (name.size() > 5 && name.ends_with("_proj")) name.resize(name.size() - 5);
    auto it = std::find(valid.begin(), valid.end(), name);
    if (it == valid.end()) {
      in.fail(key, fmt::format("unknown LoRA target module '{}'{}: the valid ones are {} (or their "
                               "Hugging Face names q_proj ... down_proj, or all)",
                               name, did_you_mean(name, valid), join(valid)));
    }
    chosen[size_t(it - valid.begin())] = true;
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < valid.size(); ++i)
    if (chosen[i]) out.push_back(valid[i]);
  return out;
}

// ---- the field table -----------------------------------------------------------------------

struct Field {
  std::string key;
  std::string comment;  // to_yaml's end-of-line comment
  std::function<void(const Reader&, TrainRecipe&)> read;
  std::function<std::string(const TrainRecipe&)> write;
  std::string section;  // to_yaml writes a "# section" line before the first field of each
};

// A field whose value is `get(recipe)`; null (or absent) leaves the default.
template <typename Get>
Field field(std::string section, std::string key, std::string comment, Get get) {
  using T = std::remove_cvref_t<decltype(get(std::declval<TrainRecipe&>()))>;
  Field f;
  f.section = std::move(section);
  f.key = key;
  f.comment = std::move(comment);
  f.read = [key, get](const Reader& in, TrainRecipe& r) {
    YAML::Node n = in.find(key);
    if (n.IsDefined() && !n.IsNull()) get(r) = Codec<T>::decode(in, key, n);
  };
  f.write = [get](const TrainRecipe& r) {
    return Codec<T>::encode(get(const_cast<TrainRecipe&>(r)));
  };
  return f;
}

#define SEQIT_FIELD(section, key, member, comment) \
  field(                                           \
      section, key, comment, [](TrainRecipe & r) -> auto& { return r.member; })

const std::vector<Field>& fields() {
  static const std::vector<Field> table = [] {
    std::vector<Field> t = {
        SEQIT_FIELD("what to train", "model", model, "required: HF folder, .gguf or llama2.c .bin"),
        SEQIT_FIELD("what to train", "tokenizer", tokenizer, "null: the model's own"),
        SEQIT_FIELD("what to train", "init", init,
                    "pretrained (the weights at model) | random (model is a config.json)"),
        SEQIT_FIELD("what to train", "init_std", init_std, "random init: std of the weights"),
        SEQIT_FIELD("what to train", "data", data, "required: training files, read in order"),
        SEQIT_FIELD("what to train", "data_format", data_format, "auto or a format name"),
        SEQIT_FIELD("what to train", "eval_data", eval_data,
                    "a held-out file instead of a split; null: none"),
        SEQIT_FIELD("examples", "template", chat_template,
                    "tulu | model (its own) | a builtin | a file"),
        SEQIT_FIELD("examples", "turns", turns, "all | last: which assistant replies are learned"),
        SEQIT_FIELD("examples", "train_on_inputs", train_on_inputs,
                    "learn every token, prompts too"),
        SEQIT_FIELD("examples", "max_len", max_len, "tokens; longer examples are truncated"),
        SEQIT_FIELD("examples", "default_system", default_system,
                    "system message for records without one; null: none"),
        SEQIT_FIELD("batches", "batch_mode", batch_mode, "packed | grouped"),
        SEQIT_FIELD("batches", "micro_batch_size", micro_batch_size, "rows per forward pass"),
        SEQIT_FIELD("batches", "gradient_accumulation", gradient_accumulation,
                    "micro-batches per update; derived from effective_batch when null"),
        SEQIT_FIELD("batches", "effective_batch", effective_batch,
                    "rows per update (all processes); wins when set"),
        SEQIT_FIELD("optimization", "epochs", epochs, ""),
        SEQIT_FIELD("optimization", "max_steps", max_steps,
                    "optimizer updates; overrides epochs; null: from epochs"),
        SEQIT_FIELD("optimization", "lr", lr, "peak learning rate"),
        SEQIT_FIELD("optimization", "schedule", schedule, "linear | cosine | constant"),
        SEQIT_FIELD("optimization", "warmup_ratio", warmup_ratio,
                    "warmup = ceil(ratio x total steps)"),
        SEQIT_FIELD("optimization", "warmup_steps", warmup_steps,
                    "wins over warmup_ratio when set"),
        SEQIT_FIELD("optimization", "weight_decay", weight_decay, "AdamW, decoupled"),
        SEQIT_FIELD("optimization", "adam_beta1", adam_beta1, ""),
        SEQIT_FIELD("optimization", "adam_beta2", adam_beta2, ""),
        SEQIT_FIELD("optimization", "adam_epsilon", adam_epsilon, ""),
        SEQIT_FIELD("optimization", "max_grad_norm", max_grad_norm, "global-norm clipping; 0: off"),
        SEQIT_FIELD("optimization", "seed", seed, "data order, split, dropout"),
        SEQIT_FIELD("evaluation", "eval_fraction", eval_fraction, "of the data held out"),
        SEQIT_FIELD("evaluation", "eval_count", eval_count,
                    "examples held out; wins over fraction"),
        SEQIT_FIELD("evaluation", "eval_every", eval_every, "steps; 0: after the last step only"),
        SEQIT_FIELD("run folder", "output_dir", output_dir, "required"),
        SEQIT_FIELD("run folder", "save_every", save_every, "steps; 0: final weights only"),
        SEQIT_FIELD("run folder", "keep_last", keep_last, "checkpoints kept; 0: all"),
        SEQIT_FIELD("run folder", "log_every", log_every, "steps between metrics rows"),
        SEQIT_FIELD("compute", "activation_checkpointing", activation_checkpointing,
                    "recompute activations in backward"),
        SEQIT_FIELD("compute", "compute_dtype", compute_dtype, "auto | f32 | bf16"),
        SEQIT_FIELD("compute", "threads", threads, "0: every core"),
        SEQIT_FIELD("method", "method", method, "full | lora"),
        SEQIT_FIELD("method", "lora.rank", lora.rank, ""),
        SEQIT_FIELD("method", "lora.alpha", lora.alpha, "scale alpha / rank"),
        SEQIT_FIELD("method", "lora.dropout", lora.dropout, ""),
        SEQIT_FIELD("method", "lora.targets", lora.targets, "q k v o gate up down, or all"),
        SEQIT_FIELD("method", "lora.rslora", lora.rslora, "scale alpha / sqrt(rank)"),
        SEQIT_FIELD("method", "lora.base_dtype", lora.base_dtype, "f32 | bf16: the frozen weights"),
    };
    // The targets are a set with aliases: decode them through the LoRA rules.
    for (Field& f : t) {
      if (f.key != "lora.targets") continue;
      f.read = [](const Reader& in, TrainRecipe& r) {
        YAML::Node n = in.find("lora.targets");
        if (n.IsDefined() && !n.IsNull())
          r.lora.targets = decode_lora_targets(in, "lora.targets", n);
      };
    }
    return t;
  }();
  return table;
}
#undef SEQIT_FIELD

// ---- validation ----------------------------------------------------------------------------

using Where = std::function<ErrorContext(std::string_view key)>;

[[noreturn]] void invalid(const Where& where, std::string_view key, const std::string& message) {
  throw Error(message, where(key));
}

// A required field is missing: "model: required — ..." at the file (and line, when the key is
// there with an empty value); no field in the context, the message starts with it.
[[noreturn]] void required(const Where& where, std::string_view key, const std::string& hint) {
  ErrorContext ctx = where(key);
  ctx.field.clear();
  throw Error(fmt::format("{}: required — {}", key, hint), ctx);
}

bool looks_like_path(const std::string& s) {
  return s.find('/') != std::string::npos || s.ends_with(".jinja") || s.ends_with(".json") ||
         std::filesystem::exists(s);
}

void check(const TrainRecipe& r, const Where& where) {
  if (r.model.empty())
    required(where, "model",
             "the base model to fine-tune (a Hugging Face folder, a .gguf or a llama2.c .bin); set "
             "`model:` in the recipe or pass the override model=PATH");
  if (r.data.empty())
    required(where, "data", "the training file(s); set `data:` in the recipe or pass data=PATH");
  for (const std::string& d : r.data)
    if (d.empty()) invalid(where, "data", "a data path is empty");
  if (r.output_dir.empty())
    required(where, "output_dir",
             "the run folder (recipe.yaml, metrics, checkpoints); set `output_dir:` or pass "
             "output_dir=PATH");
  if (r.data_format != "auto") {
    try {
      data::parse_format_request(r.data_format);
    } catch (const Error& e) {
      invalid(where, "data_format", e.message() + " (or auto)");
    }
  }
  if (r.tokenizer && r.tokenizer->empty())
    invalid(where, "tokenizer", "empty path (null: the model's own)");
  if (r.init != "pretrained" && r.init != "random")
    invalid(where, "init", "expected pretrained or random, not '" + r.init + "'");
  if (r.init == "random" && !r.tokenizer)
    invalid(where, "tokenizer",
            "training from scratch (init: random) needs `tokenizer:` (a config.json has none)");
  if (r.init == "random" && !(r.init_std > 0 && r.init_std < 1))
    invalid(where, "init_std", "expected a standard deviation in (0, 1)");
  if (r.eval_data && r.eval_data->empty()) invalid(where, "eval_data", "empty path (null: none)");
  if (r.eval_data && (r.eval_fraction > 0 || r.eval_count))
    invalid(where, "eval_data",
            "a separate eval file and a held-out split (eval_fraction / eval_count) are both set: "
            "choose one");

  const std::string& t = r.chat_template;
  std::vector<std::string> names = chat::ChatTemplate::builtin_names();
  if (t.empty()) invalid(where, "template", "empty (tulu, model, a builtin name or a file)");
  if (t != "model" && std::find(names.begin(), names.end(), t) == names.end() &&
      !looks_like_path(t)) {
    std::vector<std::string> choices = names;
    choices.insert(choices.begin(), "model");
    invalid(where, "template",
            fmt::format("unknown template '{}'{}: expected model (the model's own), a builtin ({}) "
                        "or a template file (.jinja, .json, or a path)",
                        t, did_you_mean(t, choices), join(names)));
  }

  auto positive = [&](std::string_view key, int64_t v) {
    if (v < 1) invalid(where, key, fmt::format("must be at least 1, found {}", v));
  };
  auto non_negative = [&](std::string_view key, int64_t v) {
    if (v < 0) invalid(where, key, fmt::format("must be 0 or more, found {}", v));
  };
  positive("max_len", r.max_len);
  positive("micro_batch_size", r.micro_batch_size);
  if (r.gradient_accumulation) positive("gradient_accumulation", *r.gradient_accumulation);
  if (r.effective_batch) positive("effective_batch", *r.effective_batch);
  positive("epochs", r.epochs);
  if (r.max_steps) positive("max_steps", *r.max_steps);
  if (r.warmup_steps) non_negative("warmup_steps", *r.warmup_steps);
  if (r.eval_count) non_negative("eval_count", *r.eval_count);
  non_negative("eval_every", r.eval_every);
  non_negative("save_every", r.save_every);
  non_negative("keep_last", r.keep_last);
  positive("log_every", r.log_every);
  non_negative("threads", r.threads);

  auto in_range = [&](std::string_view key, double v, double lo, bool lo_open, double hi,
                      bool hi_open, std::string_view range) {
    bool ok = (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
    if (!ok) invalid(where, key, fmt::format("must be in {}, found {}", range, v));
  };
  constexpr double inf = HUGE_VAL;
  in_range("lr", r.lr, 0, true, inf, true, "(0, inf)");
  in_range("warmup_ratio", r.warmup_ratio, 0, false, 1, false, "[0, 1]");
  in_range("weight_decay", r.weight_decay, 0, false, inf, true, "[0, inf)");
  in_range("adam_beta1", r.adam_beta1, 0, false, 1, true, "[0, 1)");
  in_range("adam_beta2", r.adam_beta2, 0, false, 1, true, "[0, 1)");
  in_range("adam_epsilon", r.adam_epsilon, 0, true, inf, true, "(0, inf)");
  in_range("max_grad_norm", r.max_grad_norm, 0, false, inf, true, "[0, inf) (0 = no clipping)");
  in_range("eval_fraction", r.eval_fraction, 0, false, 1, true, "[0, 1)");

  positive("lora.rank", r.lora.rank);
  in_range("lora.alpha", r.lora.alpha, 0, true, inf, true, "(0, inf)");
  in_range("lora.dropout", r.lora.dropout, 0, false, 1, true, "[0, 1)");
  if (r.lora.targets.empty())
    invalid(where, "lora.targets", "no target module: choose among q, k, v, o, gate, up, down");
  for (const std::string& target : r.lora.targets) {
    if (std::find(std::begin(kLoraTargets), std::end(kLoraTargets), target) ==
        std::end(kLoraTargets))
      invalid(where, "lora.targets",
              fmt::format("unknown LoRA target module '{}': the valid ones are q, k, v, o, gate, "
                          "up, down",
                          target));
  }
}

// ---- overrides -----------------------------------------------------------------------------

// Applies "key=value" overrides to the document; returns key -> override text.
std::map<std::string, std::string> apply_overrides(YAML::Node& root,
                                                   const std::vector<std::string>& overrides) {
  std::map<std::string, std::string> origin;
  const std::vector<std::string>& keys = recipe_keys();
  for (const std::string& text : overrides) {
    ErrorContext ctx;
    ctx.file = fmt::format("override '{}'", text);
    size_t eq = text.find('=');
    if (eq == std::string::npos || eq == 0)
      throw Error("expected key=value (e.g. lr=1e-4, lora.rank=8)", ctx);
    std::string key = text.substr(0, eq), value = text.substr(eq + 1);
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
      throw Error(fmt::format("unknown key '{}'{}; the keys are listed in docs/training.md "
                              "(\"Recipes\")",
                              key, did_you_mean(key, keys)),
                  ctx);
    }
    YAML::Node parsed;
    if (value.empty()) {
      parsed = YAML::Node(std::string());  // `default_system=` is the empty string
    } else {
      try {
        parsed = YAML::Load(value);
      } catch (const YAML::Exception& e) {
        ctx.field = key;
        throw Error(fmt::format("the value is not valid YAML: {}", e.msg), ctx);
      }
    }
    // Walk (creating mappings) to the parent, then set.
    YAML::Node cur = root;
    size_t start = 0;
    for (size_t dot; (dot = key.find('.', start)) != std::string::npos; start = dot + 1) {
      std::string part = key.substr(start, dot - start);
      if (!cur[part].IsMap()) cur[part] = YAML::Node(YAML::NodeType::Map);
      cur.reset(cur[part]);
    }
    cur[key.substr(start)] = parsed;
    origin[key] = text;
  }
  return origin;
}

// Every key of the document must be known; sections must be mappings.
void reject_unknown_keys(const Reader& in) {
  const std::vector<std::string>& keys = recipe_keys();
  std::function<void(const YAML::Node&, const std::string&)> walk = [&](const YAML::Node& map,
                                                                        const std::string& prefix) {
    std::map<std::string, int64_t> seen;  // key -> line, to refuse a key given twice
    for (const auto& kv : map) {
      std::string name = kv.first.Scalar();
      std::string key = prefix + name;
      YAML::Mark mark = kv.first.Mark();
      auto [it, fresh] = seen.emplace(key, mark.line + 1);
      if (!fresh) {
        ErrorContext ctx;
        ctx.file = in.source();
        ctx.line = mark.line + 1;
        ctx.column = mark.column + 1;
        throw Error(fmt::format("key '{}' given twice (first on line {})", key, it->second), ctx);
      }
      bool is_section = std::any_of(keys.begin(), keys.end(),
                                    [&](const std::string& k) { return k.starts_with(key + "."); });
      if (is_section) {
        if (!kv.second.IsMap() && !kv.second.IsNull())
          in.fail(key, fmt::format("expected a mapping of {}.* keys, found {}", key,
                                   describe_node(kv.second)));
        if (kv.second.IsMap()) walk(kv.second, key + ".");
        continue;
      }
      if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
        ErrorContext ctx;
        ctx.file = in.source();
        if (mark.line >= 0) ctx.line = mark.line + 1, ctx.column = mark.column + 1;
        throw Error(fmt::format("unknown key '{}'{}", key, did_you_mean(key, keys)), ctx);
      }
    }
  };
  walk(in.root(), "");
}

TrainRecipe read_document(YAML::Node root, const std::string& source,
                          const std::vector<std::string>& overrides) {
  if (!root.IsDefined() || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap()) {
    ErrorContext ctx;
    ctx.file = source;
    throw Error("a recipe is a YAML mapping of keys to values (model: ..., lr: ...)", ctx);
  }
  std::map<std::string, std::string> origin = apply_overrides(root, overrides);
  Reader in(root, source, std::move(origin));
  reject_unknown_keys(in);
  TrainRecipe recipe;
  for (const Field& f : fields()) f.read(in, recipe);
  check(recipe, [&](std::string_view key) { return in.where(key); });
  return recipe;
}

}  // namespace

std::string_view batch_mode_name(BatchMode mode) {
  return enum_name(mode);
}
std::string_view turn_policy_name(TurnPolicy policy) {
  return enum_name(policy);
}
std::string_view compute_dtype_name(ComputeDtype dtype) {
  return enum_name(dtype);
}
std::string_view method_name(TrainMethod method) {
  return enum_name(method);
}
std::string_view base_dtype_name(BaseDtype dtype) {
  return enum_name(dtype);
}

const std::vector<std::string>& recipe_keys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k;
    for (const Field& f : fields()) k.push_back(f.key);
    return k;
  }();
  return keys;
}

void TrainRecipe::validate() const {
  check(*this, [](std::string_view key) {
    ErrorContext ctx;
    ctx.field = std::string(key);
    return ctx;
  });
}

TrainRecipe TrainRecipe::resolved(int64_t processes) const {
  validate();
  if (processes < 1) throw Error(fmt::format("processes must be at least 1, found {}", processes));
  TrainRecipe r = *this;
  const int64_t per_step = micro_batch_size * processes;  // rows per micro-step, all processes
  if (effective_batch) {
    if (*effective_batch % per_step != 0) {
      throw Error(fmt::format("effective_batch {} is not a multiple of micro_batch_size {} x {} "
                              "process(es) = {}",
                              *effective_batch, micro_batch_size, processes, per_step))
          .in_field("effective_batch");
    }
    int64_t accum = *effective_batch / per_step;
    if (gradient_accumulation && *gradient_accumulation != accum) {
      throw Error(fmt::format("gradient_accumulation {} disagrees with effective_batch {} = "
                              "micro_batch_size {} x gradient_accumulation x {} process(es), which "
                              "needs gradient_accumulation {}; unset one of them "
                              "(gradient_accumulation=null or effective_batch=null)",
                              *gradient_accumulation, *effective_batch, micro_batch_size, processes,
                              accum))
          .in_field("gradient_accumulation");
    }
    r.gradient_accumulation = accum;
  } else {
    r.gradient_accumulation = gradient_accumulation.value_or(1);
    r.effective_batch = per_step * *r.gradient_accumulation;
  }
  return r;
}

TrainRecipe parse_recipe(std::string_view yaml, const std::string& source,
                         const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    ErrorContext ctx;
    ctx.file = source;
    if (e.mark.line >= 0) ctx.line = e.mark.line + 1, ctx.column = e.mark.column + 1;
    throw Error("not valid YAML: " + e.msg, ctx);
  }
  return read_document(root, source, overrides);
}

TrainRecipe load_recipe(const std::filesystem::path& path,
                        const std::vector<std::string>& overrides) {
  return parse_recipe(read_file(path), path.string(), overrides);
}

TrainRecipe recipe_from_overrides(const std::vector<std::string>& overrides) {
  return read_document(YAML::Node(YAML::NodeType::Map), "command line", overrides);
}

std::string to_yaml(const TrainRecipe& recipe) {
  std::string out =
      "# seqit training recipe (every field; docs/training.md, \"Recipes\"). null = the default.\n";
  std::string section;
  bool in_lora = false;
  for (const Field& f : fields()) {
    if (f.section != section) {
      section = f.section;
      out += fmt::format("\n# {}\n", section);
    }
    std::string key = f.key;
    std::string indent;
    if (key.starts_with("lora.")) {
      if (!in_lora) out += "lora:\n";
      in_lora = true;
      key = key.substr(5);
      indent = "  ";
    }
    std::string line = fmt::format("{}{}: {}", indent, key, f.write(recipe));
    if (!f.comment.empty()) {
      size_t pad = line.size() < 40 ? 40 - line.size() : 1;
      line += std::string(pad, ' ') + "# " + f.comment;
    }
    out += line + "\n";
  }
  return out;
}

}  // namespace seqit::train
