"""Reading back the SVG the report writes: the points of a line or band path."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np

SVG = "{http://www.w3.org/2000/svg}"


def path_points(d: str) -> np.ndarray:
    """(k, 2) absolute points of path data made of ``M x y``, relative ``l`` pairs and an
    optional ``Z`` (the commands the report's lines and bands use)."""
    points: list[list[float]] = []
    for command, numbers in re.findall(r"([MlLZz])([^MlLZz]*)", d):
        values = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", numbers)]
        pairs = np.array(values, dtype=np.float64).reshape(-1, 2)
        for a, b in pairs:
            if command == "l":
                a, b = points[-1][0] + a, points[-1][1] + b
            points.append([a, b])
    return np.array(points).reshape(-1, 2)


def line_points(element: ET.Element) -> list[np.ndarray]:
    """Points of every line under ``element`` (a path of class line, or a dot)."""
    out = []
    for child in element.iter():
        if child.get("class") != "line":
            continue
        if child.tag == f"{SVG}circle":
            out.append(np.array([[float(child.get("cx")), float(child.get("cy"))]]))
        else:
            out.append(path_points(child.get("d")))
    return out
