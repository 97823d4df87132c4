"""The report site: built atomically from the run store, and crawled in headless Chromium.

The browser test serves the site over HTTP, follows every internal link from index.html and checks
that each page loads with a title, every image is decoded, no request fails and the console is
clean. CI (CI=true) must run it; elsewhere it is skipped when Chromium is missing.
"""

import os
import re
import threading
import urllib.request
from collections import deque
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urldefrag

import pytest

from iclab.runtime import (
    IclabError,
    SerialExecutor,
    build_site,
    execute,
    get_experiment,
    sweep,
)
from iclab.runtime.experiment import Experiment
from tests.runtime.toy import ToyConfig
from tests.runtime.toy import run as toy_run

os.environ["ICLAB_EXPERIMENTS"] = "tests.runtime.toy"  # also seen by spawned workers

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
LINES = ["spinglass", "taskvectors", "grammar"]


def stand_in(name: str) -> Experiment:
    """The toy under a research line's prefix, unregistered (so `iclab list` never shows it): it gives
    that line real pages without running its slow experiments."""
    return Experiment(name, ToyConfig, toy_run, presets={"quick": {"n": 3}}, title=f"stand-in for {name}",
                      paper="nobody 2026, Fig. 0")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("site") / "runs"
    real = get_experiment("spinglass.figS3")  # a real quick run: about a second
    results = [execute(real, real.make_config("quick"), runs, preset="quick", quiet=True)]
    for name in ("taskvectors.standin", "grammar.standin"):
        results.append(execute(stand_in(name), ToyConfig(n=3), runs, preset="quick", quiet=True))
    results += sweep("test.toy", {"seed": [0, 1]}, runs, preset="quick", executor=SerialExecutor())
    assert [r.status for r in results] == ["done"] * 5
    return runs


def test_site_layout_links_and_determinism(runs, tmp_path):
    index = build_site(runs, tmp_path / "a")
    assert index == tmp_path / "a" / "index.html"
    pages = sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*.html"))
    assert "spinglass/spinglass.figS3/index.html" in pages and "other/test.toy/index.html" in pages
    assert len([p for p in pages if p.count("/") == 3]) == 5  # one page per run
    for line in [*LINES, "other"]:
        assert f"{line}/index.html" in pages
    for page in (tmp_path / "a").rglob("*.html"):
        for link in re.findall(r'(?:href|src)="([^"]*)"', page.read_text()):
            assert link == "data:," or not (link.startswith(("/", "data:")) or "://" in link), (page, link)
    run_page = next((tmp_path / "a" / "spinglass" / "spinglass.figS3").glob("*/index.html")).read_text()
    for text in ("Li, Bai, Huang 2024", "<img", "settings", "environment", "seed", "met"):
        assert text in run_page
    build_site(runs, tmp_path / "b")
    for page in (tmp_path / "a").rglob("*"):
        if page.is_file():
            assert page.read_bytes() == (tmp_path / "b" / page.relative_to(tmp_path / "a")).read_bytes(), page


def test_rebuild_replaces_only_a_site(runs, tmp_path):
    out = tmp_path / "site"
    build_site(runs, out)
    (out / "stale.html").write_text("old")
    build_site(runs, out)
    assert not (out / "stale.html").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["site"]  # no temporary directory left beside it
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(IclabError, match="not an iclab site"):
        build_site(runs, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(IclabError, match="no finished runs"):
        build_site(tmp_path / "empty", tmp_path / "other")
    assert build_site(runs) == runs / "site" / "index.html"


# -- the browser ---------------------------------------------------------------------------

def chromium():
    """A headless Chromium driven by the system chromedriver: nothing is downloaded."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (pip install -e '.[test]')")
    if missing:
        reason = f"the site test needs {', '.join(missing)}; bash scripts/test.sh installs them"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return webdriver, Service


class RecordingHandler(SimpleHTTPRequestHandler):
    """Serves the site and records every request's path and status."""

    def log_request(self, code="-", size="-"):
        self.server.requests.append((unquote(self.path), int(code)))

    def log_message(self, format, *args):
        pass


@pytest.fixture
def served(runs, tmp_path):
    site = build_site(runs, tmp_path / "site").parent
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(RecordingHandler, directory=str(site)))
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, site
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_every_page_loads_in_chromium(served, tmp_path):
    webdriver, Service = chromium()
    server, site = served
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        pages, files = crawl(driver, base)
        # and from disk: the same run page with its images, over file://
        run_page = next(site.glob("spinglass/spinglass.figS3/*/index.html"))
        driver.get(run_page.as_uri())
        assert_page_ok(driver, run_page.as_uri())
    finally:
        driver.quit()
    assert {f"{line}/index.html" for line in [*LINES, "other"]} <= pages
    assert len([p for p in pages if p.count("/") == 3]) == 5  # every run page
    assert any(f.endswith(".png") for f in files) and any(f.endswith(".csv") for f in files)
    failed = [(path, code) for path, code in server.requests if code >= 400]
    assert not failed, failed
    served_pages = {path.lstrip("/") for path, code in server.requests if code == 200}
    assert pages <= served_pages


def crawl(driver, base: str) -> tuple[set[str], set[str]]:
    """Breadth-first over every internal link from index.html: HTML pages in the browser, other files by GET."""
    pages, files, queue = {"index.html"}, set(), deque(["index.html"])
    while queue:
        rel = queue.popleft()
        driver.get(base + rel)
        assert_page_ok(driver, rel)
        hrefs = driver.execute_script("return Array.from(document.querySelectorAll('a[href]'), a => a.href)")
        for href in hrefs:
            url = urldefrag(href)[0]
            assert url.startswith(base), f"{rel} links outside the site: {href}"
            target = unquote(url[len(base):])
            if target.endswith(".html"):
                if target not in pages:
                    pages.add(target)
                    queue.append(target)
            elif target not in files:
                files.add(target)
                with urllib.request.urlopen(url) as resp:
                    assert resp.status == 200 and resp.read(), target
    return pages, files


def assert_page_ok(driver, where: str) -> None:
    assert driver.execute_script("return document.readyState") == "complete", where
    assert driver.title.strip(), f"{where} has no title"
    images = driver.execute_script(
        "return Array.from(document.images, i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
    broken = [src for src, complete, width in images if not (complete and width > 0)]
    assert not broken, f"{where}: images not loaded: {broken}"
    severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, f"{where}: {severe}"
