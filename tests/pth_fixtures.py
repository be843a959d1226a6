"""Fixtures for tests/pth.rs: torch.save files, and the same tensors as safetensors.

Usage: python pth_fixtures.py OUT_DIR
Each `NAME.pth` comes with `NAME.safetensors` (every tensor made contiguous and cloned,
so shared storages are split) and `NAME.keys` (the dict's key order, one per line).
"""
import sys
from pathlib import Path

import torch
import torchvision
from safetensors.torch import save_file

out = Path(sys.argv[1])


def save(name, sd, **kw):
    torch.save(sd, out / f"{name}.pth", **kw)
    save_file({k: v.detach().contiguous().clone() for k, v in sd.items()}, out / f"{name}.safetensors")
    (out / f"{name}.keys").write_text("".join(k + "\n" for k in sd))


# An OrderedDict with `_metadata` and int64 num_batches_tracked, as torchvision ships.
torch.manual_seed(0)
save("resnet18", torchvision.models.resnet18(weights=None).state_dict())

base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
shared = torch.randn(10)
mixed = {
    "transposed": base.t(),  # strides (1, 6)
    "slice": base[1:3, 2:5],  # storage offset 8, strides (6, 1)
    "half": torch.randn(3, 2).half(),
    "bf16": torch.randn(5).bfloat16(),
    "int64": torch.tensor([-(2**40), 0, 7, 2**62]),
    "bool": torch.tensor([True, False, True]),
    "uint8": torch.arange(250, 256, dtype=torch.uint8),
    "scalar": torch.tensor(3.5, dtype=torch.float64),
    "empty": torch.zeros(0, 3),
    "shared_a": shared[:4],  # two tensors, one storage
    "shared_b": shared[4:].view(2, 3),
    "param": torch.nn.Parameter(torch.randn(2, 2)),  # torch._utils._rebuild_parameter
}
save("mixed", mixed)
# Protocol 4 adds FRAME, MEMOIZE, SHORT_BINUNICODE and STACK_GLOBAL.
save("mixed_p4", mixed, pickle_protocol=4)

# Not state dicts.
torch.save([torch.zeros(2)], out / "list.pth")
torch.save(torch.nn.Linear(2, 2), out / "module.pth")
torch.save({"model": {"w": torch.zeros(2)}, "epoch": 3}, out / "checkpoint.pth")
