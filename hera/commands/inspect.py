"""Show what an agent holds: its metadata, its definition, and every tensor
it keeps (learned parameters, then dynamic state) with dtype, shape and
statistics (min, max, mean, nonzero), then the state's values. An
installed agent is read from the store (for an agent that is up, as of its
last save or checkpoint); a FILE that is not installed is read as it is.
Nothing is locked or written.
"""

from __future__ import annotations

import argparse
from typing import Any

from hera.commands._common import add_file_argument, add_json_option, add_scope_options, store_for


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_file_argument(parser, "an instance file, installed or not")
    add_json_option(parser)
    add_scope_options(parser, "inspect")


def tensor_summary(tensor: Any) -> dict[str, Any]:
    """dtype, shape, min, max, mean and the count of nonzero elements of a
    tensor (min, max and mean are ``None`` for an empty one)."""
    flat = tensor.reshape(-1)
    summary: dict[str, Any] = {"dtype": str(tensor.dtype).removeprefix("torch."),
                               "shape": list(tensor.shape), "min": None, "max": None,
                               "mean": None, "nonzero": int(flat.count_nonzero())}
    if flat.numel():
        wide = flat.double()
        summary.update(min=_number(wide.min()), max=_number(wide.max()), mean=wide.mean().item())
    return summary


def _number(value: Any) -> int | float:
    number = value.item()
    return int(number) if float(number).is_integer() else number


def report(path: Any, status: str) -> dict[str, Any]:
    """Everything ``inspect`` shows of the instance file at ``path``."""
    from hera.instance import InstanceFile

    instance = InstanceFile.read(path)
    state = instance.state()
    return {
        "meta": instance.meta, "status": status, "path": str(path),
        "definition": instance.definition,
        "tensors": {name: tensor_summary(t) for name, t in instance.tensors().items()},
        "state": None if state is None else {
            "tensors": {name: tensor_summary(t) for name, t in state.tensors.items()},
            "values": state.values},
    }


def run(args: argparse.Namespace) -> int:
    from hera import manager
    from hera.output import print_json

    store = store_for(args)
    target = manager.select_target(store, args.file, args.uuid, args.callsign,
                                   allow_uninstalled=True)
    if target.installed:
        path, status = store.path(target.id), store.entry(target.header).status
    else:
        path, status = target.file.absolute(), "not installed"
    with store.acting():
        shown = report(path, status)
    if args.json:
        print_json(shown)
        return 0
    _print_report(shown)
    return 0


def _print_report(shown: dict[str, Any]) -> None:
    from hera.output import print_table

    meta = shown["meta"]
    family = meta["family"]
    print(f"agent {meta['id']} ({meta['callsign']})")
    print_table(["", ""], [
        ["family", f"{family['name']} {family['version']} (data format {family['data_format']})"],
        ["layout", meta["layout"]], ["status", shown["status"]], ["steps", meta["steps"]],
        ["incarnation", meta["incarnation"]], ["created", meta["created"]],
        ["seed", meta["seed"]], ["file", shown["path"]]], header=False)
    print("\ndefinition")
    print_table(["", ""], [[f"  {k}", _show(v)] for k, v in shown["definition"].items()],
                header=False)
    _print_tensors("tensors (learned)", shown["tensors"])
    if shown["state"] is None:
        print("\nno dynamic state: the agent has never run")
        return
    _print_tensors("state tensors", shown["state"]["tensors"])
    print("\nstate values")
    print_table(["", ""], [[f"  {k}", _show(v)] for k, v in shown["state"]["values"].items()],
                header=False)


def _print_tensors(title: str, tensors: dict[str, dict[str, Any]]) -> None:
    from hera.output import print_table

    print(f"\n{title}")
    print_table(["  NAME", "DTYPE", "SHAPE", "MIN", "MAX", "MEAN", "NONZERO"],
                [[f"  {name}", s["dtype"], "x".join(map(str, s["shape"])) or "scalar",
                  _show(s["min"]), _show(s["max"]), _show(s["mean"]), s["nonzero"]]
                 for name, s in tensors.items()])


def _show(value: Any) -> str:
    import json

    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return value if isinstance(value, str) else json.dumps(value)
