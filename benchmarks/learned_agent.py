"""An agent as weeks of learning leave it, for the benchmarks that move or
load big agents: built, brought to life, a few steps run, and every float
learned tensor filled with random values (dense: nothing to compress,
nothing all zero)."""

from __future__ import annotations

from pathlib import Path


def learned_instance(layout: str, built_path: Path, seed: int):
    """``(instance, bytes)``: the learned agent of ``layout`` as an unwritten
    ``InstanceFile`` (built at ``built_path`` on the way), and the bytes of
    its tensors, learned and state."""
    import torch

    import hera
    from hera.instance import InstanceFile
    from hera.plugins import load_plugins

    built = hera.build(layout, built_path, family="abraxas", seed=seed, force=True)
    instance = InstanceFile.read(built)
    hooks = load_plugins().family_hooks("abraxas")
    loaded = hooks.hera_load(definition=dict(instance.definition), tensors=instance.tensors(),
                             state=None, device="cpu", seed=seed)
    hooks.hera_step(agent=loaded.handle, steps=3)
    snapshot = hooks.hera_serialize(agent=loaded.handle)
    del loaded
    generator = torch.Generator().manual_seed(seed)
    for tensor in snapshot.tensors.values():
        if tensor.is_floating_point():
            tensor.uniform_(0.0, 1.0, generator=generator)
    instance.set_tensors(snapshot.tensors, snapshot.state)
    tensors = sum(t.numel() * t.element_size() for t in snapshot.tensors.values()) + sum(
        t.numel() * t.element_size() for t in snapshot.state.tensors.values())
    return instance, tensors
