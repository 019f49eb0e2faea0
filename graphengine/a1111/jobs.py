"""Running a ``GenerationPlan`` through the server's prompt queue, as A1111 runs a job.

Each iteration (``n_iter``) is one queued prompt, submitted after the previous one finished, so it
shows in ``/queue`` and ``/history`` like any ``/prompt`` graph and shares the cache and progress
events. ``interrupt`` stops the job (images finished so far are returned); ``skip`` abandons only
the running iteration. ``JobTracker`` knows which prompt belongs to which job, for ``/progress``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from graphengine.a1111.graph import IterationGraph, build_iteration
from graphengine.a1111.plan import GenerationPlan
from graphengine.environment import DataPaths
from graphengine.errors import WorkflowInvalid
from graphengine.files import PathRejected, confine

logger = logging.getLogger(__name__)


class GenerationFailed(RuntimeError):
    """A queued iteration failed while running; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 500):
        super().__init__(message)
        self.message, self.status = message, status


@dataclass
class GeneratedImage:
    png: bytes
    seed: int
    subseed: int
    filename: str
    subfolder: str
    type: str

    @property
    def base64(self) -> str:
        return base64.b64encode(self.png).decode("ascii")


@dataclass
class Job:
    """One A1111 generation request in flight."""

    plan: GenerationPlan
    started: float = field(default_factory=time.time)
    prompt_ids: list[str] = field(default_factory=list)
    current: IterationGraph | None = None
    current_prompt: str | None = None
    iteration: int = 0
    interrupted: bool = False
    skip_requested: bool = False

    @property
    def total_steps(self) -> int:
        per_iteration = self.plan.batch_size * (self.plan.first.steps + (self.plan.hires.second.steps if self.plan.hires else 0))
        return max(1, per_iteration * self.plan.n_iter)

    def steps_done(self, node: str | None, value: int) -> int:
        """Sampling steps completed so far, given the running node and its step value.

        Within one iteration graph the samplers run in id order (each image's branch is built, and
        numbered, before the next), so every sampler numbered below the running node is finished.
        """
        if self.current is None:
            return 0
        done = self.iteration * self.current.total_steps
        for node_id, steps in self.current.samplers:
            if node_id == node:
                return done + value
            if node is not None and node.isdigit() and int(node_id) < int(node):
                done += steps
        return done


class JobTracker:
    """The jobs of one server (used by /progress, /interrupt, /skip)."""

    def __init__(self) -> None:
        self._jobs: list[Job] = []

    def add(self, job: Job) -> None:
        self._jobs.append(job)

    def remove(self, job: Job) -> None:
        if job in self._jobs:
            self._jobs.remove(job)

    def by_prompt(self, prompt_id: str | None) -> Job | None:
        if prompt_id is None:
            return None
        for job in self._jobs:
            if job.current_prompt == prompt_id:
                return job
        return None

    @property
    def count(self) -> int:
        return len(self._jobs)


def _execution_error(entry: dict[str, Any]) -> str:
    for kind, data in entry.get("status", {}).get("messages", []):
        if kind == "execution_error":
            return f"{data.get('node_type')} [{data.get('node_id')}] {data.get('exception_type')}: {data.get('exception_message')}"
    return "the generation failed"


def _was_interrupted(entry: dict[str, Any]) -> bool:
    return any(kind == "execution_interrupted" for kind, _ in entry.get("status", {}).get("messages", []))


def read_output_image(paths: DataPaths, item: dict[str, Any]) -> tuple[bytes, str, str, str]:
    kind = str(item.get("type", "output"))
    subfolder = str(item.get("subfolder", ""))
    filename = str(item["filename"])
    relative = f"{subfolder}/{filename}" if subfolder else filename
    path: Path = confine(paths.directory(kind), relative, must_exist=True)
    return path.read_bytes(), filename, subfolder, kind


def invalid_graph_detail(error: WorkflowInvalid) -> str:
    """A one-line description of why the queue refused a generated graph."""
    body = error.body
    messages = []
    for node_id, node in (body.get("node_errors") or {}).items():
        for item in node.get("errors", []):
            messages.append(f"{node.get('class_type', node_id)}: {item.get('message')} ({item.get('details')})")
    if not messages:
        err = body.get("error", {})
        messages.append(f"{err.get('message', 'invalid workflow')}: {err.get('details', '')}")
    return "; ".join(messages)


async def run_job(services: Any, tracker: JobTracker, job: Job, *, filename_prefix: str | None = None) -> list[GeneratedImage]:
    """Run every iteration of ``job`` through the queue and return the images in order."""
    plan = job.plan
    images: list[GeneratedImage] = []
    tracker.add(job)
    try:
        for iteration in range(plan.n_iter):
            if job.interrupted:
                break
            graph = build_iteration(plan, iteration, filename_prefix=filename_prefix)
            job.current, job.iteration = graph, iteration
            try:
                submitted = await run_in_threadpool(services.queue.submit, graph.prompt, extra_data={"source": "sdapi"})
            except WorkflowInvalid as exc:
                raise GenerationFailed(f"the generated workflow was refused: {invalid_graph_detail(exc)}", 400) from None
            job.current_prompt = submitted.prompt_id
            job.prompt_ids.append(submitted.prompt_id)
            try:
                entry = await services.queue.wait(submitted.prompt_id)
            except asyncio.CancelledError:
                services.queue.interrupt(submitted.prompt_id)
                raise
            except KeyError:
                raise GenerationFailed("the generation was removed from the queue", 409) from None
            status = entry.get("status", {})
            if status.get("status_str") != "success":
                if _was_interrupted(entry):
                    if job.skip_requested and not job.interrupted:
                        job.skip_requested = False
                        continue
                    job.interrupted = True
                    break
                raise GenerationFailed(_execution_error(entry))
            outputs = entry.get("outputs", {})
            for index, node_id in enumerate(graph.outputs):
                found = (outputs.get(node_id) or {}).get("images") or []
                if not found:
                    raise GenerationFailed(f"output node {node_id} produced no image")
                try:
                    png, filename, subfolder, kind = await run_in_threadpool(read_output_image, services.paths, found[0])
                except (OSError, PathRejected, KeyError, ValueError) as exc:
                    raise GenerationFailed(f"could not read the generated image: {exc}") from None
                global_index = iteration * plan.batch_size + index
                images.append(
                    GeneratedImage(png, plan.seeds[global_index], plan.subseeds[global_index], filename, subfolder, kind)
                )
    finally:
        job.current_prompt = None
        tracker.remove(job)
    return images
