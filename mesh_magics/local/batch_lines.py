"""One line of a batch, answered as the same body posted to its URL would be.

The checks, faults, models and pictures are those of a plain ``/v1/images/generations``
(``answers.py``); what differs is what a batch has no connection for:

- the line's time is the batch's ``latency`` (a line's own ``mesh_local.latency`` wins),
  spent holding one of the server's work slots, as a generation does;
- a page fault (``status:``, ``html:``, ``text:``) is its status's envelope (a batch's
  files are JSON, and no proxy stands between the worker and the provider);
- ``error_frame`` is the plain answer's 500 ``provider_job_failed``; ``drop`` and
  ``malformed`` (a broken answer, seen by the gateway) a 502 ``unavailable``; ``cut``
  the plain answer's empty ``data``; ``stall`` waits until the batch is cancelled or
  the server stops;
- a line is tried once: a fault with ``times: 0`` does not hit it, any other does;
- ``"stream": true`` is a 400: a batch answers whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Protocol

from . import answers
from .answers import Refusal, Refused, invalid, new_request_id, not_found
from .batch_input import BatchLine
from .batch_records import IMAGE_ENDPOINT
from .faults import RequestControls

SLOT_WAIT = 0.1  # work slots signal nothing: a line waiting for one looks this often

# Waits SECONDS (None: until interrupted); raises Interrupted on a cancel or a stop.
Spend = Callable[[float | None], None]


class Worksite(Protocol):
    """What a batch line needs from the server that runs it."""

    @property
    def max_pixels(self) -> int: ...

    def defaults(self) -> RequestControls: ...

    def take_slot(self) -> bool: ...

    def give_back_slot(self) -> None: ...

    def publish(self, data: bytes, fmt: str) -> str: ...


class Interrupted(Exception):
    """The line at work stops: its batch is cancelled, or the server stops."""


def answer_line(
    line: BatchLine, site: Worksite, latency: float, base_url: str, spend: Spend
) -> tuple[int, str, dict[str, Any]]:
    """The status, request id and JSON body of LINE's answer. Raises Interrupted."""
    request_id = new_request_id()
    try:
        return 200, request_id, _generate(line, site, latency, base_url, spend)
    except Refused as exc:
        return exc.refusal.status, request_id, exc.refusal.envelope(request_id)


def _generate(
    line: BatchLine, site: Worksite, latency: float, base_url: str, spend: Spend
) -> dict[str, Any]:
    if line.url != IMAGE_ENDPOINT:
        raise not_found(f"The embedded backend answers no {line.url}")
    defaults = replace(site.defaults(), latency=latency, model_latency={})
    body, controls = answers.controls_of(line.body, defaults)
    fault = None if controls.times == 0 else controls.fault
    if fault is not None and fault.status is not None:
        raise Refused(answers.fault_refusal(fault, controls.retry_after, body.get("model")))
    params = answers.check_generation(body, site.max_pixels)
    if params.stream:
        raise invalid('A batch line is answered whole: "stream": true is not taken')
    kind = fault.kind if fault else None
    with _working(site, spend, slot=kind != "stall"):
        spend(None if kind == "stall" else controls.latency_for(params.model))
        if kind == "error_frame":
            message = "The provider failed to generate the image"
            raise Refused(Refusal(500, "provider_job_failed", message))
        if kind in ("drop", "malformed"):
            raise Refused(Refusal(502, "unavailable", "The provider's answer broke off"))

        def publish(data: bytes, fmt: str) -> str:
            return f"{base_url}/files/{site.publish(data, fmt)}"

        return answers.images_response(params, fault, publish)


@contextmanager
def _working(site: Worksite, spend: Spend, slot: bool) -> Iterator[None]:
    """Hold one of the server's work slots, as a generation does (none for a stall)."""
    if slot:
        while not site.take_slot():
            spend(SLOT_WAIT)
    try:
        yield
    finally:
        if slot:
            site.give_back_slot()
