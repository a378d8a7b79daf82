"""Run a tutorial in a real browser: JupyterLab + headless Chromium, every cell, every widget moved, screenshots.

    python tools/browser_check.py [--notebook 04_train_and_evaluate] [--out docs/screenshots]

(``make browser-check``; not part of the tests: it needs chromium, chromedriver and selenium.)

1. copies the tutorial to ``notebooks/executed/`` (ignored by git, so the committed notebook stays clean);
2. starts JupyterLab on 127.0.0.1 (a free port, a random token) with the app exposed to the page and
   its news and update prompts off (a settings folder of its own), so no toast covers a screenshot;
3. opens the copy in headless Chromium, runs all cells and waits for the kernel to finish;
4. moves every widget: each slider one step, each dropdown to another option, each caption box to a
   caption of the split; after each move the widget's output must change (else the check fails);
5. saves screenshots of the widgets and of the first retrieval figure to ``--out`` (PNG, shrunk).

Exit status 0 when every cell ran without an error and every widget answered; ``--runs N`` repeats the
whole check N times and fails unless every run passes.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from glscl.lab.ui.viz import repo_root

WAIT_S = 900          # longest wait for all cells (a first full run of 04 trains for minutes)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


QUIET = {"@jupyterlab/apputils-extension/notification.jupyterlab-settings":
         {"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True}}
"""JupyterLab user settings for the check: no news prompt, no update check, no toasts."""


def quiet_settings(folder: Path) -> Path:
    """A JupyterLab settings folder holding ``QUIET`` (JUPYTERLAB_SETTINGS_DIR)."""
    for name, values in QUIET.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(values))
    return folder


def start_lab(root: Path, port: int, token: str, log: Path) -> subprocess.Popen:
    jupyter = Path(sys.executable).with_name("jupyter")
    settings = quiet_settings(log.parent / "browser-check-settings")
    cmd = [str(jupyter), "lab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
           "--ServerApp.port_retries=0", "--allow-root"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "JUPYTERLAB_SETTINGS_DIR": str(settings)}
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def wait_for(predicate, timeout: float, what: str, step: float = 0.5):
    """``predicate()``'s first true value; an element re-rendered under it (stale) counts as not yet."""
    from selenium.common.exceptions import StaleElementReferenceException

    end = time.time() + timeout
    while time.time() < end:
        try:
            value = predicate()
        except StaleElementReferenceException:
            value = None
        if value:
            return value
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1100", "--disable-gpu"):
        options.add_argument(arg)
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary:
        options.binary_location = binary
    driver = shutil.which("chromedriver")
    return webdriver.Chrome(options=options, service=Service(driver) if driver else None)


BUSY = """
const nb = window.jupyterapp && window.jupyterapp.shell.currentWidget;
if (!nb || !nb.sessionContext || !nb.sessionContext.session || !nb.sessionContext.session.kernel) return 'no kernel';
const prompts = [...document.querySelectorAll('.jp-InputPrompt')].map(p => p.textContent);
if (prompts.some(t => t.includes('*'))) return 'running';
return nb.sessionContext.session.kernel.status;
"""


def shrink(path: Path, width: int = 900) -> None:
    from PIL import Image

    img = Image.open(path).convert("RGB")
    if img.width > width:
        img = img.resize((width, round(img.height * width / img.width)), Image.LANCZOS)
    img.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def run(notebook: str, out: Path, keep: bool = False) -> list[Path]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    root = repo_root()
    src = root / "notebooks" / f"{notebook}.ipynb"
    work = root / "notebooks" / "executed"
    work.mkdir(parents=True, exist_ok=True)
    copy = work / f"browser-check-{notebook}.ipynb"
    shutil.copy(src, copy)
    out.mkdir(parents=True, exist_ok=True)
    port, token = free_port(), secrets.token_hex(16)
    log = work / "browser-check-lab.log"
    lab = start_lab(root / "notebooks", port, token, log)
    shots: list[Path] = []
    driver = None
    try:
        wait_for(lambda: _up(port), 120, "JupyterLab to start")
        driver = browser()
        driver.get(f"http://127.0.0.1:{port}/lab/tree/executed/{copy.name}?token={token}")
        wait_for(lambda: driver.execute_script(BUSY) == "idle", 180, "the notebook's kernel")
        driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        time.sleep(2)
        wait_for(lambda: driver.execute_script(BUSY) == "idle", WAIT_S, "all cells to run", step=2)
        errors = driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        tracebacks = [e.text[:300] for e in errors if "Error" in e.text or "Traceback" in e.text]
        if tracebacks:
            raise RuntimeError(f"cells failed in the browser: {tracebacks}")
        views = driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output .widget-vbox.jupyter-widgets")
        views = [v for v in views if v.find_elements(By.CSS_SELECTOR, ".widget-slider, .widget-text input[list]")]
        if not views:
            raise RuntimeError("no widget rendered in the browser")
        for view in views:
            _move_everything(driver, view, By, Keys)
            name = "retrieval_explorer" if view.find_elements(By.CSS_SELECTOR, ".widget-text input[list]") else "query_attention_viewer"
            path = out / f"{name}.png"
            driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", view)
            time.sleep(1)
            view.screenshot(str(path))
            shrink(path)
            shots.append(path)
        figures = [o for o in driver.find_elements(By.CSS_SELECTOR, ".jp-RenderedImage img") if o.size["height"] > 500]
        if figures:
            path = out / "retrieval_example.png"
            driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", figures[0])
            time.sleep(1)
            figures[0].screenshot(str(path))
            shrink(path)
            shots.append(path)
        return shots
    finally:
        if driver is not None:
            driver.quit()
        lab.terminate()
        try:
            lab.wait(20)
        except subprocess.TimeoutExpired:
            lab.kill()
        if not keep:
            copy.unlink(missing_ok=True)


def _up(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _move_everything(driver, view, By, Keys) -> None:
    """Move every control of one widget and check that its output changed each time."""
    def state():  # read in one script: a widget re-rendering between two reads cannot leave a stale element
        return driver.execute_script(
            "return [...arguments[0].querySelectorAll('.widget-html-content, .widget-image, img')]"
            ".map(e => e.innerHTML || e.src || '').join('')", view)

    def moved(before: str, what: str) -> None:
        wait_for(lambda: state() != before, 60, what)

    for box in view.find_elements(By.CSS_SELECTOR, ".widget-text input[list]"):
        before = state()
        box.click()
        box.send_keys(Keys.CONTROL, "a")
        options = driver.execute_script(
            "const l = document.getElementById(arguments[0].getAttribute('list'));"
            "return l ? [...l.options].map(o => o.value) : [];", box)
        caption = next((o for o in options if o != box.get_attribute("value")), "a large red circle moves up")
        box.send_keys(caption, Keys.ENTER)       # another caption of the split (its own video is then known)
        moved(before, "the explorer to answer a typed caption")
    for handle in view.find_elements(By.CSS_SELECTOR, ".widget-slider .noUi-handle"):
        before = state()
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", handle)
        handle.click()
        handle.send_keys(Keys.ARROW_RIGHT)
        moved(before, "a widget to answer its slider")
    for select in view.find_elements(By.CSS_SELECTOR, ".widget-dropdown select"):
        options = select.find_elements(By.TAG_NAME, "option")
        if len(options) < 2:
            continue
        before = state()
        current = select.get_attribute("value")
        next(o for o in options if o.get_attribute("value") != current).click()
        moved(before, "a widget to answer its dropdown")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/browser_check.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--notebook", default="04_train_and_evaluate", help="tutorial to run (default: %(default)s)")
    ap.add_argument("--out", default="docs/screenshots", help="where the screenshots go (default: %(default)s)")
    ap.add_argument("--keep", action="store_true", help="keep the executed copy in notebooks/executed/")
    ap.add_argument("--runs", type=int, default=1, help="repeat the whole check this many times (default: 1)")
    args = ap.parse_args(argv)
    failed = 0
    for i in range(args.runs):
        start = time.perf_counter()
        try:
            shots = run(args.notebook, Path(args.out), args.keep)
        except Exception as e:  # noqa: BLE001 - a run's failure is counted and reported, then the next run starts
            failed += 1
            print(f"run {i + 1}/{args.runs}: FAILED ({type(e).__name__}: {str(e).splitlines()[0][:300]})", flush=True)
            continue
        print(f"run {i + 1}/{args.runs}: passed in {time.perf_counter() - start:.0f} s; "
              + ", ".join(f"{p} ({p.stat().st_size // 1024} KiB)" for p in shots), flush=True)
    print(f"{args.runs - failed} of {args.runs} runs passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
