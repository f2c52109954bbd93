"""Builds the project's small byte-level BPE tokenizers and the tokenizer/chat-template fixtures (run by hand;
output is committed).

    /work/pyenv/bin/python tools/make_tokenizers.py

Two tokenizers, trained with Hugging Face `tokenizers` on the small built-in corpus below, laid out as the
real ones are (pre-tokenizer regex + ByteLevel, ByteLevel decoder, special tokens):
  assets/tokenizers/llama3/   Llama-3 pre-tokenizer regex, <|begin_of_text|> added by a TemplateProcessing
                              post-processor, Llama-3-Instruct chat template
  assets/tokenizers/qwen2/    Qwen2 pre-tokenizer regex (single digits), NFC normalizer, no BOS,
                              ChatML (Qwen2-Instruct) chat template
each with tokenizer.json and tokenizer_config.json.

Fixtures (what Python produces, for test/model/tokenizer.test.ts and chat-template.test.ts):
  test/fixtures/tokenizer/<name>-expected.json   ids for hard strings with/without special tokens, and decodes
  test/fixtures/tokenizer/chat-expected.json      transformers' apply_chat_template output for message lists
"""
import json
import pathlib
import tempfile

import tokenizers
import transformers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets" / "tokenizers"
FIXTURES = ROOT / "test" / "fixtures" / "tokenizer"
VOCAB_SIZE = 1024  # incl. the 256 byte symbols and the special tokens

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# Llama-3-Instruct's template, verbatim.
LLAMA3_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
# Qwen2-Instruct's ChatML template, verbatim.
QWEN2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = [
    # English: instructions, answers, prose, arithmetic, code — the kind of text the arena uses.
    "Write a short answer to the question. Keep it clear, correct and helpful.",
    "Question: What is 12 plus 30? Answer: 12 plus 30 is 42. The answer is 42.",
    "Question: What is the capital of France? Answer: The capital of France is Paris.",
    "List three colours: red, green and blue. Then count from one to ten: 1 2 3 4 5 6 7 8 9 10.",
    "The quick brown fox jumps over the lazy dog. It's a sentence that uses every letter of the alphabet.",
    "I'm sure you'll agree that we've done what they'd asked; don't you think so? We'll see.",
    "Sort the numbers 17, 3, 256, 1024 and 99 in ascending order: 3, 17, 99, 256, 1024.",
    "Reverse the word 'stream': maerts. Spell 'model' backwards: ledom. Repeat the word 'yes' three times.",
    "A language model assigns a probability to every sequence of tokens. Sampling draws the next token at random.",
    "The assistant answered the user politely. The user thanked the assistant and asked another question.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))  # prints 5\n",
    "for (let i = 0; i < n; i++) {\n  total += values[i];\n}\nconsole.log(`total = ${total}`);\n",
    "Rewards are computed from log-probabilities: r = beta * (log p(y|x) - log q(y|x)). Longer is not better.",
    "Summarize: The meeting started at 9:30 and ended at 11:45. Three decisions were made; two were postponed.",
    "Translate to French: Good morning, how are you? Bonjour, comment allez-vous ? Très bien, merci !",
    # Other languages, so multilingual text merges beyond single bytes.
    "Le renard brun rapide saute par-dessus le chien paresseux. Où est la bibliothèque ? À côté de l'école.",
    "Der schnelle braune Fuchs springt über den faulen Hund. Grüße aus München! Straße, Mädchen, schön.",
    "El rápido zorro marrón salta sobre el perro perezoso. ¿Dónde está la estación? ¡Qué bueno!",
    "Быстрая коричневая лиса прыгает через ленивую собаку. Привет, как дела? Спасибо, хорошо.",
    "敏捷的棕色狐狸跳过了懒狗。你好，世界！我们今天学习语言模型。",
    "素早い茶色の狐が怠け者の犬を飛び越える。こんにちは、世界！日本語のテキストです。",
    "빠른 갈색 여우가 게으른 개를 뛰어넘는다. 안녕하세요, 세계!",
    "الثعلب البني السريع يقفز فوق الكلب الكسول. مرحبا بالعالم!",
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है। नमस्ते दुनिया!",
    "Emoji: 😀 👍 🎉 ❤️ 🚀 — and punctuation… «quotes» “curly” ‘single’.",
]
CORPUS_REPEATS = 4  # so the common merges pass min_frequency


HARD_STRINGS = [
    "Hello, world!",
    "",
    " ",
    "   leading and trailing spaces   ",
    "tabs\tand\t\tmore\ttabs",
    "line one\nline two\n\nline four\r\nwindows line\r\n\r\n",
    "whitespace     runs   \n   \n\n\n  end",
    "digits 1 12 123 1234 12345 1234567890 3.14159 -42 1,000,000 0x1F",
    "I'M sure you'LL agree THEY'D done it; isn't it? We've, they're, she's.",
    "Größe, naïve café, résumé, São Paulo, Zürich, Ærø, façade",
    "e\u0301 (decomposed é) vs \u00e9 (composed), \ufb01 ligature, Å vs A\u030a",
    "你好，世界！机器学习很有趣。",
    "こんにちは、世界！カタカナとひらがな。",
    "안녕하세요 세계",
    "Привет, мир! Ёжик в тумане.",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "emoji 😀👍🏽 family 👨‍👩‍👧‍👦 flag 🇫🇷 heart ❤️ rocket🚀",
    "mixed: café 123 😀 Привет 你好\n\tend",
    "special tokens inline: <|begin_of_text|>hi<|eot_id|> and <|im_start|>user\nyo<|im_end|> <|endoftext|>",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n",
    "almost special: <|im_start <|eot_id| |im_end|>",
    "code:\n    def f(x):\n        return x ** 2  # square\n",
    "symbols !@#$%^&*()_+-=[]{}|;':\",./<>?`~ and ... ellipsis… — dash",
    "\u200b zero width \u00a0 nbsp \u3000 ideographic space \u2028 line sep",
    "a" * 50 + " " + "ab" * 20,
]

CHAT_CASES = [
    [{"role": "user", "content": "What is 2 + 2?"}],
    [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": "Name a colour."},
     {"role": "assistant", "content": "  Blue.  "}, {"role": "user", "content": "Another one, please.\n"}],
    [{"role": "user", "content": "Héllo 😀\n\nmulti-line\ttext"}, {"role": "assistant", "content": "Hi!"}],
]


def build(name: str, pattern: str, specials: list[str], bos: str | None, eos: str, nfc: bool, template: str) -> None:
    tok = Tokenizer(models.BPE())
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, min_frequency=2, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * CORPUS_REPEATS, trainer=trainer)
    if bos is not None:
        bos_id = tok.token_to_id(bos)
        tok.post_processor = processors.TemplateProcessing(single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
                                                           special_tokens=[(bos, bos_id)])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)

    out = ASSETS / name
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": bos,
        "eos_token": eos,
        "pad_token": eos,
        "unk_token": None,
        "chat_template": template,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 131072,
        "added_tokens_decoder": {
            str(tok.token_to_id(s)): {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                                      "single_word": False, "special": True}
            for s in specials
        },
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")

    cases = []
    for text in HARD_STRINGS:
        with_special = tok.encode(text, add_special_tokens=True).ids
        without = tok.encode(text, add_special_tokens=False).ids
        normalized = tok.normalizer.normalize_str(text) if tok.normalizer else text
        cases.append({
            "text": text,
            # the regex split alone: with a small vocab, ids could hide a split difference
            "pre_tokens": [piece for piece, _ in tok.pre_tokenizer.pre_tokenize_str(normalized)],
            "ids": with_special,
            "ids_no_special": without,
            "decoded": tok.decode(with_special, skip_special_tokens=False),
            "decoded_skip_special": tok.decode(with_special, skip_special_tokens=True),
        })
    expected = {
        "tokenizers_version": tokenizers.__version__,
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "special_tokens": {s: tok.token_to_id(s) for s in specials},
        "cases": cases,
    }
    (FIXTURES / f"{name}-expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
    print(f"{name}: vocab {expected['vocab_size']}, {len(cases)} cases")


def chat_fixture() -> None:
    out = {"transformers_version": transformers.__version__, "cases": []}
    for name in ("llama3", "qwen2"):
        tok = AutoTokenizer.from_pretrained(str(ASSETS / name))
        for messages in CHAT_CASES:
            for gen in (False, True):
                text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
                ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=gen, return_dict=False)
                out["cases"].append({"tokenizer": name, "messages": messages, "add_generation_prompt": gen,
                                     "text": text, "ids": list(ids)})
    (FIXTURES / "chat-expected.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"chat: {len(out['cases'])} cases")


def main() -> None:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    build("llama3", LLAMA3_PATTERN,
          ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
          bos="<|begin_of_text|>", eos="<|eot_id|>", nfc=False, template=LLAMA3_CHAT_TEMPLATE)
    build("qwen2", QWEN2_PATTERN, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
          bos=None, eos="<|im_end|>", nfc=True, template=QWEN2_CHAT_TEMPLATE)
    chat_fixture()


if __name__ == "__main__":
    main()
