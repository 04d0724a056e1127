"""Agreement: how far coaches agree, per exercise and per criterion, and what to adjudicate."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

VERDICTS = ("correct", "incorrect")  # the verdicts that count as a label (a skip is no opinion)
MARKS = ("pass", "fail")  # a criterion's categories

Ratings = Sequence[Sequence[str | None]]  # items x raters; None = this rater did not rate this item


def _counts(ratings: Ratings) -> tuple[list[Counter], list[str]]:
    """Category counts of the items with at least two ratings, and every category used in them."""
    rows = [Counter(r for r in item if r is not None) for item in ratings]
    rows = [c for c in rows if sum(c.values()) >= 2]
    return rows, sorted({k for c in rows for k in c})


def _item_agreement(counts: Counter) -> float:
    """Share of the item's rater pairs that agree: sum_j n_j (n_j - 1) / (n (n - 1)) (Fleiss 1971, P_i)."""
    n = sum(counts.values())
    return sum(k * (k - 1) for k in counts.values()) / (n * (n - 1))


def percent_agreement(ratings: Ratings) -> float:
    """Mean over items with >= 2 ratings of the share of rater pairs that give the same rating.

    With two raters this is the share of items on which they agree. NaN when no item has two ratings.
    """
    rows, _ = _counts(ratings)
    if not rows:
        return math.nan
    return sum(_item_agreement(c) for c in rows) / len(rows)


def cohen_kappa(a: Sequence[str | None], b: Sequence[str | None]) -> float:
    """Cohen's kappa of two raters over the items both rated (None = not rated).

    kappa = (p_o - p_e) / (1 - p_e), p_e from each rater's own category shares. NaN when no item was rated
    by both, or when chance agreement is 1 (both raters used one and the same category throughout).
    """
    if len(a) != len(b):
        raise ValueError(f"the two raters' lists differ in length ({len(a)} and {len(b)})")
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    if not pairs:
        return math.nan
    n = len(pairs)
    observed = sum(x == y for x, y in pairs) / n
    share_a, share_b = Counter(x for x, _ in pairs), Counter(y for _, y in pairs)
    expected = sum(share_a[k] * share_b[k] for k in share_a) / (n * n)
    if expected == 1:
        return math.nan
    return (observed - expected) / (1 - expected)


def fleiss_kappa(ratings: Ratings) -> float:
    """Fleiss' kappa over the items with >= 2 ratings, each item with any number of raters.

    Variable-raters generalisation: each item's agreement P_i is computed with its own number of ratings
    n_i (the share of its rater pairs that agree); P = mean of P_i over the items; the chance agreement is
    P_e = sum_j p_j^2 with p_j the share of category j among all ratings of those items; kappa =
    (P - P_e) / (1 - P_e). With the same number of raters on every item this is exactly Fleiss (1971).
    NaN when no item has two ratings, or when every rating is the same category (P_e = 1).
    """
    rows, categories = _counts(ratings)
    if not rows:
        return math.nan
    total = sum(sum(c.values()) for c in rows)
    expected = sum((sum(c[k] for c in rows) / total) ** 2 for k in categories)
    if expected == 1:
        return math.nan
    observed = sum(_item_agreement(c) for c in rows) / len(rows)
    return (observed - expected) / (1 - expected)


def _rating(label: dict, criterion: str | None) -> str | None:
    """An annotator's rating of the verdict (criterion None) or of one criterion; None when not given."""
    value = label.get("verdict") if criterion is None else (label.get("criteria") or {}).get(criterion)
    return value if value in (VERDICTS if criterion is None else MARKS) else None


def _row(exercise: str, criterion: str | None, matrix: list[list[str | None]], raters: list[str]) -> dict:
    """One line of agreement_table from an items x raters matrix."""
    items = [item for item in matrix if sum(r is not None for r in item) >= 2]
    took_part = [i for i in range(len(raters)) if any(item[i] is not None for item in items)]
    if not items:
        method, kappa = None, math.nan
    elif len(took_part) == 2:
        # Two raters: Cohen's kappa, the usual figure for a pair; its chance term uses each one's own shares.
        i, j = took_part
        method, kappa = "cohen", cohen_kappa([item[i] for item in items], [item[j] for item in items])
    else:
        method, kappa = "fleiss", fleiss_kappa(items)
    return {
        "exercise": exercise,
        "criterion": criterion,
        "n_items": len(items),
        "n_raters": len(took_part),
        "percent_agreement": percent_agreement(items),
        "kappa": kappa,
        "method": method,
    }


def agreement_table(labels: list[dict], exercise_of: dict[str, str]) -> list[dict]:
    """Agreement between annotators per exercise: one row for the verdict, then one per criterion.

    labels: rows of store.current_labels (clip_id, annotator, verdict, criteria {name: pass | fail}, and the
    exercise the label was made under). exercise_of: clip id -> exercise; labels of clips not in it (inactive
    or excluded clips) are left out. A criterion is keyed by its exercise: the label's own exercise when it
    names one (its criteria belong to that rubric), else the clip's; squat "depth" and push-up "depth" are
    two rows, never pooled.
    Each row: exercise, criterion (None for the correct/incorrect verdict; criteria use pass/fail as
    categories, a criterion an annotator left blank is not rated), n_items (clips rated by >= 2
    annotators), n_raters (annotators with a rating on those clips), percent_agreement, kappa and method:
    "cohen" when exactly two annotators took part, "fleiss" otherwise, None when no clip has two ratings
    (kappa and percent_agreement are then NaN). Sorted by exercise, verdict first, criteria by name.
    """
    by_exercise: dict[str, list[dict]] = {}
    for label in labels:
        exercise = exercise_of.get(label["clip_id"])
        if exercise is not None:
            by_exercise.setdefault(label.get("exercise") or exercise, []).append(label)
    table = []
    for exercise, rows in sorted(by_exercise.items()):
        raters = sorted({r["annotator"] for r in rows})
        clips = sorted({r["clip_id"] for r in rows})
        where = {(r["clip_id"], r["annotator"]): r for r in rows}
        for criterion in [None, *sorted({n for r in rows for n in (r.get("criteria") or {})})]:
            matrix = [[_rating(where[c, a], criterion) if (c, a) in where else None for a in raters] for c in clips]
            table.append(_row(exercise, criterion, matrix, raters))
    return table


def disagreements(labels: list[dict]) -> list[dict]:
    """The adjudication queue: clips whose annotators' current verdicts differ.

    Each entry: clip_id, votes {annotator: verdict}, counts {verdict: n}, split (the minority's share of
    the votes: 0.5 is an even split) and criteria (the criteria on which the annotators' pass/fail marks
    differ, by name). Most split first, then most votes, then clip id.
    """
    by_clip: dict[str, list[dict]] = {}
    for label in labels:
        if _rating(label, None) is not None:
            by_clip.setdefault(label["clip_id"], []).append(label)
    queue = []
    for clip_id, rows in by_clip.items():
        votes = {r["annotator"]: r["verdict"] for r in sorted(rows, key=lambda r: r["annotator"])}
        counts = Counter(votes.values())
        if len(counts) < 2:
            continue
        marks: dict[str, set[str]] = {}
        for r in rows:
            for name in r.get("criteria") or {}:
                mark = _rating(r, name)
                if mark is not None:
                    marks.setdefault(name, set()).add(mark)
        queue.append({
            "clip_id": clip_id,
            "votes": votes,
            "counts": {v: counts[v] for v in VERDICTS},
            "split": min(counts.values()) / len(votes),
            "criteria": sorted(name for name, seen in marks.items() if len(seen) > 1),
        })
    queue.sort(key=lambda e: (-e["split"], -len(e["votes"]), e["clip_id"]))
    return queue
