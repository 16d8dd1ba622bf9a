"""Real-browser tests: Debian's Chromium, driven headless by Playwright (its own browser downloads are
never used; `executable_path` points at the system chromium).

1. JupyterLab on 127.0.0.1 with a token opens notebooks/01_quickstart.ipynb (a copy, so autosave never
   touches the committed file), runs all cells from the Run menu, and the Workbench app must render
   (root `.wb-app`, its tab titles) with a finished CPU build (rows in `.wb-app table.wb-layers`).
2. A `wb.report` HTML file opens with the network cut off and shows its graph, tables and plots.

Screenshots go to tests/artifacts/ (git-ignored). Skipped, saying why, only where Chromium or the
Python driver is missing; `make test` installs both where it can.
"""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
NOTEBOOK = ROOT / "notebooks" / "01_quickstart.ipynb"
TAB_TITLES = ["Graph", "Build", "Layers", "Performance", "Accuracy", "Sweep"]
NOTEBOOK_SECONDS = 90          # server start + page load + all cells of 01 (a CPU build of the digits model)


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("Chromium is not installed: `apt-get install chromium` (Debian), which `make test` "
                    "runs where apt-get and root (or sudo) are available")
    return path


@pytest.fixture(scope="module")
def browser():
    chromium = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="the Playwright driver is missing: "
                                   "pip install -e '.[dev]'")
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
        browser = playwright.chromium.launch(executable_path=chromium, headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield browser
        browser.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    """A JupyterLab server of our own: loopback only, a random token and port, fresh runtime, config,
    settings and workspace folders, serving a temporary folder with a copy of the notebook.
    It boots while Chromium starts; `ready()` waits for it and gives (url, token)."""
    _chromium()
    pytest.importorskip("jupyterlab", reason="JupyterLab is missing: pip install -e '.[notebook]'")
    tmp_path = tmp_path_factory.mktemp("jupyterlab")
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(NOTEBOOK, served / NOTEBOOK.name)
    token, port = secrets.token_hex(16), _free_port()
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               IPYTHONDIR=str(tmp_path / "ipython"), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "jupyterlab", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", "--ServerApp.open_browser=False",
               f"--ServerApp.root_dir={served}", f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
               f"--LabApp.user_settings_dir={tmp_path / 'settings'}", "--allow-root",
               # nothing the test needs, and nothing that looks for updates or extensions on the network
               "--LabApp.extension_manager=readonly", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--ServerApp.jpserver_extensions", "jupyter_lsp=False", "--ServerApp.jpserver_extensions",
               "jupyter_server_terminals=False", "--ServerApp.terminals_enabled=False"]
    news = tmp_path / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')       # no "get notified about Jupyter news?" toast over the app
    log = open(tmp_path / "jupyterlab.log", "w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=served)
    url = f"http://127.0.0.1:{port}"
    def ready() -> tuple[str, str]:
        _wait_for(f"{url}/api/status?token={token}", server, tmp_path / "jupyterlab.log")
        return url, token
    try:
        yield ready
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def _wait_for(url: str, server: subprocess.Popen, log_path: Path, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"JupyterLab did not answer on {url} within {seconds} s:\n{log_path.read_text()[-3000:]}")


def test_quickstart_notebook_renders_the_app_with_a_finished_build(jupyterlab, browser):
    url, token = jupyterlab()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{url}/lab/tree/{NOTEBOOK.name}?token={token}")
        _wait_for_idle_kernel(page, 60)
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        rows = page.locator(".wb-app table.wb-layers tbody tr")
        _wait_for_rows(page, rows, NOTEBOOK_SECONDS)

        app = page.locator(".wb-app").first
        app.scroll_into_view_if_needed()
        titles = [t.strip() for t in app.locator(".lm-TabBar-tabLabel").all_inner_texts()]
        assert titles[:len(TAB_TITLES)] == TAB_TITLES
        app.locator(".lm-TabBar-tab", has_text="Layers").first.click()
        table = app.locator("table.wb-layers").first
        table.wait_for(state="visible", timeout=5_000)
        assert rows.count() >= 5                      # the digits CNN has 8 layers after fusion
        assert "fp32" in table.inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        app.screenshot(path=str(ARTIFACTS / "browser_quickstart_app.png"))
        page.screenshot(path=str(ARTIFACTS / "browser_quickstart.png"))
    finally:
        page.close()


def _accept_dialog(page) -> None:
    """A slow start can make JupyterLab ask which kernel to use; the preselected one is ours."""
    dialog = page.locator(".jp-Dialog")
    if dialog.count() and dialog.first.is_visible():
        dialog.locator(".jp-Dialog-button.jp-mod-accept").first.click()


def _wait_for_idle_kernel(page, seconds: float) -> None:
    """The status bar reads "Python 3 (ipykernel) | Idle" once the kernel is up and connected (before
    that it reads "No Kernel | Initializing", while the toolbar's indicator already says idle)."""
    status = page.locator(".jp-StatusBar-TextItem")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        _accept_dialog(page)
        texts = status.all_inner_texts()
        if any(text.endswith("| Idle") and not text.startswith("No Kernel") for text in texts):
            return
        page.wait_for_timeout(300)
    _screenshot(page, "browser_quickstart_failed.png")
    pytest.fail(f"the notebook's kernel was not idle {seconds} s after opening {NOTEBOOK.name}")


def _wait_for_rows(page, rows, seconds: float) -> None:
    """Wait for the Layers table to fill; fail at once, with the traceback, if a cell raised."""
    errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"], '
                          ".jp-OutputArea-output .jp-RenderedText[data-mime-type='application/vnd.jupyter.error']")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if rows.count() > 0:
            return
        _accept_dialog(page)
        failed = [text for text in errors.all_inner_texts() if "Error" in text or "Traceback" in text]
        if failed:
            _screenshot(page, "browser_quickstart_failed.png")
            pytest.fail(f"a cell of {NOTEBOOK.name} failed in JupyterLab:\n{failed[0][-3000:]}")
        page.wait_for_timeout(500)
    _screenshot(page, "browser_quickstart_failed.png")
    pytest.fail(f"no rows in `.wb-app table.wb-layers` {seconds} s after Run All Cells "
                f"(screenshot: tests/artifacts/browser_quickstart_failed.png)")


def _screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))


def test_html_report_opens_offline_with_graph_tables_and_plots(browser, tmp_path):
    import workbench as wb
    from workbench.evaluate.datasets import digits_model_path, digits_test

    graph = wb.load(digits_model_path())
    optimized, _ = wb.optimize(graph)
    engine = wb.build(optimized, wb.BuilderConfig(backend="cpu", precision="fp32", batch_size=8))
    path = wb.report(engine, tmp_path / "report.html", graph=graph, feeds={"input": digits_test(8)[0]})

    context = browser.new_context(offline=True, viewport={"width": 1200, "height": 900})
    requested = []
    context.route("**/*", lambda route: (requested.append(route.request.url), route.continue_())
                  if route.request.url.startswith(("file:", "data:")) else
                  (requested.append(route.request.url), route.abort()))
    page = context.new_page()
    try:
        page.goto(path.as_uri())
        assert [u for u in requested if not u.startswith(("file:", "data:"))] == []
        svg = page.locator("svg").first
        assert svg.is_visible() and svg.bounding_box()["height"] > 200
        assert page.locator("svg g.wb-node").count() == len(graph.nodes) + len(engine.layers)   # before | engine
        assert page.locator("table.wb-engine-layers tbody tr").count() == len(engine.layers)
        assert page.locator("table.wb-layer-profile tbody tr").count() == len(engine.layers)
        images = page.locator("img.wb-plot")
        assert images.count() == 2
        widths = page.evaluate("Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
        assert all(width > 100 for width in widths), f"a plot did not decode: widths {widths}"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report_offline.png"), full_page=True)
    finally:
        context.close()
