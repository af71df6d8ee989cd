// Internal to data/: one record <-> the JSON object or TSV row of each schema, format guessing,
// and Python-compatible JSON text. Includes <nlohmann/json.hpp>, so only data/*.cpp include it.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "data/format.h"
#include "data/record.h"
#include "data/writer.h"

namespace seqit::data::codec {

using Json = nlohmann::ordered_json;

// The schema a JSON record most likely has, from its keys; nullopt when none fits.
std::optional<Schema> guess_schema(const Json& record);

// Decodes one JSON record of `schema`. Throws seqit::Error naming the field for missing fields and
// wrong types.
Record decode(Schema schema, Json&& record);
// Encodes a record as a JSON object of `schema` (converting Instruction <-> Conversation when the
// schema needs the other kind). Throws seqit::Error when the record cannot be represented.
Json encode(Schema schema, const Record& record);

// FlanCoT TSV: one line (without its newline) <-> one Instruction. Errors carry the column.
Record decode_flancot_tsv(std::string_view line);
std::string encode_flancot_tsv(const Record& record);

// Appends `value` as Python's json.dumps writes it: ", " and ": " separators on one line
// (indent < 0), or Python's indented layout; non-ASCII escaped as \uXXXX when `ascii`
// (ensure_ascii=True). `level` is the nesting depth of `value` (for indentation).
void dump(const Json& value, const WriteOptions& style, int level, std::string& out);

// A one-line description of what `schema` records look like ("{instruction, input?, ...}").
std::string expected_fields(Schema schema, Container container);

}  // namespace seqit::data::codec
