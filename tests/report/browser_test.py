#!/usr/bin/env python3
"""The report in a real browser: headless Debian Chromium opens <run>/report/index.html from disk
through WebDriver (chromium-driver + python3-selenium) and checks that the unit list renders, a
search narrows it, a feature page shows its contexts and SVG plots, and the console stays free of
errors. Screenshots go to OUT_DIR. Every wait polls a condition under one overall deadline.
Usage: browser_test.py REPORT_DIR OUT_DIR"""
import collections
import json
import os
import shutil
import sys
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

DEADLINE = time.monotonic() + 100  # the whole test, browser start included


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def wait_for(what, cond, timeout=30):
    end = min(DEADLINE, time.monotonic() + timeout)
    last = None
    while time.monotonic() < end:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # element not there yet, stale after a re-render
            last = e
        time.sleep(0.05)
    fail(f"timed out waiting for {what}" + (f" ({last})" if last else ""))


def load_js(path, fn):
    text = open(path, encoding="utf-8").read()
    return json.loads("[" + text[len(f"msReport.{fn}("):-3] + "]")


def search_term(report):
    """A word that is the top token of some features but not of all: the most common one."""
    run = load_js(os.path.join(report, "data/run.js"), "run")[0]
    vocab = load_js(os.path.join(report, "data/vocab.js"), "vocab")[0]
    d = next(d for d in run["dicts"] if d["kind"] == "features")
    tops = load_js(os.path.join(report, "data", d["name"], "units.js"), "units")[1]["_top_token"]
    words = collections.Counter(vocab[t].strip().lower() for t in tops if t is not None and t >= 0 and vocab[t])
    for w, n in words.most_common():
        if len(w) >= 2 and w.isalpha() and n < len(tops):
            return w
    fail("no feature has a word as its top token")


def chromium_binary():
    for p in ("/usr/bin/chromium", "/usr/lib/chromium/chromium"):
        if os.path.exists(p):
            return p
    return shutil.which("chromium") or fail("no chromium binary (scripts/install-deps --browser)")


def main():
    report, out = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    os.makedirs(out, exist_ok=True)
    index = os.path.join(report, "index.html")
    if not os.path.exists(index):
        fail(f"{index} missing")
    profile = tempfile.mkdtemp(prefix="ms-chromium-")
    opts = Options()
    opts.binary_location = chromium_binary()
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1400,1000"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    driver = webdriver.Chrome(service=Service(drv_path), options=opts)
    errors = []

    def drain_logs():
        for e in driver.get_log("browser"):
            if e.get("level") in ("SEVERE", "ERROR"):
                errors.append(e.get("message"))

    try:
        driver.set_page_load_timeout(30)
        url = "file://" + index
        driver.get(url)
        # 1. overview: eval table, density and measure plots, the unit list
        rows = wait_for("the unit list", lambda: driver.find_elements(By.CSS_SELECTOR, "#unitlist tr.unit-row"))
        n_all = len(rows)
        count_all = driver.find_element(By.ID, "listcount").text
        print(f"list: {n_all} rows shown, '{count_all}'")
        if n_all < 2:
            fail("the unit list shows fewer than 2 rows")
        if not driver.find_elements(By.CSS_SELECTOR, "#evaltable tbody tr"):
            fail("no eval table rows")
        if "79.0%" not in driver.find_element(By.ID, "evaltable").text:
            fail("the paper's A/1 loss recovered (79%) is not beside the run's numbers")
        run = load_js(os.path.join(report, "data/run.js"), "run")[0]
        for d in run["dicts"]:
            rec = (d.get("eval") or {}).get("loss", {}).get("recovered")
            if rec is not None and f"{100 * rec:.1f}%" not in driver.find_element(By.ID, "evaltable").text:
                fail(f"{d['name']}: loss recovered {100 * rec:.1f}% from eval.json is not in the table")
        dens = wait_for("the density histogram", lambda: driver.find_elements(By.CSS_SELECTOR, "#densplots svg rect.bar"))
        meas = driver.find_elements(By.CSS_SELECTOR, "#measures svg rect.bar")
        print(f"overview: density bars {len(dens)}, measure bars {len(meas)}")
        if not meas:
            fail("no features-vs-neurons histograms")
        # universality: the trained pair and the untrained control beside it, from compare's file
        uj = os.path.join(os.path.dirname(report), "compare", "universality.json")
        if os.path.exists(uj):
            u = json.load(open(uj))
            ut = driver.find_element(By.ID, "univtable").text
            want = [f"{u['features_median']:.3f}", f"{u['neurons_median']:.3f}"]
            if u.get("control"):
                want += [f"{u['control']['features_median']:.3f}", f"{u['control']['neurons_median']:.3f}"]
                if "control" not in ut:
                    fail("the universality table has no row for the untrained control")
            for w in want:
                if w not in ut:
                    fail(f"universality median {w} from compare/universality.json is not in the table: {ut!r}")
            print(f"universality table: {ut!r}")
        # the whole overview in one picture (window as tall as the page, bounded)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1400, max(1000, min(int(height) + 40, 4000)))
        driver.save_screenshot(os.path.join(out, "overview.png"))
        driver.set_window_size(1400, 1000)

        # 2. a search by token narrows the list; a search by id finds the unit
        token = os.environ.get("MS_REPORT_SEARCH") or search_term(report)
        box = driver.find_element(By.ID, "search")
        box.send_keys(token)
        narrowed = wait_for(f"the search '{token}' to narrow the list", lambda: (
            lambda r: r if 0 < len(r) < n_all or (0 < len(r) and driver.find_element(By.ID, "listcount").text != count_all) else None)(
            driver.find_elements(By.CSS_SELECTOR, "#unitlist tr.unit-row")))
        counted = driver.find_element(By.ID, "listcount").text
        print(f"search '{token}': {len(narrowed)} rows, '{counted}'")
        for r in narrowed:
            if token.lower() not in r.find_element(By.CSS_SELECTOR, "td.tokcell").text.lower():
                fail(f"row '{r.text}' does not match the search '{token}'")
        first_id = narrowed[0].get_attribute("data-id")
        box.clear()
        box.send_keys("17")
        wait_for("the id search", lambda: any(r.get_attribute("data-id") == "17"
                                              for r in driver.find_elements(By.CSS_SELECTOR, "#unitlist tr.unit-row")))
        # sorting by density puts the densest unit first
        driver.find_element(By.CSS_SELECTOR, 'th[data-key="density"]').click()
        wait_for("the density sort", lambda: driver.find_element(By.CSS_SELECTOR, 'th[data-key="density"]').get_attribute("class").endswith("desc"))

        # 3. open a matching feature: its contexts, plots and logit effects
        driver.get(url + "#sae/feature/" + first_id)
        ctx = wait_for("the feature's top contexts", lambda: driver.find_elements(By.CSS_SELECTOR, "#topctx .ctx"))
        shaded = driver.find_elements(By.CSS_SELECTOR, "#topctx .tok[style]")
        hist = driver.find_elements(By.CSS_SELECTOR, "#acthist svg rect.bar")
        logits = driver.find_elements(By.CSS_SELECTOR, "#logits svg rect")
        ivs = driver.find_elements(By.CSS_SELECTOR, "#intervals .ctx")
        near = driver.find_elements(By.CSS_SELECTOR, ".nearest a.near")
        title = driver.find_element(By.CSS_SELECTOR, ".unithead h1").text
        print(f"{title}: {len(ctx)} contexts, {len(shaded)} shaded tokens, {len(hist)} histogram bars, "
              f"{len(logits)} logit bars, {len(ivs)} interval samples, {len(near)} nearest links")
        if not shaded or not hist or not logits or not ivs:
            fail("the feature page lacks shading, histogram, logit effects or interval samples")
        if token.lower() not in driver.find_element(By.ID, "topctx").text.lower():
            fail(f"the top contexts of a '{token}' feature do not show '{token}'")
        driver.save_screenshot(os.path.join(out, "feature.png"))
        # following a nearest-neuron link opens that neuron's page
        if near:
            href = near[0].get_attribute("href")
            near[0].click()
            wait_for("the linked unit page", lambda: driver.current_url == href and driver.find_elements(By.CSS_SELECTOR, "#topctx"))
            print("followed", href.split("#")[1], "->", driver.find_element(By.CSS_SELECTOR, ".unithead h1").text)
            driver.save_screenshot(os.path.join(out, "neuron.png"))
        # the arrow keys step through units
        frag = driver.current_url.split("#")[1].split("/")
        if int(frag[2]) > 0:
            driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_LEFT)
            want = f"{frag[0]} · {'neuron' if frag[1] == 'neuron' else 'feature'} {int(frag[2]) - 1}"
            wait_for("the previous unit after ArrowLeft",
                     lambda: driver.find_element(By.CSS_SELECTOR, ".unithead h1").text == want)
        # a unit past the first data block: its facts come from units.js by id, its contexts
        # from its block, and the two must describe the same unit
        run = load_js(os.path.join(report, "data/run.js"), "run")[0]
        d = next(d for d in run["dicts"] if d["kind"] == "features")
        cols = load_js(os.path.join(report, "data", d["name"], "units.js"), "units")[1]
        last = len(cols["max_act"]) - 1
        driver.get(url + "#" + d["name"] + "/feature/" + str(last))
        def read_facts():  # the previous page's table may still be there, or replaced mid-read
            try:
                if driver.find_element(By.CSS_SELECTOR, ".unithead h1").text != f"{d['name']} · feature {last}":
                    return None
                return {td.text.split("\n")[0]: td.text.split("\n")[-1]
                        for td in driver.find_elements(By.CSS_SELECTOR, "table.facts td")} or None
            except (StaleElementReferenceException, NoSuchElementException):
                return None
        facts = wait_for(f"feature {last}'s page", read_facts)
        shown, want = float(facts["max act"].split()[0]), cols["max_act"][last]
        print(f"feature {last} (block {last // d['block']}): max act shown {shown}, units.js {want:.4g}")
        if abs(shown - want) > 0.01 * abs(want) + 1e-6:
            fail(f"feature {last}: the page shows max act {shown}, its data says {want}")
        drain_logs()
    finally:
        try:
            drain_logs()
        except Exception:
            pass
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    if errors:
        fail("console errors:\n  " + "\n  ".join(errors))
    print(f"ok: screenshots in {out}")


if __name__ == "__main__":
    main()
