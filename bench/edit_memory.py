"""Benchmark 12: the extra memory of an edit of a big input image.

An edit sends its input as a `data:` URL inside a JSON body: for a 40 MB PNG that is a
~53 MB body. `http/bodies.py` never builds it whole: the JSON around the image is encoded
once and the image's base64 is made 1 MiB at a time as the connection takes it. Goal: the
client's extra peak RSS is at most 3x the input's size (the input's bytes, read from its
file, count: they are what the edit sends).

The input is a PNG of random noise (so it stays big), written once per run with Pillow
without compression. The embedded backend (`LocalServer`, its body cap raised) runs in
this process; each measurement is a fresh client subprocess
(`python -m bench.edit_memory CLIENT URL IMAGE WARM_IMAGE`), as in benchmark 2: it loads
what it needs, makes a small warm-up edit (lazy imports, the first connection, the store's
first write), resets the kernel's high-water mark of its resident memory
(`/proc/self/clear_refs`), makes the big edit, and reports `VmHWM` minus the RSS it
started from. The clients:

- `magic`: `%%meshimage --edit IMAGE --size 256x256 -o r` in an IPython
  `InteractiveShell` (`max_input_image_bytes` raised with `%config`, no progress view);
- `function`: `mm.edit(Path(IMAGE), ..., size="256x256")` in the same kind of shell (the
  function API reads `max_input_image_bytes` from the loaded extension's configuration);
- `naive`: the baseline, what one writes first: the file's bytes, `base64.b64encode`, a
  data URL string in a dict, `httpx.post(url, json=body)` (httpx's `json.dumps` and
  `.encode()`), the answer's image decoded.

Each measurement is checked: the server received the edit, whole (its data URL's length
and SHA-256), and answered it; the result is a 256x256 image.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import io
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import ROOT
from .memory import maxrss, reset_peak, rss
from .plan import Plan
from .report import Goal, Row

EDIT_MEMORY_GOAL = Goal(3.0)  # extra peak RSS <= 3x the input's size
MB = 1_000_000
MODEL = "openai/gpt-image-1"  # what the magic picks against the embedded backend
PROMPT = "make it blue"
SIZE = "256x256"
MAX_BODY_BYTES = 1 << 30  # the embedded backend's cap (32 MiB by default) raised for the run
MAX_INPUT_IMAGE_BYTES = 1 << 30  # the client's limit (20 MiB by default) raised likewise
CLIENTS = {
    "magic": "%%meshimage --edit",
    "function": "mm.edit()",
    "naive": "naive client (json.dumps of the data URL body, httpx.post)",
}


def run(plan: Plan, server: str) -> list[Row]:
    del server  # this one talks to the embedded backend
    from mesh_magics.local import LocalServer

    extra: dict[str, list[int]] = {client: [] for client in CLIENTS}
    with (
        tempfile.TemporaryDirectory() as folder,
        LocalServer(max_body_bytes=MAX_BODY_BYTES) as local,
    ):
        big, warm = Path(folder, "big.png"), Path(folder, "warm.png")
        size = write_noise_png(big, int(plan.memory_mib * MB))
        write_noise_png(warm, 16 * 1024)
        expected = data_url_digest(big.read_bytes())
        for _ in range(plan.memory_reps):
            for client, values in extra.items():
                measured = measure_in_subprocess(client, local.url, big, warm)
                check_received(local, expected)
                if (measured["width"], measured["height"]) != (256, 256):
                    raise RuntimeError(f"{client}: the edit made {measured}, not 256x256")
                values.append(measured["extra"])
    rows = []
    for client, what in CLIENTS.items():
        peak = statistics.median(extra[client])
        goal = None if client == "naive" else EDIT_MEMORY_GOAL
        rows.append(
            Row(
                "12",
                f"edit of a {size / MB:.0f} MB input, {what}: extra peak RSS / input size",
                f"+{peak / MB:.0f} MB",
                f"input {size / MB:.0f} MB",
                peak / size,
                goal,
            )
        )
    return rows


def write_noise_png(path: Path, at_least: int) -> int:
    """Write a PNG of RGB noise of at least AT_LEAST bytes (stored, not compressed)."""
    from PIL import Image

    side = max(8, math.isqrt(at_least // 3) + 1)
    noise = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    noise.save(path, format="PNG", compress_level=0)
    return path.stat().st_size


def data_url_digest(data: bytes) -> tuple[int, str]:
    """The length of DATA's PNG data URL and the head of its SHA-256: how the embedded
    backend's request log summarises it."""
    url = b"data:image/png;base64," + base64.b64encode(data)
    return len(url), hashlib.sha256(url).hexdigest()[:12]


def check_received(local: Any, expected: tuple[int, str]) -> None:
    """The latest request LOCAL got is the big edit, whole, and it was answered 200."""
    last = local.requests[-1]
    length, digest = expected
    summary = f"{length:,} chars sha256={digest}>"
    image = (last.body or {}).get("image", "")
    if last.path != "/v1/images/edits" or not image.endswith(summary) or last.status != 200:
        raise RuntimeError(
            f"the server did not get the edit whole: {last.path} {image!r} {last.status}"
        )


def measure_in_subprocess(client: str, url: str, image: Path, warm: Path) -> dict[str, int]:
    """Extra peak RSS (bytes) of CLIENT editing IMAGE, in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.edit_memory", client, url, str(image), str(warm)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode:
        raise RuntimeError(f"bench.edit_memory {client} failed:\n{done.stderr}")
    measured: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return measured


# -- in the subprocess --------------------------------------------------------------------------


def measure(client: str, url: str, image: str, warm: str) -> dict[str, int]:
    edit = EDITS[client](url)
    edit(warm)
    gc.collect()
    if reset_peak():
        before = rss("VmRSS")
        width, height = edit(image)
        peak = rss("VmHWM")
    else:  # no /proc: the high-water mark since the start, from getrusage
        before = maxrss()
        width, height = edit(image)
        peak = maxrss()
    return {"extra": peak - before, "before": before, "width": width, "height": height}


def _shell() -> Any:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "mesh_magics")
    shell.run_line_magic(
        "config", f"MeshImageMagics.max_input_image_bytes = {MAX_INPUT_IMAGE_BYTES}"
    )
    shell.run_line_magic("config", "MeshImageMagics.progress = 'none'")
    return shell


def _magic(url: str) -> Any:
    from IPython.utils.capture import capture_output

    shell = _shell()

    def edit(path: str) -> tuple[int, int]:
        shell.user_ns.pop("r", None)
        with capture_output():
            ran = shell.run_cell(
                f"%%meshimage --edit {path} --size {SIZE} --base-url {url} -o r\n{PROMPT}"
            )
        ran.raise_error()
        width, height = shell.user_ns["r"][0].size
        return width, height

    return edit


def _function(url: str) -> Any:
    _shell()  # holds the configuration mm.edit reads
    import mesh_magics as mm

    def edit(path: str) -> tuple[int, int]:
        result = mm.edit(Path(path), PROMPT, size=SIZE, base_url=url, progress="none")
        width, height = result[0].size
        return width, height

    return edit


def _naive(url: str) -> Any:
    import httpx
    from PIL import Image

    def edit(path: str) -> tuple[int, int]:
        data = Path(path).read_bytes()
        body = {
            "prompt": PROMPT,
            "model": MODEL,
            "size": SIZE,
            "image": "data:image/png;base64," + base64.b64encode(data).decode(),
        }
        response = httpx.post(f"{url}/v1/images/edits", json=body, timeout=300)
        response.raise_for_status()
        entry = response.json()["data"][0]
        text = entry.get("b64_json") or entry["url"].partition(",")[2]
        with Image.open(io.BytesIO(base64.b64decode(text))) as result:
            width, height = result.size
        return width, height

    return edit


EDITS = {"magic": _magic, "function": _function, "naive": _naive}


if __name__ == "__main__":
    print(json.dumps(measure(*sys.argv[1:5])))
