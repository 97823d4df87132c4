"""The report site: built atomically from the run store, and crawled in headless Chromium.

The browser test serves the site over HTTP, follows every internal link from index.html and checks
that each page loads with a title, every image (figures and the gallery's thumbnails) is decoded, no
request fails and the console is clean; a site with a deleted PNG, a broken link or an empty title
fails that check. CI (CI=true) must run it; elsewhere it is skipped when Chromium is missing.
"""

import os
import re
import threading
import urllib.request
from collections import deque
from contextlib import contextmanager
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
from iclab.runtime._experiment import Experiment
from tests.runtime.toy import ToyConfig
from tests.runtime.toy import run as toy

os.environ["ICLAB_EXPERIMENTS"] = "tests.runtime.toy"  # also seen by spawned workers

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
LINES = ["spinglass", "taskvectors", "grammar"]


def stand_in(name: str) -> Experiment:
    """The toy under a research line's prefix, unregistered (so `iclab list` never shows it): it gives
    that line real pages without running its slow experiments."""
    return Experiment(name, ToyConfig, toy.fn, presets={"quick": {"n": 3}}, title=f"stand-in for {name}",
                      paper="nobody 2026, Fig. 0", draw=toy.draw, judge=toy.judge)


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
            assert link == "data:," or (page.parent / unquote(link)).is_file(), (page, link)
    run_page = next((tmp_path / "a" / "spinglass" / "spinglass.figS3").glob("*/index.html")).read_text()
    for text in ("Li, Bai, Huang 2024", "<img", "settings", "environment", "seed", "ours ± CI", "tolerance"):
        assert text in run_page
    build_site(runs, tmp_path / "b")
    for page in (tmp_path / "a").rglob("*"):
        if page.is_file():
            assert page.read_bytes() == (tmp_path / "b" / page.relative_to(tmp_path / "a")).read_bytes(), page


def test_index_and_line_pages_are_a_gallery_and_a_scoreboard(runs, tmp_path):
    from PIL import Image

    site = build_site(runs, tmp_path / "site").parent
    index = (site / "index.html").read_text()
    assert "Claims by kind and verdict" in index and "newest run of each experiment and preset" in index
    thumbs = re.findall(r'<img alt="([^"]+): main figure" src="([^"]+)"', index)
    assert {name for name, _ in thumbs} == {"spinglass.figS3", "taskvectors.standin", "grammar.standin", "test.toy"}
    for _, src in thumbs:
        thumb, full = site / unquote(src), site / unquote(src).replace("/thumbs/", "/figures/")
        with Image.open(thumb) as small, Image.open(full) as big:
            assert small.width <= 360 and small.height <= 270 and small.width < big.width  # downscaled
    # the test.toy sweep (seeds 0 and 1, quick) counts once, by its newest run; sanity checks stand apart
    other = (site / "other" / "index.html").read_text()
    scoreboard, sanity = other.split("Scoreboard: the paper's claims")[1].split("<h2>Sanity checks")
    assert "(1 run;" in scoreboard and scoreboard.count("<tr>") == 2  # the header and the newest run's `mean`
    assert "the mean is about 0" in scoreboard and "one row per draw" not in scoreboard
    assert "one row per draw" in sanity.split("<h2>Engineering")[0]
    line = (site / "grammar" / "index.html").read_text()
    card = line.split('class="gallery"')[1].split("<h2>")[0]
    assert 'src="grammar.standin/' in card and "paper claims: 1 <span" in card and "sanity: 1 <span" in card


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


@contextmanager
def serve(site: Path):
    """The site over HTTP on a free local port; the server records every request."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(RecordingHandler, directory=str(site)))
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def driver(tmp_path):
    webdriver, Service = chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_every_page_loads_in_chromium(runs, driver, tmp_path):
    site = build_site(runs, tmp_path / "site").parent
    with serve(site) as server:
        pages, files, images = check_site(driver, server)
    # and from disk: the same run page with its images, over file://
    run_page = next(site.glob("spinglass/spinglass.figS3/*/index.html"))
    driver.get(run_page.as_uri())
    assert_page_ok(driver, run_page.as_uri())
    assert {f"{line}/index.html" for line in [*LINES, "other"]} <= pages
    assert len([p for p in pages if p.count("/") == 3]) == 5  # every run page
    assert any(f.endswith(".png") for f in files) and any(f.endswith(".csv") for f in files)
    thumbs = {i for i in images if "/thumbs/" in i}
    assert len(thumbs) == 4 and all(i.endswith(".png") for i in thumbs)  # one per experiment, all decoded
    served_pages = {path.lstrip("/") for path, code in server.requests if code == 200}
    assert pages <= served_pages and thumbs <= served_pages


@pytest.mark.parametrize("damage", ["deleted thumbnail", "deleted figure", "broken link", "empty title"])
def test_the_crawl_catches_a_damaged_site(runs, driver, tmp_path, damage):
    """The check above is only worth something if it fails on a broken site: plant each fault and see it caught."""
    site = build_site(runs, tmp_path / "site").parent
    line = site / "grammar" / "index.html"
    if damage == "deleted thumbnail":
        next(site.glob("grammar/*/*/thumbs/*.png")).unlink()
    elif damage == "deleted figure":
        next(site.glob("grammar/*/*/figures/*.png")).unlink()
    elif damage == "broken link":
        line.write_text(line.read_text().replace("</nav>", '</nav><a href="nowhere/index.html">gone</a>'))
    else:
        line.write_text(re.sub(r"<title>[^<]*</title>", "<title> </title>", line.read_text()))
    with serve(site) as server, pytest.raises(AssertionError) as caught:
        check_site(driver, server)
    expected = {"deleted thumbnail": "images not loaded", "deleted figure": "images not loaded",
                "broken link": "nowhere/index.html", "empty title": "has no title"}[damage]
    assert expected in str(caught.value)


def check_site(driver, server) -> tuple[set[str], set[str], set[str]]:
    """Crawl the served site (every page, linked file and image) and fail on any broken request."""
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    pages, files, images = crawl(driver, base)
    failed = [(path, code) for path, code in server.requests if code >= 400]
    assert not failed, failed
    return pages, files, images


def crawl(driver, base: str) -> tuple[set[str], set[str], set[str]]:
    """Breadth-first over every internal link from index.html: HTML pages in the browser, other files by GET;
    returns the pages, the linked files and the images shown (each checked decoded by `assert_page_ok`)."""
    pages, files, images, queue = {"index.html"}, set(), set(), deque(["index.html"])
    while queue:
        rel = queue.popleft()
        driver.get(base + rel)
        assert_page_ok(driver, rel)
        images |= {unquote(src[len(base):]) for src in driver.execute_script(
            "return Array.from(document.images, i => i.src)") if src.startswith(base)}
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
    return pages, files, images


def assert_page_ok(driver, where: str) -> None:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.wait import WebDriverWait

    try:  # `get` can return a moment before the load completes
        WebDriverWait(driver, 10).until(lambda d: d.execute_script("return document.readyState") == "complete")
    except TimeoutException:
        raise AssertionError(f"{where} did not finish loading in 10 s") from None
    assert driver.title.strip(), f"{where} has no title"
    images = driver.execute_script(
        "return Array.from(document.images, i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
    broken = [src for src, complete, width in images if not (complete and width > 0)]
    assert not broken, f"{where}: images not loaded: {broken}"
    severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, f"{where}: {severe}"


@pytest.mark.skipif(not os.environ.get("ICLAB_SITE_RUNS"), reason="set ICLAB_SITE_RUNS=<runs dir> to crawl a real store")
def test_crawl_a_real_store(driver, tmp_path):
    """Every page and image of the site over a real store (e.g. after `iclab reproduce --quick`)."""
    runs = Path(os.environ["ICLAB_SITE_RUNS"])
    site = build_site(runs, tmp_path / "site").parent
    with serve(site) as server:
        pages, files, images = check_site(driver, server)
    thumbs = {i for i in images if "/thumbs/" in i}
    print(f"crawled {len(pages)} pages, {len(files)} linked files, {len(images)} images ({len(thumbs)} thumbnails)")
    assert {f"{line}/index.html" for line in LINES} <= pages and thumbs
