"""ComfyUI's newer jobs API (``/api/jobs``): one list of pending, running and finished prompts."""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from graphengine.http.bodies import BadBody, read_json
from graphengine.http.openapi import describe
from graphengine.queue import QueueItem

STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled")
UUID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PREVIEWABLE = ("images", "gifs", "video", "audio")


def _queued_job(item: QueueItem, status: str) -> dict[str, Any]:
    job: dict[str, Any] = {
        "id": item.prompt_id,
        "status": status,
        "priority": item.number,
        "create_time": item.extra_data.get("create_time"),
        "outputs_count": 0,
        "previewable_outputs_count": 0,
    }
    workflow_id = _workflow_id(item.extra_data)
    if workflow_id:
        job["workflow_id"] = workflow_id
    return job


def _workflow_id(extra_data: dict[str, Any]) -> str | None:
    workflow = (extra_data.get("extra_pnginfo") or {}).get("workflow") if isinstance(extra_data, dict) else None
    value = workflow.get("id") if isinstance(workflow, dict) else None
    return value if isinstance(value, str) else None


def _finished_job(prompt_id: str, entry: dict[str, Any], *, full: bool) -> dict[str, Any]:
    number, _, prompt, extra_data, _ = (entry.get("prompt") or [None, None, {}, {}, []])[:5]
    status = entry.get("status") or {}
    messages = status.get("messages") or []
    kinds = {message[0]: message[1] for message in messages if isinstance(message, list) and len(message) == 2}
    if status.get("status_str") == "success":
        state = "completed"
    elif "execution_interrupted" in kinds:
        state = "cancelled"
    else:
        state = "failed"
    outputs = entry.get("outputs") or {}
    items = [(node, key, value) for node, ui in outputs.items() if isinstance(ui, dict)
             for key, values in ui.items() if isinstance(values, list) for value in values]
    previewable = [(node, key, value) for node, key, value in items if key in PREVIEWABLE and isinstance(value, dict)]
    job: dict[str, Any] = {
        "id": prompt_id,
        "status": state,
        "priority": number,
        "create_time": (extra_data or {}).get("create_time"),
        "outputs_count": len(items),
        "previewable_outputs_count": len(previewable),
    }
    start = kinds.get("execution_start", {}).get("timestamp")
    end = next((data.get("timestamp") for kind, data in reversed(list(kinds.items()))
                if kind in ("execution_success", "execution_error", "execution_interrupted")), None)
    if start is not None:
        job["execution_start_time"] = start
    if end is not None:
        job["execution_end_time"] = end
    if "execution_error" in kinds:
        job["execution_error"] = kinds["execution_error"]
    if previewable:
        node, key, value = previewable[0]
        job["preview_output"] = {**value, "nodeId": node, "mediaType": key}
    workflow_id = _workflow_id(extra_data or {})
    if workflow_id:
        job["workflow_id"] = workflow_id
    if full:
        job["outputs"] = outputs
        job["execution_status"] = status
        job["workflow"] = {"prompt": prompt, "extra_data": extra_data}
    return job


def _all_jobs(services: Any) -> list[dict[str, Any]]:
    queue = services.queue
    jobs = [_finished_job(pid, json.loads(text), full=False) for pid, text in queue.history_items()]
    running = queue.running_item()
    if running is not None:
        jobs.append(_queued_job(running, "in_progress"))
    jobs.extend(_queued_job(item, "pending") for item in queue.pending_items())
    return jobs


@describe(query={"status": "comma-separated: pending,in_progress,completed,failed,cancelled",
                 "workflow_id": "only jobs of this workflow", "sort_by": "created_at | execution_duration",
                 "sort_order": "asc | desc (default desc)", "limit": "page size", "offset": "page start"},
          responses={200: "{jobs, pagination}", 400: "{error}"})
async def list_jobs(request: Request) -> JSONResponse:
    """Pending, running and finished prompts as jobs, filtered, sorted and paged."""
    query = request.query_params
    wanted = [s for s in (query.get("status") or "").split(",") if s]
    if any(s not in STATUSES for s in wanted):
        return JSONResponse({"error": f"status must be among {', '.join(STATUSES)}"}, status_code=400)
    sort_by = query.get("sort_by") or "created_at"
    if sort_by not in ("created_at", "execution_duration"):
        return JSONResponse({"error": "sort_by must be created_at or execution_duration"}, status_code=400)
    sort_order = query.get("sort_order") or "desc"
    if sort_order not in ("asc", "desc"):
        return JSONResponse({"error": "sort_order must be asc or desc"}, status_code=400)
    try:
        limit = int(query["limit"]) if query.get("limit") else None
        offset = int(query.get("offset") or 0)
    except ValueError:
        return JSONResponse({"error": "limit and offset must be integers"}, status_code=400)
    if (limit is not None and limit < 0) or offset < 0:
        return JSONResponse({"error": "limit and offset must not be negative"}, status_code=400)
    jobs = await run_in_threadpool(_all_jobs, request.app.state.services)
    if wanted:
        jobs = [job for job in jobs if job["status"] in wanted]
    workflow_id = query.get("workflow_id")
    if workflow_id:
        jobs = [job for job in jobs if job.get("workflow_id") == workflow_id]

    def key(job: dict[str, Any]) -> float:
        if sort_by == "execution_duration":
            start, end = job.get("execution_start_time"), job.get("execution_end_time")
            return float(end - start) if start is not None and end is not None else -1.0
        return float(job.get("create_time") or 0)

    jobs.sort(key=key, reverse=sort_order == "desc")
    total = len(jobs)
    page = jobs[offset: offset + limit if limit is not None else None]
    return JSONResponse({"jobs": page, "pagination": {"offset": offset, "limit": limit, "total": total,
                                                      "has_more": offset + len(page) < total}})


async def get_job(request: Request) -> JSONResponse:
    """One job with its outputs, execution status and workflow; 404 when unknown."""
    job_id = request.path_params["job_id"]
    queue = request.app.state.services.queue
    entry = queue.history_entry(job_id)
    if entry is not None:
        return JSONResponse(_finished_job(job_id, entry, full=True))
    running = queue.running_item()
    if running is not None and running.prompt_id == job_id:
        return JSONResponse({**_queued_job(running, "in_progress"), "workflow": {"prompt": running.prompt,
                                                                                   "extra_data": running.extra_data}})
    for item in queue.pending_items():
        if item.prompt_id == job_id:
            return JSONResponse({**_queued_job(item, "pending"), "workflow": {"prompt": item.prompt,
                                                                                "extra_data": item.extra_data}})
    return JSONResponse({"error": "Job not found"}, status_code=404)


def _cancel(queue: Any, job_id: str) -> bool:
    state = queue.state_of(job_id)
    if state == "running":
        return queue.interrupt(job_id)
    if state == "pending":
        return bool(queue.delete([job_id]))
    return False


async def cancel_job(request: Request) -> JSONResponse:
    """Cancel one job: interrupt it if running, remove it if pending; ``{"cancelled": bool}``."""
    queue = request.app.state.services.queue
    return JSONResponse({"cancelled": await run_in_threadpool(_cancel, queue, request.path_params["job_id"])})


@describe(body="json", responses={200: "{cancelled}", 400: "{error, invalid_ids}"})
async def cancel_jobs(request: Request) -> JSONResponse:
    """Cancel several jobs: ``{"job_ids": [id, …]}``."""
    try:
        body = await read_json(request)
    except BadBody as exc:
        return JSONResponse({"error": exc.detail}, status_code=400)
    ids = body.get("job_ids") if isinstance(body, dict) else None
    if not isinstance(ids, list):
        return JSONResponse({"error": "'job_ids' must be a list of job ids"}, status_code=400)
    invalid = [i for i in ids if not isinstance(i, str) or not i or len(i) > 128]
    if invalid:
        return JSONResponse({"error": "invalid job ids", "invalid_ids": invalid}, status_code=400)
    queue = request.app.state.services.queue
    results = [await run_in_threadpool(_cancel, queue, job_id) for job_id in ids]
    return JSONResponse({"cancelled": any(results)})


def routes() -> list[BaseRoute]:
    return [
        Route("/jobs", list_jobs, methods=["GET"]),
        Route("/jobs/cancel", cancel_jobs, methods=["POST"]),
        Route("/jobs/{job_id}", get_job, methods=["GET"]),
        Route("/jobs/{job_id}/cancel", cancel_job, methods=["POST"]),
    ]
