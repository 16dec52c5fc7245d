"""Tumour annotations from GeoJSON (as QuPath exports them)."""

from __future__ import annotations

import json
from pathlib import Path

import shapely
import shapely.affinity
from shapely.geometry import shape

from metaniche.errors import InputError

__all__ = ["find_annotation", "read_geojson_polygons"]

_TUMOR_NAMES = ("tumor", "tumour")


def read_geojson_polygons(path: str | Path, um_per_unit: float = 1.0) -> list[shapely.Geometry]:
    """Read tumour polygons from a GeoJSON file, scaled to µm.

    Accepts a FeatureCollection, a single Feature or a bare geometry. Features whose QuPath
    ``classification.name`` exists and does not start with "tumor"/"tumour" (any case) are
    ignored, so an export holding tissue and tumour annotations gives only the tumour.
    Polygon and MultiPolygon geometries are kept; others are ignored.

    Raises
    ------
    InputError
        When the file cannot be read, is not JSON/GeoJSON, or holds no tumour polygon.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: cannot read the tumour annotation as GeoJSON ({err}); "
                         "export it from QuPath as GeoJSON.") from None
    features = _features(data)
    polygons = []
    for index, feature in enumerate(features):
        if not _is_tumor(feature):
            continue
        try:
            geometry = shape(feature.get("geometry") or feature)
        except (AttributeError, KeyError, TypeError, ValueError, shapely.errors.GEOSException):
            raise InputError(f"{path}: feature {index + 1} has an invalid geometry; fix or "
                             "remove it.") from None
        if geometry.geom_type in ("Polygon", "MultiPolygon") and not geometry.is_empty:
            geometry = shapely.make_valid(geometry)
            polygons.append(shapely.affinity.scale(geometry, um_per_unit, um_per_unit,
                                                   origin=(0, 0)))
    if not polygons:
        raise InputError(f"{path}: no tumour Polygon or MultiPolygon found; annotate the "
                         "tumour (classification 'Tumor') and export as GeoJSON.")
    return polygons


def find_annotation(annotations: str | Path, sample: str, safe_name: str) -> Path | None:
    """The annotation file for a sample: the file itself, or ``<sample>.geojson`` in a folder."""
    location = Path(annotations)
    if location.is_file():
        return location
    for stem in (sample, safe_name):
        for suffix in (".geojson", ".json"):
            candidate = location / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def _features(data: object) -> list[dict]:
    if isinstance(data, list):
        return [f for f in data if isinstance(f, dict)]
    if not isinstance(data, dict):
        return []
    if data.get("type") == "FeatureCollection":
        return [f for f in data.get("features", []) if isinstance(f, dict)]
    return [data]


def _is_tumor(feature: dict) -> bool:
    properties = feature.get("properties") or {}
    classification = properties.get("classification")
    if not classification:
        return True
    name = classification.get("name", "") if isinstance(classification, dict) else classification
    return str(name).lower().startswith(_TUMOR_NAMES)
