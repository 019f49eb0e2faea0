"""ModelManager: loaded models shared across prompts, bounded by RAM and VRAM budgets.

- ``load_checkpoint(path)`` → ``(Model, Clip, Vae)``; the same file (same size and mtime) gives the
  same objects until evicted. Loaded files live in an LRU whose total size stays under the RAM budget
  (the least recently used entry not in use is dropped first).
- ``activate(value)`` (the ``ModelRuntime`` the socket values call) is a context manager that
  1. moves the value's modules to the execution device (CUDA when available, else CPU) and dtype,
     first offloading least-recently-used modules if the VRAM budget would be exceeded;
  2. applies LoRA patches in place (keeping an exact copy of every weight it touches);
  3. yields the UNet (Model), the tuple of text encoders (Clip) or the autoencoder (Vae);
  4. on exit restores the original weights bit for bit.
- An out-of-memory error while moving to the GPU offloads everything else, empties the CUDA cache and
  retries once; if it still fails, ``ModelOutOfMemory`` explains what did not fit.
- ``free()`` offloads GPU-resident modules; ``unload_all()`` also forgets every loaded file.

Dtypes: on CUDA the UNet and text encoders are stored in fp16 (``GRAPHENGINE_DTYPE=bf16|fp32`` to
change) and the VAE in bf16 (fp32 where the GPU lacks bf16), since the SD/SDXL VAE overflows in fp16;
on CPU everything is float32. GPU-only paths (CUDA placement, SDPA attention processors,
channels_last, optional ``torch.compile`` with ``GRAPHENGINE_COMPILE=1``) are marked ``# GPU path``.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from graphengine.models import lora as lora_mod
from graphengine.models.families import discrete_sigmas
from graphengine.models.loading import Components, load_components, load_vae_file
from graphengine.models.safetensors_io import CheckpointError
from nodes.sockets import Clip, LatentFormat, Model, ModelSampling, Vae

logger = logging.getLogger(__name__)

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
WEIGHT_DTYPES = {
    "default": None,
    "fp8_e4m3fn": getattr(torch, "float8_e4m3fn", None),
    "fp8_e4m3fn_fast": getattr(torch, "float8_e4m3fn", None),
    "fp8_e5m2": getattr(torch, "float8_e5m2", None),
}


class ModelOutOfMemory(RuntimeError):
    """A model did not fit on the execution device even after freeing everything else."""


def _module_bytes(module: Any) -> int:
    total = 0
    for tensor in list(module.parameters()) + list(module.buffers()):
        total += tensor.numel() * tensor.element_size()
    return total


def _total_ram() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 1024**3


@dataclass
class _Entry:
    key: tuple[Any, ...]
    value: Any
    nbytes: int
    in_use: int = 0
    loaded_at: float = field(default_factory=time.time)


class ModelManager:
    """Loads checkpoints into socket values and runs them on the execution device (see module doc)."""

    def __init__(
        self,
        *,
        ram_budget: int | None = None,
        vram_budget: int | None = None,
        device: str | torch.device | None = None,
        dtype: str | None = None,
        compile_unet: bool | None = None,
        channels_last: bool = True,
    ):
        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if dtype is None:
            dtype = os.environ.get("GRAPHENGINE_DTYPE") or ("fp16" if self.device.type == "cuda" else "fp32")
        if dtype not in DTYPES:
            raise ValueError(f"unknown model dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
        self.dtype = DTYPES[dtype] if self.device.type == "cuda" else torch.float32
        # The SD/SDXL VAE overflows in fp16; like ComfyUI, decode in bf16 where the GPU has it, else fp32.
        self.vae_dtype = torch.float32
        if self.device.type == "cuda" and torch.cuda.is_bf16_supported():  # GPU path
            self.vae_dtype = torch.bfloat16
        self.ram_budget = ram_budget if ram_budget is not None else int(_total_ram() * 0.5)
        self.vram_budget = vram_budget if vram_budget is not None else self._default_vram_budget()
        if compile_unet is None:
            compile_unet = os.environ.get("GRAPHENGINE_COMPILE", "").strip() in ("1", "true", "yes")
        self.compile_unet = compile_unet and self.device.type == "cuda"
        self.channels_last = channels_last
        self._lock = threading.RLock()
        self._files: OrderedDict[tuple[Any, ...], _Entry] = OrderedDict()
        self._resident: OrderedDict[int, tuple[Any, int]] = OrderedDict()  # id(module) → (module, bytes) on GPU
        self._active_modules: dict[int, int] = {}  # id(module) → active count
        self._ldm_names: dict[int, dict[str, str]] = {}  # id(unet) → diffusers→LDM parameter names

    def _default_vram_budget(self) -> int:
        if self.device.type != "cuda":  # GPU path
            return 0
        total = torch.cuda.get_device_properties(self.device).total_memory
        return int(total * 0.85)

    # --- loading ---

    @staticmethod
    def _file_key(kind: str, path: Path, *extra: Any) -> tuple[Any, ...]:
        path = Path(path).resolve()
        stat = path.stat()
        return (kind, str(path), stat.st_size, stat.st_mtime_ns, *extra)

    def _cached(self, key: tuple[Any, ...], build: Any) -> Any:
        with self._lock:
            entry = self._files.get(key)
            if entry is not None:
                self._files.move_to_end(key)
                return entry.value
            value, nbytes = build()
            self._files[key] = _Entry(key, value, nbytes)
            self._evict_ram()
            return value

    def _evict_ram(self) -> None:
        total = sum(e.nbytes for e in self._files.values())
        evicted = False
        for key in list(self._files):
            if total <= self.ram_budget or len(self._files) <= 1:
                break
            entry = self._files[key]
            if entry.in_use:
                continue
            logger.info("evicting %s from the model cache (%.1f MB)", key[1], entry.nbytes / 1e6)
            del self._files[key]
            self._forget(entry.value)
            total -= entry.nbytes
            evicted = True
        if evicted:  # a full collection costs ~0.1-0.2 s with torch/diffusers loaded: only when it frees something
            gc.collect()

    def _forget(self, value: Any) -> None:
        values = value if isinstance(value, tuple) else (value,)
        for item in values:
            for module in self._modules_of(item):
                self._resident.pop(id(module), None)
                self._ldm_names.pop(id(module), None)

    def cached_files(self) -> list[str]:
        """Paths of the files whose models are cached, least recently used first."""
        with self._lock:
            return [key[1] for key in self._files]

    def cached_bytes(self) -> int:
        with self._lock:
            return sum(e.nbytes for e in self._files.values())

    def load_checkpoint(self, path: Path | str, *, allow_pickle: bool | None = None) -> tuple[Model, Clip, Vae]:
        """A single-file checkpoint (or diffusers folder) → ``(Model, Clip, Vae)``, shared while cached."""
        path = Path(path)

        def build() -> tuple[tuple[Model, Clip, Vae], int]:
            components = load_components(path, dtype=self.dtype, vae_dtype=self.vae_dtype, allow_pickle=allow_pickle)
            values = self._wrap(components)
            nbytes = sum(_module_bytes(m) for m in (components.unet, components.vae, *components.text_encoders) if m is not None)
            return values, nbytes

        return self._cached(self._file_key("checkpoint", path), build)

    def load_unet(self, path: Path | str, weight_dtype: str = "default", *, allow_pickle: bool | None = None) -> Model:
        """A diffusion-model-only file (UNETLoader) → ``Model``. fp8 weight dtypes store weights in fp8."""
        path = Path(path)
        if weight_dtype not in WEIGHT_DTYPES:
            raise ValueError(f"unknown weight_dtype {weight_dtype!r}; choose one of {', '.join(WEIGHT_DTYPES)}")
        storage = WEIGHT_DTYPES[weight_dtype]
        if weight_dtype != "default" and storage is None:
            raise ValueError(f"this PyTorch build has no {weight_dtype} dtype")

        def build() -> tuple[Model, int]:
            components = load_components(path, dtype=self.dtype, allow_pickle=allow_pickle, parts=("unet",))
            if components.unet is None:
                raise CheckpointError(path, "no UNet found in this file")
            model = self._model(components)
            if storage is not None:
                self._store_low_precision(components.unet, storage)
            return model, _module_bytes(components.unet)

        return self._cached(self._file_key("unet", path, weight_dtype), build)

    def load_vae(self, path: Path | str, *, scaling_factor: float | None = None, allow_pickle: bool | None = None) -> Vae:
        """A standalone VAE file → ``Vae`` (SD latent format unless ``scaling_factor`` says otherwise)."""
        path = Path(path)

        def build() -> tuple[Vae, int]:
            autoencoder = load_vae_file(path, dtype=self.vae_dtype, scaling_factor=scaling_factor, allow_pickle=allow_pickle)
            from graphengine.models.families import family

            fmt = family("sdxl" if scaling_factor == 0.13025 else "sd15").latent_format
            vae = Vae(autoencoder=autoencoder, latent_format=fmt, runtime=self, identity=f"vae:{path.name}")
            return vae, _module_bytes(autoencoder)

        return self._cached(self._file_key("vae", path, scaling_factor), build)

    def load_lora(self, path: Path | str, *, allow_pickle: bool | None = None) -> lora_mod.ParsedLora:
        """A LoRA file's layers (cached like models)."""
        path = Path(path)

        def build() -> tuple[lora_mod.ParsedLora, int]:
            parsed = lora_mod.parse_lora(path, allow_pickle=allow_pickle)
            nbytes = sum(d.up.numel() * d.up.element_size() + d.down.numel() * d.down.element_size() for d in parsed.layers.values())
            return parsed, nbytes

        return self._cached(self._file_key("lora", path), build)

    def apply_lora(
        self, model: Model | None, clip: Clip | None, parsed: lora_mod.ParsedLora, strength_model: float, strength_clip: float
    ) -> tuple[Model | None, Clip | None]:
        """New ``Model``/``Clip`` values carrying the LoRA as patches (the shared modules are untouched)."""
        unet = model.unet if model is not None else None
        encoders = clip.encoders if clip is not None else ()
        unet_patches, text_patches, unmatched = lora_mod.build_patches(
            parsed,
            1.0,
            unet if strength_model else None,
            self._ldm_names.get(id(unet)) if unet is not None else None,
            encoders if strength_clip else (),
            source=parsed.path.name,
        )
        if not unet_patches and not text_patches and (strength_model or strength_clip) and unmatched:
            raise CheckpointError(
                parsed.path, f"no layer of this LoRA matches the model (e.g. {', '.join(unmatched[:3])}); wrong base model?"
            )
        new_model, new_clip = model, clip
        tag = f"{parsed.path.name}"
        if model is not None and strength_model:
            patches = tuple(replace(p, strength=strength_model) for p in unet_patches)
            new_model = replace(model, patches=model.patches + patches, identity=f"{model.identity}+lora:{tag}@{strength_model:g}")
        if clip is not None and strength_clip:
            patches = tuple(replace(p, strength=strength_clip) for p in text_patches)
            new_clip = replace(clip, patches=clip.patches + patches, identity=f"{clip.identity}+lora:{tag}@{strength_clip:g}")
        return new_model, new_clip

    # --- socket values ---

    def _model(self, components: Components) -> Model:
        detected = components.detected
        unet = components.unet
        self._ldm_names[id(unet)] = components.ldm_unet_names
        self._prepare_for_device(unet)
        return Model(
            unet=unet,
            sampling=ModelSampling(sigmas=discrete_sigmas(), prediction=detected.prediction),
            latent_format=detected.family.latent_format,
            arch=detected.arch,
            runtime=self,
            identity=f"checkpoint:{components.path.name}",
        )

    def _wrap(self, components: Components) -> tuple[Model, Clip, Vae]:
        detected = components.detected
        fmt: LatentFormat = detected.family.latent_format
        if components.unet is None or components.vae is None or not components.text_encoders:
            raise CheckpointError(components.path, "checkpoint lacks a UNet, VAE or text encoder")
        model = self._model(components)
        clip = Clip(
            encoders=components.text_encoders,
            tokenizers=components.tokenizers,
            arch=detected.arch,
            runtime=self,
            identity=f"checkpoint:{components.path.name}",
        )
        vae = Vae(autoencoder=components.vae, latent_format=fmt, runtime=self, identity=f"checkpoint:{components.path.name}")
        return model, clip, vae

    def _prepare_for_device(self, unet: Any) -> None:
        if self.device.type != "cuda":
            return
        # GPU path: PyTorch SDPA attention (flash / memory-efficient kernels) and channels_last convs.
        try:
            from diffusers.models.attention_processor import AttnProcessor2_0

            unet.set_attn_processor(AttnProcessor2_0())
        except Exception as exc:  # pragma: no cover - depends on the diffusers build
            logger.debug("could not set SDPA attention: %s", exc)
        if self.channels_last:
            unet.to(memory_format=torch.channels_last)

    @staticmethod
    def _store_low_precision(module: Any, dtype: torch.dtype) -> None:
        """Keep Linear/Conv weights in ``dtype`` (fp8) and upcast them on the fly in forward."""
        for sub in module.modules():
            if isinstance(sub, (torch.nn.Linear, torch.nn.Conv2d)):
                sub.weight.data = sub.weight.data.to(dtype)

                def upcast(mod: Any, args: Any) -> None:
                    x = args[0]
                    if mod.weight.dtype != x.dtype:
                        mod._graphengine_fp8 = mod.weight.data
                        mod.weight.data = mod.weight.data.to(x.dtype)

                def restore(mod: Any, args: Any, output: Any) -> None:
                    stored = getattr(mod, "_graphengine_fp8", None)
                    if stored is not None:
                        mod.weight.data = stored
                        del mod._graphengine_fp8

                sub.register_forward_pre_hook(upcast)
                sub.register_forward_hook(restore)

    # --- runtime ---

    @staticmethod
    def _modules_of(value: Any) -> list[Any]:
        if isinstance(value, Model):
            return [value.unet]
        if isinstance(value, Clip):
            return list(value.encoders)
        if isinstance(value, Vae):
            return [value.autoencoder]
        return []

    @staticmethod
    def _yield_of(value: Any) -> Any:
        if isinstance(value, Model):
            return value.unet
        if isinstance(value, Clip):
            return value.encoders
        if isinstance(value, Vae):
            return value.autoencoder
        raise TypeError(f"cannot activate {type(value).__name__}")

    @contextlib.contextmanager
    def activate(self, value: Any) -> Iterator[Any]:
        """Run ``value`` (Model, Clip or Vae) on the execution device with its patches applied."""
        modules = self._modules_of(value)
        result = self._yield_of(value)
        with self._lock:
            entries = [e for e in self._files.values() if self._contains(e.value, modules)]
            for entry in entries:
                entry.in_use += 1
            for module in modules:
                self._active_modules[id(module)] = self._active_modules.get(id(module), 0) + 1
            backups: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
            try:
                for module in modules:
                    self._to_device(module)
                backups = self._apply_patches(value, modules)
            except BaseException:
                self._restore(backups)
                self._release(entries, modules)
                raise
        try:
            yield result
        finally:
            with self._lock:
                self._restore(backups)
                self._release(entries, modules)

    def _release(self, entries: list[_Entry], modules: list[Any]) -> None:
        for entry in entries:
            entry.in_use -= 1
        for module in modules:
            count = self._active_modules.get(id(module), 1) - 1
            if count <= 0:
                self._active_modules.pop(id(module), None)
            else:
                self._active_modules[id(module)] = count

    @staticmethod
    def _contains(value: Any, modules: list[Any]) -> bool:
        values = value if isinstance(value, tuple) else (value,)
        ids = {id(m) for m in modules}
        return any(id(m) in ids for item in values for m in ModelManager._modules_of(item))

    def _apply_patches(self, value: Any, modules: list[Any]) -> list[tuple[torch.nn.Parameter, torch.Tensor]]:
        patches = getattr(value, "patches", ())
        backups: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
        if not patches:
            return backups
        targets = {lora_mod.UNET_TARGET: modules[0]} if isinstance(value, Model) else {
            lora_mod.text_target(i): m for i, m in enumerate(modules)
        }
        saved: set[int] = set()
        with torch.no_grad():
            for patch in patches:
                module = targets.get(patch.target)
                if module is None:
                    continue
                for name, delta in patch.deltas.items():
                    param = module.get_parameter(name)
                    if id(param) not in saved:
                        backups.append((param, param.data))
                        saved.add(id(param))
                    change = delta.delta(param.shape, torch.float32, param.device) * patch.strength
                    param.data = (param.data.to(torch.float32) + change).to(param.dtype)
        return backups

    @staticmethod
    def _restore(backups: list[tuple[torch.nn.Parameter, torch.Tensor]]) -> None:
        with torch.no_grad():
            for param, original in reversed(backups):
                param.data = original

    def _to_device(self, module: Any) -> None:
        if self.device.type != "cuda":
            return
        # GPU path: keep modules resident within the VRAM budget, least recently used offloaded first.
        key = id(module)
        if key in self._resident:
            self._resident.move_to_end(key)
            return
        need = _module_bytes(module)
        self._make_room(need)
        try:
            module.to(self.device)
        except torch.cuda.OutOfMemoryError:
            logger.warning("out of GPU memory moving a %.0f MB model; freeing everything else and retrying", need / 1e6)
            self._make_room(need, everything=True)
            try:
                module.to(self.device)
            except torch.cuda.OutOfMemoryError as exc:
                module.to("cpu")
                torch.cuda.empty_cache()
                raise ModelOutOfMemory(
                    f"a {need / 1e9:.1f} GB model does not fit in GPU memory even after offloading every other model"
                ) from exc
        self._resident[key] = (module, need)
        if (
            self.compile_unet
            and hasattr(getattr(module, "config", None), "cross_attention_dim")
            and not getattr(module, "_graphengine_compiled", False)
        ):
            # GPU path, optional (GRAPHENGINE_COMPILE=1): compile the UNet's forward once, in place.
            module.forward = torch.compile(module.forward, mode="max-autotune-no-cudagraphs", dynamic=False)
            module._graphengine_compiled = True

    def _make_room(self, need: int, everything: bool = False) -> None:
        used = sum(size for _, size in self._resident.values())
        for key in list(self._resident):
            if not everything and used + need <= self.vram_budget:
                break
            if self._active_modules.get(key):
                continue
            module, size = self._resident.pop(key)
            module.to("cpu")
            used -= size
        if everything:
            gc.collect()
            torch.cuda.empty_cache()

    def free(self) -> None:
        """Offload every GPU-resident module not in use (ComfyUI's /free free_memory) and collect garbage."""
        with self._lock:
            if self.device.type == "cuda":  # GPU path
                self._make_room(0, everything=True)
            gc.collect()

    def unload_all(self) -> None:
        """Forget every loaded file not in use (ComfyUI's /free unload_models)."""
        with self._lock:
            self.free()
            for key in list(self._files):
                entry = self._files[key]
                if not entry.in_use:
                    del self._files[key]
                    self._forget(entry.value)
            gc.collect()

    def handle_out_of_memory(self) -> None:
        """Called after an out-of-memory error anywhere: release everything that can be released."""
        logger.warning("out of memory: offloading models and emptying caches")
        self.free()
        if self.device.type == "cuda":  # GPU path
            torch.cuda.empty_cache()
