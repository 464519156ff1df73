"""Normalised exact match with answer extraction: the ``normalized`` collapsing function.

Two answers are one class when their *normalised answer spans* are equal. The span is found in
three steps (:func:`extract_answer`), then normalised (:func:`normalize_text`):

1. **Marker.** When the text has an explicit answer marker (``####``, ``Answer:``, ``Final
   answer:``, ``The answer is``, ``answer is``; the last one wins, as chain of thought may mention
   "answer" earlier), the span is what follows it on its line (or the next line when the marker
   ends its line).
2. **First sentence.** Otherwise the span is the first non-empty line, and of it the first
   sentence (a full stop before a capital or a digit, never after a single letter, a digit or a
   short abbreviation such as "Dr" or "St", so "J. K. Rowling" and "3.5" survive). Within the
   span: what follows the last ``=`` when there is one ("2 + 3 = 5" -> "5"); parentheses are
   dropped (unless nothing else is left); an appositive or relative clause after a comma or a
   dash (", which", ", the", ", a", " - ", ...) is cut.
3. **Restatement.** The words of the restated question are stripped from both ends of the span:
   words whose crude stem (``-s``, ``-es``, ``-ed``, ``-ing`` removed) occurs in the question,
   plus filler (copulas "is/was/are/were", "it", "there", "called", "known as", pronouns,
   "has/have", leading prepositions "in/at/on/by", hedges "I think"). A passive "X was written
   by Y" keeps Y; when a copula is left inside the span, the side that restates the question is
   dropped ("Paris is the capital of France" -> "paris"). Stripping never empties a span: when
   every word is the question's (the question lists the options, or a one-word answer repeats
   one of its words), only the filler is stripped, and if that empties it too the span is kept
   whole. "yes" / "no" at the very start of the span is the whole answer.

Normalisation follows SQuAD's (lower case; punctuation and the articles a/an/the removed, unless
the articles are all there is, as in "A" for a blood type; whitespace collapsed) with additions:
Unicode NFKC, curly quotes and dashes folded, Latin accents removed ("Pelé" == "pele"), case
folded, possessive "'s" dropped, number words up to the thousands written as digits ("eight" ->
"8", "forty-two" -> "42"), thousands separators dropped ("2,125" == "2125"), decimals kept
("3.5", with trailing zeros removed: "3.50" -> "3.5") and a leading minus sign kept ("-4").
Apostrophes vanish ("don't" -> "dont"); other punctuation and symbols become spaces
("Jean-Paul" == "Jean Paul"), except the signs that carry meaning:

- a run of ``+`` after a word and a ``-`` after a short symbol stay: grades and blood groups
  ("A+" != "A" != "A-"), charges ("Fe2+" != "Fe3+", "Fe³⁺" == "Fe3+"), "C++"; blood groups
  written out are their sign ("O negative" == "O neg" == "O-"; an upper-case letter is needed
  for "A positive", so the article in "a positive attitude" stays an article);
- ``#`` after a letter ("C#", "F#");
- a percent after a number stays on it ("5%" == "5 percent" != "5");
- a number's unit is written as its symbol, one word after the number: degrees ("100°C" ==
  "100 degrees Celsius" == "100 °c" != "100 °f" != "100"; "90 degrees" == "90 °"), kelvins
  ("273 k") and lengths, masses, volumes and times ("5 kilometres" == "5km" == "5 km").

Dotted abbreviations are their undotted form ("U.S.A." == "USA", "J. K. Rowling" ==
"JK Rowling"; every letter needs its dot, so "Plan B. I think" is no abbreviation).

A unit the question names is a restatement: asked "in degrees Celsius", "100°C" is "100", and
asked "what percentage", "71%" is "71".

Grading (:func:`matches_gold`): a class is correct when its label equals a gold alias normalised
the same way (both with and without extraction), or when the label *starts with* a whole alias
and adds at most ``max_extra_tokens`` (default 2) further words, none of them a negation,
disjunction or hedge ("paris france" matches "paris"; "not paris", "paris or london" and
"paris not london" do not). The alias must open the label, so "new york" does not match "york".
Added words may not be a regnal number ("napoleon iii" is not "napoleon"), nor, after a number,
a unit other than those the question names (asked in Celsius, "100 °f" is not "100").

Classes follow the grader: every answer it grades correct is one class, labelled with the first
gold form (:func:`recal.semantic.base.merge_correct`), so "Paris", "Paris city" and "paris." are
one class "paris" and the modal share counts all of them. Wrong answers keep their own labels.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence

from recal.data.records import Question
from recal.lines import split_lines
from recal.semantic.base import Collapser, merge_correct

__all__ = [
    "NormalizedCollapser",
    "extract_answer",
    "gold_forms",
    "grade_reason",
    "matches_gold",
    "normalize_answer",
    "normalize_text",
    "number_words_to_digits",
]

# --------------------------------------------------------------------------- number words

_UNITS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
          "seven": 7, "eight": 8, "nine": 9}
_TEENS = {"ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
          "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60,
         "seventy": 70, "eighty": 80, "ninety": 90}
_SCALES = {"hundred": 100, "thousand": 1000}
_NUMBER_WORDS = {**_UNITS, **_TEENS, **_TENS, **_SCALES}
_NW = "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True))
_NUMBER_RUN = re.compile(
    rf"\b(?:{_NW})(?:(?:\s+and\s+|[\s-]+)(?:{_NW}))*\b", re.IGNORECASE)


def _parse_number_words(words: Sequence[str]) -> int | None:
    """The value of a well-formed run of number words ("two hundred and five"), else None."""
    total, current, last = 0, 0, ""
    for w in words:
        if w == "and":
            if last not in ("hundred", "scale"):
                return None
            continue
        if w == "zero":
            if len(words) != 1:
                return None
            return 0
        if w in _UNITS:
            if last in ("unit", "teen"):
                return None
            current += _UNITS[w]
            last = "unit"
        elif w in _TEENS or w in _TENS:
            if last in ("unit", "teen", "tens"):
                return None
            current += _TEENS.get(w) or _TENS[w]
            last = "teen" if w in _TEENS else "tens"
        elif w == "hundred":
            if last in ("hundred",) or current >= 100:
                return None
            current = (current or 1) * 100
            last = "hundred"
        else:  # thousand
            if last == "scale" or total:
                return None
            total, current, last = (current or 1) * 1000, 0, "scale"
    return total + current


def number_words_to_digits(text: str) -> str:
    """Write runs of English number words as digits: "forty-two" -> "42", "a hundred" -> "a 100".

    Runs that do not read as one number ("one two three") are converted word by word.
    """

    def replace(match: re.Match[str]) -> str:
        words = [w for w in re.split(r"[\s-]+", match.group(0).lower()) if w]
        value = _parse_number_words(words)
        if value is not None:
            return str(value)
        return " ".join(str(_NUMBER_WORDS[w]) if w in _NUMBER_WORDS else w for w in words)

    return _NUMBER_RUN.sub(replace, text)


# --------------------------------------------------------------------------- normalisation

_FOLD = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201b": "'", "\u02bc": "'", "\u2032": "'", "`": "'",
    "\u201c": '"', "\u201d": '"', "\u2212": "-", "\u2010": "-", "\u2011": "-", "\u2012": "-",
    "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u00ba": "\u00b0",  # "º" written for "°"
})
_ARTICLES = frozenset({"a", "an", "the"})
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_POSSESSIVE = re.compile(r"(?<=\w)'s\b")
_TRAILING_ZEROS = re.compile(r"^(-?\d+)\.(\d*?)0+(%?)$")

# Blood groups written out: "O negative", "AB pos", "O Rh-negative" -> "O-", "AB+". Runs before
# case folding: a lower-case "a positive" is an article and an adjective, not a blood group.
_BLOOD_GROUP = re.compile(
    r"(?<![^\W_])(AB|ab|Ab|A|B|b|O|o)[ \t-]*(?:(?i:rh)[ \t-]*)?((?i:positive|negative|pos|neg))\b")
# Dotted abbreviations: "U.S.A." == "USA", "J.K." == "J. K." == "JK"; at least two letters, each
# with its dot (a spaced form needs every dot, so "Plan B. I think" is not an abbreviation).
_DOTTED = re.compile(
    r"(?<![^\W_])(?:(?:[^\W\d_]\.){1,}[^\W\d_](?![^\W_])\.?|(?:[^\W\d_]\.[ \t]){1,}[^\W\d_]\.)")
_PERCENT = re.compile(r"(\d)\s*(?:%|per\s*cent\b)")
# Temperatures and angles: "100°C", "100 ° C", "100 degrees Celsius", "100 celsius" -> "100 °c".
_DEGREES = re.compile(
    r"(\d)\s*(?:(?:°|\bdegrees?\b|\bdeg\b)\s*(?:(celsius|centigrade|c)|(fahrenheit|f)|"
    r"(kelvin|k))?|(celsius|centigrade)|(fahrenheit)|(kelvin))(?![^\W_])")
# Units after a number, in their symbol: "5 kilometres" == "5 km" == "5km".
_UNIT_WORDS = {
    "km": ("kilometre", "kilometres", "kilometer", "kilometers", "km", "kms"),
    "m": ("metre", "metres", "meter", "meters"),
    "cm": ("centimetre", "centimetres", "centimeter", "centimeters", "cm"),
    "mm": ("millimetre", "millimetres", "millimeter", "millimeters", "mm"),
    "kg": ("kilogram", "kilograms", "kilogramme", "kilogrammes", "kilo", "kilos", "kg", "kgs"),
    "g": ("gram", "grams", "gramme", "grammes"),
    "mg": ("milligram", "milligrams", "mg"),
    "l": ("litre", "litres", "liter", "liters"),
    "ml": ("millilitre", "millilitres", "milliliter", "milliliters", "ml"),
    "s": ("second", "seconds", "sec", "secs"),
    "min": ("minute", "minutes", "mins"),
    "h": ("hour", "hours", "hr", "hrs"),
    "ft": ("foot", "feet", "ft"),
    "mi": ("mile", "miles"),
    "mph": ("miles per hour", "mph"),
    "kph": ("kilometres per hour", "kilometers per hour", "km/h", "kmh", "kph"),
}
_UNIT_OF = {word: symbol for symbol, words in _UNIT_WORDS.items() for word in words}
_UNIT = re.compile(
    r"(\d)[ \t]*(" + "|".join(re.escape(w) for w in sorted(_UNIT_OF, key=len, reverse=True))
    + r")(?![^\W_])")
# Symbols that carry meaning and survive: a sign run after a word ("A+", "C++", "Fe3+"), a
# sharp ("C#", "F#"), a minus after a short symbol ("A-", "O-", "Cl-": not "Paris-" from a
# dash), a percent after a digit, the degree sign.
_KEEP_PLUS = re.compile(r"(?<=[^\W_])\++(?![^\W_])")
_KEEP_SHARP = re.compile(r"(?<=[^\W\d_])#(?![^\W_])")
_KEEP_MINUS = re.compile(r"(?<![^\W_])[^\W\d_]{1,2}\d*(-)(?![^\W_])")
_KEEP_PERCENT = re.compile(r"(?<=\d)%")
_UNIT_SYMBOLS = frozenset(_UNIT_WORDS) | {"°", "°c", "°f", "k"}


def _strip_accents(text: str) -> str:
    # Only the combining marks of Latin/Greek/Cyrillic diacritics; other scripts keep theirs.
    decomposed = unicodedata.normalize("NFKD", text)
    kept = "".join(c for c in decomposed if not "\u0300" <= c <= "\u036f")
    return unicodedata.normalize("NFKC", kept)


def _blood_group(match: re.Match[str]) -> str:
    return match.group(1) + ("+" if match.group(2).lower().startswith("pos") else "-")


def _degrees(match: re.Match[str]) -> str:
    groups = match.groups()
    scale = ("c" if groups[1] or groups[4] else "f" if groups[2] or groups[5]
             else "k" if groups[3] or groups[6] else "")
    if scale == "k":
        return f"{match.group(1)} k"  # kelvins take no degree sign
    return f"{match.group(1)} °{scale}"


def _units(text: str) -> str:
    text = _PERCENT.sub(r"\1%", text)
    text = _DEGREES.sub(_degrees, text)
    return _UNIT.sub(lambda m: f"{m.group(1)} {_UNIT_OF[m.group(2)]}", text)


def _kept_symbols(text: str) -> set[int]:
    kept = {m_start for pattern in (_KEEP_PLUS, _KEEP_SHARP, _KEEP_PERCENT)
            for m in pattern.finditer(text) for m_start in range(m.start(), m.end())}
    kept.update(m.start(1) for m in _KEEP_MINUS.finditer(text))
    return kept


def _drop_punctuation(text: str) -> str:
    out: list[str] = []
    n = len(text)
    kept = _kept_symbols(text)
    for i, c in enumerate(text):
        if c.isalnum() or c.isspace() or c == "°" or i in kept:
            out.append(c)
            continue
        prev_c = text[i - 1] if i else ""
        next_c = text[i + 1] if i + 1 < n else ""
        if c == "." and prev_c.isdigit() and next_c.isdigit():
            out.append(c)  # decimal point
        elif c == "-" and next_c.isdigit() and not prev_c.isalnum():
            out.append(c)  # minus sign
        elif c == "'":
            continue  # "don't" -> "dont"
        elif unicodedata.category(c)[0] in "PS":
            out.append(" ")
        else:
            out.append(c)  # marks of non-Latin scripts and the like
    return "".join(out)


def _canonical_number(token: str) -> str:
    match = _TRAILING_ZEROS.match(token)
    if match:
        token = (match.group(1) + ("." + match.group(2) if match.group(2) else "")
                 + match.group(3))
    if token in ("-0", "-0%"):
        return token[1:]
    return token


def normalize_text(text: str) -> str:
    """SQuAD-style normalisation of a short answer, with the additions listed in the module doc.

    ``normalize_text("The  Eiffel-Tower!")`` is ``"eiffel tower"``; it is idempotent.
    """
    s = unicodedata.normalize("NFKC", text).translate(_FOLD)
    s = _BLOOD_GROUP.sub(_blood_group, s)
    s = _DOTTED.sub(lambda m: re.sub(r"[.\s]", "", m.group(0)), s)
    s = _POSSESSIVE.sub("", _strip_accents(s).casefold())
    s = _THOUSANDS.sub("", s)
    s = number_words_to_digits(s)
    s = _units(s)
    s = _drop_punctuation(s)
    words = s.split()
    tokens = [_canonical_number(t) for t in words if t not in _ARTICLES]
    return " ".join(tokens or words)  # "A" (a grade, a blood type) alone stays


def _question_units(question_tokens: Sequence[str]) -> frozenset[str]:
    """The unit symbols a question names ("in degrees Celsius" -> {"°", "°c"}, "what
    percentage" -> {"%"}): an answer's unit that the question names restates it. Cached: every
    answer to a question asks it again (it was half of the collapsing time)."""
    return _question_units_of(tuple(question_tokens))


@functools.lru_cache(maxsize=4096)
def _question_units_of(question_tokens: tuple[str, ...]) -> frozenset[str]:
    units: set[str] = set()
    text = " ".join(question_tokens)
    for word, symbol in _UNIT_OF.items():
        if re.search(rf"(?<![^\W_]){re.escape(word)}(?![^\W_])", text):
            units.add(symbol)
    named = ((("degree", "degrees", "°"), "°"), (("celsius", "centigrade", "°c"), "°c"),
             (("fahrenheit", "°f"), "°f"), (("kelvin", "kelvins"), "k"),
             (("percent", "percentage", "%"), "%"))
    for words, symbol in named:
        if any(w in question_tokens for w in words):
            units.add(symbol)
    return frozenset(units)


# --------------------------------------------------------------------------- extraction

_MARKER = re.compile(
    r"####|\b(?:final\s+)?answer\s*[*_]*\s*(?:is\b\s*:?|:)[*_]*", re.IGNORECASE)
_ABBREVIATIONS = frozenset({
    "dr", "mr", "mrs", "ms", "st", "mt", "jr", "sr", "vs", "no", "prof", "gen", "col", "lt",
    "sgt", "capt", "rev", "ft", "approx", "etc", "inc", "ltd", "co", "corp", "vol", "fig"})
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_APPOSITIVE = re.compile(
    r"\s*(?:;|\s[-\u2013\u2014]\s+(?=[^\W\d_])|"
    r",\s*(?:which|who|whom|whose|where|when|a|an|the|this|that|located|known|also|meaning|"
    r"as|because|since|although|though|while|being|i\.e|e\.g)\b)",
    re.IGNORECASE)
_PARENS = re.compile(r"\s*[(\[][^()\[\]]*[)\]]")
_YES_NO = re.compile(r"^(yes|no)(?:[\s]*[.,!;:]|\s*$)", re.IGNORECASE)

_COPULAS = frozenset({"is", "was", "are", "were", "be", "been", "being", "remains"})
_FILLER = _COPULAS | frozenset({
    "it", "its", "this", "that", "these", "those", "there", "theres", "thats", "he", "she",
    "they", "hes", "shes", "theyre", "called", "known", "named", "as", "has", "have", "had",
    "does", "do", "did", "by", "in", "at", "on", "from", "to", "for", "of", "i", "im", "think",
    "believe", "guess", "say", "would", "answer", "final", "correct", "probably", "so", "well",
    "which", "who", "what", "then", "therefore", "thus",
})
_QUESTION_FUNCTION_WORDS = frozenset({
    "what", "which", "who", "whom", "whose", "where", "when", "why", "how", "many", "much",
    "does", "do", "did", "is", "was", "are", "were", "of", "in", "on", "at", "to", "for", "by",
    "from", "and", "or", "with"})
_BLOCKERS = frozenset({
    "not", "no", "never", "nor", "neither", "or", "except", "but", "without", "isnt", "wasnt",
    "arent", "werent", "dont", "doesnt", "didnt", "cannot", "cant", "maybe", "perhaps",
    "possibly", "unless", "either", "nt"})


def _stem(token: str) -> str:
    # A crude stem so that "ended" meets "end", "legs" "leg" and "created" "create"; enough to
    # recognise a restated question, not a linguistic stemmer.
    if len(token) > 5 and token.endswith("ing"):
        token = token[:-3]
    elif len(token) > 4 and token.endswith(("ed", "ses", "xes", "zes", "ches", "shes")):
        token = token[:-2]
    elif len(token) > 3 and token.endswith("s") and not token.endswith("ss"):
        token = token[:-1]
    if len(token) > 3 and token.endswith("e"):
        token = token[:-1]
    return token


def _marker_span(text: str) -> str | None:
    matches = list(_MARKER.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end():]
    for line in split_lines(rest):
        if line.strip(" \t*_:"):
            return line.strip()
    return ""


def _first_sentence(span: str) -> str:
    pos = 0
    while True:
        match = _SENTENCE_END.search(span, pos)
        if match is None:
            return span
        word = re.search(r"(\w+)\W*$", span[:match.start() + 1])
        before = word.group(1) if word else ""
        initial = len(before) == 1 and before.isalpha()  # "J. K. Rowling"
        enumeration = span[:match.start()].strip().isdigit()  # "1. Paris"
        if initial or enumeration or before.lower() in _ABBREVIATIONS:
            pos = match.end()
            continue
        return span[:match.start()]


def _strip_restatement(tokens: list[str], question_tokens: Sequence[str]) -> list[str]:
    stems = {_stem(t) for t in question_tokens}
    content = {_stem(t) for t in question_tokens if t not in _QUESTION_FUNCTION_WORDS}
    units = _question_units(question_tokens)
    if "%" in units:  # "What percentage ...?": "71%" and "71" say the same
        tokens = [t[:-1] if t.endswith("%") and _is_number(t[:-1]) else t for t in tokens]

    def is_q(tok: str) -> bool:
        return tok in _FILLER or _stem(tok) in stems or tok in units

    def trim(toks: list[str], is_q: Callable[[str], bool] = is_q) -> list[str]:
        start, saw_copula = 0, False
        while start < len(toks) and is_q(toks[start]):
            saw_copula |= toks[start] in _COPULAS
            start += 1
        # "Hamlet was written by Shakespeare": skip the participle and "by".
        if (saw_copula and start + 1 < len(toks) and toks[start + 1] == "by"
                and toks[start].isalpha()):
            start += 2
        end = len(toks)
        while end > start and is_q(toks[end - 1]):
            end -= 1
        return toks[start:end]

    trimmed = trim(tokens)
    for k, tok in enumerate(trimmed):
        if tok not in _COPULAS or not 0 < k < len(trimmed) - 1:
            continue
        left, right = trimmed[:k], trimmed[k + 1:]
        left_q = sum(map(is_q, left)) / len(left)
        right_q = sum(map(is_q, right)) / len(right)
        if left_q >= 0.5 and right_q < 0.5:
            trimmed = trim(right)
        elif _stem(right[0]) in content and left_q < 0.5:
            trimmed = trim(left)
        break
    # Everything was the question's (it lists the options, or the answer repeats it): strip
    # the filler alone, and failing that keep the span whole.
    return trimmed or trim(tokens, lambda tok: tok in _FILLER) or tokens


def extract_answer(text: str) -> str:
    """The answer span of ``text`` (not yet normalised): steps 1 and 2 of the module doc.

    Step 3, stripping the restated question, works on normalised words: see
    :func:`normalize_answer`.
    """
    span = _marker_span(text)
    if span is None:
        lines = [line.strip() for line in split_lines(text.strip()) if line.strip()]
        span = lines[0] if lines else ""
    span = _first_sentence(span.strip()).strip()
    if "=" in span:
        after = span.rsplit("=", 1)[1].strip()
        if after:
            span = after
    unwrapped = _PARENS.sub("", span)
    if re.search(r"\w", unwrapped):  # "(Pa.)" alone is the answer, not an aside
        span = unwrapped
    cut = _APPOSITIVE.search(span)
    if cut is not None and cut.start() > 0:
        span = span[:cut.start()]
    return span.strip()


def normalize_answer(text: str, question: str | None = None) -> str:
    """The class label of one answer under the ``normalized`` collapsing function.

    The answer span of ``text`` (:func:`extract_answer`), normalised (:func:`normalize_text`),
    with the words restating ``question`` stripped from its ends. ``""`` when nothing is left
    (an empty or punctuation-only answer).
    """
    span = extract_answer(text)
    yes_no = _YES_NO.match(span)
    if yes_no:
        return yes_no.group(1).lower()
    tokens = normalize_text(span).split()
    if question is not None and tokens:
        tokens = _strip_restatement(tokens, normalize_text(question).split())
    return " ".join(tokens)


# --------------------------------------------------------------------------- grading


def gold_forms(question: Question) -> list[str]:
    """Every normalised form of the gold aliases: each alias normalised as it is and after
    extraction against the question (they differ for "Pacific Ocean" asked "Which ocean ...?"),
    without duplicates or empty strings, in alias order."""
    return list(_gold_forms(question.question, question.answers))


@functools.lru_cache(maxsize=4096)
def _gold_forms(question: str, answers: tuple[str, ...]) -> tuple[str, ...]:
    # Cached: every class of a question is graded against the same aliases.
    forms: dict[str, None] = {}
    for alias in answers:
        for form in (normalize_text(alias), normalize_answer(alias, question)):
            if form:
                forms.setdefault(form)
    return tuple(forms)


def matches_gold(label: str, forms: Iterable[str], *, max_extra_tokens: int = 2,
                 other_units: Iterable[str] = ()) -> bool:
    """Whether a normalised ``label`` matches one of the normalised gold ``forms``.

    True when the label equals a form, or begins with all of a form's words and adds at most
    ``max_extra_tokens`` words after them, none of them a negation, disjunction or hedge ("not",
    "or", "but", "maybe", ...) and, after a numeric form, not a number ("5 6" does not match
    "5"), nor a regnal number ("napoleon iii" does not match "napoleon"). After a numeric form,
    no word of ``other_units`` may follow either (asked in degrees Celsius, "100 °f" does not
    match "100"). ``""`` never matches.
    """
    rejected = frozenset(other_units)
    words = label.split()
    if not words:
        return False
    for form in forms:
        gold = form.split()
        if not gold:
            continue
        if words == gold:
            return True
        extra = words[len(gold):]
        if (words[:len(gold)] == gold and 0 < len(extra) <= max_extra_tokens
                and not any(w in _BLOCKERS for w in extra)
                and not (_is_number(gold[-1]) and _is_number(extra[0]))
                and not (_is_number(gold[-1]) and rejected.intersection(extra))
                and not _REGNAL.fullmatch(extra[0])):
            return True
    return False


def grade_reason(label: str, forms: Sequence[str], *, max_extra_tokens: int = 2,
                 other_units: Iterable[str] = ()) -> str:
    """In words, why :func:`matches_gold` accepts or refuses ``label`` against ``forms``: "equals
    gold 'paris'", "starts with gold 'paris' (+1 word)", "matches no gold form ('paris')" or
    "no answer"."""
    if not label.split():
        return "no answer"
    for form in forms:
        if matches_gold(label, [form], max_extra_tokens=max_extra_tokens,
                        other_units=other_units):
            extra = len(label.split()) - len(form.split())
            return (f"equals gold {form!r}" if extra == 0 else
                    f"starts with gold {form!r} (+{extra} word{'s' if extra > 1 else ''})")
    shown = ", ".join(repr(f) for f in forms) or "none"
    return f"matches no gold form ({shown})"


# A regnal number names another person: "napoleon iii" is not "napoleon" (nor "napoleon i"). "i"
# alone is left out: it is also the pronoun.
_REGNAL = re.compile(r"(?:ii|iii|iv|v|vi|vii|viii|ix|x|xi|xii|xiii|xiv|xv|xvi)")


def _is_number(token: str) -> bool:
    return re.fullmatch(r"-?\d+(?:\.\d+)?", token) is not None


class NormalizedCollapser(Collapser):
    """Normalised exact match after answer extraction (see the module doc).

    ``extract=False`` gives plain SQuAD-style normalised exact match (no marker, sentence or
    restatement handling); ``max_extra_tokens`` sets the grader's slack (0: exact only).
    """

    name = "normalized"

    def __init__(self, *, extract: bool = True, max_extra_tokens: int = 2) -> None:
        if not isinstance(extract, bool):
            raise ValueError(f"extract must be True or False, got {extract!r}")
        if not isinstance(max_extra_tokens, int) or max_extra_tokens < 0:
            raise ValueError(
                f"max_extra_tokens must be a non-negative integer, got {max_extra_tokens!r}")
        self.extract = extract
        self.max_extra_tokens = max_extra_tokens

    def _span(self, question: Question, text: str) -> str:
        if self.extract:
            return normalize_answer(text, question.question)
        return normalize_text(text)

    def _forms(self, question: Question) -> list[str]:
        return gold_forms(question) if self.extract else [
            f for f in (normalize_text(a) for a in question.answers) if f]

    def label(self, question: Question, text: str) -> str:
        """The class label of one answer: its normalised span, or the first gold form when the
        grader accepts the span (so a correct answer's class is the gold answer's)."""
        return self.collapse(question, [text])[0]

    def collapse(self, question: Question, texts: Sequence[str]) -> list[str]:
        spans = [self._span(question, t) for t in texts]
        forms = self._forms(question)
        if not forms:
            return spans
        return merge_correct(spans, lambda s: self.is_correct(question, s), forms[0])

    def is_correct(self, question: Question, label: str) -> bool:
        # A unit the question names has been stripped from the label as a restatement; any
        # other unit after a number contradicts the question ("100 °f" asked in Celsius).
        return matches_gold(normalize_text(label), self._forms(question),
                            max_extra_tokens=self.max_extra_tokens,
                            other_units=_other_units(question))

    def explain(self, question: Question, texts: Sequence[str]) -> list[tuple[str, str]]:
        """Per text, its normalised answer span and :func:`grade_reason` for it."""
        forms = self._forms(question)
        other = _other_units(question)
        reasons: dict[str, str] = {}
        out = []
        for text in texts:
            span = self._span(question, text)
            if span not in reasons:
                reasons[span] = grade_reason(normalize_text(span), forms,
                                             max_extra_tokens=self.max_extra_tokens,
                                             other_units=other)
            out.append((span, reasons[span]))
        return out


def _other_units(question: Question) -> frozenset[str]:
    """The units that contradict the question: when it names a unit, every other one (asked in
    Celsius, "100 °f" is not "100"); when it names none, none."""
    named = _question_units(normalize_text(question.question).split())
    return frozenset(_UNIT_SYMBOLS - named) if named else frozenset()
