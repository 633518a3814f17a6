"""REInstruct's text selection and post-filter (Chen et al., "REInstruct: Building Instruction Data from
Unlabeled Corpus", Findings of ACL 2024, arXiv 2408.10663; rules as published in the authors' code,
github.com/cs32963/REInstruct, ``prepare_unlabeled_texts.py`` and ``filter_rewritten.py``).

**Text selection** (:func:`select_text`) keeps a text that looks like a well-structured helpful answer. Rules,
each a reason when it drops a text:

1. ``length``: between 1,200 and 3,000 characters.
2. ``odd_punctuation``: none of ``...``, ``…``, ``™``, ``#``, ``&``, ``*``, ``®``, ``@``.
3. ``personal_pronouns``: at most 2 of we, our, I, I've, we've, we're, my, he, she, us (as words starting after a
   space or a line break).
4. ``question_marks``: at most one ``?``.
5. ``capitalized_words``: at most 2 words written in capitals. (The authors' code also counts numbers and
   ``I``, because its punctuation stripping is a no-op; we count words of two or more letters, all capitals.)
6. ``paragraph_starts``: paragraph-initial words are varied (at most one repeat), and between 4 and 10
   paragraphs start with an imperative verb ("Mix", "Choose") or between 4 and 10 with a present participle
   ("Mixing"), with at most one other paragraph besides. We skip list markers ("1.", "-", "Step 2:") before
   the first word, which the authors' regular expression did not; their verb list (a data file) is replaced by
   the list of instructional verbs below.

**Post-filter** (:func:`post_filter`) drops a generated (instruction, answer) pair when:

1. ``long_instruction``: the instruction is longer than 500 characters;
2. ``too_many_dashes``: the answer has more than 10 ``"- "`` list markers;
3. ``refers_to_text``: the instruction contains the word "this" (it points at a text the user never saw; the
   authors test the substring, we test the word);
4. ``mentions_web_text``: the answer says "web text" or "based on the information provided";
5. ``refusal``: the answer apologizes ("sorry", "I apologize"), when refusals are removed (the default).

Every threshold is a field of :class:`ReinstructRules`, set to the paper's value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_VERBS = """
accept access add adjust align allow apply arrange ask assemble attach avoid bake be begin boil book bring brush
build buy calculate call cancel change check choose clean clear click close collect combine compare complete
connect consider contact continue convert cook copy count cover create cut decide define delete describe design
determine develop dig discuss divide do download drain draw dress drink drive drop dry eat edit eliminate empty
enable enjoy ensure enter estimate examine exercise explain explore feed fill find finish fix fold follow
gather get give go grab grow handle hang heat help hire hold identify imagine improve include increase insert
install invest join keep know label lay learn leave let lift limit link list listen load locate look lower
maintain make manage mark measure meet melt mix monitor move name note notice open order organize pack paint
pay pick place plan plant play plug pour practice prepare press prevent print protect pull purchase push put
read record reduce register relax remember remove repeat replace research reset rest review rinse roll rub run
save scroll search season secure select sell send separate serve set share shop show sign simmer sit slice
soak sort speak spend spray spread squeeze stand start stay step stir stop store stretch study submit switch
take talk taste teach tell test think tie tighten top track train transfer treat trim try turn type unplug
update upload use visit wait walk warm wash watch water wear weigh whisk wipe work wrap write
shape cool proof knead fold grease preheat chop dice peel grate bring roast fry grill blend beat spoon sprinkle
strain scrub sand prime tape fill loosen unscrew screw drill mount level inflate lubricate charge restart reboot
backup configure log launch deploy commit verify compile debug import export paste format
""".split()
_ING_EXCEPTIONS = {
    "be": "being", "lie": "lying", "tie": "tying", "die": "dying", "see": "seeing", "agree": "agreeing",
    "get": "getting", "set": "setting", "put": "putting", "cut": "cutting", "run": "running", "sit": "sitting",
    "dig": "digging", "drop": "dropping", "plan": "planning", "shop": "shopping", "stop": "stopping",
    "step": "stepping", "stir": "stirring", "trim": "trimming", "wrap": "wrapping", "begin": "beginning",
    "plug": "plugging", "unplug": "unplugging", "top": "topping", "grab": "grabbing", "rub": "rubbing",
    "let": "letting", "forget": "forgetting", "submit": "submitting", "control": "controlling",
}


def _ing(verb: str) -> str:
    if verb in _ING_EXCEPTIONS:
        return _ING_EXCEPTIONS[verb]
    if verb.endswith("e") and not verb.endswith(("ee", "ye", "oe")):
        return verb[:-1] + "ing"
    return verb + "ing"


IMPERATIVE_VERBS = frozenset(_VERBS)
PARTICIPLES = frozenset(_ing(v) for v in _VERBS)

ODD_PUNCTUATION = ("...", "…", "™", "#", "&", "*", "®", "@")
PERSONAL_PRONOUNS = ("we ", "our ", "i ", "i've ", "we've ", "we're ", "my ", "he ", "she ", "us ")
_LIST_MARKER = re.compile(r"^(?:\d+[.)]|[-*•]|step\s+\d+\s*[:.)-]?)\s+", re.IGNORECASE)
_FIRST_WORD = re.compile(r"^([a-z]+)\s")
_CAPS_WORD = re.compile(r"^[^a-zA-Z]*[A-Z]{2,}[^a-z]*$")
_THIS = re.compile(r"\bthis\b", re.IGNORECASE)


@dataclass(frozen=True)
class ReinstructRules:
    min_chars: int = 1200
    max_chars: int = 3000
    max_personal_pronouns: int = 2
    max_question_marks: int = 1
    max_capitalized_words: int = 2
    min_verb_paragraphs: int = 4
    max_verb_paragraphs: int = 10
    max_instruction_chars: int = 500
    max_dash_items: int = 10
    remove_refusals: bool = True


def _paragraph_start_words(text: str) -> list[str]:
    words = []
    for line in text.lower().split("\n")[1:]:  # as in the paper: words that follow a line break
        line = _LIST_MARKER.sub("", line.strip())
        match = _FIRST_WORD.match(line)
        if match:
            words.append(match.group(1))
    return words


def select_text(text: str, rules: ReinstructRules = ReinstructRules()) -> str | None:
    """None when REInstruct's selection keeps ``text``; else the name of the first rule it fails."""
    if not rules.min_chars <= len(text) <= rules.max_chars:
        return "length"
    lower = text.lower()
    if any(mark in lower for mark in ODD_PUNCTUATION):
        return "odd_punctuation"
    pronouns = sum(lower.count(" " + p) + lower.count("\n" + p) for p in PERSONAL_PRONOUNS)
    if pronouns > rules.max_personal_pronouns:
        return "personal_pronouns"
    if lower.count("?") > rules.max_question_marks:
        return "question_marks"
    caps = sum(1 for word in text.split() if _CAPS_WORD.match(word))
    if caps > rules.max_capitalized_words:
        return "capitalized_words"
    starts = _paragraph_start_words(text)
    if len(set(starts)) < len(starts) - 1:
        return "paragraph_starts"
    line_breaks = text.count("\n")
    for vocabulary in (IMPERATIVE_VERBS, PARTICIPLES):
        count = sum(1 for word in starts if word in vocabulary)
        if rules.min_verb_paragraphs <= count <= rules.max_verb_paragraphs and line_breaks < count + 2:
            return None
    return "paragraph_starts"


def post_filter(instruction: str, answer: str, rules: ReinstructRules = ReinstructRules()) -> str | None:
    """None when the generated pair passes REInstruct's post-filter; else the name of the rule it fails."""
    answer_lower = answer.lower()
    if len(instruction) > rules.max_instruction_chars:
        return "long_instruction"
    if answer.count("- ") > rules.max_dash_items:
        return "too_many_dashes"
    if _THIS.search(instruction):
        return "refers_to_text"
    if "web text" in answer_lower or "based on the information provided" in answer_lower:
        return "mentions_web_text"
    if rules.remove_refusals and ("sorry" in answer_lower or "i apologize" in answer_lower):
        return "refusal"
    return None
