"""scikit-learn's side of `tlab bench`'s probes section, on the features tlab wrote.

    python bench/probes_sklearn.py --features F.safetensors --threads 2 [--skip-sweep]

F holds `x` [N, D] f32 and `y` [N] (the last 20% is the validation split), `q` / `qy`
(k-NN queries) and `lambdas` (the grid, fitting order). The sweep is the protocol ours
runs: for each lambda, `LogisticRegression(solver="lbfgs", C=1/(lambda*N_train),
tol=1e-4, max_iter=1000)` on the training rows, warm-started from the previous fit
(`warm_start=True`), scored on the validation rows; the best refit on all rows. The
k-NN baseline is PyTorch: L2-normalise, batched matmul, topk, exp(sim/T) votes.
Prints "@tlab probes {json}" with seconds (imports and loading excluded).
"""
import argparse
import json
import os
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--features", required=True)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--skip-sweep", action="store_true")
    a = p.parse_args()
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[v] = str(a.threads)
    import numpy as np
    import torch
    from safetensors.numpy import load_file
    from sklearn.linear_model import LogisticRegression

    torch.set_num_threads(a.threads)
    t = load_file(a.features)
    x, y, lambdas = t["x"], t["y"], [float(v) for v in t["lambdas"]]
    n = len(y)
    n_val = int(n * 0.2)
    xt, yt, xv, yv = x[: n - n_val], y[: n - n_val], x[n - n_val :], y[n - n_val :]
    out = {"sklearn_version": __import__("sklearn").__version__, "rows": n, "dim": x.shape[1]}
    if not a.skip_sweep:
        t0 = time.perf_counter()
        m = LogisticRegression(solver="lbfgs", tol=1e-4, max_iter=1000, warm_start=True)
        accs, iters = [], []
        best = None
        for lam in lambdas:
            m.set_params(C=1.0 / (lam * len(yt)))
            m.fit(xt, yt)
            acc = float(m.score(xv, yv))
            accs.append(acc)
            iters.append(int(m.n_iter_[0]))
            if best is None or acc > best[1]:
                best = (lam, acc, m.coef_.copy(), m.intercept_.copy())
        final = LogisticRegression(solver="lbfgs", tol=1e-4, max_iter=1000, warm_start=True, C=1.0 / (best[0] * n))
        final.coef_, final.intercept_ = best[2], best[3]
        final.fit(x, y)
        out.update(sweep_seconds=time.perf_counter() - t0, chosen=best[0], val_acc=accs, iterations=iters)
    q, qy = torch.from_numpy(t["q"]), torch.from_numpy(t["qy"])
    bank, labels = torch.from_numpy(x), torch.from_numpy(y).long()
    k, temp = int(t["k"][0]), float(t["temperature"][0])
    t0 = time.perf_counter()
    with torch.inference_mode():
        bank = torch.nn.functional.normalize(bank, dim=1)
        preds = []
        for chunk in torch.split(q, max(1, (256 << 20) // (4 * n))):
            sim = torch.nn.functional.normalize(chunk, dim=1) @ bank.T
            top, idx = sim.topk(k, dim=1)
            votes = torch.zeros(len(chunk), 10).scatter_add_(1, labels[idx], (top / temp).exp())
            preds.append(votes.argmax(1))
        acc = float((torch.cat(preds) == qy).float().mean())
    out.update(knn_seconds=time.perf_counter() - t0, knn_accuracy=acc)
    print("@tlab probes " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
