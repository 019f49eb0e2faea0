"""The durable prompt queue: SQLite-backed pending items and history, one dispatcher thread, and the
narrow executor interface the dispatcher hands work to (in-process today; subprocess / Ray tomorrow).
"""

from graphengine.queue.executor import ExecutionResult, InProcessExecutor, Job, PromptExecutor
from graphengine.queue.items import QueueItem, Submitted
from graphengine.queue.progress import ProgressSnapshot
from graphengine.queue.prompt_queue import PromptQueue, QueueObserver

__all__ = [
    "ExecutionResult",
    "InProcessExecutor",
    "Job",
    "PromptExecutor",
    "PromptQueue",
    "ProgressSnapshot",
    "QueueItem",
    "QueueObserver",
    "Submitted",
]
