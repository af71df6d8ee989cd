// The dynamic value type of the Jinja interpreter, with Python semantics (what Hugging Face's
// Python jinja2 does when it renders a chat template): None, bool, int, float, str, list/tuple,
// dict (insertion-ordered), callables (functions, macros), attribute objects (namespace(), loop),
// and jinja2's Undefined.
//
// Strings carry *provenance*: byte ranges that are verbatim copies of a tagged input string (the
// content of an assistant message). Concatenation, slicing, strip, split, join, replace and output
// keep those ranges aligned, so after rendering we know exactly which output bytes are assistant
// content even when the template rearranges or trims it (see docs/chat.md, "Assistant masks").
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace seqit::chat::jinja {

// A Python-level error inside the template (TypeError, UndefinedError, ...). The interpreter
// turns it into a seqit::Error carrying the template location of the expression that failed.
// Everything a template can provoke (comparisons, dict keys, JSON) throws this, never a bare
// std::runtime_error, which would escape the interpreter without a location.
struct EvalError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Bytes [begin, end) of a string were copied from the input string tagged `tag`.
struct Provenance {
  uint32_t begin = 0, end = 0;
  int32_t tag = 0;
};

// An immutable string with the provenance of its bytes (sorted by begin; may overlap when tags do).
struct StringData {
  std::string text;
  std::vector<Provenance> provenance;
  // markupsafe.Markup (from |safe, |escape): `+`, join, % and str methods HTML-escape the plain
  // strings they combine it with, as in Python jinja2 even with autoescape off.
  bool markup = false;
};

class Value;
struct ListData {
  std::vector<Value> items;
  bool tuple = false;  // printed as (a, b); never equal to a list, as in Python
};
struct DictData {
  std::vector<std::pair<Value, Value>> items;  // insertion order, keys unique under Python ==
  const Value* find(const Value& key) const;
  const Value* find(std::string_view key) const;
  const Value* find(const char* key) const { return find(std::string_view(key)); }
  const Value* find(const std::string& key) const { return find(std::string_view(key)); }
  void set(Value key, Value value);
};

class Interpreter;
struct CallArgs;
// A callable: builtin global, bound method, macro, or caller(). `self_name` is used in messages.
struct Function {
  std::string name;
  std::function<Value(Interpreter&, CallArgs&)> call;
};

// An object with attributes: namespace() (assignable with `set ns.x = ...`), the loop variable,
// cycler/joiner. `kind` names it in messages and printing.
struct ObjectData {
  std::string kind;
  std::vector<std::pair<std::string, Value>> attributes;
  bool assignable = false;
  const Value* find(std::string_view name) const;
  void set(std::string_view name, Value value);
};

class Value {
 public:
  enum class Kind : uint8_t {
    Undefined,
    None,
    Bool,
    Int,
    Float,
    String,
    List,
    Dict,
    Function,
    Object
  };

  Value() = default;  // Undefined
  static Value undefined(
      std::string hint);  // hint: why, for the error when it is used ("'x' is undefined")
  static Value none() { return Value(Kind::None); }
  Value(bool b) : kind_(Kind::Bool) { num_.b = b; }
  Value(int v) : kind_(Kind::Int) { num_.i = v; }
  Value(int64_t v) : kind_(Kind::Int) { num_.i = v; }
  Value(double v) : kind_(Kind::Float) { num_.f = v; }
  Value(const char* s) : Value(std::string(s)) {}
  Value(std::string s);
  Value(std::string_view s) : Value(std::string(s)) {}
  Value(StringData s);
  static Value string(std::shared_ptr<const StringData> s);
  static Value list(std::vector<Value> items = {}, bool tuple = false);
  static Value dict(std::vector<std::pair<Value, Value>> items = {});
  static Value function(std::string name, std::function<Value(Interpreter&, CallArgs&)> call);
  static Value object(std::string kind, std::vector<std::pair<std::string, Value>> attributes,
                      bool assignable);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::Undefined; }
  bool is_none() const { return kind_ == Kind::None; }
  bool is_bool() const { return kind_ == Kind::Bool; }
  bool is_int() const { return kind_ == Kind::Int; }
  bool is_float() const { return kind_ == Kind::Float; }
  bool is_number() const {
    return kind_ == Kind::Int || kind_ == Kind::Float || kind_ == Kind::Bool;
  }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_markup() const { return kind_ == Kind::String && string_data().markup; }
  bool is_list() const { return kind_ == Kind::List; }
  bool is_tuple() const { return kind_ == Kind::List && list_data().tuple; }
  bool is_dict() const { return kind_ == Kind::Dict; }
  bool is_function() const { return kind_ == Kind::Function; }
  bool is_object() const { return kind_ == Kind::Object; }

  bool as_bool() const { return num_.b; }
  int64_t as_int() const { return kind_ == Kind::Bool ? int64_t(num_.b) : num_.i; }
  // Int, bool or float as a double.
  double as_double() const;
  const std::string& str() const { return string_data().text; }
  const StringData& string_data() const { return *static_cast<const StringData*>(ptr_.get()); }
  std::shared_ptr<const StringData> string_ptr() const {
    return std::static_pointer_cast<const StringData>(ptr_);
  }
  const ListData& list_data() const { return *static_cast<const ListData*>(ptr_.get()); }
  ListData& list_data() { return *static_cast<ListData*>(ptr_.get()); }
  const std::vector<Value>& items() const { return list_data().items; }
  const DictData& dict_data() const { return *static_cast<const DictData*>(ptr_.get()); }
  DictData& dict_data() { return *static_cast<DictData*>(ptr_.get()); }
  const Function& function_data() const { return *static_cast<const Function*>(ptr_.get()); }
  const ObjectData& object_data() const { return *static_cast<const ObjectData*>(ptr_.get()); }
  ObjectData& object_data() { return *static_cast<ObjectData*>(ptr_.get()); }
  // Why this Undefined is undefined, e.g. "'foo' is undefined".
  std::string undefined_hint() const;

  // Python truthiness (Undefined is false).
  bool truthy() const;
  // Python's type name, for messages ("str", "int", "list", "dict", "NoneType", "Undefined").
  std::string type_name() const;
  // True when both are the same object (Python `is`) for reference types, or equal scalars.
  bool same_as(const Value& other) const;

 private:
  explicit Value(Kind k) : kind_(k) {}
  Kind kind_ = Kind::Undefined;
  union {
    bool b;
    int64_t i;
    double f;
  } num_{.i = 0};
  std::shared_ptr<void> ptr_;
};

// Python ==, with 1 == 1.0 == True, tuples never equal to lists, dicts equal regardless of order.
bool equals(const Value& a, const Value& b);
// Python <: numbers, strings (code point order), lists/tuples lexicographically; otherwise throws
// TypeError-like std::runtime_error naming the types.
bool less_than(const Value& a, const Value& b);

// Python str(): what `{{ value }}` prints. None -> "None", True -> "True", 1.0 -> "1.0",
// lists and dicts as Python reprs, Undefined -> "".
std::string to_str(const Value& v);
// Python repr().
std::string to_repr(const Value& v);
// Python float repr: shortest round-trip digits, "1.0", "1e-05", "1e+16", "inf", "nan".
std::string float_repr(double d);

struct JsonOptions {
  int indent = -1;            // < 0: single line
  std::string indent_string;  // used when indent is given as a string
  bool ensure_ascii = false;  // HF's tojson default (Python json.dumps would escape)
  bool sort_keys = false;
  std::string item_separator;  // empty = Python's default for the indent mode
  std::string key_separator;
  bool separators_given = false;
};
// Python json.dumps() with the given options (transformers' tojson filter). Throws for values JSON
// cannot hold (Undefined, functions).
std::string to_json(const Value& v, const JsonOptions& options = {});

// Provenance helpers for string operations.
// The provenance of bytes [begin, end) of `s`, shifted to start at 0.
std::vector<Provenance> slice_provenance(const StringData& s, size_t begin, size_t end);
// Appends `piece` (with its provenance) to `out`.
void append_string(StringData& out, const StringData& piece);
void append_string(StringData& out, std::string_view text);
// A string holding bytes [begin, end) of `v` (a string Value), provenance and Markup kept.
Value substring(const Value& v, size_t begin, size_t end);
// markupsafe.escape(): Markup unchanged; anything else str()-ed with & < > " ' escaped, as Markup.
// Provenance is kept on the unchanged bytes.
Value html_escape(const Value& v);
// `v` with its Markup flag set to `markup` (v must be a string).
Value with_markup(const Value& v, bool markup);

}  // namespace seqit::chat::jinja
