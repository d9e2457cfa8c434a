# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Headless Chromium over the DevTools protocol, to run Odoo tours against a real server.

Odoo's ``HttpCase`` runs tours inside the test transaction, where no runner
sees the data; these tours run against the server of the end-to-end tests,
whose runner starts the jobs. The tours are test_queue_job's
(``static/tests/tours``), loaded with ``?debug=tests``. A console line
``queue_job_screenshot:<name>`` saves ``<tour>_<name>.png`` in the
screenshots directory.
"""

import base64
import itertools
import json
import pathlib
import subprocess
import time
import urllib.request

import websocket

#: Must match SCREENSHOT_MARK in static/tests/tours/queue_job_tours.js.
SCREENSHOT_MARK = "queue_job_screenshot:"


class TourFailed(AssertionError):
    pass


class Chromium:
    """One headless Chromium with one page; ``close()`` ends it."""

    def __init__(self, profile_dir, screenshots_dir):
        self.screenshots_dir = pathlib.Path(screenshots_dir)
        self.screenshots_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
             "--remote-debugging-port=0", "--remote-allow-origins=*", "--no-first-run",
             f"--user-data-dir={profile_dir}", "--window-size=1366,768", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        port_file = pathlib.Path(profile_dir) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert time.monotonic() < deadline, "chromium did not start"
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as answer:
            page = next(target for target in json.load(answer) if target["type"] == "page")
        self._socket = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60)
        self._ids = itertools.count(1)
        self._console = []  # (type, text)
        self.send("Page.enable")
        self.send("Runtime.enable")

    def close(self):
        self._socket.close()
        self.process.kill()
        self.process.wait()

    def send(self, method, **params):
        """Send a command; handle the events until its answer, and return its result."""
        command_id = next(self._ids)
        self._socket.send(json.dumps({"id": command_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv())
            if message.get("id") == command_id:
                assert "error" not in message, message["error"]
                return message["result"]
            self._event(message)

    def _event(self, message):
        if message.get("method") == "Runtime.consoleAPICalled":
            args = message["params"]["args"]
            text = " ".join(str(arg.get("value", arg.get("description", ""))) for arg in args)
            self._console.append((message["params"]["type"], text))
        elif message.get("method") == "Runtime.exceptionThrown":
            details = message["params"]["exceptionDetails"]
            self._console.append(("error", details.get("exception", {}).get("description", "")))

    def evaluate(self, expression):
        result = self.send("Runtime.evaluate", expression=expression, awaitPromise=True)
        return result["result"].get("value")

    def wait_for(self, expression, timeout=60):
        deadline = time.monotonic() + timeout
        guarded = f"(() => {{ try {{ return !!({expression}); }} catch {{ return false; }} }})()"
        while not self.evaluate(guarded):
            assert time.monotonic() < deadline, f"never true: {expression}"
            time.sleep(0.2)

    def open(self, url):
        self.send("Page.navigate", url=url)
        time.sleep(0.5)
        self.wait_for("document.readyState === 'complete'")

    def log_in(self, base_url, login, password):
        self.open(f"{base_url}/web/login")
        self.evaluate(
            f"document.querySelector('input[name=login]').value = {json.dumps(login)};"
            f"document.querySelector('input[name=password]').value = {json.dumps(password)};"
            "document.querySelector('form.oe_login_form').submit();"
        )
        time.sleep(1)
        self.wait_for(
            "document.readyState === 'complete' && !location.pathname.startsWith('/web/login')"
        )

    def run_tour(self, base_url, path, tour, timeout=120):
        """Run ``tour`` from the web client at ``path``; save its screenshots; return them."""
        self.open(f"{base_url}{path}?debug=tests")
        self.wait_for(f"odoo.isTourReady({json.dumps(tour)})")
        self._console.clear()
        options = json.dumps({"stepDelay": 0, "startUrl": path})
        self.evaluate(f"odoo.startTour({json.dumps(tour)}, {options})")
        taken = []
        deadline = time.monotonic() + timeout
        while True:
            for kind, text in self._console:
                if text.startswith(SCREENSHOT_MARK) and text not in taken:
                    taken.append(text)
                    shot = self.send("Page.captureScreenshot")
                    name = text[len(SCREENSHOT_MARK):]
                    (self.screenshots_dir / f"{tour}_{name}.png").write_bytes(
                        base64.b64decode(shot["data"])
                    )
                if kind == "error":
                    raise TourFailed(f"tour {tour}: {text}")
                if "tour succeeded" in text:
                    return [text[len(SCREENSHOT_MARK):] for text in taken]
            if time.monotonic() > deadline:
                raise TourFailed(f"tour {tour} did not end in {timeout}s: {self._console[-5:]}")
            self.evaluate("1")  # handles the events that came meanwhile
            time.sleep(0.1)
