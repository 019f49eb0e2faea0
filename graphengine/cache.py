"""Content-addressed node output caching: signatures and the cache strategies.

**Signatures.** A node's signature is a Merkle digest of its class, the class's ``version``, its
``fingerprint`` (ComfyUI's IS_CHANGED), its canonical literal inputs and, for each linked input, the
input name, the source's signature and output slot. Node ids never enter it (except for classes with
a ``UNIQUE_ID`` hidden input, as in ComfyUI), so identical subgraphs under different ids share cache
entries. A fingerprint of ``NEVER_CACHE`` (or a literal that has no canonical form) gives no
signature: the node and everything downstream of it always run.

Signatures are computed incrementally (``Signatures``): for each node id the previous run's inputs
(class, literals, links, fingerprint, parent signatures) are kept, and an unchanged node reuses its
previous digest after a few equality checks. Only nodes whose own inputs or whose ancestors changed
are hashed again, so a re-run in which one literal changed costs hashing proportional to what
changed (the edited node and what is downstream of it).

**Strategies** (``CacheConfig``, ComfyUI's modes, reference §4.4):

* ``classic``: at the start of a prompt drop every entry the new prompt does not use.
* ``lru N``: keep up to N entries across prompts, evicting the least recently used.
* ``ram`` / ``ram GB``: keep everything until the measured size of cached outputs exceeds a budget
  (default: a quarter of physical memory), then evict by age × size (oldest, largest first).
* ``none``: keep nothing across prompts; every node runs every time.

Entries in use by a running prompt are pinned by the executor, so eviction never breaks a run.
"""

from __future__ import annotations

import hashlib
import marshal
import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphengine.environment import Environment
from graphengine.node import NEVER_CACHE, Hidden, Node

Signature = bytes


@dataclass(frozen=True)
class CacheConfig:
    """Which cache strategy an Engine uses. ``CacheConfig.parse("lru 10")`` reads the CLI form."""

    mode: str = "classic"  # classic | lru | ram | none
    lru_size: int = 0
    ram_budget_bytes: int | None = None  # ram mode; None → a quarter of physical memory

    MODES = ("classic", "lru", "ram", "none")

    def __post_init__(self) -> None:
        if self.mode not in self.MODES:
            raise ValueError(f"unknown cache mode {self.mode!r}; expected one of {', '.join(self.MODES)}")
        if self.mode == "lru" and self.lru_size < 1:
            raise ValueError("lru cache needs a size of at least 1 (e.g. 'lru 10')")

    @classmethod
    def parse(cls, value: str | CacheConfig | None) -> CacheConfig:
        """``"classic"``, ``"lru N"`` (or ``lru:N``), ``"ram"``, ``"ram GB"``, ``"none"``."""
        if value is None:
            return cls()
        if isinstance(value, CacheConfig):
            return value
        parts = str(value).replace(":", " ").replace("=", " ").split()
        if not parts:
            return cls()
        mode = parts[0].lower()
        if mode == "lru":
            if len(parts) != 2 or not parts[1].isdigit():
                raise ValueError("lru cache needs a size: 'lru N' with N a positive integer")
            return cls(mode="lru", lru_size=int(parts[1]))
        if mode == "ram":
            if len(parts) == 1:
                return cls(mode="ram")
            try:
                gigabytes = float(parts[1])
            except ValueError:
                raise ValueError("ram cache budget must be a number of gigabytes: 'ram 4'") from None
            if not gigabytes > 0:
                raise ValueError("ram cache budget must be positive")
            return cls(mode="ram", ram_budget_bytes=int(gigabytes * 1024**3))
        if len(parts) != 1:
            raise ValueError(f"cache mode {mode!r} takes no argument")
        return cls(mode=mode)

    def describe(self) -> str:
        if self.mode == "lru":
            return f"lru {self.lru_size}"
        if self.mode == "ram" and self.ram_budget_bytes:
            return f"ram {self.ram_budget_bytes / 1024**3:g}"
        return self.mode


@dataclass(slots=True, eq=False)
class CacheEntry:
    """A node's outputs (one list per output socket) and its UI dict."""

    outputs: tuple[list[Any], ...]
    ui: dict[str, Any] | None
    nbytes: int = 0
    generation: int = 0


class OutputCache:
    """Base strategy: keeps nothing (``none`` mode)."""

    config: CacheConfig

    def __init__(self, config: CacheConfig):
        self.config = config
        self.generation = 0

    def begin(self, in_use: set[Signature]) -> None:
        """A prompt starts; ``in_use`` are the signatures it needs."""
        self.generation += 1

    def get(self, signature: Signature) -> CacheEntry | None:
        return None

    def put(self, signature: Signature, outputs: tuple[list[Any], ...], ui: dict[str, Any] | None) -> None:
        return None

    def clear(self) -> None:
        return None

    def __len__(self) -> int:
        return 0

    def nbytes(self) -> int:
        return 0


class ClassicCache(OutputCache):
    def __init__(self, config: CacheConfig):
        super().__init__(config)
        self._entries: dict[Signature, CacheEntry] = {}

    def begin(self, in_use: set[Signature]) -> None:
        super().begin(in_use)
        entries = self._entries
        if len(entries) and not in_use.issuperset(entries):
            self._entries = {sig: entry for sig, entry in entries.items() if sig in in_use}

    def get(self, signature: Signature) -> CacheEntry | None:
        return self._entries.get(signature)

    def put(self, signature: Signature, outputs: tuple[list[Any], ...], ui: dict[str, Any] | None) -> None:
        self._entries[signature] = CacheEntry(outputs, ui, 0, self.generation)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class LruCache(OutputCache):
    def __init__(self, config: CacheConfig):
        super().__init__(config)
        self._entries: OrderedDict[Signature, CacheEntry] = OrderedDict()

    def get(self, signature: Signature) -> CacheEntry | None:
        entry = self._entries.get(signature)
        if entry is not None:
            self._entries.move_to_end(signature)
            entry.generation = self.generation
        return entry

    def put(self, signature: Signature, outputs: tuple[list[Any], ...], ui: dict[str, Any] | None) -> None:
        self._entries[signature] = CacheEntry(outputs, ui, 0, self.generation)
        self._entries.move_to_end(signature)
        while len(self._entries) > self.config.lru_size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class RamCache(OutputCache):
    """Unlimited entries under a byte budget; evicts by age × measured size when over it."""

    AGE_FACTOR = 1.3  # an entry's score grows by this factor per prompt it has not been used in

    def __init__(self, config: CacheConfig):
        super().__init__(config)
        self.budget = config.ram_budget_bytes or default_ram_budget()
        self._entries: dict[Signature, CacheEntry] = {}
        self._total = 0

    def get(self, signature: Signature) -> CacheEntry | None:
        entry = self._entries.get(signature)
        if entry is not None:
            entry.generation = self.generation
        return entry

    def put(self, signature: Signature, outputs: tuple[list[Any], ...], ui: dict[str, Any] | None) -> None:
        size = measure_nbytes(outputs)
        old = self._entries.get(signature)
        if old is not None:
            self._total -= old.nbytes
        self._entries[signature] = CacheEntry(outputs, ui, size, self.generation)
        self._total += size
        if self._total > self.budget:
            self._evict()

    def _evict(self) -> None:
        now = self.generation

        def score(item: tuple[Signature, CacheEntry]) -> float:
            entry = item[1]
            return entry.nbytes * self.AGE_FACTOR ** (now - entry.generation)

        for signature, entry in sorted(self._entries.items(), key=score, reverse=True):
            if self._total <= self.budget:
                break
            del self._entries[signature]
            self._total -= entry.nbytes

    def clear(self) -> None:
        self._entries.clear()
        self._total = 0

    def __len__(self) -> int:
        return len(self._entries)

    def nbytes(self) -> int:
        return self._total


def make_cache(config: CacheConfig | str | None) -> OutputCache:
    config = CacheConfig.parse(config)
    strategy = {"classic": ClassicCache, "lru": LruCache, "ram": RamCache, "none": OutputCache}[config.mode]
    return strategy(config)


def default_ram_budget() -> int:
    """A quarter of physical memory (8 GiB when it cannot be read)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 32 * 1024**3
    return max(total // 4, 64 * 1024**2)


def measure_nbytes(value: Any, limit: int = 100_000) -> int:
    """Approximate bytes held by a node's outputs, without importing torch.

    Tensors and arrays count ``nbytes`` (or ``element_size() * nelement()``); strings and bytes their
    length; dataclasses (socket values), lists, tuples and dicts are walked. Each object is counted
    once; at most ``limit`` objects are visited.
    """
    total = 0
    seen: set[int] = set()
    stack = [value]
    visited = 0
    while stack and visited < limit:
        item = stack.pop()
        if item is None or isinstance(item, (bool, int, float)):
            continue
        ident = id(item)
        if ident in seen:
            continue
        seen.add(ident)
        visited += 1
        if isinstance(item, (str, bytes, bytearray)):
            total += len(item)
            continue
        nbytes = getattr(item, "nbytes", None)
        if isinstance(nbytes, int):
            total += nbytes
            continue
        element_size = getattr(item, "element_size", None)
        nelement = getattr(item, "nelement", None)
        if callable(element_size) and callable(nelement):
            try:
                total += int(element_size()) * int(nelement())
            except Exception:  # an exotic tensor-like that cannot report its size
                pass
            continue
        if isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
        elif hasattr(item, "__dataclass_fields__"):
            stack.extend(getattr(item, name, None) for name in item.__dataclass_fields__)
    return total


# --- signatures ---


def _overrides(node_class: type[Node], name: str) -> bool:
    return getattr(getattr(node_class, name), "__func__", None) is not getattr(Node, name).__func__


def _digest(
    node_class: type[Node],
    node_id: str | None,
    fingerprint: Any,
    literals: Mapping[str, Any],
    links: Mapping[str, Any],
    parents: tuple[bytes, ...],
) -> Signature | None:
    """blake2b over a canonical encoding: ``marshal`` format 2 (no back-references, so equal values
    always encode equally; int, float and bool encode differently). Values that marshal cannot
    encode (arbitrary objects) give no signature: never cached rather than wrongly cached."""
    payload = (
        node_class.class_type,
        node_class.version,
        node_id,
        fingerprint,
        tuple(literals.items()),
        tuple([(name, link[1]) for name, link in links.items()]),
        parents,
    )
    try:
        encoded = marshal.dumps(payload, 2)
    except (ValueError, TypeError):
        return None
    return hashlib.blake2b(encoded, digest_size=20).digest()


class Signatures:
    """Incremental Merkle signatures of a prompt's nodes (see the module docstring)."""

    def __init__(self) -> None:
        self._memo: dict[str, tuple[Any, ...]] = {}
        self._class_flags: dict[type[Node], tuple[bool, bool, bool]] = {}
        self.hashed = 0  # how many digests the last ``compute`` calculated (for tests and benchmarks)

    def clear(self) -> None:
        self._memo.clear()

    def _flags(self, node_class: type[Node]) -> tuple[bool, bool, bool]:
        """(overrides fingerprint, keyed by node id, has loosely typed literal inputs)."""
        flags = self._class_flags.get(node_class)
        if flags is None:
            loose = any(
                not info.spec.is_combo and (info.socket is None or info.socket == "*" or "," in info.socket)
                for info in node_class.inputs_info
            )
            flags = self._class_flags[node_class] = (
                _overrides(node_class, "fingerprint"),
                Hidden.UNIQUE_ID in node_class.hidden,
                loose,
            )
        return flags

    def compute(self, nodes: Mapping[str, Any], env: Environment) -> dict[str, Signature | None]:
        """Signatures of ``nodes`` (CheckedNodes, sources first); ``None`` means "never cached"."""
        previous = self._memo
        memo: dict[str, tuple[Any, ...]] = {}
        result: dict[str, Signature | None] = {}
        hashed = 0
        class_flags = self._class_flags
        for node_id, node in nodes.items():
            node_class = node.node_class
            has_fingerprint, per_id, loose = class_flags.get(node_class) or self._flags(node_class)
            fingerprint = None
            if has_fingerprint:
                try:
                    fingerprint = node_class.fingerprint(node.literals, env)
                except Exception:  # ComfyUI: a failing IS_CHANGED means "changed"
                    fingerprint = NEVER_CACHE
                if fingerprint is NEVER_CACHE:
                    result[node_id] = None
                    continue
            links = node.links
            if links:
                parents = tuple([result.get(link.node_id) for link in links.values()])
                if None in parents:
                    result[node_id] = None
                    continue
            else:
                parents = ()
            literals = node.literals
            # ``1 == 1.0 == True``: inputs typed "*" keep whatever type was sent, so compare their repr.
            literal_key = repr(tuple(literals.items())) if loose else literals
            old = previous.get(node_id)
            if (
                old is not None
                and old[0] is node_class
                and old[2] == parents
                and old[1] == literal_key
                and old[3] == links
                and old[4] == fingerprint
            ):
                signature = old[5]
            else:
                signature = _digest(node_class, node_id if per_id else None, fingerprint, literals, links, parents)
                if signature is None:
                    result[node_id] = None
                    continue
                hashed += 1
            memo[node_id] = (node_class, literal_key, parents, links, fingerprint, signature)
            result[node_id] = signature
        self._memo = memo
        self.hashed = hashed
        return result
