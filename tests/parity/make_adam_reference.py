"""Reference for tests/head.rs: Adam steps of a Linear head, by PyTorch.

Usage: python make_adam_reference.py OUT_DIR -> adam.safetensors
Dropout is off; eps 1e-7 (Keras' default) as our head uses.
"""
import sys
import torch
from safetensors.torch import save_file

torch.manual_seed(0)
x = torch.randn(64, 16)
y = torch.randint(0, 10, (64,))
fc = torch.nn.Linear(16, 10)
w0, b0 = fc.weight.detach().clone(), fc.bias.detach().clone()
opt = torch.optim.Adam(fc.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
out = dict(x=x, y=y, w0=w0, b0=b0)
for step in range(1, 4):
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(fc(x), y)
    loss.backward()
    opt.step()
    out[f"w{step}"] = fc.weight.detach().clone()
    out[f"b{step}"] = fc.bias.detach().clone()
    out[f"loss{step}"] = loss.detach().reshape(1)
save_file(out, f"{sys.argv[1]}/adam.safetensors")
