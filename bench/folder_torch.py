"""The usual PyTorch script for a folder of photos, for `tlab bench --only folder`.

    python bench/folder_torch.py run ROOT --size 224 --batch 32 --threads 2 --workers 2 [--device cpu]
        torchvision ImageFolder(ROOT) + DataLoader(num_workers) + Resize/CenterCrop/ToTensor/
        Normalize -> ResNet50 (random weights, fc removed, eval, channels-last,
        inference_mode). Prints "@tlab folder {json}": the images and the seconds of the
        loop (model and loader built before it starts, as ours is timed from its first batch).
"""
import argparse
import json
import time


def run(a):
    import torch
    import torchvision
    from torch.utils.data import DataLoader
    from torchvision import transforms as T

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    tf = T.Compose([
        T.Resize(a.size),
        T.CenterCrop(a.size),
        T.ToTensor(),
        T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])
    ds = torchvision.datasets.ImageFolder(a.root, transform=tf)
    dl = DataLoader(ds, batch_size=a.batch, shuffle=False, num_workers=a.workers)
    model = torchvision.models.resnet50()
    model.fc = torch.nn.Identity()
    model = model.eval().to(a.device).to(memory_format=torch.channels_last)
    n = 0
    t0 = time.perf_counter()
    with torch.inference_mode():
        for x, _ in dl:
            f = model(x.to(a.device).to(memory_format=torch.channels_last))
            n += f.shape[0]
    seconds = time.perf_counter() - t0
    print("@tlab folder " + json.dumps({"images": n, "loop_seconds": seconds}), flush=True)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("root")
    r.add_argument("--size", type=int, default=224)
    r.add_argument("--batch", type=int, default=32)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--device", default="cpu")
    a = p.parse_args()
    run(a)


if __name__ == "__main__":
    main()
