"""Low-level table readers shared by the cell and clinical readers.

Every reader here either returns a :class:`RawTable` or raises :class:`TableError` whose
message is one sentence naming the file, the problem and the fix. Nothing else escapes:
corrupt, truncated or mis-named files become a :class:`TableError`, never a traceback.
"""

from __future__ import annotations

import csv
import fnmatch
import gzip
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from metaniche.errors import InputError
from metaniche.genes import GeneMatrix

__all__ = [
    "NA_VALUES",
    "SUPPORTED_SUFFIXES",
    "VENDOR_FILES",
    "RawTable",
    "TableError",
    "expand_paths",
    "file_format",
    "file_stem",
    "find_column",
    "format_rows",
    "is_spatialdata_store",
    "list_columns",
    "read_parquet_table",
    "read_text_table",
    "reason",
    "supported_list",
    "vendor_layout",
]

#: Strings read as missing values in text tables (pyarrow's default set; note that the
#: label ``None`` is *not* missing, because some phenotyping tools use it as a class name).
NA_VALUES: tuple[str, ...] = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
    "1.#QNAN", "N/A", "NA", "NULL", "NaN", "n/a", "nan", "null",
)

#: Supported file name endings, in the order they are listed in messages.
SUPPORTED_SUFFIXES: tuple[str, ...] = (
    ".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz", ".parquet", ".pq", ".h5ad",
)
_TEXT = {".csv": ",", ".tsv": "\t", ".txt": "\t"}
_FORMATS = {".csv": "text", ".tsv": "text", ".txt": "text", ".parquet": "parquet",
            ".pq": "parquet", ".h5ad": "h5ad"}
_MAX_HEADER_BYTES = 4 * 1024 * 1024
#: Bytes read from the start of a text file to recognise binary content.
_SNIFF_BYTES = 64 * 1024


class TableError(InputError):
    """A file cannot be read; ``str(err)`` is the one-sentence user message.

    A kind of :class:`metaniche.errors.InputError`, so callers catch one hierarchy.
    """


@dataclass
class RawTable:
    """A table as read from one file, before any column is standardised.

    Attributes
    ----------
    frame
        The table, one row per data row of the file, with a ``RangeIndex``.
    row_base
        Number to add to a 0-based position to get the row number a user sees: 2 for
        text files (the header is line 1), 1 for Parquet and AnnData.
    warnings
        File-level warnings raised while reading (one sentence each).
    genes
        An expression matrix too large for marker columns, kept sparse with the same rows
        as ``frame`` (:class:`metaniche.genes.GeneMatrix`); ``None`` otherwise.
    """

    frame: pd.DataFrame
    row_base: int
    warnings: list[str] = field(default_factory=list)
    genes: GeneMatrix | None = None


def supported_list() -> str:
    """Return the supported endings as a readable list."""
    return ", ".join(SUPPORTED_SUFFIXES)


def file_format(path: Path) -> tuple[str | None, bool]:
    """Return ``(format, gzipped)`` for a path; format is ``None`` when unsupported.

    The format is one of ``"text"``, ``"parquet"`` and ``"h5ad"``; gzip is accepted for
    text tables only.
    """
    suffixes = [s.lower() for s in path.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    if gz:
        suffixes = suffixes[:-1]
    if not suffixes:
        return None, gz
    kind = _FORMATS.get(suffixes[-1])
    if gz and kind != "text":
        return None, gz
    return kind, gz


def file_stem(path: Path) -> str:
    """Return the file name without ``.gz`` and without the format suffix."""
    name = path.name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    for suffix in sorted(_FORMATS, key=len, reverse=True):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem or name


def is_spatialdata_store(path: Path) -> bool:
    """Whether ``path`` is a directory to read as a SpatialData zarr store.

    True for a directory named ``*.zarr`` or holding zarr group metadata (``zarr.json``
    for zarr v3, ``.zgroup`` for v2) at its top.
    """
    if not path.is_dir():
        return False
    if path.suffix.lower() == ".zarr":
        return True
    return (path / "zarr.json").is_file() or (path / ".zgroup").is_file()


#: File names (``fnmatch`` patterns, case-insensitive, ``.gz`` allowed; a trailing ``/`` is a
#: folder) that make a directory an imaging-ST output of each reader, in the order tried; one
#: of them is enough, so that the reader can name the missing one.
VENDOR_FILES: dict[str, tuple[str, ...]] = {
    "xenium": ("cell_feature_matrix.h5", "cell_feature_matrix/"),
    "cosmx": ("*_exprMat_file.csv", "*_metadata_file.csv"),
    "merscope": ("*cell_by_gene.csv", "*cell_metadata.csv"),
    "visium": ("filtered_feature_bc_matrix.h5", "filtered_feature_bc_matrix/",
               "binned_outputs/"),
}


def vendor_layout(path: Path) -> str | None:
    """The imaging-ST output a directory holds (reader name, see :data:`VENDOR_FILES`)."""
    if not path.is_dir():
        return None
    try:
        names = [p.name.lower().removesuffix(".gz") + ("/" if p.is_dir() else "")
                 for p in path.iterdir()]
    except OSError:
        return None
    for layout, patterns in VENDOR_FILES.items():
        if any(fnmatch.fnmatchcase(n, pat.lower()) for pat in patterns for n in names):
            return layout
    return None


def expand_paths(paths: Sequence[str | Path]) -> list[Path | tuple[Path, str]]:
    """Expand directories into their supported files (sorted, non-recursive).

    A SpatialData store or an imaging-ST output folder (:func:`vendor_layout`) is one
    entry, given directly or as a child of a directory.
    Returns the list of files to read, in order; an entry ``(path, message)`` stands for a
    path that cannot be used at all (missing, or a directory without any cell table).
    """
    out: list[Path | tuple[Path, str]] = []
    for raw in paths:
        path = Path(raw)
        if is_spatialdata_store(path) or vendor_layout(path) is not None:
            out.append(path)
        elif path.is_dir():
            try:
                children = sorted(p for p in path.iterdir()
                                  if not p.name.startswith(".")
                                  and ((p.is_file() and file_format(p)[0] is not None)
                                       or is_spatialdata_store(p)
                                       or vendor_layout(p) is not None))
            except OSError as err:
                out.append((path, f"{path}: directory cannot be listed ({_reason(err)}); "
                                  "check the path and its permissions."))
                continue
            if not children:
                out.append((path, f"{path}: directory holds no cell table (supported: "
                                  f"{supported_list()}); point to the files or the right "
                                  "directory."))
            out.extend(children)
        elif not path.exists():
            out.append((path, f"{path}: file not found; check the path."))
        else:
            out.append(path)
    return out


def find_column(columns: Sequence[object], wanted: str) -> str | None:
    """Return the column named ``wanted``: exact match, else a unique case-insensitive one."""
    names = [str(c) for c in columns]
    if wanted in names:
        return wanted
    key = wanted.strip().casefold()
    hits = [c for c in names if c.strip().casefold() == key]
    return hits[0] if len(hits) == 1 else None


def list_columns(columns: Sequence[object], limit: int = 12) -> str:
    """Return a readable, truncated list of column names."""
    names = [str(c) for c in columns]
    text = ", ".join(names[:limit])
    if len(names) > limit:
        text += f", … ({len(names) - limit} more)"
    return text or "none"


def format_rows(rows: np.ndarray, values: Sequence[str] | None = None, limit: int = 3) -> str:
    """Return ``"rows 5 ('abc'), 9 (empty) and 4 more"`` for 1-based row numbers."""
    shown = []
    for i, row in enumerate(rows[:limit]):
        text = str(int(row))
        if values is not None:
            text += f" ({values[i]})"
        shown.append(text)
    word = "row" if len(rows) == 1 else "rows"
    text = f"{word} " + ", ".join(shown)
    if len(rows) > limit:
        text += f" and {len(rows) - limit} more"
    return text


def _reason(err: BaseException) -> str:
    """Return a short, single-line reason for an exception."""
    if isinstance(err, PermissionError):
        return "permission denied"
    if isinstance(err, FileNotFoundError):
        return "file not found"
    text = " ".join(str(err).split()) or type(err).__name__
    if len(text) > 160:
        text = text[:157] + "…"
    return text


def _open_bytes(path: Path, gz: bool) -> gzip.GzipFile | io.BufferedReader:
    if gz:
        return gzip.open(path, "rb")
    return open(path, "rb")


def _read_header(path: Path, gz: bool) -> tuple[str, bool]:
    """Return the first line of a text table (decoded) and whether it is UTF-8."""
    with _open_bytes(path, gz) as handle:
        line = handle.readline(_MAX_HEADER_BYTES)
    try:
        return line.decode("utf-8-sig"), True
    except UnicodeDecodeError:
        return line.decode("latin-1"), False


def _read_start(path: Path, gz: bool) -> bytes:
    """Return the first :data:`_SNIFF_BYTES` bytes of the (decompressed) file."""
    with _open_bytes(path, gz) as handle:
        return handle.read(_SNIFF_BYTES)


def _not_text(path: Path, gz: bool, start: bytes, label: str) -> str | None:
    """Return the message for a file that is not a text table at all, else ``None``."""
    if not gz and start[:2] == b"\x1f\x8b":
        return (f"{path}: is gzip-compressed but its name does not end in .gz, so it cannot "
                f"be read as {label}; rename it to {path.name}.gz.")
    if start[:4] == b"PK\x03\x04":
        return (f"{path}: is a zip archive (an Excel .xlsx workbook?), not a text table, so "
                f"it cannot be read as {label}; save the sheet as CSV or tab-separated text.")
    if start[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return (f"{path}: is UTF-16 encoded text, so it cannot be read as {label}; save it "
                "again as UTF-8 (or ASCII) CSV or tab-separated text.")
    if b"\x00" in start:
        return (f"{path}: holds binary data (NUL bytes in its first {len(start):,} bytes), not "
                f"a text table, so it cannot be read as {label}; export the cells as CSV or "
                "tab-separated text.")
    return None


def _sniff_delimiter(header: str, default: str) -> str:
    """The most frequent of tab, comma and semicolon in the header (``default`` on ties)."""
    counts = {sep: header.count(sep) for sep in ("\t", ",", ";")}
    best = max(counts.values())
    if best == 0 or counts.get(default, 0) == best:
        return default
    return next(sep for sep, n in counts.items() if n == best)


_SEP_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon"}


def _sep_name(sep: str) -> str:
    return _SEP_NAMES.get(sep, repr(sep))


def read_text_table(path: Path, gz: bool, text_columns: Sequence[str] = (),
                    what: str = "table", label: str | None = None) -> RawTable:
    """Read a CSV/TSV table (optionally gzipped) with pyarrow, falling back to pandas.

    Parameters
    ----------
    path, gz
        The file and whether it is gzip-compressed.
    text_columns
        Column names (matched as :func:`find_column` does) read as text, so that ids such
        as ``007`` keep their leading zeros.
    what
        What the table is, for messages (``"cell table"``, ``"clinical table"``).
    label
        The format the file is read as, with its article, for messages (``"an inForm
        cell_seg_data export"``); default ``"a <what>"``.

    Raises
    ------
    TableError
        When the file is empty, binary, has no data rows, a row whose number of fields
        differs from the header's (the last row: the file looks truncated), or cannot be
        parsed. The delimiter is the file's (tab for ``.txt``/``.tsv``, comma for ``.csv``)
        when the header holds it at least as often as any other of tab, comma and
        semicolon, else the most frequent of these.
    """
    label = label or f"a {what}"
    try:
        if path.stat().st_size == 0:
            raise TableError(f"{path}: file is empty (0 bytes), so it cannot be read as "
                             f"{label}; export the {what} again.")
        header, utf8 = _read_header(path, gz)
        problem = _not_text(path, gz, _read_start(path, gz), label)
    except TableError:
        raise
    except EOFError:
        raise TableError(_truncated_gzip(path, label)) from None
    except (OSError, ValueError) as err:
        raise TableError(f"{path}: cannot be read as {label} ({_reason(err)}); check that the "
                         f"file is a complete{' gzip-compressed' if gz else ''} text table"
                         f"{', or remove .gz from its name if it is plain text' if gz else ''}."
                         ) from None
    if problem is not None:
        raise TableError(problem)
    if not header.strip():
        raise TableError(f"{path}: file is empty (no header line), so it cannot be read as "
                         f"{label}; export the {what} again.")
    default = _TEXT.get(file_stem_suffix(path), ",")
    sep = _sniff_delimiter(header, default)
    names = next(csv.reader([header.rstrip("\r\n")], delimiter=sep), [])
    text_names = {hit for want in text_columns if (hit := find_column(names, want)) is not None}
    frame, parsed = (_read_pyarrow(path, sep, text_names) if utf8 else (None, False))
    encoding = "utf-8-sig" if utf8 else "latin-1"
    if not parsed:
        _check_rows(path, gz, sep, encoding, names, label)
    if frame is None:
        frame = _read_pandas(path, sep, text_names, encoding, gz, label)
    if len(frame) == 0:
        raise TableError(f"{path}: read as {label}, it has a header but no data rows; export "
                         f"the {what} again with its rows.")
    frame.columns = [str(c).strip().lstrip("\ufeff") for c in frame.columns]
    return RawTable(frame.reset_index(drop=True), row_base=2)


def _other_delimiter(names: list[str], sep: str) -> str:
    """`` (the header suggests '|')`` when another separator is frequent in the header."""
    header = sep.join(names)
    counts = {c: header.count(c) for c in ("|", ";", "\t", ",", ":") if c != sep}
    best = max(counts, key=counts.__getitem__)
    if counts[best] < 2:
        return ""
    return f" (the header holds {counts[best]} × {_sep_name(best)})"


def _truncated_gzip(path: Path, label: str) -> str:
    return (f"{path}: cannot be read to the end as {label}: the gzip stream stops early, so "
            "the file looks truncated; export or copy it again.")


def _check_rows(path: Path, gz: bool, sep: str, encoding: str, names: list[str],
                label: str) -> None:
    """Raise when a row has more fields than the header, or fewer than its non-empty names.

    Only called when the fast parser failed, so the scan (a Python loop over lines, C-speed
    parsing) costs nothing on good files. A short *last* row means the file was cut off.
    """
    expected = len(names)
    minimum = expected
    while minimum > 1 and not names[minimum - 1].strip():
        minimum -= 1  # trailing empty header names (a trailing delimiter) may be omitted
    first: tuple[int, int] | None = None
    n_bad = n_rows = 0
    last_line = 0
    last_bad = False
    csv.field_size_limit(1 << 30)
    try:
        with _open_bytes(path, gz) as raw, io.TextIOWrapper(raw, encoding=encoding,
                                                             errors="replace",
                                                             newline="") as text:
            reader = csv.reader(text, delimiter=sep)
            next(reader, None)
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                n_rows += 1
                last_line = reader.line_num
                last_bad = not minimum <= len(row) <= expected
                if last_bad:
                    n_bad += 1
                    if first is None:
                        first = (reader.line_num, len(row))
    except EOFError:
        raise TableError(_truncated_gzip(path, label)) from None
    except (OSError, csv.Error, ValueError):
        return  # the pandas reader reports it
    if first is None:
        return
    line, fields = first
    if n_rows > 1 and n_bad > n_rows / 2:
        other = _other_delimiter(names, sep)
        raise TableError(
            f"{path}: read as {label}, its rows do not split into the header's {expected} "
            f"{_sep_name(sep)}-separated fields ({n_bad} of {n_rows} rows differ; line {line} "
            f"has {fields}), so the delimiter is probably not {_sep_name(sep)}{other}; export "
            "the file again as tab- or comma-separated text.")
    if n_bad == 1 and last_bad and line == last_line and fields < minimum:
        raise TableError(
            f"{path}: read as {label}, it looks truncated: its last line ({line}) has "
            f"{fields} of the header's {expected} fields; export the file again (or delete "
            "the partial last line).")
    more = f" (and {n_bad - 1} more lines do not match)" if n_bad > 1 else ""
    raise TableError(
        f"{path}: read as {label}, it cannot be parsed as a {_sep_name(sep)}-separated table: "
        f"line {line} has {fields} fields but the header has {expected}{more}; fix or remove "
        "that line, or export the file again (check the delimiter and the quoting of text "
        "fields).")


def file_stem_suffix(path: Path) -> str:
    """Return the format suffix (``.csv``, ``.tsv``, …) of a possibly gzipped path."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _read_pyarrow(path: Path, sep: str,
                  text_names: set[str]) -> tuple[pd.DataFrame | None, bool]:
    """Fast path: ``(frame, parsed)``.

    ``frame`` is ``None`` when pyarrow cannot parse the file or when the header repeats a
    name (pandas then de-duplicates it); ``parsed`` says whether pyarrow parsed every row,
    i.e. the rows are known to match the header.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=16 << 20),
            parse_options=pacsv.ParseOptions(delimiter=sep),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in text_names},
                null_values=list(NA_VALUES), strings_can_be_null=True,
            ),
        )
    except Exception:
        return None, False
    if len(set(table.column_names)) != len(table.column_names):
        return None, True
    return table.to_pandas(), True


def _read_pandas(path: Path, sep: str, text_names: set[str], encoding: str,
                 gz: bool, label: str = "a table") -> pd.DataFrame:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pd.read_csv(
                path, sep=sep, dtype={name: str for name in text_names}, encoding=encoding,
                keep_default_na=False, na_values=list(NA_VALUES), low_memory=False,
                compression="gzip" if gz else None,
            )
    except pd.errors.EmptyDataError:
        raise TableError(f"{path}: file is empty, so it cannot be read as {label}; export it "
                         "again.") from None
    except EOFError:
        raise TableError(_truncated_gzip(path, label)) from None
    except UnicodeDecodeError:
        if encoding != "latin-1":
            return _read_pandas(path, sep, text_names, "latin-1", gz, label)
        raise TableError(f"{path}: is not a text table (cannot decode), so it cannot be read "
                         f"as {label}; export it as UTF-8 CSV.") from None
    except pd.errors.ParserError as err:
        raise TableError(f"{path}: read as {label}, it cannot be parsed as a "
                         f"{_sep_name(sep)}-separated table ({_reason(err)}); check the "
                         "delimiter, quoting and row lengths.") from None
    except Exception as err:
        if "end-of-stream" in str(err) or "ended before" in str(err):
            raise TableError(_truncated_gzip(path, label)) from None
        raise TableError(f"{path}: cannot be read as {label} ({_reason(err)}); check that the "
                         f"file is a complete{' gzip-compressed' if gz else ''} text table."
                         ) from None


def read_parquet_table(path: Path, what: str = "table") -> RawTable:
    """Read a Parquet file; raise :class:`TableError` when it is empty or corrupt."""
    try:
        if path.stat().st_size == 0:
            raise TableError(f"{path}: file is empty; export the {what} again.")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = pd.read_parquet(path)
    except TableError:
        raise
    except Exception as err:
        raise TableError(f"{path}: cannot be read as Parquet ({_reason(err)}); check that "
                         "the file is a complete Parquet file.") from None
    if len(frame) == 0:
        raise TableError(f"{path}: has no rows; export the {what} with its rows.")
    frame = frame.reset_index(drop=not _has_named_index(frame))
    frame.columns = [str(c).strip().lstrip("\ufeff") for c in frame.columns]
    return RawTable(frame, row_base=1)


def _has_named_index(frame: pd.DataFrame) -> bool:
    return any(name is not None for name in frame.index.names)


def reason(err: BaseException) -> str:
    """Public alias of the short exception reason used in messages."""
    return _reason(err)
