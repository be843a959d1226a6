"""A long-lived benchmark peer for `tlab bench`: one framework, its models built once.

    python bench/peer.py --framework torch|keras [--model convnext_tiny|hf:dinov2-vits14] --size 200 --batch 32 --threads 2 [--device cpu|cuda]

Protocol (one line each way; protocol lines start with "@tlab "; anything else on stdout
is framework chatter and ignored):
    <- @tlab ready {"framework": ..., "version": ..., "variants": [...]}
    -> run VARIANT N      N timed batches of the same input after the warm-up
    <- @tlab ok IMAGES_PER_S SECONDS
    -> rss                <- @tlab rss PEAK_RSS_BYTES
    -> quit (or EOF)
Errors answer "@tlab err MESSAGE". Variants: fp32 and bf16 (torch: eager, channels-last,
inference_mode, bf16 by autocast; keras: ResNet50(include_top=False, pooling='avg') called
through a tf.function, bf16 by the mixed_bfloat16 policy). `hf:ARCH`: `transformers`'
Dinov2Model / Dinov2WithRegistersModel / CLIPVisionModel (eager, SDPA attention,
inference_mode), pooled as tlab pools them by default. Weights are random: speed only.
"""
import argparse
import json
import os
import resource
import sys
import time


def say(*parts):
    sys.stdout.write("@tlab " + " ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


# tlab's ViTs in transformers: (class, config, pooling).
HF = {
    "dinov2-vits14": ("Dinov2", dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6), "cls+mean"),
    "dinov2-vitb14": ("Dinov2", dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12), "cls+mean"),
    "dinov2-vits14-reg": ("Dinov2WithRegisters", dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6),
                          "cls+mean"),
    "dinov2-vitl14": ("Dinov2", dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16), "cls+mean"),
    "dinov2-vitb14-reg": ("Dinov2WithRegisters", dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12),
                          "cls+mean"),
    "dinov2-vitl14-reg": ("Dinov2WithRegisters", dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16),
                          "cls+mean"),
    "clip-vitl14": ("CLIPVision", dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                       num_attention_heads=16, patch_size=14), "cls"),
    "clip-vitb16": ("CLIPVision", dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                       num_attention_heads=12, patch_size=16), "cls"),
}


def hf_model(arch, size):
    import torch
    import transformers

    cls, cfg, pool = HF[arch]
    # DINOv2's checkpoints hold 518 px of positions (resampled per call, as tlab does).
    image_size = 518 if cls.startswith("Dinov2") else size
    config = getattr(transformers, f"{cls}Config")(image_size=image_size, **cfg)
    config._attn_implementation = "sdpa"
    m = getattr(transformers, f"{cls}Model")(config)
    regs = getattr(config, "num_register_tokens", 0) if cls == "Dinov2WithRegisters" else 0

    class Pooled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = m

        def forward(self, x):
            o = self.m(pixel_values=x)
            if pool == "cls":
                return o.pooler_output
            t = o.last_hidden_state
            return torch.cat([t[:, 0], t[:, 1 + regs:].mean(1)], dim=1)

    return Pooled()


def torch_peer(a):
    import torch
    import torchvision

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    if a.model.startswith("hf:"):
        model = hf_model(a.model[3:], a.size)
    else:
        model = getattr(torchvision.models, a.model)()
    # Features, not logits: the classifier's last layer goes (ResNet: fc; ConvNeXt,
    # EfficientNet: classifier[-1], after ConvNeXt's norm; ViT: heads).
    if hasattr(model, "fc"):
        model.fc = torch.nn.Identity()
    elif hasattr(model, "heads"):
        model.heads = torch.nn.Identity()
    elif hasattr(model, "classifier"):
        model.classifier[-1] = torch.nn.Identity()
    model = model.eval().to(dev).to(memory_format=torch.channels_last)
    x = torch.randn(a.batch, 3, a.size, a.size, device=dev).to(memory_format=torch.channels_last)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def fp32():
        with torch.inference_mode():
            return model(x)

    def bf16():
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16):
            return model(x)

    def call(f):
        def run():
            y = f()
            sync()
            return y

        return run

    return torch.__version__, {"fp32": call(fp32), "bf16": call(bf16)}


def keras_peer(a):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(a.threads)
    keras = tf.keras
    tf.random.set_seed(0)
    variants = {}
    for name, policy in [("fp32", "float32"), ("bf16", "mixed_bfloat16")]:
        keras.mixed_precision.set_global_policy(policy)
        model = keras.applications.ResNet50(
            weights=None, include_top=False, pooling="avg", input_shape=(a.size, a.size, 3)
        )
        fn = tf.function(lambda x, m=model: m(x, training=False))
        variants[name] = (lambda f: (lambda: f(x).numpy()))(fn)
    keras.mixed_precision.set_global_policy("float32")
    x = tf.random.normal((a.batch, a.size, a.size, 3))
    return f"{tf.__version__} (keras {keras.__version__})", variants


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--framework", choices=["torch", "keras"], required=True)
    p.add_argument("--model", default="resnet50", help="torchvision builder, or hf:ARCH (torch only)")
    p.add_argument("--size", type=int, default=200)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--device", default="cpu")
    p.add_argument("--variants", default="fp32,bf16")
    a = p.parse_args()
    version, variants = (torch_peer if a.framework == "torch" else keras_peer)(a)
    wanted = [v for v in a.variants.split(",") if v]
    for v in wanted:
        variants[v]()  # warm-up: kernel selection, graph tracing
    say("ready", json.dumps({"framework": a.framework, "version": version, "variants": wanted}))
    for line in sys.stdin:
        cmd = line.split()
        try:
            if not cmd or cmd[0] == "quit":
                break
            if cmd[0] == "rss":
                say("rss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
            elif cmd[0] == "run":
                f, n = variants[cmd[1]], int(cmd[2])
                t = time.perf_counter()
                for _ in range(n):
                    f()
                dt = time.perf_counter() - t
                say("ok", a.batch * n / dt, dt)
            else:
                say("err", f"unknown command {line.strip()!r}")
        except Exception as e:  # report, keep serving
            say("err", f"{type(e).__name__}: {e}".replace("\n", " "))


if __name__ == "__main__":
    main()
