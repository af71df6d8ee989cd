// The loaders behind load_tokenizer(), one per file format (internal to tokenizer/).
#pragma once

#include <filesystem>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "tokenizer/tokenizer.h"
#include "util/mapped_file.h"

namespace seqit::tokenizer {

// llama2.c tokenizer.bin: int32 max_token_length, then per token float score, int32 length, bytes.
// looks_like_llama2c checks the header only, so that a corrupt file gets the loader's error (which
// token, which field, which byte) rather than "unrecognised format".
bool looks_like_llama2c(const MappedFile& file);
std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::filesystem::path& path);

// HF tokenizer.json (with tokenizer_config.json beside it when present).
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::filesystem::path& path);
// A tokenizer from an already parsed tokenizer.json document (GGUF's BPE vocabularies are turned
// into one); `description` replaces the default describe() text when not empty.
std::unique_ptr<Tokenizer> make_hf_tokenizer(const nlohmann::json& doc,
                                             const nlohmann::json* config, const std::string& where,
                                             const std::string& description = {});

// SentencePiece model protobuf (tokenizer.model).
std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::filesystem::path& path);

// The tokenizer.ggml.* vocabulary of a GGUF file.
std::unique_ptr<Tokenizer> load_gguf_tokenizer(const std::filesystem::path& path);

}  // namespace seqit::tokenizer
