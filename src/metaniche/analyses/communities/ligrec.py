"""Spatial ligand–receptor co-localisation on neighbouring cells, with a permutation null.

For every ligand–receptor pair whose two genes / markers are measured, every ordered pair of
neighbouring cells (sender s, receiver r; distance ``<= radius_um``; s != r) contributes the
product of the sender's ligand and the receiver's receptor expression, ``L_s · R_r``. The score
of a sender type a and receiver type b (per sender compartment, and ``all``) is the mean of that
product over their neighbouring pairs; sender type ``any`` pools every sender.

Null hypothesis: the ligand is exchangeable among senders of the same stratum, i.e. unrelated to
where the receptor is expressed. The null keeps positions, cell types, compartments and every
receptor value fixed and permutes the ligand values among cells of the same type and
compartment (rows of one sender type) or among all cells of the same compartment (sender
``any``). A row is significant when ligand-high senders sit next to receptor-high receivers
more than other senders of the same stratum do. The test is exact (valid p-values) whenever the
ligand is exchangeable within strata, whatever the spatial structure of the receptor; a sender
type whose cells all express the ligand equally has no within-type signal — its co-localisation
shows in the ``any`` rows.

One-sided p-values (co-localisation above the null) are Monte Carlo,
``p = (1 + #{S* >= S}) / (1 + N)`` over the N permutations a row received (column
``n_permutations``); ties count as exceedances (relative tolerance 1e-9). q-values are
Benjamini–Hochberg over every row of ``p``.

Sequential refinement (Besag & Clifford 1991). With hundreds of rows per sample, a fixed
``n_permutations`` = 999 floors p at 1/1000 and BH then cannot reach q <= 0.05 however strong
the signal (411 rows: q >= 0.08 for two strong rows). So every reportable row is first tested
with ``n_permutations`` (stage 1); a row with fewer than ``h = min_exceedances`` exceedances
continues, in stages of cumulative size ``N_{j+1} = min(max_permutations, 10 (N_j + 1) − 1)``
(999 → 9,999 → 99,999), until it has ``h`` exceedances after a stage or reaches
``max_permutations``; its p is ``(1 + exceedances) / (1 + N)`` at the stage where it stopped.
Only the rows still running are recomputed: their fine groups' rows of the receptor matrix, and
within each stratum only the ligand values of the senders those rows touch (a partial
Fisher–Yates shuffle draws them without replacement from the whole stratum — exactly their
joint law under a full within-stratum shuffle), so the cost is proportional to what is refined.
Under the null, rows rarely run on (about ``h / (n_permutations + 1)`` of them), and most stop
after the next stage. A strong row runs to ``max_permutations`` and costs that many draws per
sender it touches: stage 1 costs ``2 · n_permutations · n`` draws, so refining strong ``any``
rows whose senders are a tenth of the cells to 99,999 costs ~5 times stage 1 (measured on a
60k-cell simulated sample with TLS: 7,871 senders, ~6x stage-1 CPU);
``max_permutations = 9_999`` costs ~0.5 times stage 1 with a p floor of 1e-4.

Validity. Write ``p_j = (1 + e_j) / (1 + N_j)`` for the Monte Carlo p-value after stage j (e_j
exceedances among the first N_j permutations; each p_j alone is a valid p-value because the
observed and the N_j permuted statistics are exchangeable under the null — the later stages'
permutations are drawn independently of everything before, with the same law for the row's
senders whatever other rows run). A row stopped at stage j < J has ``e_j >= h``, so
``p_j >= (1 + h) / (1 + N_j)``. For a level α let j0 be the first stage with
``(1 + h) / (1 + N_j0) <= α`` (j0 = J, the last, if none). A row reported with ``p <= α`` cannot
have stopped before j0; if it stopped at j0 its p is ``p_j0``; if it ran on, ``e_j0 < h`` and
``p_j0 <= h / (1 + N_j0) < α``. Hence ``{p <= α} ⊆ {p_j0 <= α}`` and ``P(p <= α) <= α`` under
the null, for every α: the rejection set lies in the stage-1 set ``{p_1 <= α}`` (α >= (1 + h) /
(1 + n_permutations)) or in the final stage's set (small α) — refinement does not inflate
small p-values. ``max_permutations`` = 0 (or <= ``n_permutations``) disables refinement.

``expected`` and ``z = (S − E[S*]) / SD(S*)`` use the exact mean and variance of the
permutation null (a linear permutation statistic: per stratum h with n_h senders, ligand mean
μ_h and sample variance v_h, ``E = μ_h Σ a_s`` and ``Var = v_h (Σ a_s² − (Σ a_s)² / n_h)``
for the weights a_s = summed receptor of sender s's neighbours in the group; Wald & Wolfowitz
1944), computed in O(nnz) with no Monte Carlo error; ``p_normal`` is the upper normal tail
of z.

Large rows (``normal_min_edges``). Monte Carlo costs O(permutations · senders), which on a
whole slide (1M cells, groups of 10⁵–10⁶ pairs) dominates the whole pipeline and, with
refinement, grows with every strong row. For a row summing over many neighbouring pairs the
permutation distribution of S is close to normal (combinatorial central limit theorem,
Hoeffding 1951, under Noether's condition that no single sender's weight dominates), so rows
with ``n_edges >= normal_min_edges`` take ``p = p_normal`` from the exact moments
(``n_permutations`` = 0 in the table) and Monte Carlo runs only for the smaller rows, drawing
only their senders. The normal tail is anti-conservative for strongly skewed nulls, i.e. few
pairs and skewed expression, which is why small rows keep Monte Carlo; the pipeline default
(``ligrec.normal_min_edges`` = 5,000) was checked against Monte Carlo p on simulated null
tissue with exponential expression (tests). 0 keeps Monte Carlo for every row.

References
----------
1. Efremova M, et al. CellPhoneDB: inferring cell–cell communication from combined expression of
   multi-subunit ligand–receptor complexes. Nat Protoc. 2020;15:1484-1506 (pair table, label
   permutation null).
2. Palla G, et al. Squidpy: a scalable framework for spatial omics analysis. Nat Methods.
   2022;19:171-178 (``gr.ligrec``, non-spatial).
3. Wald A, Wolfowitz J. Statistical tests based on permutations of the observations. Ann Math
   Stat. 1944;15:358-372. Hoeffding W. A combinatorial central limit theorem. Ann Math Stat.
   1951;22:558-566.
4. Besag J, Clifford P. Sequential Monte Carlo p-values. Biometrika. 1991;78:301-304.
5. Benjamini Y, Hochberg Y. Controlling the false discovery rate. J R Stat Soc B. 1995;57:289-300.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numba
import numpy as np
import pandas as pd
from scipy import sparse
from scipy.stats import norm

from metaniche._multitest import benjamini_hochberg
from metaniche.analyses.compartments import WHOLE
from metaniche.config import LigrecParams
from metaniche.errors import ConfigError, InputError

__all__ = ["benjamini_hochberg", "ligand_receptor", "load_pairs", "match_pairs"]

_BLOCK = 64
_REFINE_BLOCK = 256
_REFINE_UNIFORMS = 1 << 22   # uniforms per refinement block (32 MiB) before blocks shrink
_REFINE_KEY = 2     # SeedSequence(seed, spawn_key=(2, ...)): refinement streams
_STAGE_FACTOR = 10


def load_pairs(path: str | Path | None = None) -> pd.DataFrame:
    """The ligand–receptor table: the shipped one (``ligrec_pairs.csv``) or a user CSV.

    A user table needs columns ``ligand`` and ``receptor`` (gene / marker names, matched to
    columns case-insensitively); other columns are kept. The shipped table is parsed once per
    process (every sample's communities stage asks for it: 1.4 ms a sample on the NSCLC
    example) and a copy returned.
    """
    if path is None or str(path) == "":
        return _shipped_pairs().copy()
    try:
        table = pd.read_csv(path)
    except FileNotFoundError:
        raise InputError(f"{path}: ligand–receptor table not found; check 'ligrec.pairs'."
                         ) from None
    missing = {"ligand", "receptor"} - set(table.columns)
    if missing:
        raise InputError(f"{path}: ligand–receptor table lacks column(s) "
                         f"{', '.join(sorted(missing))}; give a CSV with ligand,receptor.")
    return table


@functools.lru_cache(maxsize=1)
def _shipped_pairs() -> pd.DataFrame:
    """The shipped ``ligrec_pairs.csv``, parsed once (callers get copies)."""
    with resources.files("metaniche.analyses.communities").joinpath(
            "ligrec_pairs.csv").open("r") as handle:
        return pd.read_csv(handle)


def match_pairs(pairs: pd.DataFrame, columns: Sequence[str]) -> list[tuple[str, str, str, str]]:
    """Pairs whose ligand and receptor are both columns: (ligand, receptor, ligand column,
    receptor column), matched case-insensitively, in table order, without duplicates."""
    lookup: dict[str, str] = {}
    for column in columns:
        lookup.setdefault(str(column).upper(), str(column))
    found, seen = [], set()
    for ligand, receptor in zip(pairs["ligand"].astype(str), pairs["receptor"].astype(str),
                                strict=True):
        key = (ligand.upper(), receptor.upper())
        if key[0] in lookup and key[1] in lookup and key not in seen:
            seen.add(key)
            found.append((ligand, receptor, lookup[key[0]], lookup[key[1]]))
    return found


def ligand_receptor(pair_i: np.ndarray, pair_j: np.ndarray,
                    expression: Mapping[str, np.ndarray],
                    lr_pairs: Sequence[tuple[str, str, str, str]], type_codes: np.ndarray,
                    cell_types: Sequence[str], compartment: np.ndarray | None = None,
                    n_permutations: int = LigrecParams.n_permutations,
                    seed: int = LigrecParams.seed, min_edges: int = LigrecParams.min_edges,
                    max_permutations: int = LigrecParams.max_permutations,
                    min_exceedances: int = LigrecParams.min_exceedances,
                    normal_min_edges: int = LigrecParams.normal_min_edges) -> pd.DataFrame:
    """Spatial ligand–receptor co-localisation scores with a positions-fixed permutation null.

    Parameters
    ----------
    pair_i, pair_j
        Unordered neighbour pairs (each pair once; both directions are scored).
    expression
        Column name → per-cell expression (non-negative intensities or counts).
    lr_pairs
        Output of :func:`match_pairs`.
    type_codes, cell_types
        Integer type per cell and the labels.
    compartment
        Per-cell compartment label (of the sender); rows are given per compartment and for
        ``all``, and permutations are stratified by compartment. None: one stratum, ``all``
        rows only.
    n_permutations
        Stage-1 permutations of each scheme; ``SeedSequence(seed).spawn`` gives one generator
        per block of 64 permutations, so results do not depend on how the work is split.
        Default 999.
    min_edges
        Groups (sender type, receiver type, compartment) with fewer neighbouring pairs are not
        reported (nor refined). Default 10.
    max_permutations
        Most permutations a row receives under sequential refinement (module docstring).
        Default 9,999 (``[ligrec] max_permutations``); 0 or <= ``n_permutations`` disables
        refinement.
    min_exceedances
        ``h``: a row with fewer exceedances after a stage continues to the next. Default 10.
    normal_min_edges
        Rows with at least this many neighbouring pairs take ``p = p_normal`` from the exact
        permutation moments instead of Monte Carlo (``n_permutations`` = 0 in the table);
        Default 5,000 (``[ligrec] normal_min_edges``); 0 keeps Monte Carlo for every row. See
        the module docstring.

    Returns
    -------
    pandas.DataFrame
        ``ligand, receptor, sender_type`` (a label or ``any``), ``receiver_type,
        compartment, n_edges, score`` (mean L_s · R_r), ``expected`` (null mean), ``ratio``
        (score / expected), ``z`` ((score − null mean) / null SD), ``p_normal`` (normal
        upper tail of z; 1 when the null has zero spread; ``expected``, ``z`` and ``p_normal``
        from the exact permutation moments), ``p`` (one-sided Monte Carlo, sequentially
        refined; ``p_normal`` for rows of at least ``normal_min_edges`` pairs),
        ``n_permutations`` (permutations behind ``p``; 0 for normal rows), ``q`` (BH of ``p``
        over all rows).

    Raises
    ------
    ConfigError
        ``max_permutations`` negative or ``min_exceedances`` < 1.

    Notes
    -----
    O(n_permutations · (n + nnz · n_pairs)) for nnz <= 2E distinct (sender, receiver type)
    entries of E neighbouring pairs, twice (per-type and ``any`` schemes): per pair the
    receptor side is folded once into a sparse matrix M (group × sender) and each permutation
    costs one within-strata shuffle and one sparse product (``_permutation_test``). The first
    call in a fresh environment compiles a Numba kernel (cached on disk afterwards).
    Refinement adds O(Σ_stages ΔN_j · (u_j + e_j)) for the u_j senders and e_j receptor-matrix
    entries of the rows still running (module docstring); the extra streams are
    ``SeedSequence(seed, spawn_key=(2, scheme, stage, pair, stratum, block))`` (scheme 0 per
    type, 1 ``any``; stratum the code of the stratum, blocks of 256 permutations), so a row's
    p depends only on the seed, the data and the set of rows refined with it.
    """
    if max_permutations < 0:
        raise ConfigError(f"`ligrec.max_permutations` must be a non-negative integer; got "
                          f"{max_permutations}.")
    if min_exceedances < 1:
        raise ConfigError(f"`ligrec.min_exceedances` must be a positive integer; got "
                          f"{min_exceedances}.")
    codes = np.asarray(type_codes, dtype=np.int64)
    n, n_types = len(codes), len(cell_types)
    columns = ["ligand", "receptor", "sender_type", "receiver_type", "compartment", "n_edges",
               "score", "expected", "ratio", "z", "p_normal", "p", "n_permutations", "q"]
    if compartment is None:
        comp_codes, comp_names = np.zeros(n, dtype=np.int64), []
    else:
        names, comp_codes = np.unique(np.asarray(compartment).astype(str), return_inverse=True)
        comp_names = [str(c) for c in names]
    src = np.concatenate([pair_i, pair_j]).astype(np.int64)
    dst = np.concatenate([pair_j, pair_i]).astype(np.int64)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    if not lr_pairs or len(src) == 0:
        return pd.DataFrame(columns=columns)
    ligand = np.stack([np.asarray(expression[p[2]], dtype=np.float64) for p in lr_pairs])
    receptor = np.stack([np.asarray(expression[p[3]], dtype=np.float64) for p in lr_pairs])
    labels = np.asarray(cell_types, dtype=object)
    comp_labels = np.asarray([WHOLE, *comp_names], dtype=object)
    n_comp = len(comp_names)
    typed_seed, any_seed = np.random.SeedSequence(seed).spawn(2)
    expressed = (ligand.max(axis=1) > 0) & (receptor.max(axis=1) > 0)
    schedule = _refinement_schedule(n_permutations, max_permutations)
    parts = []
    for scheme_index, scheme in enumerate(("type", "any")):
        n_senders = n_types if scheme == "type" else 1
        sender_key = codes[src] if scheme == "type" else np.zeros(len(src), dtype=np.int64)
        base_group = sender_key * n_types + codes[dst]
        block = n_senders * n_types
        fine, fold = _fine_groups(base_group, comp_codes[src], block, n_comp)
        strata = (codes * max(1, n_comp) + comp_codes) if scheme == "type" else comp_codes
        edge_counts = fold @ np.bincount(fine, minlength=fold.shape[1]).astype(np.float64)
        reportable = expressed[:, None] & (edge_counts >= max(1, min_edges))[None, :]
        monte_carlo = reportable & ((edge_counts < normal_min_edges)[None, :]
                                    if normal_min_edges > 0 else True)
        refinement = _Refinement(schedule, min_exceedances, monte_carlo,
                                 (seed, _REFINE_KEY, scheme_index),
                                 partial_first_stage=bool((reportable & ~monte_carlo).any()))
        result = _permutation_test(ligand, receptor, src, dst, fine, fold, strata,
                                   n_permutations,
                                   typed_seed if scheme == "type" else any_seed, refinement)
        edge_counts, score, expected, z, p, n_perm = result
        n_perm = np.where(reportable, n_perm, 0)
        p_normal = np.where(np.isfinite(z), norm.sf(np.nan_to_num(z)), 1.0)
        group = np.flatnonzero(edge_counts >= max(1, min_edges))
        within = group % block
        sender = labels[within // n_types] if scheme == "type" else np.full(len(group), "any",
                                                                             dtype=object)
        for k, (lig_name, rec_name, _, _) in enumerate(lr_pairs):
            if not expressed[k]:
                continue
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = score[k, group] / expected[k, group]
            parts.append(pd.DataFrame({
                "ligand": lig_name, "receptor": rec_name, "sender_type": sender,
                "receiver_type": labels[within % n_types],
                "compartment": comp_labels[group // block],
                "n_edges": edge_counts[group].astype(np.int64), "score": score[k, group],
                "expected": expected[k, group], "ratio": ratio, "z": z[k, group],
                "p_normal": p_normal[k, group], "p": p[k, group],
                "n_permutations": n_perm[k, group]}))
    parts = [part for part in parts if len(part)]
    if not parts:
        return pd.DataFrame(columns=columns)
    table = pd.concat(parts, ignore_index=True)
    table["q"] = benjamini_hochberg(table["p"].to_numpy())
    return table[columns]


def _fine_groups(base_group: np.ndarray, sender_comp: np.ndarray, block: int,
                 n_comp: int) -> tuple[np.ndarray, sparse.csr_matrix]:
    """Finest group of every edge and the 0/1 matrix folding fine groups into output groups.

    Output groups are ``base`` (the ``all`` compartment, ``[0, block)``) followed by
    ``block · (1 + c) + base`` per sender compartment c. The finest groups are (compartment,
    base) when compartments are given, else ``base``; an ``all`` sum is the sum of its
    compartments' sums, so only fine sums are ever computed (half the work).
    """
    if n_comp == 0:
        return base_group, sparse.identity(block, format="csr")
    fine = sender_comp * block + base_group
    n_fine = block * n_comp
    rows = np.concatenate([np.arange(n_fine) % block, block + np.arange(n_fine)])
    cols = np.tile(np.arange(n_fine), 2)
    fold = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)),
                             shape=(block * (1 + n_comp), n_fine))
    return fine, fold


def _receptor_matrix(receptor: np.ndarray, src: np.ndarray, dst: np.ndarray,
                     fine: np.ndarray, n_fine: int,
                     column_of_cell: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR arrays of ``M_k[g, s] = Σ_{edges s→d in fine group g} R_k[d]`` for every pair k.

    The sparsity pattern (fine group g, sender s) is shared by all pairs; only the values
    differ, so the result is ``indptr`` (n_fine + 1), ``indices`` (nnz; sender s given as
    ``column_of_cell[s]``) and ``data`` (K, nnz). Because a sender's group is fixed by its
    position, the sum of L · R over group g is ``(M_k @ L_k)[g]`` for any ligand vector,
    observed or permuted. nnz <= number of directed edges.
    """
    n = receptor.shape[1]
    inverse, rows, cells = _group_pairs(np.asarray(fine, dtype=np.int64),
                                        np.asarray(src, dtype=np.int64), int(n_fine), int(n))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_fine))])
    received = receptor[:, dst]
    data = np.stack([np.bincount(inverse, weights=received[k], minlength=len(rows))
                     for k in range(len(receptor))])
    return indptr.astype(np.int64), column_of_cell[cells].astype(np.int64), data


@numba.njit(cache=True)
def _counting_sort(keys: np.ndarray, n_keys: int,
                   items: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    """``items`` stably reordered by ``keys[item]`` (keys in ``[0, n_keys)``): O(m + n_keys)."""
    start = np.zeros(n_keys + 1, dtype=np.int64)
    for item in items:
        start[keys[item] + 1] += 1
    for key in range(n_keys):
        start[key + 1] += start[key]
    out = np.empty(len(items), dtype=np.int64)
    for item in items:
        out[start[keys[item]]] = item
        start[keys[item]] += 1
    return out


@numba.njit(cache=True)
def _group_pairs(rows: np.ndarray, cells: np.ndarray, n_rows: int,
                 n_cells: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover
    """Distinct (row, cell) pairs in sorted order and each input pair's index among them.

    Equals ``np.unique(rows * n_cells + cells, return_inverse=True)`` (keys split back into
    rows and cells) by two stable counting sorts, cell then row: O(m + n_rows + n_cells)
    instead of a sort of m keys.
    """
    m = len(rows)
    order = _counting_sort(rows, n_rows, _counting_sort(cells, n_cells, np.arange(m)))
    inverse = np.empty(m, dtype=np.int64)
    key_rows = np.empty(m, dtype=np.int64)
    key_cells = np.empty(m, dtype=np.int64)
    k = -1
    for e in order:
        if k < 0 or rows[e] != key_rows[k] or cells[e] != key_cells[k]:
            k += 1
            key_rows[k], key_cells[k] = rows[e], cells[e]
        inverse[e] = k
    return inverse, key_rows[:k + 1], key_cells[:k + 1]


@numba.njit(cache=True)
def _null_sums(sorted_ligand: np.ndarray, starts: np.ndarray, uniforms: np.ndarray,
               indptr: np.ndarray, indices: np.ndarray,
               data: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled by numba
    """Fine-group sums ``M_k @ L_k[perm_b]`` for a block of B within-strata permutations.

    Cells are indexed in stratum-sorted order (``sorted_ligand``, ``indices``); stratum s is
    the range ``starts[s]:starts[s + 1]``. Permutation b is a Fisher–Yates shuffle of each
    stratum with swap partner ``lo + floor(u · (i − lo + 1))``, u from row b of ``uniforms``
    (float64; non-uniformity of order stratum size / 2^53, negligible). Returns (K, n_fine, B).
    """
    n_perm, n = uniforms.shape
    n_pairs, n_rows = data.shape[0], len(indptr) - 1
    out = np.zeros((n_pairs, n_rows, n_perm))
    values = np.empty(n)
    for b in range(n_perm):
        for k in range(n_pairs):
            for t in range(n):
                values[t] = sorted_ligand[k, t]
            for s in range(len(starts) - 1):
                lo = starts[s]
                for i in range(starts[s + 1] - 1, lo, -1):
                    j = min(i, lo + int(uniforms[b, i] * (i - lo + 1)))
                    values[i], values[j] = values[j], values[i]
            for g in range(n_rows):
                acc = 0.0
                for idx in range(indptr[g], indptr[g + 1]):
                    acc += data[k, idx] * values[indices[idx]]
                out[k, g, b] = acc
    return out


class _Refinement(NamedTuple):
    """Sequential refinement settings of one scheme (see the module docstring).

    ``schedule`` holds the cumulative permutation counts of the stages (stage 0 is
    ``n_permutations``), ``eligible`` (K × n_groups) the rows that may be refined and
    ``key`` the prefix ``(seed, 2, scheme)`` of the refinement streams' SeedSequence.
    ``eligible`` rows are the Monte Carlo rows; the others get the normal p.
    ``partial_first_stage``: stage 1 draws only the eligible rows' senders (stream key stage
    0), used when some reportable rows take the normal p, instead of full shuffles.
    """

    schedule: tuple[int, ...]
    min_exceedances: int
    eligible: np.ndarray
    key: tuple[int, int, int]
    partial_first_stage: bool = False


def _refinement_schedule(n_permutations: int, max_permutations: int) -> tuple[int, ...]:
    """Cumulative stage sizes ``N_0 = n_permutations``, ``N_{j+1} = min(max, 10 (N_j + 1) −
    1)`` up to ``max_permutations`` (a single stage when refinement is off)."""
    schedule = [int(n_permutations)]
    while schedule[-1] < max_permutations:
        schedule.append(min(int(max_permutations), _STAGE_FACTOR * (schedule[-1] + 1) - 1))
    return tuple(schedule)


def _permutation_test(ligand: np.ndarray, receptor: np.ndarray, src: np.ndarray,
                      dst: np.ndarray, fine: np.ndarray, fold: sparse.csr_matrix,
                      strata: np.ndarray, n_permutations: int,
                      seed: np.random.SeedSequence,
                      refinement: _Refinement | None = None) -> tuple[np.ndarray, ...]:
    """Observed and null sums of L_s · R_r per output group, ligand permuted within strata.

    ``fine`` is each edge's finest group and ``fold`` (n_groups × n_fine, 0/1) sums fine
    groups into output groups. Per pair k, with ``M_k`` from :func:`_receptor_matrix`, the
    observed sums are ``fold @ M_k @ L_k`` and the null sums of a block of B <= 64
    permutations are ``fold @ M_k @ L_k[perm]`` (one sparse–dense product, :func:`_null_sums`,
    gather fused). Permutation block ``b`` is drawn from
    ``default_rng(seed.spawn(n_blocks)[b]).random((B, n))``, so results do not depend on how
    blocks are scheduled. Cost O(n_permutations · (n + nnz(M) · n_pairs)). Rows of
    ``refinement.eligible`` with fewer than ``h`` exceedances are then refined
    (:func:`_refine`). Rows outside ``refinement.eligible`` take the normal tail of the exact
    z (:func:`_exact_moments`). Returns edge counts, score, expected, z, p and the
    permutations behind each p.
    """
    n_fine = fold.shape[1]
    n = ligand.shape[1]
    edge_counts = fold @ np.bincount(fine, minlength=n_fine).astype(np.float64)
    order = np.argsort(strata, kind="stable")
    column_of_cell = np.empty(n, dtype=np.int64)
    column_of_cell[order] = np.arange(n)
    sorted_strata = strata[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_strata)) + 1, [n]]).astype(
        np.int64)
    indptr, indices, data = _receptor_matrix(receptor, src, dst, fine, n_fine, column_of_cell)
    sorted_ligand = np.ascontiguousarray(ligand[:, order])
    row_of_entry = np.repeat(np.arange(n_fine), np.diff(indptr))
    observed = np.stack([np.bincount(row_of_entry, weights=data[k] * sorted_ligand[k, indices],
                                     minlength=n_fine) for k in range(len(data))]) @ fold.T
    mean, variance = _exact_moments(sorted_ligand, sorted_strata, starts, indptr, indices,
                                    data, fold)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(variance > 0, (observed - mean) / np.sqrt(variance), np.nan)
    threshold = observed - 1e-9 * np.abs(observed)
    monte_carlo = (np.ones(observed.shape, dtype=bool) if refinement is None
                   else refinement.eligible)
    sorted_data = _SortedData(sorted_ligand, sorted_strata, starts, indptr, indices, data,
                              sparse.csr_matrix(fold))
    if refinement is None or not refinement.partial_first_stage:
        exceed = _full_first_stage(sorted_data, threshold, n_permutations, seed)
    else:
        # Only a few rows need Monte Carlo: draw just their senders (cost ∝ those senders).
        exceed = np.zeros_like(observed)
        for k in np.unique(np.nonzero(monte_carlo)[0]):
            groups = np.flatnonzero(monte_carlo[k])
            exceed[k, groups] = _refine_rows(sorted_data, int(k), groups, threshold[k, groups],
                                             n_permutations, (*refinement.key, 0, int(k)))
    n_perm = np.where(monte_carlo, n_permutations, 0).astype(np.int64)
    if refinement is not None and len(refinement.schedule) > 1:
        exceed, n_perm = _refine(refinement, threshold, exceed, n_perm, sorted_data)
    counts = np.maximum(edge_counts, 1)
    p = np.where(n_perm > 0, (1.0 + exceed) / (1.0 + n_perm),
                 np.where(np.isfinite(z), norm.sf(np.nan_to_num(z)), 1.0))
    return edge_counts, observed / counts, mean / counts, z, p, n_perm


def _full_first_stage(cells: _SortedData, threshold: np.ndarray, n_permutations: int,
                      seed: np.random.SeedSequence) -> np.ndarray:
    """Exceedances of every group over ``n_permutations`` full within-strata shuffles.

    Permutation block ``b`` (64 permutations) is drawn from
    ``default_rng(seed.spawn(n_blocks)[b]).random((B, n))`` and summed by :func:`_null_sums`.
    """
    n = cells.ligand.shape[1]
    exceed = np.zeros_like(threshold)
    n_blocks = -(-n_permutations // _BLOCK)
    for block, child in enumerate(seed.spawn(n_blocks)):
        uniforms = np.random.default_rng(child).random(
            (min(_BLOCK, n_permutations - block * _BLOCK), n))
        fine_null = _null_sums(cells.ligand, cells.starts, uniforms, cells.indptr,
                               cells.indices, cells.data)       # (K, n_fine, B)
        for k, part in enumerate(fine_null):
            exceed[k] += np.count_nonzero(cells.fold @ part >= threshold[k][:, None], axis=1)
    return exceed


def _exact_moments(sorted_ligand: np.ndarray, sorted_strata: np.ndarray, starts: np.ndarray,
                   indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
                   fold: sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Exact mean and variance of every output group's sum under within-strata permutation.

    A fine group's sum is the linear permutation statistic ``S = Σ_s a_s L_π(s)`` with weights
    ``a_s = M_k[g, s]`` (zero for senders outside the group). For a uniform permutation of the
    n_h values of stratum h (mean μ_h, sample variance v_h with divisor n_h − 1), each
    stratum contributes ``E = μ_h Σ a_s`` and ``Var = v_h (Σ a_s² − (Σ a_s)² / n_h)``
    (Wald & Wolfowitz 1944), and strata are shuffled independently, so moments add over
    strata; output groups fold fine groups of disjoint senders, so they add again. O(nnz · K).
    """
    n_strata = len(starts) - 1
    sizes = np.diff(starts).astype(np.float64)
    stratum_of_column = np.repeat(np.arange(n_strata), np.diff(starts))
    n_fine = len(indptr) - 1
    key = (np.repeat(np.arange(n_fine), np.diff(indptr)) * n_strata
           + stratum_of_column[indices])
    mean = np.empty((len(data), fold.shape[0]))
    variance = np.empty_like(mean)
    for k in range(len(data)):
        sums = np.add.reduceat(sorted_ligand[k], starts[:-1]) if n_strata else np.zeros(0)
        mu = sums / sizes
        deviation = sorted_ligand[k] - mu[stratum_of_column]
        v = np.add.reduceat(deviation**2, starts[:-1]) / np.maximum(sizes - 1, 1)
        first = np.bincount(key, weights=data[k], minlength=n_fine * n_strata).reshape(
            n_fine, n_strata)
        second = np.bincount(key, weights=data[k] ** 2, minlength=n_fine * n_strata).reshape(
            n_fine, n_strata)
        mean[k] = fold @ (first @ mu)
        variance[k] = fold @ (np.maximum(second - first**2 / sizes, 0.0) @ v)
    return mean, variance


class _SortedData(NamedTuple):
    """The cells in stratum-sorted order and the receptor matrix (:func:`_receptor_matrix`)."""

    ligand: np.ndarray          # (K, n), stratum-sorted
    strata: np.ndarray          # (n,), sorted
    starts: np.ndarray          # stratum s = starts[s]:starts[s + 1]
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    fold: sparse.csr_matrix


def _refine(refinement: _Refinement, threshold: np.ndarray, exceed: np.ndarray,
            n_perm: np.ndarray, cells: _SortedData) -> tuple[np.ndarray, np.ndarray]:
    """Besag–Clifford-style sequential stages for the rows still short of ``h`` exceedances.

    At stage j the rows (pair k, output group g) that are eligible, have fewer than ``h``
    exceedances and received all ``N_{j−1}`` permutations so far get ``N_j − N_{j−1}`` more
    (:func:`_refine_rows`). Returns the updated exceedance counts and permutations per row.
    """
    schedule, h = refinement.schedule, refinement.min_exceedances
    exceed, n_perm = exceed.copy(), n_perm.copy()
    for stage in range(1, len(schedule)):
        running = refinement.eligible & (exceed < h) & (n_perm == schedule[stage - 1])
        for k in np.unique(np.nonzero(running)[0]):
            groups = np.flatnonzero(running[k])
            key = (*refinement.key, stage, int(k))
            exceed[k, groups] += _refine_rows(cells, int(k), groups, threshold[k, groups],
                                              schedule[stage] - schedule[stage - 1], key)
            n_perm[k, groups] = schedule[stage]
    return exceed, n_perm


def _refine_rows(cells: _SortedData, k: int, groups: np.ndarray, threshold: np.ndarray,
                 n_more: int, key: tuple[int, ...]) -> np.ndarray:
    """Exceedances of ``n_more`` further permutations for output groups ``groups`` of pair k.

    Only the fine groups folded into ``groups`` are summed (their rows of the receptor
    matrix) and only the u senders in those rows are drawn: per stratum, a partial
    Fisher–Yates shuffle (:func:`_partial_null_sums`) gives them a uniform draw without
    replacement of the stratum's ligand values. Senders are taken in stratum-sorted order;
    block b of stratum c uses ``default_rng(SeedSequence(seed, spawn_key=(2, scheme, stage,
    k, c, b))).random((B, u_c))`` with ``B = min(256, max(16, 2^22 // u))`` (memory <= 32 MiB
    of uniforms unless u > 262,144), so the result does not depend on how blocks are
    scheduled. Cost O(n_more · (u + entries)).
    """
    seed, *prefix = key
    sub_fold = cells.fold[groups]
    fine_needed = np.unique(sub_fold.indices)
    sub_fold = sparse.csr_matrix(sub_fold[:, fine_needed])
    first = cells.indptr[fine_needed]
    lengths = cells.indptr[fine_needed + 1] - first
    sub_indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    entries = np.repeat(first - sub_indptr[:-1], lengths) + np.arange(sub_indptr[-1])
    needed, local = np.unique(cells.indices[entries], return_inverse=True)
    stratum = np.searchsorted(cells.starts, needed, side="right") - 1
    present, seg_first = np.unique(stratum, return_index=True)
    seg_starts = np.concatenate([seg_first, [len(needed)]]).astype(np.int64)
    lo, hi = cells.starts[present], cells.starts[present + 1]
    codes = [int(c) for c in cells.strata[lo]]
    sub_data = np.ascontiguousarray(cells.data[k, entries])
    local = local.astype(np.int64)
    work = cells.ligand[k]
    exceed = np.zeros(len(groups))
    block_size = min(_REFINE_BLOCK, max(16, _REFINE_UNIFORMS // max(1, len(needed))))
    for block in range(-(-n_more // block_size)):
        size = min(block_size, n_more - block * block_size)
        uniforms = np.empty(size * len(needed))     # segment r: (size, u_r) at size · start_r
        for r, code in enumerate(codes):
            stream = np.random.SeedSequence(seed, spawn_key=(*prefix, code, block))
            np.random.default_rng(stream).random(
                out=uniforms[size * seg_starts[r]:size * seg_starts[r + 1]])
        fine_null = _partial_null_sums(work, lo, hi, seg_starts, uniforms, size, sub_indptr,
                                       local, sub_data)         # (n_fine_needed, B)
        exceed += np.count_nonzero(sub_fold @ fine_null >= threshold[:, None], axis=1)
    return exceed


@numba.njit(cache=True)
def _partial_null_sums(values: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                       seg_starts: np.ndarray, uniforms: np.ndarray, n_perm: int,
                       indptr: np.ndarray, indices: np.ndarray,
                       data: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled by numba
    """Fine-group null sums of a block of B permutations, drawing only the needed senders.

    ``values`` is one pair's stratum-sorted ligand; a copy is the scratch arrangement of the
    block. Needed sender t of segment r (``seg_starts[r] <= t < seg_starts[r + 1]``; stratum
    range ``lo[r]:hi[r]`` of size m) gets the i-th draw (i = t − seg_starts[r]) of a partial
    Fisher–Yates shuffle of the stratum: swap positions ``lo + i`` and ``lo + min(m − 1, i +
    floor(u · (m − i)))`` and take the value now at ``lo + i``.
    Permutation b + 1 shuffles the arrangement b left (no undo): from any arrangement the
    draws are a uniform ordered sample without replacement of the stratum's values, so
    successive permutations are independent. Returns (n_rows, B) with row g = Σ data[idx] ·
    drawn[indices[idx]]. The uniforms u of segment r are a (B, u_r) row-major array at
    ``uniforms[B · seg_starts[r]:B · seg_starts[r + 1]]``. O(B · (u + entries)) plus one O(n)
    copy.
    """
    n_rows = len(indptr) - 1
    n_needed = seg_starts[len(seg_starts) - 1]
    out = np.zeros((n_rows, n_perm))
    drawn = np.empty(n_needed)
    arrangement = values.copy()
    for b in range(n_perm):
        for r in range(len(lo)):
            base, m, first = lo[r], hi[r] - lo[r], seg_starts[r]
            offset = n_perm * first + b * (seg_starts[r + 1] - first) - first
            for t in range(first, seg_starts[r + 1]):
                i = t - first
                j = base + min(m - 1, i + int(uniforms[offset + t] * (m - i)))
                drawn[t] = arrangement[j]
                arrangement[j] = arrangement[base + i]
                arrangement[base + i] = drawn[t]
        for g in range(n_rows):
            acc = 0.0
            for idx in range(indptr[g], indptr[g + 1]):
                acc += data[idx] * drawn[indices[idx]]
            out[g, b] = acc
    return out
