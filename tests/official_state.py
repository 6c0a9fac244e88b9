"""Test utility: a seeded state_dict in the official microsoft/Swin-Transformer layout (numpy arrays, official key
names, buffers included), to write with ``pth_writer`` as the released ``{'model': state_dict}`` file.

The layout is the official ``SwinTransformer.state_dict()``: ``patch_embed.{proj,norm}``,
``layers.{i}.blocks.{j}.{norm1, attn.{relative_position_bias_table, relative_position_index, qkv, proj}, norm2,
mlp.{fc1, fc2}}``, ``attn_mask`` on each block with a shift (registered as a buffer; ``None``, so absent, without
one), ``layers.{i}.downsample.{reduction, norm}`` (no reduction bias), ``norm``, ``head``.
tests/test_pretrained.py checks it against the reference fixture written by the official ACmix-Swin code (the same
layout plus the ACmix keys). Values follow the fixtures' seeding rules (reference README): conv/linear weights
N(0, 1/fan_in), biases N(0, 0.1^2), LayerNorm weight U(0.5, 1.5) and bias N(0, 0.2^2), bias tables N(0, 0.5^2).
"""
import numpy as np


def _relative_position_index(window: int) -> np.ndarray:
    coords = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing="ij")).reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + (window - 1)
    return (rel[..., 0] * (2 * window - 1) + rel[..., 1]).astype(np.int64)


def _attn_mask(resolution: int, window: int, shift: int) -> np.ndarray:
    img = np.zeros((resolution, resolution), np.float32)
    cnt = 0
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for h in cuts:
        for w in cuts:
            img[h, w] = cnt
            cnt += 1
    n = resolution // window
    win = img.reshape(n, window, n, window).transpose(0, 2, 1, 3).reshape(-1, window * window)
    diff = win[:, None, :] - win[:, :, None]
    return np.where(diff != 0, -100.0, 0.0).astype(np.float32)


def swin_official_state(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window=7, img_size=224,
                        patch=4, num_classes=1000, mlp_ratio=4, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    state = {}

    def linear(name, out_f, in_f, bias=True):
        state[f"{name}.weight"] = rng.normal(0, (1 / in_f) ** 0.5, (out_f, in_f)).astype(np.float32)
        if bias:
            state[f"{name}.bias"] = rng.normal(0, 0.1, out_f).astype(np.float32)

    def norm(name, dim):
        state[f"{name}.weight"] = rng.uniform(0.5, 1.5, dim).astype(np.float32)
        state[f"{name}.bias"] = rng.normal(0, 0.2, dim).astype(np.float32)

    fan = 3 * patch * patch
    state["patch_embed.proj.weight"] = rng.normal(0, fan ** -0.5, (embed_dim, 3, patch, patch)).astype(np.float32)
    state["patch_embed.proj.bias"] = rng.normal(0, 0.1, embed_dim).astype(np.float32)
    norm("patch_embed.norm", embed_dim)
    resolution = img_size // patch
    for i, (depth, heads) in enumerate(zip(depths, num_heads)):
        dim = embed_dim * 2 ** i
        win = min(window, resolution)
        for j in range(depth):
            b = f"layers.{i}.blocks.{j}"
            shift = 0 if resolution <= window else (window // 2 if j % 2 else 0)
            if shift:
                state[f"{b}.attn_mask"] = _attn_mask(resolution, win, shift)
            norm(f"{b}.norm1", dim)
            state[f"{b}.attn.relative_position_bias_table"] = rng.normal(
                0, 0.5, ((2 * win - 1) ** 2, heads)).astype(np.float32)
            state[f"{b}.attn.relative_position_index"] = _relative_position_index(win)
            linear(f"{b}.attn.qkv", 3 * dim, dim)
            linear(f"{b}.attn.proj", dim, dim)
            norm(f"{b}.norm2", dim)
            linear(f"{b}.mlp.fc1", mlp_ratio * dim, dim)
            linear(f"{b}.mlp.fc2", dim, mlp_ratio * dim)
        if i < len(depths) - 1:
            linear(f"layers.{i}.downsample.reduction", 2 * dim, 4 * dim, bias=False)
            norm(f"layers.{i}.downsample.norm", 4 * dim)
            resolution //= 2
    final = embed_dim * 2 ** (len(depths) - 1)
    norm("norm", final)
    linear("head", num_classes, final)
    return state
