"""TensorBoard's scalars page in headless Chromium (Debian's `chromium` and `chromium-driver`), driven by
Selenium: which charts the page drew, and a screenshot of it.

    python -m demo.browser TENSORBOARD_URL OUT.png [TAG]     # e.g. http://127.0.0.1:6006/ tensorboard.png loss

The page is TensorBoard's legacy scalars dashboard, `#scalars&tagFilter=<tag>`, so the chart asked for comes
first. Its cards are Polymer elements inside shadow roots; `charts()` walks them and reports, per card, the tag,
the runs it plots and how many lines it drew. Chromium starts with the flags that work on a machine without
network (no background networking, no component updates) and a fresh profile.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,900")
INSTALL = "apt-get install -y chromium chromium-driver"

# Every TensorBoard scalar card on the page, through the shadow roots: its tag, the runs it loads, and the
# lines its chart drew (SVG paths with data).
_CHARTS_JS = """
const cards = [];
const walk = (root) => {
  for (const el of root.querySelectorAll('*')) {
    if (el.tagName === 'TF-SCALAR-CARD') cards.push(el);
    if (el.shadowRoot) walk(el.shadowRoot);
  }
};
const lines = (root) => {
  let n = 0;
  for (const el of root.querySelectorAll('*')) {
    if (el.tagName === 'path' && el.classList.contains('line') && (el.getAttribute('d') || '').length > 20) n++;
    if (el.shadowRoot) n += lines(el.shadowRoot);
  }
  return n;
};
walk(document);
return cards.map((card) => ({
  tag: card.tag,
  runs: (card.dataToLoad || []).map((d) => d.run),
  lines: card.shadowRoot ? lines(card.shadowRoot) : 0,
}));
"""


def missing() -> str | None:
    """None when Chromium and its driver are installed, else what to do."""
    absent = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    return f"{' and '.join(absent)} not found: {INSTALL}" if absent else None


def scalars_url(tensorboard_url: str, tag: str = "loss") -> str:
    return f"{tensorboard_url.rstrip('/')}/#scalars&tagFilter={tag}"


class Page:
    """Headless Chromium on TensorBoard's scalars page. Use as a context manager; `quit()` ends Chromium."""

    def __init__(self, tensorboard_url: str, tag: str = "loss"):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        problem = missing()
        if problem:
            raise RuntimeError(problem)
        self._profile = tempfile.mkdtemp(prefix="chromium-profile-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*FLAGS, f"--user-data-dir={self._profile}"):
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.url = scalars_url(tensorboard_url, tag)
        self.driver.get(self.url)

    def charts(self) -> list[dict]:
        """[{"tag": str, "runs": [run, ...], "lines": int}, ...] for every scalar card on the page now."""
        return self.driver.execute_script(_CHARTS_JS)

    def wait_for(self, tag: str, runs_containing: str, timeout: float = 60.0) -> dict:
        """The card of `tag` once it plots a run whose name contains `runs_containing` and has drawn its
        lines; TimeoutError (with what the page showed) otherwise. TensorBoard loads runs as it reloads."""
        deadline = time.monotonic() + timeout
        seen: list[dict] = []
        while time.monotonic() < deadline:
            seen = self.charts()
            for card in seen:
                mine = [r for r in card["runs"] if runs_containing in r]
                if card["tag"] == tag and mine and card["lines"] >= len(mine):
                    time.sleep(0.5)  # let the chart finish its animation before anyone takes a picture
                    return card
            time.sleep(0.5)
        raise TimeoutError(f"no '{tag}' chart of a run containing {runs_containing!r} within {timeout:.0f} s "
                           f"at {self.url}; the page showed {seen}")

    def screenshot(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not self.driver.save_screenshot(str(path)):
            raise RuntimeError(f"Chromium could not save a screenshot to {path}")
        return path

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Page:
        return self

    def __exit__(self, *exc) -> None:
        self.quit()


def screenshot_scalars(tensorboard_url: str, path, runs_containing: str = "", tag: str = "loss",
                       timeout: float = 60.0) -> dict:
    """Waits until TensorBoard's scalars page shows the `tag` chart of the matching runs, saves a PNG of the
    page to `path`, and returns that chart's card ({"tag", "runs", "lines"})."""
    with Page(tensorboard_url, tag) as page:
        card = page.wait_for(tag, runs_containing, timeout)
        page.screenshot(path)
        return card


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (2, 3):
        print("usage: python -m demo.browser TENSORBOARD_URL OUT.png [TAG]", file=sys.stderr)
        return 2
    card = screenshot_scalars(argv[0], argv[1], tag=argv[2] if len(argv) == 3 else "loss")
    print(f"{argv[1]}: '{card['tag']}' chart of {', '.join(card['runs'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
