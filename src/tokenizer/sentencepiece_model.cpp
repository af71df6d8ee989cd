// SentencePiece .model files (Llama-2 and Mistral tokenizer.model) through libsentencepiece:
// encoding is the library's own, so ids are exactly SentencePiece's. Control pieces written in the
// text ("<s>", "[INST]") are split out first when parse_special (see piece_vocab.h); decoding uses
// the shared HF-style piece decoder so all Llama-2 formats decode alike.
#include <sentencepiece_processor.h>

#include "tokenizer/formats.h"
#include "tokenizer/piece_vocab.h"
#include "util/error.h"

namespace seqit::tokenizer {

namespace {
class SentencePieceTokenizer : public PieceVocabTokenizer {
 public:
  SentencePieceTokenizer(PieceVocab vocab,
                         std::unique_ptr<sentencepiece::SentencePieceProcessor> processor)
      : PieceVocabTokenizer(std::move(vocab)), processor_(std::move(processor)) {}

 protected:
  void encode_fragment(const TextPart& part, std::vector<TokenId>& ids,
                       std::vector<Span>* spans) const override {
    if (part.text.empty()) return;
    auto encoded = processor_->EncodeAsImmutableProto(part.text);
    for (const auto& piece : encoded.pieces()) {
      ids.push_back(TokenId(piece.id()));
      if (spans) {
        size_t b = piece.begin(), e = piece.end();
        spans->push_back(b < e ? part.original(b, e)
                               : Span{part.original_begin(), part.original_begin()});
      }
    }
  }

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
};
}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::filesystem::path& path) {
  auto processor = std::make_unique<sentencepiece::SentencePieceProcessor>();
  auto status = processor->Load(path.string());
  if (!status.ok()) {
    throw Error("not a readable SentencePiece model: " + status.ToString()).in_file(path.string());
  }
  PieceVocab v;
  v.path = path.string();
  const int n = processor->GetPieceSize();
  for (int id = 0; id < n; ++id) {
    PieceType type = processor->IsUnknown(id)   ? PieceType::unknown
                     : processor->IsControl(id) ? PieceType::control
                     : processor->IsUnused(id)  ? PieceType::unused
                     : processor->IsByte(id)    ? PieceType::byte
                                                : PieceType::normal;
    v.pieces.push_back(processor->IdToPiece(id));
    v.scores.push_back(processor->GetScore(id));
    v.types.push_back(type);
  }
  auto id_or_none = [](int id) -> std::optional<TokenId> {
    return id >= 0 ? std::optional<TokenId>(id) : std::nullopt;
  };
  v.unk = id_or_none(processor->unk_id());
  v.bos = id_or_none(processor->bos_id());
  v.eos = id_or_none(processor->eos_id());
  v.add_bos = true;  // as LlamaTokenizer and Mistral's tokenizers do
  v.add_eos = false;
  // Whether the model adds a dummy "▁" prefix decides whether decoding strips one leading space.
  auto probe = processor->EncodeAsPieces("a");
  v.add_space_prefix = !probe.empty() && probe[0].rfind("\xE2\x96\x81", 0) == 0;
  v.description = "SentencePiece model (" + std::to_string(n) + " pieces)";
  return std::make_unique<SentencePieceTokenizer>(std::move(v), std::move(processor));
}

}  // namespace seqit::tokenizer
