"""Offline text similarity: word sets and TF-IDF cosine, enough to group short reports and to
tell a proposal already made from a new one, with no model and no network."""

import math
import re
from collections import Counter
from collections.abc import Sequence

STOPWORDS = frozenset(
    "a an and are as at be by can for from has have in is it its of on or our that the this to was we were "
    "with you your i my me not no do does did when what how why which new now just also into than then where "
    "please".split()
)


def tokens(text: str) -> list[str]:
    words = re.findall(r"[a-z0-9][a-z0-9+#.-]*", text.lower())
    return [_stem(w.strip(".-")) for w in words if w.strip(".-") and w not in STOPWORDS and len(w) > 1]


def _stem(word: str) -> str:
    # Plural and -ing forms: "exports" and "exporting" should meet "export".
    for suffix in ("ing", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def jaccard(a: str, b: str) -> float:
    left, right = set(tokens(a)), set(tokens(b))
    if not left or not right:
        return 0.0
    return len(left & right) / len(left | right)


def containment(small: str, large: str) -> float:
    """Share of `small`'s words found in `large`: a capability name inside a feature sentence."""
    left = set(tokens(small))
    return len(left & set(tokens(large))) / len(left) if left else 0.0


def tfidf_vectors(texts: Sequence[str]) -> list[dict[str, float]]:
    docs = [Counter(tokens(text)) for text in texts]
    df = Counter(word for doc in docs for word in doc)
    n = len(docs)
    vectors = []
    for doc in docs:
        vec = {w: (1 + math.log(c)) * (math.log((1 + n) / (1 + df[w])) + 1) for w, c in doc.items()}
        norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
        vectors.append({w: v / norm for w, v in vec.items()})
    return vectors


def cosine(a: dict[str, float], b: dict[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(v * b.get(w, 0.0) for w, v in a.items())
