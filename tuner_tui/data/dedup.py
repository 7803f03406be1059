"""Exact and near duplicates.

Exact duplicates share a 64-bit xxh3 hash of the row's identity text (speakers and labels included).

Near duplicates are found with MinHash over word 3-shingles and LSH banding, as datasketch does it,
but vectorised: datasketch hashes one set at a time in Python, about 3,000 rows/s here, while the
same affine32 permutations (taken from `datasketch.MinHash`, so the signatures are identical to its
`update_batch` with an identity hash) applied to a whole batch of shingles with numpy reach tens of
thousands. Band parameters come from `datasketch.MinHashLSH` weighted towards recall; candidate pairs
are then kept only when their estimated Jaccard similarity reaches the threshold, and clusters are
the connected components of the kept pairs (union-find by hooking and pointer jumping).

Label conflicts are exact duplicates of a row's text (its label left out) that carry different
labels: `label_conflicts` groups them and finds each text's majority label, if it has one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

SHINGLE_WORDS = 3
NUM_PERM = 128
# Shingles hashed per numpy step: bounds the (shingles x permutations) matrix to ~50 MB.
_SHINGLE_CHUNK = 100_000
_MIX = (np.uint64(0x9E3779B1), np.uint64(0x85EBCA77), np.uint64(0xC2B2AE3D))


def exact_keys(texts: pa.Array) -> np.ndarray:
    """A 64-bit content hash per text (xxh3; collisions are negligible below billions of rows)."""
    digest = xxhash.xxh3_64_intdigest
    return np.fromiter(
        (digest(t) for t in texts.cast(pa.binary()).to_pylist()), dtype=np.uint64, count=len(texts)
    )


def first_occurrences(keys: np.ndarray) -> np.ndarray:
    """Boolean mask: True for the first row holding each key."""
    _, first = np.unique(keys, return_index=True)
    mask = np.zeros(len(keys), dtype=bool)
    mask[first] = True
    return mask


def _fmix32(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's finalizer, as datasketch's affine32 scheme pre-mixes its inputs."""
    values = values ^ (values >> np.uint32(16))
    values = values * np.uint32(0x85EBCA6B)
    values = values ^ (values >> np.uint32(13))
    values = values * np.uint32(0xC2B2AE35)
    return values ^ (values >> np.uint32(16))


class MinHasher:
    """MinHash signatures of word shingles for batches of texts.

    Args:
        num_perm: Permutations per signature (more: a finer similarity estimate).
        seed: Seed of datasketch's permutation parameters.
    """

    def __init__(self, num_perm: int = NUM_PERM, seed: int = 1):
        from datasketch import MinHash

        a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
        self.a = np.asarray(a, dtype=np.uint32)
        self.b = np.asarray(b, dtype=np.uint32)
        self.num_perm = num_perm

    def shingles(self, texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """Shingle hashes of each text and the row each belongs to.

        Words are lower-cased with punctuation dropped; a text shorter than a shingle is one shingle.
        """
        cleaned = pc.utf8_trim_whitespace(
            pc.replace_substring_regex(pc.utf8_lower(texts), r"[^\pL\pN\s]+", " ")
        )
        words = pc.utf8_split_whitespace(cleaned)
        counts = pc.list_value_length(words).to_numpy(zero_copy_only=False).astype(np.int64)
        offsets = words.offsets
        first = offsets[0].as_py()
        flat = words.values.slice(first, offsets[-1].as_py() - first)
        # An empty text splits into one empty word: drop it, so the row has no shingles.
        blank = pc.equal(pc.utf8_length(cleaned), 0).to_numpy(zero_copy_only=False)
        if blank.any():
            flat = flat.filter(pa.array(np.repeat(~blank, counts)))
            counts[blank] = 0
        if len(flat) == 0:
            return np.zeros(0, np.uint32), np.zeros(0, np.int64)
        encoded = pc.dictionary_encode(flat)
        digest = xxhash.xxh32_intdigest
        vocab = np.fromiter((digest(w) for w in encoded.dictionary.cast(pa.binary()).to_pylist()), np.uint64)
        word_hash = vocab[encoded.indices.to_numpy()]
        rows = np.repeat(np.arange(len(counts)), counts)
        position = np.arange(len(word_hash)) - np.repeat(np.cumsum(counts) - counts, counts)
        length = counts[rows]
        mixed = word_hash * _MIX[0]
        for shift in range(1, SHINGLE_WORDS):
            nxt = np.zeros_like(word_hash)
            nxt[:-shift] = word_hash[shift:]
            nxt[position + shift >= length] = 0  # the next word belongs to another row
            mixed = mixed + nxt * _MIX[shift]
        starts = (position <= length - SHINGLE_WORDS) | ((position == 0) & (length < SHINGLE_WORDS))
        shingle_hash = (mixed ^ (mixed >> np.uint64(32)))[starts].astype(np.uint32)
        return shingle_hash, rows[starts]

    def signatures(self, texts: pa.Array) -> np.ndarray:
        """A (rows, num_perm) uint32 signature matrix; a text with no words gets all-max values."""
        shingle_hash, rows = self.shingles(texts)
        sig = np.full((len(texts), self.num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
        premixed = _fmix32(shingle_hash)
        for start in range(0, len(premixed), _SHINGLE_CHUNK):
            part = premixed[start : start + _SHINGLE_CHUNK]
            part_rows = rows[start : start + _SHINGLE_CHUNK]
            # (permutations, shingles) layout: reduceat along the contiguous axis is ~10x faster
            permuted = np.multiply.outer(self.a, part)
            permuted += self.b[:, None]
            # rows are sorted, so each row's shingles are one contiguous segment
            seg_starts = np.flatnonzero(np.r_[True, part_rows[1:] != part_rows[:-1]])
            seg_rows = part_rows[seg_starts]
            minima = np.minimum.reduceat(permuted, seg_starts, axis=1).T
            sig[seg_rows] = np.minimum(sig[seg_rows], minima)
        return sig


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) from datasketch's optimiser, weighted 9:1 towards recall: candidate
    pairs are verified afterwards, so a false candidate costs only a comparison."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.1, 0.9))
    return lsh.b, lsh.r


def _candidate_pairs(sig: np.ndarray, rows: np.ndarray, bands: int, per_band: int) -> np.ndarray:
    """(k, 2) row pairs that share at least one LSH band; each bucket as a star on its first row."""
    pairs = []
    for band in range(bands):
        key = np.zeros(len(rows), dtype=np.uint64)
        for col in range(band * per_band, (band + 1) * per_band):
            key = key * np.uint64(0x100000001B3) + sig[rows, col].astype(np.uint64)
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        same = np.empty(len(order), dtype=bool)
        same[0] = False
        same[1:] = sorted_key[1:] == sorted_key[:-1]
        group_start = np.maximum.accumulate(np.where(same, 0, np.arange(len(order))))
        member = np.flatnonzero(same)
        if len(member):
            pairs.append(np.stack([rows[order[group_start[member]]], rows[order[member]]], axis=1))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(pairs), axis=0)


def _similar(sig: np.ndarray, pairs: np.ndarray, threshold: float) -> np.ndarray:
    keep = np.zeros(len(pairs), dtype=bool)
    for start in range(0, len(pairs), 100_000):
        chunk = pairs[start : start + 100_000]
        agree = (sig[chunk[:, 0]] == sig[chunk[:, 1]]).mean(axis=1)
        keep[start : start + 100_000] = agree >= threshold
    return pairs[keep]


def connected_roots(n: int, pairs: np.ndarray) -> np.ndarray:
    """Union-find over `pairs`: each row's cluster root, the smallest row index in its cluster."""
    parent = np.arange(n)
    if len(pairs) == 0:
        return parent
    left, right = pairs[:, 0], pairs[:, 1]
    while True:
        root_l, root_r = parent[left], parent[right]
        differ = root_l != root_r
        if not differ.any():
            return parent
        low = np.minimum(root_l[differ], root_r[differ])
        np.minimum.at(parent, root_l[differ], low)
        np.minimum.at(parent, root_r[differ], low)
        while True:  # pointer jumping until every row points at a root
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped


@dataclass
class NearDuplicates:
    """Near-duplicate clusters over a dataset's rows."""

    roots: np.ndarray  # cluster root per row (the smallest row index of its cluster)
    threshold: float

    def cluster_sizes(self) -> dict[int, int]:
        """Root -> size for clusters of two or more rows."""
        counts = np.bincount(self.roots, minlength=len(self.roots))
        big = np.flatnonzero(counts >= 2)
        return {int(r): int(counts[r]) for r in big}

    def keep_mask(self) -> np.ndarray:
        """True for the first row of each cluster (and every row in no cluster)."""
        return self.roots == np.arange(len(self.roots))


def near_duplicates(
    sig: np.ndarray, threshold: float, candidates: np.ndarray | None = None
) -> NearDuplicates:
    """Cluster rows whose estimated Jaccard similarity of word shingles is >= `threshold`.

    Args:
        sig: The (rows, num_perm) signatures from `MinHasher.signatures`.
        threshold: Jaccard similarity in (0, 1].
        candidates: Optional mask of rows to consider (e.g. first occurrences only).

    Returns:
        The clusters, as a root per row.
    """
    considered = np.ones(len(sig), dtype=bool) if candidates is None else candidates.copy()
    considered &= ~(sig == np.iinfo(np.uint32).max).all(axis=1)  # rows without words
    rows = np.flatnonzero(considered)
    bands, per_band = lsh_params(threshold, sig.shape[1])
    pairs = _candidate_pairs(sig, rows, bands, per_band) if len(rows) > 1 else np.zeros((0, 2), np.int64)
    return NearDuplicates(connected_roots(len(sig), _similar(sig, pairs, threshold)), threshold)


@dataclass
class LabelConflicts:
    """Texts that appear more than once with different labels.

    Attributes:
        group: Per row, the conflict its text is in (0, 1, ... in order of first appearance), or -1.
        majority: Per row, True when it carries its text's most common label and no other label
            is as common (a tie has no majority: every row of that text is False).
        ties: Conflicting texts whose most common label is shared by two labels or more.
    """

    group: np.ndarray
    majority: np.ndarray
    ties: int

    @property
    def texts(self) -> int:
        """Texts that carry two or more labels."""
        return int(self.group.max()) + 1 if len(self.group) else 0

    @property
    def rows(self) -> int:
        """Rows holding one of those texts."""
        return int((self.group >= 0).sum())

    def keep_mask(self, keep: str) -> np.ndarray:
        """Rows kept: outside any conflict, plus (keep = 'majority') those with the majority label."""
        outside = self.group < 0
        return outside | self.majority if keep == "majority" else outside


def label_conflicts(keys: np.ndarray, labels: np.ndarray) -> LabelConflicts:
    """Group rows by text key and find the texts labelled in more than one way.

    Args:
        keys: A 64-bit hash of each row's text (`exact_keys`), the label left out of it.
        labels: A non-negative integer code per row for its label; -1 for a row without one, which
            takes part in no conflict.

    Returns:
        The conflicts, with each row's group and whether it carries the majority label.
    """
    n = len(keys)
    group = np.full(n, -1, dtype=np.int64)
    majority = np.zeros(n, dtype=bool)
    rows = np.flatnonzero(labels >= 0)
    if len(rows) < 2:
        return LabelConflicts(group, majority, 0)
    unique_keys, first_row, key_of = np.unique(keys[rows], return_index=True, return_inverse=True)
    width = int(labels[rows].max()) + 1
    pair = key_of.astype(np.int64) * width + labels[rows]
    pairs, pair_of, pair_count = np.unique(pair, return_inverse=True, return_counts=True)
    pair_key = pairs // width
    distinct = np.bincount(pair_key, minlength=len(unique_keys))
    top = np.zeros(len(unique_keys), dtype=np.int64)
    np.maximum.at(top, pair_key, pair_count)
    at_top = np.bincount(pair_key[pair_count == top[pair_key]], minlength=len(unique_keys))
    conflicting = distinct > 1
    tie = conflicting & (at_top > 1)
    # number the conflicting texts in the order their first row appears
    order = np.argsort(first_row[conflicting], kind="stable")
    number = np.full(len(unique_keys), -1, dtype=np.int64)
    number[np.flatnonzero(conflicting)[order]] = np.arange(int(conflicting.sum()))
    group[rows] = number[key_of]
    majority[rows] = conflicting[key_of] & ~tie[key_of] & (pair_count[pair_of] == top[key_of])
    return LabelConflicts(group, majority, int(tie.sum()))
