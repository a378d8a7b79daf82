"""PEM's entities: the most frequent nouns of the training captions (a small rule-based tagger, no
model download) and their prompt ensembles."""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

VIDEO_TEMPLATES = (
    "A footage of a {}.", "A footage of the {}.", "A footage of one {}.",
    "A video of a {}.", "A video of the {}.", "A video of one {}.",
    "A portrait of a {}.", "A portrait of the {}.", "A portrait of one {}.",
    "A video footage of a {}.", "A video footage of the {}.", "A video footage of one {}.",
)
"""ALPRO's prompt templates for video inputs (paper, Table 8)."""

BARE_TEMPLATES = ("a {}",)
"""One template in the style of the embedded world's frame captions ("a small red circle")."""

TEMPLATES = {"video": VIDEO_TEMPLATES, "bare": BARE_TEMPLATES}


DETERMINERS = frozenset("a an the this that these those some any each every another one two three four five six "
                        "seven eight nine ten several many few both all his her its their my your our".split())
PLURAL_DETERMINERS = frozenset("these those some two three four five six seven eight nine ten several many few both all".split())
STOP_WORDS = DETERMINERS | frozenset(
    # pronouns, prepositions, conjunctions, auxiliaries, adverbs and fillers frequent in captions
    "i me he him she it we us they them you who whom whose which what where when why how there here "
    "of in on at to from by with without into onto over under above below behind between through across "
    "around near along about against during before after up down off out left right away back "
    "and or but while then than as if so because also too very just only still again not no nor "
    "is are was were be been being am has have had do does did can could will would shall should may might must "
    "something someone somebody anything everything nothing thing things other another same such own "
    "video videos clip footage scene shown showing shows".split())
ADJECTIVES = frozenset(
    "small large big little tiny huge giant tall short long wide narrow thick thin fat "
    "red green blue yellow black white brown orange pink purple gray grey golden silver dark light bright "
    "young old new good bad great nice beautiful pretty cute ugly happy sad funny angry serious "
    "hot cold warm cool wet dry clean dirty full empty open closed first second third last next "
    "front back top bottom middle main real whole single double several various different same "
    "busy crowded sunny cloudy heavy fast slow loud quiet famous shiny fancy fresh strong soft hard "
    "round wild asian african american english chinese indian".split())
ADJECTIVE_SUFFIXES = ("ful", "ous", "ive", "able", "ible", "less", "ish")
IRREGULAR_PLURALS = {"men": "man", "women": "woman", "children": "child", "people": "people", "feet": "foot",
                     "teeth": "tooth", "mice": "mouse", "geese": "goose"}
_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|[^\sa-z]")


def _is_word(token: str) -> bool:
    return token[0].isalpha()


def _is_modifier(token: str) -> bool:
    """Adjective-like: in the lexicon, an adjective suffix, a participle (-ing, -ed) or a numeral."""
    return (token in ADJECTIVES or token.endswith(ADJECTIVE_SUFFIXES) or token.endswith(("ing", "ed"))
            or token.isdigit())


def singular(noun: str) -> str:
    """A plural noun's singular by suffix rules: -ies -> -y; -sses, -xes, -ches, -shes -> drop 'es'; -s -> drop."""
    if noun in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[noun]
    if noun.endswith("ies") and len(noun) > 4:
        return noun[:-3] + "y"
    if noun.endswith(("sses", "xes", "ches", "shes")):
        return noun[:-2]
    if noun.endswith("s") and not noun.endswith(("ss", "us", "is")):
        return noun[:-1]
    return noun


def noun_phrases(caption: str) -> list[tuple[tuple[str, ...], str]]:
    """(modifiers, head noun) of every determiner phrase of a caption, by a small rule-based tagger.

    A determiner ("a", "the", "two", "his", ...) opens a phrase; the adjective-like words after it
    (lexicon, suffixes -ful/-ous/-ive/-able/-ible/-less/-ish, participles -ing/-ed, numerals) are
    its modifiers as long as another word follows that is no stop word; the next word, if it is no
    stop word or punctuation, is the head noun (singularised after a plural determiner: "two dogs"
    -> "dog"). Nouns without a determiner ("people dancing") and compound heads ("a tennis ball"
    gives "tennis") are the known misses of so small a tagger.

        >>> noun_phrases("a small red circle moves left, then two dogs appear")
        [(('small', 'red'), 'circle'), ((), 'dog')]
    """
    tokens = _TOKEN.findall(caption.lower())
    out = []
    i = 0
    while i < len(tokens):
        det = tokens[i]
        i += 1
        if det not in DETERMINERS:
            continue
        mods = []
        while (i + 1 < len(tokens) and _is_word(tokens[i]) and tokens[i] not in STOP_WORDS and _is_modifier(tokens[i])
               and _is_word(tokens[i + 1]) and tokens[i + 1] not in STOP_WORDS):
            mods.append(tokens[i])
            i += 1
        if i < len(tokens) and _is_word(tokens[i]) and tokens[i] not in STOP_WORDS:
            head = singular(tokens[i]) if det in PLURAL_DETERMINERS else tokens[i]
            out.append((tuple(mods), head))
            i += 1
    return out


def mine_entities(captions: Iterable[str], size: int = 1000, kind: str = "nouns") -> tuple[str, ...]:
    """The ``size`` most frequent entities of the captions (count descending, then alphabetical).

    kind 'nouns': head nouns ("circle"), as ALPRO; 'phrases': head nouns with their modifiers
    ("small red circle"). Every occurrence counts. Fewer than ``size`` when the captions hold fewer.
    """
    if kind not in ("nouns", "phrases"):
        raise ValueError(f"kind must be 'nouns' or 'phrases', got {kind!r}")
    counts: Counter[str] = Counter()
    for caption in captions:
        for mods, head in noun_phrases(caption):
            counts[head if kind == "nouns" else " ".join((*mods, head))] += 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return tuple(word for word, _ in ranked[:size])


def entity_prompts(entities: Sequence[str], templates: Sequence[str]) -> list[str]:
    """Every template filled with every entity, template-major: prompt j * M + m is template j, entity m."""
    return [t.format(e) for t in templates for e in entities]
