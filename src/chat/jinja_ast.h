// The syntax tree of a parsed template: expressions (Expr) and statements (Stmt), each with its
// 1-based line and column in the template for error messages.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chat/jinja_value.h"

namespace seqit::chat::jinja {

class Interpreter;
struct CallArgs;
using FilterFn = Value (*)(Interpreter&, const Value& operand, CallArgs& args);
using TestFn = bool (*)(Interpreter&, const Value& operand, CallArgs& args);

// Operators, resolved at parse time so evaluation does not compare strings.
enum class Op : uint8_t {
  None,
  Add,
  Sub,
  Mul,
  Div,
  FloorDiv,
  Mod,
  Pow,
  And,
  Or,
  Not,
  Neg,
  Pos,
  Eq,
  Ne,
  Lt,
  Le,
  Gt,
  Ge,
  In,
  NotIn,
};
// The operator's spelling, for messages ("+", "//", "not in", ...).
const char* op_text(Op op);
// The operator for a spelling (binary: "+", "and", ...; comparison: "==", "in", ...), or Op::None.
Op binary_op(std::string_view text);
Op compare_op(std::string_view text);

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    Literal,     // value
    Name,        // name
    List,        // children
    Tuple,       // children
    Dict,        // children: key0, value0, key1, value1, ...
    Attribute,   // children[0].name  (jinja2 getattr: attribute first, then item)
    Item,        // children[0][children[1]]  (jinja2 getitem: item first, then attribute)
    Slice,       // children[0][a:b:c]; children[1..3] may be null
    Call,        // children[0](args)
    Filter,      // children[0] | name(args); children[0] is null in a filter block
    Test,        // children[0] is name(args)
    Unary,       // op children[0]: "-", "+", "not"
    Binary,      // children[0] op children[1]: + - * / // % ** and or
    Concat,      // children joined with ~
    Compare,     // children[0] ops[0] children[1] ops[1] children[2] ...
    Conditional  // children[1] if children[0] else children[2] (children[2] may be null)
  };
  Kind kind;
  int line = 0, column = 0;
  Value value;       // Literal
  std::string name;  // Name, Attribute, Filter, Test; operator for Unary/Binary
  Op op = Op::None;  // Unary/Binary operator
  std::vector<ExprPtr> children;
  std::vector<Op> ops;  // Compare: Eq, Ne, Lt, Le, Gt, Ge, In, NotIn
  // Call/Filter/Test arguments (Filter/Test: the operand is children[0], not an argument).
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  ExprPtr star_args, star_kwargs;  // f(*a, **k)
  FilterFn filter_fn = nullptr;  // Filter: the builtin, resolved at parse time (null: unknown name)
  TestFn test_fn = nullptr;      // Test: likewise

  Expr(Kind k, int l, int c) : kind(k), line(l), column(c) {}
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

// A macro or call-block parameter: name and optional default.
struct Parameter {
  std::string name;
  ExprPtr default_value;
};

struct Stmt {
  enum class Kind {
    Text,         // text
    Output,       // {{ expr }}
    If,           // if expr: body, else: else_body (elif chains nest in else_body)
    For,          // for target in expr [if filter] [recursive]: body; else: else_body
    Set,          // set target = expr
    SetBlock,     // set name [| filter]: body
    Macro,        // macro name(params): body
    CallBlock,    // call(params) expr: body
    FilterBlock,  // filter chain: body
    With,         // with assignments: body
    Generation,   // HF's {% generation %} ... {% endgeneration %}
    Break,
    Continue,
  };
  Kind kind;
  int line = 0, column = 0;
  std::string text;  // Text; Macro name; SetBlock name
  ExprPtr expr;      // Output, If test, For iterable, Set value, CallBlock call
  ExprPtr target;    // For/Set target: Name, Tuple of Names, or Attribute (ns.x)
  ExprPtr filter;    // For `if` filter; SetBlock/FilterBlock filter chain
  Body body, else_body;
  std::vector<Parameter> params;                         // Macro, CallBlock
  std::vector<std::pair<ExprPtr, ExprPtr>> assignments;  // With
  bool recursive = false;                                // For
  // Macro/CallBlock: the body refers to these special names (jinja2 only accepts extra arguments
  // when it does).
  bool uses_varargs = false, uses_kwargs = false, uses_caller = false;

  Stmt(Kind k, int l, int c) : kind(k), line(l), column(c) {}
};

struct Program {
  std::string name;
  Body body;
};

}  // namespace seqit::chat::jinja
