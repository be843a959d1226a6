"""The post's head trained the usual PyTorch way, for `tlab bench`'s head-training timing.

    python bench/head_torch.py --rows 50000 --dim 2048 --epochs 10 --threads 2 [--device cpu]

Random features [rows, dim] and labels (seeded), the last 20% for validation (Keras'
validation_split), then per epoch: shuffle, batches of 32, Dropout(0.3) -> Linear(dim, 10),
cross-entropy, Adam (lr 1e-3, eps 1e-7 as Keras), loss.item() and accuracy per step,
validation, best state_dict saved. The same loop as src/train/head.rs. Prints
"@tlab head {json}" with the loop's seconds (data generation and imports excluded).
"""
import argparse
import json
import os
import tempfile
import time

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=50000)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    x = torch.randn(a.rows, a.dim, device=dev)
    y = torch.randint(0, 10, (a.rows,), device=dev)
    n_val = int(a.rows * 0.2)
    xt, yt, xv, yv = x[: a.rows - n_val], y[: a.rows - n_val], x[a.rows - n_val :], y[a.rows - n_val :]
    model = torch.nn.Sequential(torch.nn.Dropout(0.3), torch.nn.Linear(a.dim, 10)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()
    ckpt = os.path.join(tempfile.mkdtemp(prefix="tlab-head-"), "head-best.pt")
    best, t0 = -1.0, time.perf_counter()
    for _ in range(a.epochs):
        model.train()
        perm = torch.randperm(len(xt), device=dev)
        loss_sum, correct, seen = 0.0, 0, 0
        for s in range(0, len(xt), 32):
            idx = perm[s : s + 32]
            xb, yb = xt[idx], yt[idx]
            logits = model(xb)
            loss = loss_fn(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == yb).sum().item()
            seen += len(idx)
        model.eval()
        with torch.no_grad():
            val_acc = (model(xv).argmax(1) == yv).float().mean().item()
        if val_acc > best:
            best = val_acc
            torch.save(model.state_dict(), ckpt)
    secs = time.perf_counter() - t0
    os.remove(ckpt)
    os.rmdir(os.path.dirname(ckpt))
    print("@tlab head " + json.dumps({"seconds": secs, "steps": a.epochs * ((len(xt) + 31) // 32)}), flush=True)


if __name__ == "__main__":
    main()
