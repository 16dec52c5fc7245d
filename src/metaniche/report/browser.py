"""Open report pages in headless Chromium: screenshots and page errors (tests, benchmarks).

No DevTools protocol: a copy of the page is written beside it (so relative figure paths still
resolve) with a first script that records JavaScript errors, ``console.error`` calls and failed
resource loads (broken images) into a ``<pre id="__page_errors">`` element; Chromium's
``--dump-dom`` then returns the DOM after load, and its stderr (``--enable-logging=stderr``)
is scanned for console messages as a second net.
"""

from __future__ import annotations

import html as html_module
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PageCheck", "check_page", "find_chromium", "screenshot"]

_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio"]
_RECORDER = """<script>(function(){var o=[];function put(m){o.push(String(m));
var e=document.getElementById('__page_errors');if(e){e.textContent=o.join('\\n');}}
window.addEventListener('error',function(ev){var t=ev.target;
if(t&&t!==window&&(t.src||t.href)){put('failed to load '+(t.src||t.href));}
else{put('error: '+ev.message);}},true);
var ce=console.error;console.error=function(){put('console.error: '+
Array.prototype.join.call(arguments,' '));return ce.apply(console,arguments);};
document.addEventListener('DOMContentLoaded',function(){var p=document.createElement('pre');
p.id='__page_errors';p.textContent=o.join('\\n');document.body.appendChild(p);});
window.addEventListener('load',function(){var p=document.getElementById('__page_errors');
if(p){p.setAttribute('data-load-ms',String(Math.round(performance.now())));}});})();
</script>"""
_CONSOLE = re.compile(r"CONSOLE\(\d+\)\]? ?\"?(.*)")


@dataclass
class PageCheck:
    """Result of opening a page.

    Attributes
    ----------
    errors
        Page errors found (empty when clean).
    dom
        The DOM after load.
    seconds
        Wall time of the whole Chromium call (browser start and exit included).
    load_seconds
        Navigation start to the end of the page's ``load`` event, measured in the page
        (``performance.now()``); NaN when the page never loaded.
    probe
        What the ``probe`` script of :func:`check_page` stored in ``<body data-probe>``
        (the attribute's text), or None.
    """

    errors: list[str]
    dom: str
    seconds: float
    load_seconds: float
    probe: str | None = None


def find_chromium() -> str | None:
    """Path of a Chromium executable (env ``CHROMIUM``, then chromium / chromium-browser)."""
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser",
                      "google-chrome"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("chromium not found; install it (make browser) or set CHROMIUM")
    with tempfile.TemporaryDirectory(prefix="metaniche-chromium-") as profile:
        return subprocess.run([chromium, *_FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)


def check_page(page: str | Path, timeout: float = 60.0, probe: str | None = None,
               window_size: tuple[int, int] | None = None) -> PageCheck:
    """Load ``page`` in headless Chromium and collect every error it raises.

    Returns the errors (JavaScript exceptions, console.error, resources that failed to load,
    console messages of level error in Chromium's log), the dumped DOM and the load time.
    ``probe`` (JavaScript source, optional) runs at the end of the page's body, after the
    page's own scripts; whatever it stores in ``document.body.dataset.probe`` within the
    5 s virtual-time budget is returned as :attr:`PageCheck.probe` (interaction tests).
    ``window_size`` (width, height in CSS pixels) sets the viewport, e.g. (1366, 768) for
    layout checks; None keeps Chromium's default.
    """
    page = Path(page).resolve()
    html = page.read_text(encoding="utf-8")
    head = html.find("<head>")
    instrumented = (html[: head + 6] + _RECORDER + html[head + 6:] if head >= 0
                    else _RECORDER + html)
    if probe is not None:
        end = instrumented.rfind("</body>")
        script = f"<script>{probe}</script>"
        instrumented = (instrumented[:end] + script + instrumented[end:] if end >= 0
                        else instrumented + script)
    fd, name = tempfile.mkstemp(prefix=".check-", suffix=".html", dir=page.parent)
    os.close(fd)
    copy = Path(name)
    try:
        copy.write_text(instrumented, encoding="utf-8")
        started = time.perf_counter()
        size = [f"--window-size={window_size[0]},{window_size[1]}"] if window_size else []
        done = _run(["--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", *size,
                     "--dump-dom", copy.as_uri()], timeout)
        seconds = time.perf_counter() - started
    finally:
        copy.unlink(missing_ok=True)
    errors = []
    match = re.search(r'<pre id="__page_errors"[^>]*>(.*?)</pre>', done.stdout, re.S)
    loaded = re.search(r'data-load-ms="(\d+)"', done.stdout)
    load_seconds = int(loaded.group(1)) / 1000 if loaded else float("nan")
    if match is None:
        errors.append("the page did not finish loading (no error recorder in the DOM)")
    elif match.group(1).strip():
        errors.extend(match.group(1).strip().splitlines())
    for line in done.stderr.splitlines():
        if ":CONSOLE" in line and ("error" in line.lower() or "uncaught" in line.lower()):
            found = _CONSOLE.search(line)
            errors.append("console: " + (found.group(1) if found else line))
    probed = re.search(r'<body[^>]*\sdata-probe="([^"]*)"', done.stdout)
    return PageCheck(errors, done.stdout, seconds, load_seconds,
                     html_module.unescape(probed.group(1)) if probed else None)


def screenshot(page: str | Path, target: str | Path, width: int = 1280, height: int = 2000,
               timeout: float = 60.0) -> float:
    """Save a PNG screenshot of ``page`` to ``target``; return the wall time in seconds."""
    started = time.perf_counter()
    done = _run([f"--window-size={width},{height}", f"--screenshot={Path(target).resolve()}",
                 Path(page).resolve().as_uri()], timeout)
    if not Path(target).is_file():
        raise RuntimeError(f"chromium wrote no screenshot of {page}: {done.stderr[-500:]}")
    return time.perf_counter() - started
