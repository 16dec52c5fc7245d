"""Low-level table readers shared by the cell and clinical readers.

Every reader here either returns a :class:`RawTable` or raises :class:`TableError` whose
message is one sentence naming the file, the problem and the fix. Nothing else escapes:
corrupt, truncated or mis-named files become a :class:`TableError`, never a traceback.
"""

from __future__ import annotations

import csv
import gzip
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "NA_VALUES",
    "SUPPORTED_SUFFIXES",
    "RawTable",
    "TableError",
    "expand_paths",
    "file_format",
    "file_stem",
    "find_column",
    "format_rows",
    "list_columns",
    "read_parquet_table",
    "read_text_table",
    "reason",
    "supported_list",
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


class TableError(Exception):
    """A file cannot be read; ``str(err)`` is the one-sentence user message."""


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
    """

    frame: pd.DataFrame
    row_base: int
    warnings: list[str] = field(default_factory=list)


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


def expand_paths(paths: Sequence[str | Path]) -> list[Path | tuple[Path, str]]:
    """Expand directories into their supported files (sorted, non-recursive).

    Returns the list of files to read, in order; an entry ``(path, message)`` stands for a
    path that cannot be used at all (missing, or a directory without any cell table).
    """
    out: list[Path | tuple[Path, str]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir() and path.suffix.lower() == ".zarr":
            out.append(path)  # a SpatialData store
        elif path.is_dir():
            try:
                children = sorted(p for p in path.iterdir()
                                  if p.is_file() and not p.name.startswith(".")
                                  and file_format(p)[0] is not None)
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


def _open_bytes(path: Path, gz: bool) -> io.BufferedIOBase:
    if gz:
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _read_header(path: Path, gz: bool) -> tuple[str, bool]:
    """Return the first line of a text table (decoded) and whether it is UTF-8."""
    with _open_bytes(path, gz) as handle:
        line = handle.readline(_MAX_HEADER_BYTES)
    try:
        return line.decode("utf-8-sig"), True
    except UnicodeDecodeError:
        return line.decode("latin-1"), False


def _sniff_delimiter(header: str, default: str) -> str:
    if default in header:
        return default
    for sep in ("\t", ",", ";"):
        if sep in header:
            return sep
    return default


def read_text_table(path: Path, gz: bool, text_columns: Sequence[str] = (),
                    what: str = "table") -> RawTable:
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

    Raises
    ------
    TableError
        When the file is empty, has no data rows, or cannot be parsed.
    """
    try:
        if path.stat().st_size == 0:
            raise TableError(f"{path}: file is empty; export the {what} again.")
        header, utf8 = _read_header(path, gz)
    except TableError:
        raise
    except (OSError, EOFError, ValueError) as err:
        raise TableError(f"{path}: cannot be read ({_reason(err)}); check that the file is a "
                         f"complete{' gzip-compressed' if gz else ''} text table.") from None
    if not header.strip():
        raise TableError(f"{path}: file is empty (no header line); export the {what} again.")
    default = _TEXT.get(file_stem_suffix(path), ",")
    sep = _sniff_delimiter(header, default)
    names = next(csv.reader([header.rstrip("\r\n")], delimiter=sep), [])
    text_names = {hit for want in text_columns if (hit := find_column(names, want)) is not None}
    frame = None
    if utf8:
        frame = _read_pyarrow(path, sep, text_names)
    if frame is None:
        frame = _read_pandas(path, sep, text_names, "utf-8-sig" if utf8 else "latin-1", gz)
    if len(frame) == 0:
        raise TableError(f"{path}: has a header but no data rows; export the {what} with its "
                         "rows.")
    frame.columns = [str(c).strip().lstrip("\ufeff") for c in frame.columns]
    return RawTable(frame.reset_index(drop=True), row_base=2)


def file_stem_suffix(path: Path) -> str:
    """Return the format suffix (``.csv``, ``.tsv``, …) of a possibly gzipped path."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _read_pyarrow(path: Path, sep: str, text_names: set[str]) -> pd.DataFrame | None:
    """Fast path; ``None`` when pyarrow cannot parse the file (pandas then reports why)."""
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
        if len(set(table.column_names)) != len(table.column_names):
            return None  # let pandas de-duplicate the names
        return table.to_pandas()
    except Exception:
        return None


def _read_pandas(path: Path, sep: str, text_names: set[str], encoding: str,
                 gz: bool) -> pd.DataFrame:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pd.read_csv(
                path, sep=sep, dtype={name: str for name in text_names}, encoding=encoding,
                keep_default_na=False, na_values=list(NA_VALUES), low_memory=False,
                compression="gzip" if gz else None,
            )
    except pd.errors.EmptyDataError:
        raise TableError(f"{path}: file is empty; export the table again.") from None
    except UnicodeDecodeError:
        if encoding != "latin-1":
            return _read_pandas(path, sep, text_names, "latin-1", gz)
        raise TableError(f"{path}: is not a text table (cannot decode); export it as "
                         "UTF-8 CSV.") from None
    except pd.errors.ParserError as err:
        raise TableError(f"{path}: cannot be parsed as a "
                         f"{'tab' if sep == chr(9) else repr(sep)}-separated table "
                         f"({_reason(err)}); check the delimiter, quoting and row lengths."
                         ) from None
    except Exception as err:
        raise TableError(f"{path}: cannot be read ({_reason(err)}); check that the file is a "
                         f"complete{' gzip-compressed' if gz else ''} text table.") from None


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
