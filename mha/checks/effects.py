"""What a call did to its inputs: tensors written in place, lists sorted, module weights changed, hooks left behind.

`snapshot(inputs)` notes the state of every input before the call (tensors, numpy arrays, lists, tuples, dicts,
modules with their parameters, buffers, hooks and attributes, and stand-ins that keep a `state()`);
`changes(snap)` compares after the call and returns plain data, one entry per input that changed:

    {"q": {"how": [{"part": "q", "kind": "values", "detail": "every entry was divided by 2.449"}]}}

`kind` is one of "values", "shape", "dtype", "order", "items", "replaced", "attribute", "hook", "shared".
"""

import torch
import torch.nn.modules.module as module_globals
from torch import nn

from .plain import to_plain

_HOOKS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)
_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks")
_MODULE_DICTS = {"_parameters", "_buffers", "_modules", "training", *_HOOKS}
_MAX_DEPTH = 4


class Snapshot:
    """The state of a call's inputs before the call."""

    def __init__(self, inputs: dict):
        self.inputs = inputs
        self.trees = {name: _snap(value, 0) for name, value in inputs.items()}
        self.storages = {name: dict(_storages(value, name)) for name, value in inputs.items()}
        self.global_hooks = {name: set(getattr(module_globals, name, {})) for name in _GLOBAL_HOOKS}


def snapshot(inputs: dict) -> Snapshot:
    """Note the state of every input, by name (the names appear in messages)."""
    return Snapshot(inputs)


def changes(snap: Snapshot, keep_after: tuple[str, ...] = ()) -> dict:
    """What changed since the snapshot, as plain data; never raises.

    Args:
        snap: from `snapshot`, taken before the call.
        keep_after: inputs whose state after the call the judge needs (the ones a function is meant to change);
            each gets an "after" entry: a module's state_dict, a stand-in's state(), or the input itself.

    Returns:
        {input name: {"how": [change, ...], "after": plain}} for each input that changed or is in keep_after; a
        change is {"part": where, "kind": what sort of change, "detail": in words}.
    """
    report: dict[str, dict] = {}
    for name, value in snap.inputs.items():
        try:
            how = _compare(snap.trees[name], value, name)
            how += _shared(value, name, snap)
        except Exception as error:  # noqa: BLE001 - an input we cannot compare is reported, not raised
            how = [{"part": name, "kind": "values", "detail": f"could not be compared ({type(error).__name__})"}]
        if how or name in keep_after:
            report[name] = {"how": how}
        if name in keep_after:
            report[name]["after"] = _after(value)
    added = []
    for hooks in _GLOBAL_HOOKS:
        if set(getattr(module_globals, hooks, {})) - snap.global_hooks[hooks]:
            added.append(
                {"part": "torch.nn", "kind": "hook", "detail": f"a global module hook was left ({hooks.strip('_')})"}
            )
    if added:
        report["torch.nn (global hooks)"] = {"how": added}
    return report


def _after(value):
    if isinstance(value, nn.Module):
        return {name: to_plain(t) for name, t in value.state_dict(keep_vars=False).items()}
    if hasattr(value, "state") and callable(value.state) and not isinstance(value, torch.Tensor):
        return to_plain(value.state())
    return to_plain(value)


# --- snapshots ---------------------------------------------------------------------------------------------------


def _snap(value, depth):
    if isinstance(value, torch.Tensor):
        return ("tensor", value, value.detach().clone(), tuple(value.shape), value.dtype)
    if hasattr(value, "__array_interface__") and type(value).__module__ == "numpy":
        return ("array", value, value.copy(), value.shape, value.dtype)
    if isinstance(value, nn.Module):
        return ("module", value, _module_state(value))
    if depth >= _MAX_DEPTH:
        return None
    if isinstance(value, list):
        return ("list", value, [id(v) for v in value], [_snap(v, depth + 1) for v in value], list(value))
    if isinstance(value, tuple):
        return ("tuple", value, [_snap(v, depth + 1) for v in value])
    if isinstance(value, dict):
        return ("dict", value, {k: id(v) for k, v in value.items()}, {k: _snap(v, depth + 1) for k, v in value.items()})
    if hasattr(value, "state") and callable(value.state):
        return ("stand-in", value, to_plain(value.state()))
    return None


def _module_state(module: nn.Module) -> dict:
    tensors = {}
    for prefix, sub in module.named_modules(remove_duplicate=False):
        for kind in ("_parameters", "_buffers"):
            for name, t in getattr(sub, kind).items():
                path = f"{prefix}.{name}" if prefix else name
                if t is None:
                    tensors[path] = (None, None, None)
                else:
                    tensors[path] = (t, t.detach().clone(), _storage(t))
    hooks = {prefix: {kind: set(getattr(sub, kind, {})) for kind in _HOOKS} for prefix, sub in module.named_modules()}
    attributes = {
        prefix: {k: (id(v), _simple(v)) for k, v in vars(sub).items() if k not in _MODULE_DICTS}
        for prefix, sub in module.named_modules()
    }
    submodules = {prefix: id(sub) for prefix, sub in module.named_modules()}
    return {"tensors": tensors, "hooks": hooks, "attributes": attributes, "submodules": submodules}


def _simple(v):
    return v if isinstance(v, bool | int | float | str | type(None)) else None


def _storage(t: torch.Tensor) -> int | None:
    try:
        return t.untyped_storage().data_ptr() if t.numel() else None
    except Exception:  # noqa: BLE001
        return None


def _storages(value, name, depth=0):
    """(storage address, where) for every tensor inside an input."""
    if isinstance(value, torch.Tensor):
        ptr = _storage(value)
        if ptr:
            yield ptr, name
    elif isinstance(value, nn.Module):
        for path, t in list(value.named_parameters(remove_duplicate=False)) + list(value.named_buffers()):
            ptr = _storage(t)
            if ptr:
                yield ptr, f"{name}.{path}"
    elif depth < _MAX_DEPTH and isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _storages(v, f"{name}[{i}]", depth + 1)
    elif depth < _MAX_DEPTH and isinstance(value, dict):
        for k, v in value.items():
            yield from _storages(v, f"{name}[{k!r}]", depth + 1)


# --- comparisons -------------------------------------------------------------------------------------------------


def _change(part, kind, detail):
    return {"part": part, "kind": kind, "detail": detail}


def _compare(tree, value, part) -> list[dict]:
    if tree is None:
        return []
    kind = tree[0]
    if kind in ("tensor", "array"):
        return _compare_tensor(tree, part)
    if kind == "module":
        return _compare_module(tree[1], tree[2], part)
    if kind == "list":
        return _compare_list(tree, part)
    if kind == "tuple":
        return [c for i, sub in enumerate(tree[2]) for c in _compare(sub, None, f"{part}[{i}]")]
    if kind == "dict":
        return _compare_dict(tree, part)
    return []  # a stand-in: its state after the call is reported by `changes`, not judged here


def _compare_tensor(tree, part) -> list[dict]:
    _, obj, before, shape, dtype = tree
    if tuple(obj.shape) != shape:
        return [_change(part, "shape", f"its shape changed from {shape} to {tuple(obj.shape)} (an in-place reshape)")]
    if obj.dtype != dtype:
        return [_change(part, "dtype", f"its dtype changed from {dtype} to {obj.dtype}")]
    if isinstance(obj, torch.Tensor):
        after = obj.detach()
    else:
        after, before = torch.from_numpy(obj.copy()), torch.from_numpy(before)
    detail = describe_tensor_change(before, after)
    return [_change(part, "values", detail)] if detail else []


def describe_tensor_change(before: torch.Tensor, after: torch.Tensor) -> str | None:
    """How the values of a tensor changed, in words ("every entry was divided by 2.83"); None if they did not."""
    before, after = before.cpu(), after.cpu()
    if before.dtype == torch.bool:
        differ = before != after
        if not differ.any():
            return None
        if differ.all():
            return "every entry was inverted (True <-> False)"
        return f"{int(differ.sum())} of {before.numel()} entries were flipped"
    if not (before.is_floating_point() or before.is_complex()):
        differ = before != after
    else:
        differ = ~((before == after) | (before.isnan() & after.isnan()))
    n, total = int(differ.sum()), before.numel()
    if n == 0:
        return None
    new = after[differ]
    if before.ndim == 1 and torch.equal(after, before.sort().values):
        return "it was sorted in place"
    if before.ndim == 1 and torch.equal(after, before.flip(0)):
        return "it was reversed in place"
    if (new == new.flatten()[0]).all():
        value = new.flatten()[0].item()
        return f"{n} of {total} entries were set to {value:g}" if n < total else f"every entry was set to {value:g}"
    if before.is_floating_point() and n == total and (before != 0).all():
        ratio = (after.double() / before.double()).flatten()
        if torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-4):
            r = ratio[0].item()
            if abs(r) < 1:
                return f"every entry was divided by {1 / r:.4g}"
            return f"every entry was multiplied by {r:.4g}"
    return f"{n} of {total} entries changed"


def _compare_list(tree, part) -> list[dict]:
    _, obj, ids, subs, items = tree
    now = [id(v) for v in obj]
    if now != ids:
        if sorted(now) == sorted(ids):
            try:
                in_order = list(obj) == sorted(items)
            except TypeError:
                in_order = False
            how = "it was sorted in place (`.sort()`)" if in_order else "its items were reordered in place"
            if list(obj) == items[::-1] and not in_order:
                how = "it was reversed in place (`.reverse()`)"
            return [_change(part, "order", how)]
        if len(now) != len(ids):
            return [_change(part, "items", f"it had {len(ids)} items and now has {len(now)}")]
        replaced = [i for i, (a, b) in enumerate(zip(now, ids)) if a != b]
        return [_change(part, "items", f"item {replaced[0]} was replaced" + (" (and more)" if replaced[1:] else ""))]
    return [c for i, sub in enumerate(subs) for c in _compare(sub, None, f"{part}[{i}]")]


def _compare_dict(tree, part) -> list[dict]:
    _, obj, ids, subs = tree
    if set(obj) != set(ids):
        added, removed = set(obj) - set(ids), set(ids) - set(obj)
        detail = ", ".join(
            [f"key {k} was added" for k in sorted(map(repr, added))][:2]
            + [f"key {k} was removed" for k in sorted(map(repr, removed))][:2]
        )
        return [_change(part, "items", detail)]
    out = [_change(f"{part}[{k!r}]", "items", "it was replaced by another object") for k in obj if id(obj[k]) != ids[k]]
    return out + [c for k, sub in subs.items() if id(obj[k]) == ids[k] for c in _compare(sub, None, f"{part}[{k!r}]")]


def _compare_module(module: nn.Module, before: dict, part) -> list[dict]:
    now = _module_state(module)
    out = []
    for prefix in now["submodules"].keys() - before["submodules"].keys():
        out.append(_change(f"{part}.{prefix}", "replaced", "a submodule was added"))
    for prefix, sub_id in before["submodules"].items():
        if prefix in now["submodules"] and now["submodules"][prefix] != sub_id:
            out.append(_change(f"{part}.{prefix}", "replaced", "this submodule was replaced by another module"))
    for path, (obj, saved, ptr) in before["tensors"].items():
        where = f"{part}.{path}"
        if path not in now["tensors"]:
            out.append(_change(where, "replaced", "it was removed"))
            continue
        obj_now, _, ptr_now = now["tensors"][path]
        if obj is None or obj_now is None:
            if (obj is None) != (obj_now is None):
                out.append(_change(where, "replaced", "it was set to None" if obj_now is None else "it was added"))
            continue
        if obj_now is not obj:
            out.append(_change(where, "replaced", "the parameter was replaced by another tensor object"))
        elif ptr_now != ptr:
            out.append(_change(where, "replaced", "its .data was replaced by another tensor"))
        if tuple(obj_now.shape) != tuple(saved.shape):
            out.append(
                _change(where, "shape", f"its shape changed from {tuple(saved.shape)} to {tuple(obj_now.shape)}")
            )
        elif obj_now.dtype != saved.dtype:
            out.append(_change(where, "dtype", f"its dtype changed from {saved.dtype} to {obj_now.dtype}"))
        else:
            detail = describe_tensor_change(saved, obj_now.detach())
            if detail:
                out.append(_change(where, "values", detail))
    for path in now["tensors"].keys() - before["tensors"].keys():
        out.append(_change(f"{part}.{path}", "replaced", "a new parameter or buffer was added"))
    for prefix, kinds in now["hooks"].items():
        for kind, keys in kinds.items():
            if keys - before["hooks"].get(prefix, {}).get(kind, set()):
                where = f"{part}.{prefix}" if prefix else part
                name = kind.strip("_").replace("_", " ").removesuffix("s")
                out.append(_change(where, "hook", f"a {name} was left on it"))
    for prefix, attrs in now["attributes"].items():
        old = before["attributes"].get(prefix, {})
        where = f"{part}.{prefix}" if prefix else part
        for key, (ident, simple) in attrs.items():
            if key not in old:
                out.append(_change(where, "attribute", f"its attribute `{key}` was set (and not removed)"))
            elif old[key][0] != ident and not (simple is not None and simple == old[key][1]):
                was = f" (was {old[key][1]!r}, now {simple!r})" if old[key][1] is not None else ""
                out.append(_change(where, "attribute", f"its attribute `{key}` was changed{was}"))
    return out


def _shared(value, name, snap: Snapshot) -> list[dict]:
    """Tensors of a module input that now share memory with another input's tensors (copied by reference)."""
    if not isinstance(value, nn.Module):
        return []
    others = {ptr: where for other, ptrs in snap.storages.items() if other != name for ptr, where in ptrs.items()}
    out = []
    for path, t in list(value.named_parameters(remove_duplicate=False)) + list(value.named_buffers()):
        ptr = _storage(t)
        if ptr and ptr in others:
            out.append(_change(f"{name}.{path}", "shared", f"it now shares its memory with {others[ptr]}"))
    return out
