"""A zero-shot cloze task built from held-out documents: which word ends this sentence?

The documents come from pack's validation split, which no training stage reads, so the task measures language
modelling rather than memorisation. Every wrong choice is a real word: one that occurs at least `min_word_count`
times in those documents (a broken fragment would be easy to reject for the wrong reason), with the answer's
capitalisation and a length within two letters of it, so that neither shape nor length gives the answer away.
"""

import random
import re
from collections import Counter, defaultdict

# a word: letters only, at least 3 of them; a sentence end: such a word, then . ! or ?, then space, a quote or the end
WORD = re.compile(r"[^\W\d_]{3,}")
SENTENCE_END = re.compile(r"(?<=\s)([^\W\d_]{3,})[.!?](?=[\s\"'”’)]|$)")
MIN_CONTEXT_WORDS = 6


def sentence_ends(text: str, max_context_chars: int) -> list[tuple[str, str]]:
    """(context, last word) for each sentence of `text`: the context is the text before the word, its last
    `max_context_chars` characters cut at a space, whitespace collapsed."""
    ends = []
    for match in SENTENCE_END.finditer(text):
        before = text[: match.start(1)]
        cut = before[-max_context_chars:]
        if len(before) > max_context_chars:
            cut = cut.split(maxsplit=1)[-1] if " " in cut.strip() else cut
        context = " ".join(cut.split())
        if len(context.split()) >= MIN_CONTEXT_WORDS:
            ends.append((context, match.group(1)))
    return ends


def shape(word: str) -> str:
    return "upper" if word.isupper() else "title" if word[0].isupper() else "lower"


def by_shape_and_length(vocabulary: list[str]) -> dict[tuple[str, int], list[str]]:
    groups = defaultdict(list)
    for word in vocabulary:
        groups[shape(word), len(word)].append(word)
    return groups


def distractors(answer: str, groups: dict[tuple[str, int], list[str]], num: int, rng: random.Random) -> list[str] | None:
    """`num` real words of the answer's shape and about its length, none the answer in another case."""
    fits = [w for length in range(len(answer) - 2, len(answer) + 3) for w in groups.get((shape(answer), length), [])
            if w.lower() != answer.lower()]
    return rng.sample(fits, num) if len(fits) >= num else None


def cloze_items(texts: list[str], num_items: int, num_choices: int, seed: int, max_context_chars: int = 400,
                min_word_count: int = 2) -> list[dict]:
    """Up to `num_items` items {context, choices, answer}: the choices are " word" strings (lm-eval scores the
    log-likelihood of each after the context), `answer` the index of the real one. The same texts and seed give
    the same items."""
    counts = Counter(word for text in texts for word in WORD.findall(text))
    groups = by_shape_and_length(sorted(word for word, count in counts.items() if count >= min_word_count))
    candidates = [end for text in texts for end in sentence_ends(text, max_context_chars)]
    rng = random.Random(seed)
    rng.shuffle(candidates)
    items = []
    for context, answer in candidates:
        wrong = distractors(answer, groups, num_choices - 1, rng)
        if wrong is None:
            continue
        choices = [answer, *wrong]
        rng.shuffle(choices)
        items.append({"context": context, "choices": [f" {c}" for c in choices], "answer": choices.index(answer)})
        if len(items) == num_items:
            break
    return items


def fit_context(item: dict, count_tokens, max_tokens: int) -> dict:
    """The item with its context cut from the left, whole words at a time, until context and its longest choice
    fit in `max_tokens` (the model's window: lm-eval would cut tokens mid-word otherwise)."""
    words, longest = item["context"].split(" "), max(item["choices"], key=count_tokens)
    while len(words) > MIN_CONTEXT_WORDS and count_tokens(" ".join(words) + longest) > max_tokens:
        words = words[max(1, len(words) // 8):]
    return item | {"context": " ".join(words)}
