"""The usual PyTorch script path, for `tlab bench`'s end-to-end comparison.

    python bench/e2e_torch.py prepare DIR
        DIR holds CIFAR-10 binary files (data_batch_*.bin, batches.meta.txt); writes the
        python-pickle copy torchvision reads into DIR/cifar-10-batches-py (not timed).
    python bench/e2e_torch.py run DIR OUT --size 200 --batch 32 --threads 2 --workers 2 [--device cpu]
        torchvision CIFAR10 Dataset + DataLoader + Resize/ToTensor/Normalize -> ResNet50
        (random weights, fc removed, eval, no_grad) -> np.save(OUT). Prints
        "@tlab e2e {json}" with the peak RSS of this process and of its loader workers.
"""
import argparse
import json
import os
import pickle
import resource
import sys
import time


def prepare(d):
    import numpy as np

    out = os.path.join(d, "cifar-10-batches-py")
    os.makedirs(out, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        raw = np.fromfile(os.path.join(d, name + ".bin"), dtype=np.uint8).reshape(-1, 3073)
        entry = {"data": raw[:, 1:].copy(), "labels": raw[:, 0].astype(int).tolist(), "batch_label": name}
        with open(os.path.join(out, name), "wb") as f:
            pickle.dump(entry, f)
    with open(os.path.join(d, "batches.meta.txt")) as f:
        classes = [c for c in f.read().split("\n") if c]
    with open(os.path.join(out, "batches.meta"), "wb") as f:
        pickle.dump({"label_names": classes}, f)


def run(a):
    t0 = time.perf_counter()
    import numpy as np
    import torch
    import torchvision
    from torch.utils.data import DataLoader
    from torchvision import transforms as T

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    class LocalCIFAR10(torchvision.datasets.CIFAR10):
        # Generated files: their MD5s are not CIFAR-10's. Everything else is torchvision's.
        def _check_integrity(self):
            return True

        def _load_meta(self):
            with open(os.path.join(self.root, self.base_folder, self.meta["filename"]), "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    tf = T.Compose([T.Resize(a.size), T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    ds = LocalCIFAR10(a.dir, train=True, download=False, transform=tf)
    dl = DataLoader(ds, batch_size=a.batch, shuffle=False, num_workers=a.workers)
    model = torchvision.models.resnet50()
    model.fc = torch.nn.Identity()
    model = model.eval().to(a.device)
    feats, labels = [], []
    with torch.no_grad():
        for x, y in dl:
            feats.append(model(x.to(a.device)).cpu().numpy())
            labels.append(y.numpy())
    np.save(a.out, np.concatenate(feats))
    np.save(a.out + ".labels.npy", np.concatenate(labels))
    info = {
        "images": len(ds),
        "seconds_after_start": time.perf_counter() - t0,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "workers_peak_rss_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
    }
    print("@tlab e2e " + json.dumps(info), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["prepare", "run"])
    p.add_argument("dir")
    p.add_argument("out", nargs="?")
    p.add_argument("--size", type=int, default=200)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    if a.mode == "prepare":
        prepare(a.dir)
    else:
        run(a)


if __name__ == "__main__":
    sys.exit(main())
